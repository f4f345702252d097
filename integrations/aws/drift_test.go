package awsprov

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/fixtures/awsfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// icRig is a store and manager over the aws-identity-center provider on awsfake.
type icRig struct {
	e     *env
	p     *IdentityCenterProvider
	store *sqlstore.Store
	m     *grants.Manager
	provs map[string]grants.Provider
}

func newICRig(t *testing.T) *icRig {
	t.Helper()
	e := newEnv(t, awsfake.Options{PollsUntilDone: 2})
	p := e.newIC(t, icConfig())
	st, err := sqlstore.Open(t.Context(), "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), e.clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	provs := map[string]grants.Provider{"prod-sso": p}
	res := grants.Resource{Name: "prod-sso", Provider: KindIdentityCenter, DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour}
	return &icRig{e: e, p: p, store: st, provs: provs,
		m: grants.NewManager(st, provs, []grants.Resource{res}, e.clock, nil, grants.ManagerOptions{})}
}

func (r *icRig) issue(t *testing.T, who grants.Person) grants.Grant {
	t.Helper()
	g, _, err := r.m.Issue(t.Context(), grants.IssueInput{Resource: "prod-sso", Person: who, Duration: time.Hour, Reason: "incident",
		Actor: audit.Actor{Kind: audit.ActorOperator, ID: "tester"}})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func (r *icRig) revoke(t *testing.T, g grants.Grant) grants.Grant {
	t.Helper()
	ctx := t.Context()
	if _, err := r.m.Revoke(ctx, g.ID, grants.CauseManual, audit.Actor{Kind: audit.ActorOperator, ID: "tester"}, "done"); err != nil {
		t.Fatal(err)
	}
	if err := grants.NewRevoker(r.store, r.provs, r.e.clock, nil, grants.RevokerOptions{}).Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := r.store.GetGrant(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestDriftOnIdentityCenter, through aws-sdk-go-v2 (SigV4 checked) against awsfake: an
// assignment a revoked grant made that is back is drift and removed (read back); an
// assignment the broker never made is left alone; a live grant whose assignment was deleted
// by hand is marked missing.
func TestDriftOnIdentityCenter(t *testing.T) {
	t.Parallel()
	r := newICRig(t)
	ctx := t.Context()
	ua := r.e.fake.AddUser(awsfake.User{UserName: "alice", Email: alice.Email})
	ub := r.e.fake.AddUser(awsfake.User{UserName: "bob", Email: bob.Email})
	uc := r.e.fake.AddUser(awsfake.User{UserName: "carol", Email: "carol@example.com"})
	r.e.fake.AddAssignment(r.e.assignment(uc.UserID)) // carol's own, never through accessbroker

	old := r.revoke(t, r.issue(t, alice))
	if old.State != grants.StateRevoked || r.e.fake.HasAssignment(r.e.assignment(ua.UserID)) {
		t.Fatalf("revocation of alice's grant: %s, assignment left %v", old.State, r.e.fake.HasAssignment(r.e.assignment(ua.UserID)))
	}
	r.e.fake.AddAssignment(r.e.assignment(ua.UserID)) // re-created by hand
	live := r.issue(t, bob)
	r.e.fake.RemoveAssignment(r.e.assignment(ub.UserID)) // deleted by hand

	rep, err := grants.NewDriftReconciler(r.store, r.provs, r.e.clock, nil, grants.DriftOptions{Action: grants.DriftRevoke}).Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Unmanaged) != 1 || rep.Unmanaged[0].Access.Key != r.p.HandleKey(ua.UserID) || !rep.Unmanaged[0].Revoked {
		t.Fatalf("unmanaged = %+v, want alice's assignment, revoked", rep.Unmanaged)
	}
	if r.e.fake.HasAssignment(r.e.assignment(ua.UserID)) || !r.e.fake.HasAssignment(r.e.assignment(uc.UserID)) {
		t.Fatal("drift revoke removed the wrong assignments")
	}
	if !slices.Equal(rep.Missing, []string{live.ID}) {
		t.Fatalf("missing = %v, want [%s]", rep.Missing, live.ID)
	}
	if n := countCalls(r.e, awsfake.ServiceSSOAdmin, "ListAccountAssignments"); n == 0 {
		t.Fatal("no ListAccountAssignments call")
	}
}

// TestIdentityCenterRevokedOnlyAfterReadBack: a deletion that AWS reports SUCCEEDED while
// the assignment is still listed leaves the grant revoke_failed; the retry deletes it and
// the grant is revoked with read_back=gone.
func TestIdentityCenterRevokedOnlyAfterReadBack(t *testing.T) {
	t.Parallel()
	r := newICRig(t)
	ctx := t.Context()
	ua := r.e.fake.AddUser(awsfake.User{UserName: "alice", Email: alice.Email})
	g := r.issue(t, alice)
	r.e.fake.KeepAfterDelete(1)
	got := r.revoke(t, g)
	if got.State != grants.StateRevokeFailed || !r.e.fake.HasAssignment(r.e.assignment(ua.UserID)) {
		t.Fatalf("after a deletion that did not take: %s; want revoke_failed with the assignment still there", got.State)
	}
	r.e.clock.Advance(time.Hour)
	if err := grants.NewRevoker(r.store, r.provs, r.e.clock, nil, grants.RevokerOptions{}).Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ = r.store.GetGrant(ctx, g.ID)
	if got.State != grants.StateRevoked || r.e.fake.HasAssignment(r.e.assignment(ua.UserID)) {
		t.Fatalf("after the retry: %s, assignment left %v", got.State, r.e.fake.HasAssignment(r.e.assignment(ua.UserID)))
	}
	evs, _ := r.store.Search(ctx, audit.Query{GrantID: g.ID, Action: audit.ActionGrantRevoked, Limit: 10})
	if len(evs) != 1 || evs[0].Evidence["read_back"] != "gone" {
		t.Fatalf("grant.revoked = %+v", evs)
	}
}
