package main

import (
	"bytes"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	slackfixtures "github.com/accessbroker/accessbroker/fixtures/slack"
	"github.com/accessbroker/accessbroker/fixtures/slackfake"
	"github.com/accessbroker/accessbroker/integrations/slack"
)

// TestGrantsIssueNamesOnlyListedPeople: the command line maps a person only through an
// identities entry (issue #11). An unlisted Slack id gets a clear refusal (exit 2), nothing is
// issued, and the attempt is in the audit log; a listed one is issued with the entry's email.
func TestGrantsIssueNamesOnlyListedPeople(t *testing.T) {
	p := newInProcess(t)
	out, errOut, code := p.run("grants", "issue", "--config", p.config, "--resource", "prod-db", "--slack-user", "U0MALLORY",
		"--reason", "impostor probe", "--operator", "tester")
	if code != exitUsage || !strings.Contains(errOut, "U0MALLORY is not listed under identities") || out != "" {
		t.Fatalf("unlisted: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if calls := p.fake.Calls(); len(calls) != 0 {
		t.Errorf("the provider was called for an unlisted person: %+v", calls)
	}
	if list := p.mustRun("grants", "list", "--config", p.config, "--format", "json"); strings.Contains(list, "g_") {
		t.Errorf("grants exist after the refusal: %s", list)
	}
	events := p.mustRun("audit", "search", "--config", p.config, "--action", "request.rejected", "--format", "json")
	for _, want := range []string{"U0MALLORY", "tester", "grants issue refused", `"cli"`} {
		if !strings.Contains(events, want) {
			t.Errorf("the refusal's audit event lacks %s:\n%s", want, events)
		}
	}

	out = p.mustRun("grants", "issue", "--config", p.config, "--resource", "prod-db", "--slack-user", "U0ALICE",
		"--reason", "listed probe", "--operator", "tester")
	if !strings.Contains(out, "alice@example.com access to prod-db") {
		t.Errorf("listed: %s", out)
	}
}

// TestServeIdentityModes runs serve (Slack against slackfake, SQLite) in both
// identity.resolve_by_email modes. Mallory, unlisted, shows Alice's email in another case:
// refused in both, identity.conflict audited with both ids and the email, the audit channel
// told. Erin, unlisted with a confirmed email, is served (asked for approval) only when email
// resolution is on; off, she is refused with a clear answer.
func TestServeIdentityModes(t *testing.T) {
	for _, mode := range []string{"true", "false"} {
		t.Run("resolve_by_email="+mode, func(t *testing.T) {
			p := newInProcess(t)
			p.config = filepath.Join("testdata", "e2e", "identity.yaml")
			const botToken, signing = "xoxb-identity-test-0123456789", "identity-signing-secret-0123456789"
			sl := slackfake.New(slackfake.Options{Token: botToken, TeamID: "T0ACME"})
			t.Cleanup(sl.Close)
			sl.AddChannel("C0AUDIT")
			sl.AddChannel("C0APPROVALS", "U0LEAD")
			for _, u := range []slackfake.User{
				{ID: "U0ALICE", Name: "alice", Email: "alice@example.com"},
				{ID: "U0LEAD", Name: "lead", Email: "lead@example.com"},
				{ID: "U0MALLORY", Name: "mallory", Email: "ALICE@Example.com"},
				{ID: "U0ERIN", Name: "erin", Email: "erin@example.com"},
			} {
				sl.AddUser(u)
			}
			t.Setenv("AB_SLACK_API_URL", sl.APIURL())
			t.Setenv("AB_SLACK_BOT_TOKEN", botToken)
			t.Setenv("AB_SLACK_SIGNING_SECRET", signing)
			t.Setenv("AB_RESOLVE_BY_EMAIL", mode)
			base, logs := startServer(t, p)

			answers := map[string]string{}
			for _, user := range []string{"U0MALLORY", "U0ERIN"} {
				answers[user] = sl.NewResponseURL()
				form, err := url.ParseQuery(string(slackfixtures.Read("slash-command.txt")))
				if err != nil {
					t.Fatal(err)
				}
				form.Del("enterprise_id")
				form.Del("enterprise_name")
				for k, v := range map[string]string{"team_id": "T0ACME", "user_id": user, "command": "/access",
					"text": "prod-db 1h checking replication lag", "response_url": answers[user], "trigger_id": "1337." + user} {
					form.Set(k, v)
				}
				body := []byte(form.Encode())
				req, _ := http.NewRequest(http.MethodPost, base+slack.CommandsPath, bytes.NewReader(body))
				stamp := strconv.FormatInt(time.Now().Unix(), 10)
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set(slack.HeaderTimestamp, stamp)
				req.Header.Set(slack.HeaderSignature, slack.SignatureHeader(signing, stamp, body))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%s: command answered %d", user, resp.StatusCode)
				}
			}
			answered := func(user, want string) func() bool {
				return func() bool {
					for _, m := range sl.Messages() {
						if m.ResponseURL == answers[user] && strings.Contains(m.Text, want) {
							return true
						}
					}
					return false
				}
			}
			within(t, 30*time.Second, "Mallory's refusal", answered("U0MALLORY", "could not be identified"))
			if mode == "true" {
				within(t, 30*time.Second, "Erin's approval request", answered("U0ERIN", "needs 1 approval"))
			} else {
				within(t, 30*time.Second, "Erin's refusal", answered("U0ERIN", "serves only the people in its identities list"))
			}
			within(t, 30*time.Second, "the audit channel alert", func() bool {
				for _, m := range sl.Messages() {
					if m.Channel == "C0AUDIT" && strings.Contains(m.Text, "IDENTITY CONFLICT") && strings.Contains(m.Text, "U0MALLORY") && strings.Contains(m.Text, "U0ALICE") {
						return true
					}
				}
				return false
			})
			conflicts := p.mustRun("audit", "search", "--config", p.config, "--action", "identity.conflict", "--format", "json")
			for _, want := range []string{`"U0MALLORY"`, `"claimed_by_slack_user": "U0ALICE"`, `"alice@example.com"`} {
				if !strings.Contains(strings.ReplaceAll(conflicts, `":"`, `": "`), want) {
					t.Errorf("identity.conflict events lack %s:\n%s", want, conflicts)
				}
			}
			if strings.Count(conflicts, "identity.conflict") != 1 {
				t.Errorf("want exactly one identity.conflict event:\n%s", conflicts)
			}
			if calls := p.fake.Calls(); len(calls) != 0 {
				t.Errorf("the provider was called: %+v", calls)
			}
			if strings.Contains(logs.String(), botToken) || strings.Contains(logs.String(), signing) {
				t.Error("a secret reached the logs")
			}
		})
	}
}
