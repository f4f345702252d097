package github_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	ghprov "github.com/accessbroker/accessbroker/integrations/github"
)

const hookSecret = "0123456789abcdef0123456789abcdef-hook"

// hookStore is an in-memory WebhookStore and WebhookRecorder.
type hookStore struct {
	mu      sync.Mutex
	grants  []grants.Grant
	seen    map[string]bool
	events  []*audit.Event
	refused []*audit.Event
}

func (s *hookStore) ActivityGrants(_ context.Context, provider string, since time.Time) ([]grants.Grant, error) {
	var out []grants.Grant
	for _, g := range s.grants {
		if g.Provider == provider && (g.State != grants.StateRevoked || !g.RevokedAt.Before(since)) {
			out = append(out, g)
		}
	}
	return out, nil
}

func (s *hookStore) RecordActivity(_ context.Context, grantID, source string, _ time.Time, items []grants.ActivityItem) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, it := range items {
		if k := grantID + "|" + source + "|" + it.Key; !s.seen[k] {
			s.seen[k] = true
			s.events = append(s.events, it.Event)
			n++
		}
	}
	return n, nil
}

func (s *hookStore) Record(_ context.Context, evs ...*audit.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refused = append(s.refused, evs...)
	return nil
}

func sign256(body []byte) string {
	m := hmac.New(sha256.New, []byte(hookSecret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// TestWebhookDeliveries: each kind of delivery gets its answer; only authentic collected events
// by a grant's person are recorded, with the action named after the event and its action.
func TestWebhookDeliveries(t *testing.T) {
	push, err := os.ReadFile(filepath.Join("..", "..", "fixtures", "github", "webhook-push-organization.json"))
	if err != nil {
		t.Fatal(err)
	}
	pr := []byte(`{"action":"opened","number":2,"pull_request":{"number":2},"repository":{"full_name":"Codertocat/Hello-World"},` +
		`"organization":{"login":"Octocoders"},"sender":{"login":"codertocat"}}`)
	noOrg := []byte(`{"action":"opened","repository":{"full_name":"Codertocat/Hello-World"},"sender":{"login":"Codertocat"}}`)
	tests := []struct {
		name, event, delivery, sig string
		body                       []byte
		status                     int
		recorded                   int
		refused                    int
		action                     string
	}{
		{"push", "push", "d-1", sign256(push), push, 200, 1, 0, "push"},
		{"pull request, login in another case", "pull_request", "d-2", sign256(pr), pr, 200, 1, 0, "pull_request.opened"},
		{"ping", "ping", "d-3", sign256([]byte(`{"zen":"x"}`)), []byte(`{"zen":"x"}`), 200, 0, 0, ""},
		{"not collected", "issues", "d-4", sign256(pr), pr, 200, 0, 0, ""},
		{"no organisation", "pull_request", "d-5", sign256(noOrg), noOrg, 400, 0, 1, ""},
		{"no delivery id", "push", "", sign256(push), push, 400, 0, 1, ""},
		{"not JSON", "push", "d-6", sign256([]byte("nope")), []byte("nope"), 400, 0, 1, ""},
		{"wrong signature", "push", "d-7", sign256([]byte("other")), push, 401, 0, 1, ""},
		{"unsigned", "push", "d-8", "", push, 401, 0, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, h := newHook(t, time.Now())
			req := httptest.NewRequest(http.MethodPost, ghprov.WebhookPath, bytes.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-GitHub-Event", tt.event)
			if tt.delivery != "" {
				req.Header.Set("X-GitHub-Delivery", tt.delivery)
			}
			if tt.sig != "" {
				req.Header.Set("X-Hub-Signature-256", tt.sig)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status || len(st.events) != tt.recorded || len(st.refused) != tt.refused {
				t.Fatalf("status %d (want %d), recorded %d (want %d), refused %d (want %d): %s", rec.Code, tt.status,
					len(st.events), tt.recorded, len(st.refused), tt.refused, rec.Body.String())
			}
			if tt.action != "" && st.events[0].Evidence["github_action"] != tt.action {
				t.Errorf("github_action %q, want %q", st.events[0].Evidence["github_action"], tt.action)
			}
			for _, e := range st.refused {
				if e.Action != audit.ActionGitHubWebhookRefused || strings.Contains(e.Reason, hookSecret) {
					t.Errorf("refusal %+v", e)
				}
			}
		})
	}
}

func newHook(t *testing.T, now time.Time) (*hookStore, *ghprov.Webhook) {
	t.Helper()
	st := &hookStore{seen: map[string]bool{}, grants: []grants.Grant{{ID: "g1", Resource: "octo", Provider: ghprov.Kind, State: grants.StateActive,
		IssuedAt: now.Add(-time.Minute), Handle: grants.Handle{Data: map[string]string{"org": "octocoders", "team": "t", "login": "Codertocat"}}}}}
	h, err := ghprov.NewWebhook(ghprov.WebhookConfig{Secret: hookSecret, Store: st, Recorder: st, Clock: clocktest.New(now), MaxBodyBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	return st, h
}

// TestWebhookRefusalsLimited: the refusal records are a token bucket (10, then one per 6 s on
// the injected clock) and the next record counts the suppressed ones; a SHA-1-only signature,
// though valid, is refused; an oversized body is 413; a short secret is refused at start.
func TestWebhookRefusalsLimited(t *testing.T) {
	now := time.Now()
	clock := clocktest.New(now)
	st := &hookStore{seen: map[string]bool{}}
	h, err := ghprov.NewWebhook(ghprov.WebhookConfig{Secret: hookSecret, Store: st, Recorder: st, Clock: clock, MaxBodyBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	send := func(body []byte, hdr map[string]string) int {
		req := httptest.NewRequest(http.MethodPost, ghprov.WebhookPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", "d-x")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	for range 25 {
		if code := send([]byte("{}"), map[string]string{"X-Hub-Signature-256": "sha256=00"}); code != 401 {
			t.Fatalf("bad signature: %d", code)
		}
	}
	if len(st.refused) != 10 {
		t.Fatalf("%d refusal records for 25 refusals in a burst, want 10", len(st.refused))
	}
	clock.Advance(6 * time.Second)
	m := hmac.New(sha1.New, []byte(hookSecret))
	m.Write([]byte("{}"))
	if code := send([]byte("{}"), map[string]string{"X-Hub-Signature": "sha1=" + hex.EncodeToString(m.Sum(nil))}); code != 401 {
		t.Errorf("SHA-1 only: %d, want 401", code)
	}
	if len(st.refused) != 11 || st.refused[10].Evidence["suppressed"] != "15" {
		t.Errorf("after 6 s: %d records, suppressed %q; want 11 and 15", len(st.refused), st.refused[len(st.refused)-1].Evidence["suppressed"])
	}
	big := bytes.Repeat([]byte(" "), 2048)
	if code := send(big, map[string]string{"X-Hub-Signature-256": sign256(big)}); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d, want 413", code)
	}
	if _, err := ghprov.NewWebhook(ghprov.WebhookConfig{Secret: "short", Store: st, Recorder: st, Clock: clock}); err == nil {
		t.Error("a 5-character secret was accepted")
	}
}
