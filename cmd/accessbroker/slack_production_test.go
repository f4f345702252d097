package main

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/fixtures/slackfake"
	"github.com/accessbroker/accessbroker/integrations/slack"
)

// TestServeWithSlackProductionURLs runs serve with Slack's production defaults (no
// slack.api_url), its requests for https://slack.com and https://hooks.slack.com carried to
// slackfake. A slash command's real-shaped response_url (https://hooks.slack.com/commands/…)
// is where the private answer goes: not refused, not replaced by a DM (issue #12).
func TestServeWithSlackProductionURLs(t *testing.T) {
	p := newInProcess(t)
	p.config = filepath.Join("testdata", "e2e", "slack-production.yaml")
	const botToken, signing = "xoxb-production-test-0123456789", "production-signing-secret-0123456789"
	sl := slackfake.New(slackfake.Options{Token: botToken, TeamID: "T0ACME"})
	t.Cleanup(sl.Close)
	sl.AddChannel("C0AUDIT")
	sl.AddChannel("C0APPROVALS", "U0LEAD")
	sl.AddUser(slackfake.User{ID: "U0ALICE", Name: "alice", Email: "alice@example.com"})
	sl.AddUser(slackfake.User{ID: "U0LEAD", Name: "lead", Email: "lead@example.com"})
	t.Setenv("AB_SLACK_BOT_TOKEN", botToken)
	t.Setenv("AB_SLACK_SIGNING_SECRET", signing)
	base, logs := startServerWith(t, p, appOptions{transport: sl.Transport()})

	reply := sl.NewProductionResponseURL()
	if !strings.HasPrefix(reply, "https://hooks.slack.com/commands/T0ACME/") {
		t.Fatalf("setup: response_url %s is not in Slack's shape", reply)
	}
	form, err := slackfake.CommandForm(slackfake.Command{TeamID: "T0ACME", UserID: "U0ALICE", Command: "/access",
		Text: "prod-db 1h checking replication lag", ResponseURL: reply})
	if err != nil {
		t.Fatal(err)
	}
	req, err := slackfake.SignedRequest(t.Context(), base+slack.CommandsPath, signing, time.Now(), []byte(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("command answered %d", resp.StatusCode)
	}
	within(t, 30*time.Second, "the approval request in #approvals", func() bool {
		for _, m := range sl.Messages() {
			if m.Channel == "C0APPROVALS" && strings.Contains(m.Text, "prod-db") {
				return true
			}
		}
		return false
	})
	within(t, 30*time.Second, "Alice's private answer on her response_url", func() bool {
		for _, m := range sl.Messages() {
			if m.Via == slackfake.ResponseURLMethod && strings.Contains(m.Text, "needs 1 approval") {
				return true
			}
		}
		return false
	})
	for _, m := range sl.Messages() {
		if strings.HasPrefix(m.Channel, "D") {
			t.Errorf("an answer went by DM instead of the response_url: %+v", m)
		}
	}
	if strings.Contains(logs.String(), "response_url is not under") {
		t.Errorf("the response_url was refused:\n%s", logs.String())
	}
}

func TestResponseURLPrefixFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ apiURL, want string }{
		{"", "https://hooks.slack.com/"},
		{"https://slack.com/api/", "https://hooks.slack.com/"},
		{"https://slack.com/api", "https://hooks.slack.com/"},
		{"http://127.0.0.1:4390/api/", "http://127.0.0.1:4390/"},
		{"https://slack.example.net/api/", "https://slack.example.net/"},
	} {
		got, err := slack.ResponseURLPrefixFor(tc.apiURL)
		if err != nil || got != tc.want {
			t.Errorf("ResponseURLPrefixFor(%q) = %q, %v; want %q", tc.apiURL, got, err, tc.want)
		}
	}
}
