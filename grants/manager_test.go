package grants_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// fakeProvider keeps access in memory and fails on demand.
type fakeProvider struct {
	mu          sync.Mutex
	access      map[string]bool // grant id → live
	issues      int
	revokes     int
	failRevokes int   // fail this many revokes, then succeed
	revokeErr   error // the error to fail with (default a retryable one)
	failIssue   error
	preexisting bool
}

func newFakeProvider() *fakeProvider { return &fakeProvider{access: map[string]bool{}} }

func (p *fakeProvider) Kind() string { return "fake" }

func (p *fakeProvider) Issue(_ context.Context, req grants.IssueRequest) (grants.Issued, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.issues++
	if p.failIssue != nil {
		p.access[req.GrantID] = true // partial creation: revocation must still clean it up
		return grants.Issued{}, p.failIssue
	}
	p.access[req.GrantID] = true
	return grants.Issued{
		Handle:     grants.Handle{Key: "fake:" + req.Person.SlackUserID, Preexisting: p.preexisting, Data: map[string]string{"grant": req.GrantID}},
		Credential: grants.NewCredential("fake", "password", "canary-secret-"+req.GrantID),
	}, nil
}

func (p *fakeProvider) Revoke(_ context.Context, req grants.RevokeRequest) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revokes++
	if p.failRevokes > 0 {
		p.failRevokes--
		if p.revokeErr != nil {
			return p.revokeErr
		}
		return errors.New("upstream 503")
	}
	delete(p.access, req.GrantID)
	return nil
}

func (p *fakeProvider) live(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.access[id]
}

func (p *fakeProvider) counts() (issues, revokes int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.issues, p.revokes
}

var testResource = grants.Resource{Name: "prod-db", Provider: "fake", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour}

type env struct {
	clock *clocktest.Fake
	store *sqlstore.Store
	prov  *fakeProvider
	mgr   *grants.Manager
}

func newEnv(t *testing.T) *env {
	t.Helper()
	clock := clocktest.New(time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC))
	st, err := sqlstore.Open(context.Background(), "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	prov := newFakeProvider()
	mgr := grants.NewManager(st, map[string]grants.Provider{"prod-db": prov}, []grants.Resource{testResource}, clock, nil, grants.ManagerOptions{Instance: "i-test"})
	return &env{clock: clock, store: st, prov: prov, mgr: mgr}
}

var alice = grants.Person{SlackTeamID: "T1", SlackUserID: "U0ALICE", Email: "alice@example.com"}
var operator = audit.Actor{Kind: audit.ActorOperator, ID: "ops"}

func (e *env) issue(t *testing.T, d time.Duration) grants.Grant {
	t.Helper()
	g, cred, err := e.mgr.Issue(context.Background(), grants.IssueInput{Resource: "prod-db", Person: alice, Duration: d, Reason: "checking replication lag", Actor: operator})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if cred.Empty() {
		t.Fatal("Issue returned no credential")
	}
	return g
}

func actions(t *testing.T, s *sqlstore.Store, grantID string) []string {
	t.Helper()
	evs, err := s.Search(context.Background(), audit.Query{GrantID: grantID, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, string(e.Action))
	}
	return out
}

func TestIssueWritesAheadThenActivates(t *testing.T) {
	e := newEnv(t)
	g := e.issue(t, time.Hour)
	if g.State != grants.StateActive || !g.ExpiresAt.Equal(e.clock.Now().Add(time.Hour)) {
		t.Fatalf("grant = %s expiring %s", g.State, g.ExpiresAt)
	}
	if !e.prov.live(g.ID) {
		t.Fatal("provider has no access for the grant")
	}
	if got := strings.Join(actions(t, e.store, g.ID), ","); got != "grant.issuing,grant.issued" {
		t.Errorf("audit = %s", got)
	}
}

func TestIssueRejectsBadDuration(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    time.Duration
		want string
	}{
		{"zero", 0, "positive"},
		{"below minimum", 30 * time.Second, "below the minimum"},
		{"over max", 5 * time.Hour, "maximum of 4h0m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			_, _, err := e.mgr.Issue(context.Background(), grants.IssueInput{Resource: "prod-db", Person: alice, Duration: tc.d, Reason: "x", Actor: operator})
			if !errors.Is(err, grants.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, tc.want)
			}
			if issues, _ := e.prov.counts(); issues != 0 {
				t.Error("provider called for an invalid request")
			}
		})
	}
}

// failingStore refuses every Apply, as a store whose audit table cannot be written.
type failingStore struct{ grants.Store }

func (failingStore) Apply(context.Context, *grants.Change) error { return errors.New("disk I/O error") }

func TestIssueFailsClosedWhenAuditFails(t *testing.T) {
	e := newEnv(t)
	mgr := grants.NewManager(failingStore{e.store}, map[string]grants.Provider{"prod-db": e.prov}, []grants.Resource{testResource}, e.clock, nil, grants.ManagerOptions{})
	_, cred, err := mgr.Issue(context.Background(), grants.IssueInput{Resource: "prod-db", Person: alice, Duration: time.Hour, Reason: "x", Actor: operator})
	if !errors.Is(err, grants.ErrAudit) {
		t.Fatalf("err = %v, want ErrAudit", err)
	}
	if !strings.Contains(err.Error(), "nothing was issued") {
		t.Errorf("error %q does not say nothing was issued", err)
	}
	if issues, _ := e.prov.counts(); issues != 0 || !cred.Empty() {
		t.Fatalf("provider called %d times despite the audit failure", issues)
	}
}

func TestIssueFailureQueuesRevocation(t *testing.T) {
	e := newEnv(t)
	e.prov.failIssue = errors.New("upstream 500")
	g, _, err := e.mgr.Issue(context.Background(), grants.IssueInput{Resource: "prod-db", Person: alice, Duration: time.Hour, Reason: "x", Actor: operator})
	if err == nil {
		t.Fatal("Issue succeeded")
	}
	got, _ := e.store.GetGrant(context.Background(), g.ID)
	if got.State != grants.StateRevoking || got.RevokeCause != grants.CauseIssueFailed || got.DueAt.After(e.clock.Now()) {
		t.Fatalf("after failed issue: %s cause %s due %s", got.State, got.RevokeCause, got.DueAt)
	}
	r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": e.prov}, e.clock, nil, grants.RevokerOptions{})
	if err := r.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.prov.live(g.ID) {
		t.Error("partially created access was not revoked")
	}
}

func TestExtendCappedAtMaximum(t *testing.T) {
	e := newEnv(t)
	g := e.issue(t, time.Hour)
	ctx := context.Background()
	g2, err := e.mgr.Extend(ctx, grants.ExtendInput{GrantID: g.ID, By: 2 * time.Hour, Actor: operator, Reason: "still debugging"})
	if err != nil {
		t.Fatal(err)
	}
	if !g2.ExpiresAt.Equal(g.ExpiresAt.Add(2 * time.Hour)) {
		t.Errorf("expires %s", g2.ExpiresAt)
	}
	_, err = e.mgr.Extend(ctx, grants.ExtendInput{GrantID: g.ID, By: 90 * time.Minute, Actor: operator, Reason: "more"})
	if !errors.Is(err, grants.ErrInvalid) || !strings.Contains(err.Error(), "maximum") {
		t.Fatalf("extend past max = %v", err)
	}
	got, _ := e.store.GetGrant(ctx, g.ID)
	if !got.ExpiresAt.Equal(g2.ExpiresAt) {
		t.Error("refused extension changed the expiry")
	}
}

// TestExtendScheduledEndNeedsOverride: a grant whose end EndBy brought forward (incident
// resolved) keeps that end unless the extension is an approver's override, which cancels it
// and says so in the audit event.
func TestExtendScheduledEndNeedsOverride(t *testing.T) {
	e := newEnv(t)
	g := e.issue(t, time.Hour)
	ctx := context.Background()
	early := e.clock.Now().Add(10 * time.Minute)
	if _, err := e.mgr.EndBy(ctx, g.ID, early, grants.CauseIncidentResolved, operator, "incident resolved; grace period"); err != nil {
		t.Fatal(err)
	}
	_, err := e.mgr.Extend(ctx, grants.ExtendInput{GrantID: g.ID, By: 30 * time.Minute, Actor: operator, Reason: "owner wants more"})
	if !errors.Is(err, grants.ErrInvalid) || !strings.Contains(err.Error(), "scheduled to end early") {
		t.Fatalf("extend of a scheduled early end without override = %v", err)
	}
	if got, _ := e.store.GetGrant(ctx, g.ID); !got.ExpiresAt.Equal(early.Truncate(time.Millisecond)) || got.RevokeCause != grants.CauseIncidentResolved {
		t.Fatalf("refused extension changed the grant: expires %s cause %q", got.ExpiresAt, got.RevokeCause)
	}
	out, err := e.mgr.Extend(ctx, grants.ExtendInput{GrantID: g.ID, By: 30 * time.Minute, Override: true, Actor: operator, Reason: "approver override",
		Evidence: map[string]string{"approvers": "U0BOB"}})
	if err != nil {
		t.Fatal(err)
	}
	if out.RevokeCause != "" || !out.ExpiresAt.Equal(early.Add(30*time.Minute).Truncate(time.Millisecond)) {
		t.Fatalf("override: expires %s cause %q", out.ExpiresAt, out.RevokeCause)
	}
	evs, _ := e.store.ReadEvents(ctx, 0, 1000)
	last := evs[len(evs)-1]
	if last.Action != audit.ActionGrantExtended || last.Evidence["override"] != string(grants.CauseIncidentResolved) || last.Evidence["approvers"] != "U0BOB" {
		t.Fatalf("override event = %+v", last)
	}
}

// TestExtendNotAfterCaps: the cap (end of shift) bounds the new expiry; a cap that leaves no
// room refuses and changes nothing.
func TestExtendNotAfterCaps(t *testing.T) {
	e := newEnv(t)
	g := e.issue(t, time.Hour)
	ctx := context.Background()
	shiftEnd := g.ExpiresAt.Add(20 * time.Minute)
	out, err := e.mgr.Extend(ctx, grants.ExtendInput{GrantID: g.ID, By: time.Hour, NotAfter: shiftEnd, Actor: operator, Reason: "on call"})
	if err != nil || !out.ExpiresAt.Equal(shiftEnd) {
		t.Fatalf("capped extend = %s, %v; want %s", out.ExpiresAt, err, shiftEnd)
	}
	_, err = e.mgr.Extend(ctx, grants.ExtendInput{GrantID: g.ID, By: time.Hour, NotAfter: shiftEnd, Actor: operator, Reason: "on call"})
	if !errors.Is(err, grants.ErrInvalid) || !strings.Contains(err.Error(), "on-call shift") {
		t.Fatalf("extend with no room under the cap = %v", err)
	}
	if got, _ := e.store.GetGrant(ctx, g.ID); !got.ExpiresAt.Equal(shiftEnd) {
		t.Errorf("refused extension changed the expiry to %s", got.ExpiresAt)
	}
}

func TestCredentialRedacts(t *testing.T) {
	c := grants.NewCredential("postgres", "password", "canary-s3cr3t")
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s %q", c, c, c, c, c), mustJSON(t, c), mustJSON(t, grants.Issued{Credential: c})} {
		if strings.Contains(s, "canary-s3cr3t") {
			t.Errorf("secret leaked: %s", s)
		}
	}
	if got := c.Reveal(); len(got) != 1 || got[0].Value != "canary-s3cr3t" {
		t.Errorf("Reveal = %v", got)
	}
}

func TestStateMachine(t *testing.T) {
	for _, tc := range []struct {
		from, to grants.State
		ok       bool
	}{
		{grants.StateIssuing, grants.StateActive, true},
		{grants.StateActive, grants.StateRevoking, true},
		{grants.StateRevoking, grants.StateRevoked, true},
		{grants.StateRevokeFailed, grants.StateRevokeFailed, true},
		{grants.StateRevoked, grants.StateActive, false},
		{grants.StateRevoking, grants.StateActive, false},
		{grants.StateRevokeFailed, grants.StateActive, false},
	} {
		g := grants.Grant{ID: "g", State: tc.from}
		err := g.Transition(tc.to)
		if (err == nil) != tc.ok {
			t.Errorf("%s → %s: err = %v, want ok=%v", tc.from, tc.to, err, tc.ok)
		}
		if err != nil && !errors.Is(err, grants.ErrIllegalTransition) {
			t.Errorf("%s → %s: %v is not ErrIllegalTransition", tc.from, tc.to, err)
		}
	}
}
