package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/fixtures/githubfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	ghprov "github.com/accessbroker/accessbroker/integrations/github"
)

const (
	ghwToken  = "ghp_webhookTestToken0123456789abcdef"
	ghwSecret = "whsec-0123456789abcdef0123456789abcdef"
)

// ghwDelivery is one webhook delivery as GitHub sends it: the event and delivery headers and
// X-Hub-Signature-256 over the body with secret.
func ghwDelivery(t *testing.T, url, event, delivery, secret string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+ghprov.WebhookPath, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/044aadd")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-GitHub-Hook-ID", "292430182")
	if secret != "" {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestGitHubWebhookActivity: with activity.github.webhook_secret, serve's main listener takes
// POST /github/webhook. A signed push (GitHub's payload example) by the person of a live
// github-team grant in that organisation is one github.activity on that grant (via webhook,
// the delivery id as id); the same delivery again is still one; a push by someone else and a
// push by the other grant's person in another delivery land only where they belong; a bad or
// missing signature is 401 and github.webhook_refused with nothing recorded; a push after the
// grant was revoked (within lookback) is labelled after_revocation and becomes the report's
// activity_after_revocation anomaly.
func TestGitHubWebhookActivity(t *testing.T) {
	dir := t.TempDir()
	gh := githubfake.New(ghwToken)
	t.Cleanup(gh.Close)
	gh.AddTeam("Octocoders", "octo-admins")
	gh.AddOrgMember("Octocoders", "Codertocat")
	gh.AddOrgMember("Octocoders", "bob")
	t.Setenv("AB_DB", filepath.Join(dir, "ab.db"))
	t.Setenv("AB_KEY", filepath.Join(dir, "audit.key"))
	t.Setenv("AB_GITHUB_API_URL", gh.URL())
	t.Setenv("AB_GITHUB_TOKEN", ghwToken)
	t.Setenv("AB_GH_WEBHOOK_SECRET", ghwSecret)
	p := &inProcess{t: t, dir: dir, config: filepath.Join("testdata", "e2e", "ghwebhook.yaml")}
	p.mustRun("audit", "keygen", "--out", filepath.Join(dir, "audit.key"))
	cfg, ok := loadConfigFlag(p.config, io.Discard)
	if !ok {
		t.Fatal("config")
	}
	push, err := os.ReadFile(filepath.Join("..", "..", "fixtures", "github", "webhook-push-organization.json"))
	if err != nil {
		t.Fatal(err)
	}
	clock := clocktest.New(time.Now().UTC().Truncate(time.Millisecond))
	s, err := newServer(context.Background(), cfg, appOptions{clock: clock, logOut: io.Discard, withProviders: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	op := audit.Actor{Kind: audit.ActorOperator, ID: "tester"}
	issue := func(p grants.Person) grants.Grant {
		t.Helper()
		g, _, err := s.manager.Issue(ctx, grants.IssueInput{Resource: "octo-admins", Person: p, Duration: time.Hour, Reason: "deploy fix", Actor: op})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	alice := issue(grants.Person{SlackTeamID: "T0ACME", SlackUserID: "U0ALICE", Email: "alice@example.com", GitHubLogin: "Codertocat"})
	bob := issue(grants.Person{SlackTeamID: "T0ACME", SlackUserID: "U0BOB", Email: "bob@example.com", GitHubLogin: "bob"})

	runCtx, cancel := context.WithCancel(ctx)
	listening := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx, listening) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		s.Close()
	})
	var addr string
	select {
	case addr = <-listening:
	case err := <-done:
		t.Fatalf("serve ended: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("serve did not listen within a minute")
	}
	url := "http://" + addr

	events := func(action audit.Action) []audit.Event {
		t.Helper()
		all, err := s.store.ReadEvents(ctx, 0, 100000)
		if err != nil {
			t.Fatal(err)
		}
		var out []audit.Event
		for _, e := range all {
			if e.Action == action {
				out = append(out, e)
			}
		}
		return out
	}

	const d1 = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
	for i := range 2 { // the second is a redelivery of the same delivery
		if code, body := ghwDelivery(t, url, "push", d1, ghwSecret, push); code != http.StatusOK {
			t.Fatalf("signed push (try %d): %d %s", i+1, code, body)
		}
	}
	acts := events(audit.ActionGitHubActivity)
	if len(acts) != 1 {
		t.Fatalf("github.activity after a push delivered twice: %d events, want 1: %+v", len(acts), acts)
	}
	a := acts[0]
	ev := a.Evidence
	if a.GrantID != alice.ID || a.Resource != "octo-admins" || ev["via"] != "webhook" || ev["id"] != d1 || ev["github_action"] != "push" ||
		ev["repo"] != "Codertocat/Hello-World" || ev["actor"] != "Codertocat" || ev[audit.EvidenceActivityAfterRevocation] != "false" || ev[audit.EvidenceActivityEventTime] == "" {
		t.Errorf("github.activity: grant %s (want %s), evidence %v", a.GrantID, alice.ID, ev)
	}

	// Another person (no grant) pushes: nothing. bob pushes: his grant, not alice's.
	other := bytes.ReplaceAll(push, []byte(`"login": "Codertocat"`), []byte(`"login": "monalisa"`))
	if code, body := ghwDelivery(t, url, "push", "8e2b2b3a-cc78-11e3-81ab-4c9367dc0958", ghwSecret, other); code != http.StatusOK {
		t.Fatalf("push by another person: %d %s", code, body)
	}
	if n := len(events(audit.ActionGitHubActivity)); n != 1 {
		t.Errorf("a push by someone without a grant was recorded: %d github.activity, want 1", n)
	}
	byBob := bytes.ReplaceAll(push, []byte(`"login": "Codertocat"`), []byte(`"login": "bob"`))
	if code, body := ghwDelivery(t, url, "push", "9f3c3c4b-cc78-11e3-81ab-4c9367dc0958", ghwSecret, byBob); code != http.StatusOK {
		t.Fatalf("push by bob: %d %s", code, body)
	}
	if acts := events(audit.ActionGitHubActivity); len(acts) != 2 || acts[1].GrantID != bob.ID {
		t.Errorf("bob's push: %+v, want a second github.activity on %s", acts, bob.ID)
	}

	// Bad and missing signatures: 401, github.webhook_refused, nothing recorded.
	for _, tc := range []struct{ name, secret string }{{"wrong secret", "not-the-secret-0123456789abcdef0123"}, {"unsigned", ""}} {
		code, _ := ghwDelivery(t, url, "push", "a04d4d5c-cc78-11e3-81ab-4c9367dc0958", tc.secret, push)
		if code != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", tc.name, code)
		}
	}
	if n := len(events(audit.ActionGitHubActivity)); n != 2 {
		t.Errorf("a refused delivery was recorded: %d github.activity, want 2", n)
	}
	refused := events(audit.ActionGitHubWebhookRefused)
	if len(refused) != 2 || !strings.Contains(refused[0].Reason, "signature") || refused[0].Evidence["delivery"] != "a04d4d5c-cc78-11e3-81ab-4c9367dc0958" {
		t.Errorf("github.webhook_refused: %+v, want 2 naming the signature", refused)
	}
	for _, e := range refused {
		if strings.Contains(e.Reason+e.Evidence["delivery"], ghwSecret) {
			t.Error("the webhook secret appears in an audit event")
		}
	}

	// After revocation, within lookback_after_end: recorded and flagged.
	if _, err := s.manager.Revoke(ctx, alice.ID, grants.CauseManual, op, "done"); err != nil {
		t.Fatal(err)
	}
	if !eventually(time.Minute, func() bool {
		g, err := s.store.GetGrant(ctx, alice.ID)
		return err == nil && g.State == grants.StateRevoked
	}) {
		t.Fatal("alice's grant was not revoked within a minute")
	}
	clock.Advance(2 * time.Minute)
	const d2 = "b15e5e6d-cc78-11e3-81ab-4c9367dc0958"
	if code, body := ghwDelivery(t, url, "push", d2, ghwSecret, push); code != http.StatusOK {
		t.Fatalf("push after revocation: %d %s", code, body)
	}
	acts = events(audit.ActionGitHubActivity)
	if len(acts) != 3 || acts[2].GrantID != alice.ID || acts[2].Evidence[audit.EvidenceActivityAfterRevocation] != "true" {
		t.Fatalf("push after revocation: %+v, want a third github.activity on %s with after_revocation true", acts, alice.ID)
	}
	rep := p.mustRun("report", "--config", p.config, "--format", "json",
		"--since", clock.Now().Add(-time.Hour).Format(time.RFC3339), "--until", clock.Now().Add(time.Hour).Format(time.RFC3339))
	if !strings.Contains(rep, string(audit.AnomalyActivityAfterRevocation)) {
		t.Errorf("report does not flag activity after revocation:\n%s", rep)
	}
	// Past lookback_after_end: no longer the grant's.
	clock.Advance(30 * time.Minute)
	if code, body := ghwDelivery(t, url, "push", "c26f6f7e-cc78-11e3-81ab-4c9367dc0958", ghwSecret, push); code != http.StatusOK {
		t.Fatalf("push long after revocation: %d %s", code, body)
	}
	if n := len(events(audit.ActionGitHubActivity)); n != 3 {
		t.Errorf("a push past lookback_after_end was recorded: %d github.activity, want 3", n)
	}
}
