package grants_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/grants"
)

// The admin DSN's password, as a configured secret would hand it to the manager and revoker.
const dsnPassword = "Adm1n-DSN-pa55word"

// leakyProvider fails the way a careless SDK does: its error text quotes the DSN it used,
// password included, and (on issue) the credential it had already built.
type leakyProvider struct {
	*fakeProvider
	issueCred bool // Issue returns a credential along with its error
}

func (p leakyProvider) Issue(ctx context.Context, req grants.IssueRequest) (grants.Issued, error) {
	p.mu.Lock()
	p.issues++
	p.access[req.GrantID] = true
	p.mu.Unlock()
	cred := grants.NewCredential("fake", "password", "half-made-"+req.GrantID)
	err := fmt.Errorf("dial postgres://accessbroker:%s@db.internal:5432/app: grant half-made-%s failed: %w", dsnPassword, req.GrantID, grants.ErrNeedsOperator)
	if !p.issueCred {
		return grants.Issued{}, err
	}
	return grants.Issued{Credential: cred}, err
}

func (p leakyProvider) Revoke(ctx context.Context, req grants.RevokeRequest) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revokes++
	return fmt.Errorf("connect to postgres://accessbroker:%s@db.internal:5432/app: timeout: %w", dsnPassword, grants.ErrNeedsOperator)
}

// errObserver keeps the errors the revoker hands to its observer (what Slack would post).
type errObserver struct {
	mu   sync.Mutex
	errs []error
}

func (o *errObserver) GrantRevoked(context.Context, grants.Grant) {}
func (o *errObserver) RevokeFailed(_ context.Context, _ grants.Grant, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.errs = append(o.errs, err)
}

// syncBuf is a log sink safe for the revoker's goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func auditText(t *testing.T, e *env, grantID string) string {
	t.Helper()
	evs, err := e.store.Search(context.Background(), auditQuery(grantID, ""))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 {
		t.Fatalf("no audit events for %s", grantID)
	}
	return mustJSON(t, evs)
}

func TestProviderErrorSecretsNeverLeak(t *testing.T) {
	for _, tc := range []struct {
		name      string
		issueCred bool
	}{
		{"issue error quotes the DSN password", false},
		{"issue error also quotes the credential it returned", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			logs := &syncBuf{}
			log := slog.New(slog.NewJSONHandler(logs, nil))
			prov := leakyProvider{fakeProvider: e.prov, issueCred: tc.issueCred}
			secrets := []string{"postgres://accessbroker:" + dsnPassword + "@db.internal:5432/app", dsnPassword}
			mgr := grants.NewManager(e.store, map[string]grants.Provider{"prod-db": prov}, []grants.Resource{testResource}, e.clock, log,
				grants.ManagerOptions{Instance: "i-test", Secrets: secrets})
			g, _, err := mgr.Issue(context.Background(), grants.IssueInput{Resource: "prod-db", Person: alice, Duration: time.Hour, Reason: "checking", Actor: operator})
			if err == nil {
				t.Fatal("Issue succeeded against a failing provider")
			}
			if !errors.Is(err, grants.ErrNeedsOperator) {
				t.Errorf("scrubbed issue error lost its kind: %v", err)
			}
			secret := dsnPassword
			credValue := "half-made-" + g.ID
			stored, gerr := e.store.GetGrant(context.Background(), g.ID)
			if gerr != nil {
				t.Fatal(gerr)
			}

			// The revoker's failed attempts, with the same secrets.
			obs := &errObserver{}
			e.clock.Advance(time.Second)
			r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": prov}, e.clock, log, grants.RevokerOptions{Observer: obs, Secrets: secrets})
			if err := r.Sweep(context.Background()); err != nil {
				t.Fatal(err)
			}
			failed, _ := e.store.GetGrant(context.Background(), g.ID)
			if failed.State != grants.StateRevokeFailed || failed.LastError == "" {
				t.Fatalf("grant after failed revoke: %s %q", failed.State, failed.LastError)
			}
			obs.mu.Lock()
			observed := obs.errs
			obs.mu.Unlock()
			if len(observed) != 1 {
				t.Fatalf("observer saw %d failures, want 1", len(observed))
			}
			if !errors.Is(observed[0], grants.ErrNeedsOperator) {
				t.Errorf("observer error lost its kind: %v", observed[0])
			}

			places := map[string]string{
				"the error returned to the caller (Slack)": err.Error(),
				"the logs":                          logs.String(),
				"the audit trail":                   auditText(t, e, g.ID),
				"the stored issue error":            stored.LastError,
				"the stored revoke error":           failed.LastError,
				"the observer's error (audit chan)": observed[0].Error(),
			}
			for where, text := range places {
				if strings.Contains(text, secret) {
					t.Errorf("the DSN password reached %s: %s", where, text)
				}
				if tc.issueCred && strings.Contains(text, credValue) {
					t.Errorf("the grant's own credential reached %s: %s", where, text)
				}
			}
			if !strings.Contains(err.Error(), "[REDACTED]") || !strings.Contains(failed.LastError, "[REDACTED]") {
				t.Errorf("errors should say what was removed: %q / %q", err, failed.LastError)
			}
		})
	}
}

// reportingProvider reports what it did, like the postgres provider's reassigned objects.
type reportingProvider struct {
	*fakeProvider
	fail bool
}

func (p *reportingProvider) RevokeWithResult(ctx context.Context, req grants.RevokeRequest) (grants.RevokeResult, error) {
	res := grants.RevokeResult{Evidence: map[string]string{
		"objects_reassigned": "app: table public.notes",
		"cause":              "forged by the provider",
		"person":             "forged by the provider",
	}}
	if p.fail {
		return res, errors.New("second database unreachable")
	}
	return res, p.fakeProvider.Revoke(ctx, req)
}

func TestRevokeResultEvidenceIsAudited(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fail   bool
		action string
	}{
		{"completed revocation", false, "grant.revoked"},
		{"attempt that failed part way", true, "grant.revoke_failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			g := e.issue(t, time.Minute)
			e.clock.Advance(time.Minute)
			prov := &reportingProvider{fakeProvider: e.prov, fail: tc.fail}
			r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": prov}, e.clock, nil, grants.RevokerOptions{})
			if err := r.Sweep(context.Background()); err != nil {
				t.Fatal(err)
			}
			evs, err := e.store.Search(context.Background(), auditQuery(g.ID, tc.action))
			if err != nil || len(evs) != 1 {
				t.Fatalf("%s events = %d (%v), want 1", tc.action, len(evs), err)
			}
			ev := evs[0].Evidence
			if ev["objects_reassigned"] != "app: table public.notes" {
				t.Errorf("provider evidence missing from %s: %v", tc.action, ev)
			}
			if ev["cause"] != string(grants.CauseExpired) || ev["person"] != alice.Label() {
				t.Errorf("provider evidence replaced the revoker's own keys: %v", ev)
			}
		})
	}
}
