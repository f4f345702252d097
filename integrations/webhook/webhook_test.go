package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/fixtures/webhookfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/webhook"
)

const token = "wh-token-7c1f0e9d"

var alice = grants.Person{SlackTeamID: "T0ACME", SlackUserID: "U0ALICE", Email: "alice@example.com", GitHubLogin: "alice"}

func newProvider(t *testing.T) (*webhook.Provider, *webhookfake.Server) {
	t.Helper()
	fake := webhookfake.New(token)
	t.Cleanup(fake.Close)
	p, err := webhook.New(webhook.Config{URL: fake.URL(), Token: token}, fake.Client())
	if err != nil {
		t.Fatalf("webhook.New: %v", err)
	}
	return p, fake
}

func issueReq(id string) grants.IssueRequest {
	return grants.IssueRequest{
		GrantID:   id,
		Resource:  "prod-vpn",
		Person:    alice,
		ExpiresAt: time.Date(2025, 1, 2, 16, 4, 5, 0, time.UTC),
		Reason:    "checking replication lag",
	}
}

func revokeReq(id string, h grants.Handle) grants.RevokeRequest {
	return grants.RevokeRequest{GrantID: id, Resource: "prod-vpn", Person: alice, Handle: h}
}

// assertNoSecret fails if any of the secrets appears in err's text.
func assertNoSecret(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains a secret", err)
		}
	}
}

func TestNewValidatesConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     webhook.Config
		wantErr string // substring; empty = success
	}{
		{"https ok", webhook.Config{URL: "https://access.example.com/hooks/", Token: "x"}, ""},
		{"loopback http ok", webhook.Config{URL: "http://127.0.0.1:8080", Token: "x"}, ""},
		{"localhost http ok", webhook.Config{URL: "http://localhost:8080", Token: "x"}, ""},
		{"empty url", webhook.Config{Token: "x"}, "url is empty"},
		{"relative url", webhook.Config{URL: "access.example.com", Token: "x"}, "must be an absolute https:// URL"},
		{"ftp", webhook.Config{URL: "ftp://access.example.com", Token: "x"}, "must be an absolute https:// URL"},
		{"plain http remote", webhook.Config{URL: "http://access.example.com", Token: "x"}, "use https"},
		{"userinfo", webhook.Config{URL: "https://bob:pw@access.example.com", Token: "x"}, "must not contain credentials"},
		{"query", webhook.Config{URL: "https://access.example.com/?a=b", Token: "x"}, "query or fragment"},
		{"empty token", webhook.Config{URL: "https://access.example.com"}, "token is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := webhook.New(tt.cfg, nil)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if p.Kind() != webhook.DefaultKind {
					t.Errorf("Kind = %q, want %q", p.Kind(), webhook.DefaultKind)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want it to mention %q", err, tt.wantErr)
			}
			if !errors.Is(err, grants.ErrInvalid) {
				t.Errorf("New error %v does not wrap ErrInvalid", err)
			}
			if strings.Contains(err.Error(), "pw@") {
				t.Errorf("error %q echoes the URL's password", err)
			}
		})
	}
}

func TestKindFromConfig(t *testing.T) {
	p, err := webhook.New(webhook.Config{Kind: "vpn", URL: "https://vpn.example.com", Token: "x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind() != "vpn" {
		t.Errorf("Kind = %q, want vpn", p.Kind())
	}
}

func TestIssueRevokeLifecycle(t *testing.T) {
	p, fake := newProvider(t)
	ctx := t.Context()
	const id = "g_aaaaaaaaaaaaaaaa"

	iss, err := p.Issue(ctx, issueReq(id))
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	wantHandle := grants.Handle{Key: "wh:" + id, Data: map[string]string{"account": "acct-" + id}}
	if diff := cmp.Diff(wantHandle, iss.Handle); diff != "" {
		t.Errorf("handle (-want +got):\n%s", diff)
	}
	wantFields := []grants.Field{{Name: "account", Value: "acct-" + id}, {Name: "secret", Value: "wh-secret-" + id}}
	if diff := cmp.Diff(wantFields, iss.Credential.Reveal()); diff != "" {
		t.Errorf("credential (-want +got):\n%s", diff)
	}
	if got := fmt.Sprintf("%v %+v", iss, iss); strings.Contains(got, "wh-secret-") {
		t.Errorf("Issued prints its secret: %s", got)
	}
	if active, ok := fake.Access(id); !active || !ok {
		t.Fatalf("fake access after issue = %v, %v; want active", active, ok)
	}

	if err := p.Revoke(ctx, revokeReq(id, iss.Handle)); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if active, _ := fake.Access(id); active {
		t.Fatal("access still active after revoke")
	}
	if err := p.Revoke(ctx, revokeReq(id, iss.Handle)); err != nil {
		t.Fatalf("second Revoke: %v", err)
	}
	if err := p.Revoke(ctx, revokeReq("g_unknownunknown00", grants.Handle{})); err != nil {
		t.Fatalf("Revoke of unknown grant: %v", err)
	}
	if issued, revoked := fake.Counts(id); issued != 1 || revoked != 1 {
		t.Errorf("counts = issued %d revoked %d, want 1 and 1", issued, revoked)
	}
	for _, c := range fake.Calls() {
		if !c.Authorized {
			t.Errorf("call %+v was not authorized", c)
		}
	}
}

func TestRevokeWithEmptyHandleFindsAccessByGrantID(t *testing.T) {
	p, fake := newProvider(t)
	const id = "g_bbbbbbbbbbbbbbbb"
	fake.HoldIssues(true)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := p.Issue(ctx, issueReq(id))
		done <- err
	}()
	select {
	case got := <-fake.IssueStarted():
		if got != id {
			t.Fatalf("IssueStarted = %q, want %q", got, id)
		}
	case <-t.Context().Done():
		t.Fatal("issue never reached the fake")
	}
	cancel() // the "crash": the provider never answers
	if err := <-done; err == nil {
		t.Fatal("Issue succeeded although it was cancelled")
	}
	if active, _ := fake.Access(id); !active {
		t.Fatal("fake did not keep the leftover access")
	}
	if err := p.Revoke(t.Context(), revokeReq(id, grants.Handle{})); err != nil {
		t.Fatalf("Revoke with empty handle: %v", err)
	}
	if active, _ := fake.Access(id); active {
		t.Fatal("leftover access survived revoke")
	}
}

func TestErrorClassification(t *testing.T) {
	tests := []struct {
		name         string
		inject       func(f *webhookfake.Server)
		issue        bool // inject into issue rather than revoke
		wantOperator bool
		wantStatus   int
		wantRetry    time.Duration
	}{
		{"revoke 500", func(f *webhookfake.Server) { f.FailRevokes(1, 500) }, false, false, 500, 0},
		{"revoke 503", func(f *webhookfake.Server) { f.FailRevokes(1, 503) }, false, false, 503, 0},
		{"revoke 400", func(f *webhookfake.Server) { f.FailRevokes(1, 400) }, false, true, 400, 0},
		{"revoke 403", func(f *webhookfake.Server) { f.FailRevokes(1, 403) }, false, true, 403, 0},
		{"revoke 408", func(f *webhookfake.Server) { f.FailRevokes(1, 408) }, false, false, 408, 0},
		{"revoke 429", func(f *webhookfake.Server) { f.Fail429(1, 3*time.Second) }, false, false, 429, 3 * time.Second},
		{"issue 502", func(f *webhookfake.Server) { f.FailIssues(1, 502) }, true, false, 502, 0},
		{"issue 422", func(f *webhookfake.Server) { f.FailIssues(1, 422) }, true, true, 422, 0},
		{"issue 429", func(f *webhookfake.Server) { f.Fail429(1, time.Second) }, true, false, 429, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, fake := newProvider(t)
			const id = "g_cccccccccccccccc"
			var h grants.Handle
			if !tt.issue {
				iss, err := p.Issue(t.Context(), issueReq(id))
				if err != nil {
					t.Fatalf("Issue: %v", err)
				}
				h = iss.Handle
			}
			tt.inject(fake)
			var err error
			if tt.issue {
				_, err = p.Issue(t.Context(), issueReq(id))
			} else {
				err = p.Revoke(t.Context(), revokeReq(id, h))
			}
			if err == nil {
				t.Fatal("no error from an injected failure")
			}
			if got := errors.Is(err, grants.ErrNeedsOperator); got != tt.wantOperator {
				t.Errorf("errors.Is(%v, ErrNeedsOperator) = %v, want %v", err, got, tt.wantOperator)
			}
			var se *webhook.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *StatusError", err)
			}
			if se.StatusCode != tt.wantStatus || se.RetryAfter != tt.wantRetry || se.Temporary() == tt.wantOperator {
				t.Errorf("StatusError = %+v, want status %d retry %s", se, tt.wantStatus, tt.wantRetry)
			}
			if !strings.Contains(err.Error(), id) {
				t.Errorf("error %q does not name the grant", err)
			}
			assertNoSecret(t, err, token, "wh-secret-"+id)
			if !tt.issue {
				if active, _ := fake.Access(id); !active {
					t.Error("a failed revoke removed the access")
				}
				if err := p.Revoke(t.Context(), revokeReq(id, h)); err != nil {
					t.Fatalf("Revoke after the fault cleared: %v", err)
				}
				if active, _ := fake.Access(id); active {
					t.Error("access survived the retried revoke")
				}
			}
		})
	}
}

func TestWrongTokenNeedsOperatorAndIsScrubbed(t *testing.T) {
	fake := webhookfake.New(token)
	t.Cleanup(fake.Close)
	const wrong = "wrong-token-5e6f"
	p, err := webhook.New(webhook.Config{URL: fake.URL(), Token: wrong}, fake.Client())
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Issue(t.Context(), issueReq("g_dddddddddddddddd"))
	if !errors.Is(err, grants.ErrNeedsOperator) {
		t.Fatalf("Issue with a wrong token: %v, want ErrNeedsOperator", err)
	}
	assertNoSecret(t, err, wrong, token)
	if calls := fake.Calls(); len(calls) != 1 || calls[0].Authorized || calls[0].Status != http.StatusUnauthorized {
		t.Errorf("calls = %+v, want one unauthorized 401", calls)
	}
}

func TestTimeoutIsRetryable(t *testing.T) {
	p, fake := newProvider(t)
	const id = "g_eeeeeeeeeeeeeeee"
	iss, err := p.Issue(t.Context(), issueReq(id))
	if err != nil {
		t.Fatal(err)
	}
	fake.SetLatency(time.Minute)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err = p.Revoke(ctx, revokeReq(id, iss.Handle))
	if err == nil || errors.Is(err, grants.ErrNeedsOperator) {
		t.Fatalf("Revoke past its deadline: %v, want a retryable error", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Revoke past its deadline: %v does not wrap context.DeadlineExceeded", err)
	}
	assertNoSecret(t, err, token)
}

func TestPreexistingIsLeftInPlace(t *testing.T) {
	p, fake := newProvider(t)
	const id = "g_ffffffffffffffff"
	fake.SetPreexisting(alice.Email)
	iss, err := p.Issue(t.Context(), issueReq(id))
	if err != nil {
		t.Fatal(err)
	}
	if !iss.Handle.Preexisting {
		t.Fatal("Handle.Preexisting = false for a person the upstream already served")
	}
	if err := p.Revoke(t.Context(), revokeReq(id, iss.Handle)); err != nil {
		t.Fatal(err)
	}
	if active, _ := fake.Access(id); !active {
		t.Error("revoke removed preexisting access")
	}
	for _, c := range fake.Calls() {
		if c.Path == "/revoke" {
			t.Errorf("revoke was sent upstream for a preexisting handle: %+v", c)
		}
	}
}
