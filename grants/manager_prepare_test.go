package grants_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/grants"
)

// preparingProvider is a fakeProvider that is also a grants.IssuePreparer. It records the
// order of what happened to each grant, and at Commit what the store held for it.
type preparingProvider struct {
	*fakeProvider
	store       grants.Store
	prepErr     error         // Commit's answer when set (preparing failed)
	commitErr   error         // the commit itself fails
	prepEntered chan struct{} // closed when PrepareIssue starts

	mu      sync.Mutex
	steps   []string
	atStore map[string]string // grant id → state and audit actions in the store at Commit
}

func newPreparingProvider(st grants.Store) *preparingProvider {
	return &preparingProvider{fakeProvider: newFakeProvider(), store: st, prepEntered: make(chan struct{}), atStore: map[string]string{}}
}

func (p *preparingProvider) step(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.steps = append(p.steps, s)
}

func (p *preparingProvider) PrepareIssue(_ context.Context, req grants.IssueRequest) grants.PreparedIssue {
	p.step("prepare")
	close(p.prepEntered)
	return &fakePrepared{p: p, req: req}
}

type fakePrepared struct {
	p   *preparingProvider
	req grants.IssueRequest
}

func (f *fakePrepared) Commit(ctx context.Context) (grants.Issued, error) {
	p := f.p
	p.step("commit")
	g, err := p.store.GetGrant(ctx, f.req.GrantID)
	p.mu.Lock()
	p.atStore[f.req.GrantID] = string(g.State) + fmtErr(err)
	p.mu.Unlock()
	if p.prepErr != nil {
		return grants.Issued{}, p.prepErr
	}
	if p.commitErr != nil {
		p.mu.Lock()
		p.access[f.req.GrantID] = true // a commit whose answer was lost may have made it
		p.mu.Unlock()
		return grants.Issued{}, p.commitErr
	}
	return p.Issue(ctx, f.req)
}

func (f *fakePrepared) Abort(context.Context) { f.p.step("abort") }

func fmtErr(err error) string {
	if err != nil {
		return " (" + err.Error() + ")"
	}
	return ""
}

// gatedStore holds the write-ahead Apply (the one creating a grant) until the provider's
// PrepareIssue has started: a Manager that prepared only after the record committed would
// never get past it. It records when each write-ahead Apply returned.
type gatedStore struct {
	grants.Store
	prov *preparingProvider
	fail error // the write-ahead fails with this
}

func (s *gatedStore) Apply(ctx context.Context, c *grants.Change) error {
	if len(c.Grants) == 1 && c.Grants[0].Create {
		select {
		case <-s.prov.prepEntered:
		case <-time.After(30 * time.Second): // a guard against hanging, not a timing
			return errors.New("PrepareIssue was not called while the write-ahead record was being committed")
		}
		if s.fail != nil {
			s.prov.step("write-ahead failed")
			return s.fail
		}
		err := s.Store.Apply(ctx, c)
		s.prov.step("write-ahead committed")
		return err
	}
	return s.Store.Apply(ctx, c)
}

// TestPreparedIssueCommitsOnlyAfterTheWriteAhead: with a provider that prepares, the
// Manager prepares while the write-ahead record commits, calls Commit only once the record
// (grant in issuing, grant.issuing event) is in the store, and Aborts when it could not be
// recorded; a failed prepare or commit is an issue failure whose access is revoked.
func TestPreparedIssueCommitsOnlyAfterTheWriteAhead(t *testing.T) {
	for _, tc := range []struct {
		name       string
		storeFail  error
		prepErr    error
		commitErr  error
		wantSteps  string
		wantState  grants.State
		wantAudit  string
		wantErrAud bool
	}{
		{name: "issued", wantSteps: "prepare,write-ahead committed,commit", wantState: grants.StateActive, wantAudit: "grant.issuing,grant.issued"},
		{name: "write-ahead fails", storeFail: errors.New("disk I/O error"), wantSteps: "prepare,write-ahead failed,abort", wantErrAud: true},
		{name: "prepare failed", prepErr: errors.New("role refused"), wantSteps: "prepare,write-ahead committed,commit", wantState: grants.StateRevoking, wantAudit: "grant.issuing,grant.issue_failed"},
		{name: "commit failed", commitErr: errors.New("connection lost during COMMIT"), wantSteps: "prepare,write-ahead committed,commit", wantState: grants.StateRevoking, wantAudit: "grant.issuing,grant.issue_failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			prov := newPreparingProvider(e.store)
			prov.prepErr, prov.commitErr = tc.prepErr, tc.commitErr
			st := &gatedStore{Store: e.store, prov: prov, fail: tc.storeFail}
			mgr := grants.NewManager(st, map[string]grants.Provider{"prod-db": prov}, []grants.Resource{testResource}, e.clock, nil, grants.ManagerOptions{Instance: "i-test"})
			g, cred, err := mgr.Issue(context.Background(), grants.IssueInput{Resource: "prod-db", Person: alice, Duration: time.Hour, Reason: "x", Actor: operator})
			prov.mu.Lock()
			steps := strings.Join(prov.steps, ",")
			prov.mu.Unlock()
			if steps != tc.wantSteps {
				t.Fatalf("steps = %s, want %s", steps, tc.wantSteps)
			}
			if tc.wantErrAud {
				if !errors.Is(err, grants.ErrAudit) || !cred.Empty() {
					t.Fatalf("err = %v (credential empty: %v), want ErrAudit and no credential", err, cred.Empty())
				}
				if issues, _ := prov.counts(); issues != 0 {
					t.Fatal("access was made although the write-ahead failed")
				}
				return
			}
			if at := prov.atStore[g.ID]; at != string(grants.StateIssuing) {
				t.Errorf("at Commit the store held the grant as %q, want %q", at, grants.StateIssuing)
			}
			got, gerr := e.store.GetGrant(context.Background(), g.ID)
			if gerr != nil || got.State != tc.wantState {
				t.Fatalf("grant is %s (%v), want %s", got.State, gerr, tc.wantState)
			}
			if a := strings.Join(actions(t, e.store, g.ID), ","); a != tc.wantAudit {
				t.Errorf("audit = %s, want %s", a, tc.wantAudit)
			}
			if tc.wantState == grants.StateActive {
				if err != nil || cred.Empty() {
					t.Fatalf("Issue: %v (credential empty: %v)", err, cred.Empty())
				}
				return
			}
			if err == nil || !cred.Empty() {
				t.Fatalf("Issue: err %v, credential empty %v: want an error and no credential", err, cred.Empty())
			}
			r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": prov}, e.clock, nil, grants.RevokerOptions{})
			if err := r.Sweep(context.Background()); err != nil {
				t.Fatal(err)
			}
			if prov.live(g.ID) {
				t.Error("access a failed commit may have made was not revoked")
			}
		})
	}
}
