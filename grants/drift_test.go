package grants_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// listingProvider is fakeProvider with the optional abilities of the drift reconciler: it
// lists its access (named after grants, like PostgreSQL roles) and reads one back.
type listingProvider struct {
	*fakeProvider
	mu       sync.Mutex
	onList   func() // runs inside ListAccess before the listing is taken
	stuck    int    // read-backs that still find the access after a successful revoke
	listErr  error
	checks   int
	listings int
}

func newListingProvider() *listingProvider { return &listingProvider{fakeProvider: newFakeProvider()} }

func (p *listingProvider) ListAccess(context.Context) ([]grants.Access, error) {
	p.mu.Lock()
	hook, err := p.onList, p.listErr
	p.listings++
	p.mu.Unlock()
	if hook != nil {
		hook()
	}
	if err != nil {
		return nil, err
	}
	p.fakeProvider.mu.Lock()
	defer p.fakeProvider.mu.Unlock()
	var out []grants.Access
	for id, live := range p.access {
		if live {
			out = append(out, grants.Access{Key: "role:" + id, GrantID: id, Name: "role for " + id})
		}
	}
	return out, nil
}

func (p *listingProvider) HasAccess(_ context.Context, req grants.RevokeRequest) (bool, error) {
	p.mu.Lock()
	p.checks++
	if p.stuck > 0 {
		p.stuck--
		p.mu.Unlock()
		return true, nil
	}
	p.mu.Unlock()
	return p.live(req.GrantID), nil
}

func (p *listingProvider) set(id string, live bool) {
	p.fakeProvider.mu.Lock()
	defer p.fakeProvider.mu.Unlock()
	if live {
		p.access[id] = true
	} else {
		delete(p.access, id)
	}
}

// driftEnv is a store, a manager and a reconciler over one listing provider.
type driftEnv struct {
	*env
	lp *listingProvider
}

func newDriftEnv(t *testing.T) *driftEnv {
	t.Helper()
	e := newEnv(t)
	lp := newListingProvider()
	e.prov = lp.fakeProvider
	e.mgr = grants.NewManager(e.store, map[string]grants.Provider{"prod-db": lp}, []grants.Resource{testResource}, e.clock, nil, grants.ManagerOptions{Instance: "i-test"})
	return &driftEnv{env: e, lp: lp}
}

func (e *driftEnv) reconciler(action grants.DriftAction, m grants.DriftMetrics) *grants.DriftReconciler {
	return grants.NewDriftReconciler(e.store, map[string]grants.Provider{"prod-db": e.lp}, e.clock, nil,
		grants.DriftOptions{Action: action, Metrics: m, Interval: 10 * time.Minute})
}

func eventsOf(t *testing.T, s *sqlstore.Store, action audit.Action) []audit.Event {
	t.Helper()
	evs, err := s.Search(context.Background(), audit.Query{Action: action, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// revokedGrant issues a grant and revokes it through the revoker, leaving its id.
func (e *driftEnv) revokedGrant(t *testing.T) grants.Grant {
	t.Helper()
	g := e.issue(t, time.Hour)
	if _, err := e.mgr.Revoke(context.Background(), g.ID, grants.CauseManual, operator, "done"); err != nil {
		t.Fatal(err)
	}
	r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": e.lp}, e.clock, nil, grants.RevokerOptions{})
	if err := r.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := e.store.GetGrant(context.Background(), g.ID)
	if err != nil || got.State != grants.StateRevoked {
		t.Fatalf("grant %s after sweep: %v %v", g.ID, got.State, err)
	}
	return got
}

// TestDriftFlagOrRevoke: access named for a grant that is revoked (left behind) or that the
// store never had (a restore, or made by hand) is drift. With action flag it is recorded
// once and left in place; with action revoke it is removed and read back; the live grant's
// access is never touched.
func TestDriftFlagOrRevoke(t *testing.T) {
	for _, action := range []grants.DriftAction{grants.DriftFlag, grants.DriftRevoke} {
		t.Run(string(action), func(t *testing.T) {
			e := newDriftEnv(t)
			ctx := context.Background()
			live := e.issue(t, time.Hour)
			left := e.revokedGrant(t)
			e.lp.set(left.ID, true) // came back: a restore of the upstream, or made by hand
			unknown := grants.NewID("g")
			e.lp.set(unknown, true) // no such grant in the store

			d := e.reconciler(action, nil)
			rep, err := d.Pass(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var found []string
			for _, f := range rep.Unmanaged {
				found = append(found, f.Access.GrantID)
				if f.Revoked != (action == grants.DriftRevoke) {
					t.Errorf("finding %s revoked = %v with action %s", f.Access.GrantID, f.Revoked, action)
				}
			}
			slices.Sort(found)
			want := []string{left.ID, unknown}
			slices.Sort(want)
			if !slices.Equal(found, want) {
				t.Fatalf("unmanaged = %v, want %v", found, want)
			}
			if n := len(eventsOf(t, e.store, audit.ActionDriftFound)); n != 2 {
				t.Fatalf("%d drift.found events, want 2", n)
			}
			if !e.lp.live(live.ID) {
				t.Fatal("the live grant's access was removed")
			}
			switch action {
			case grants.DriftFlag:
				if !e.lp.live(left.ID) || !e.lp.live(unknown) {
					t.Fatal("flag removed access")
				}
				// A second pass finds it again but records it only once.
				if _, err := d.Pass(ctx); err != nil {
					t.Fatal(err)
				}
				if n := len(eventsOf(t, e.store, audit.ActionDriftFound)); n != 2 {
					t.Fatalf("%d drift.found events after a second pass, want still 2", n)
				}
				// Gone, then back: recorded again.
				e.lp.set(unknown, false)
				if _, err := d.Pass(ctx); err != nil {
					t.Fatal(err)
				}
				e.lp.set(unknown, true)
				if _, err := d.Pass(ctx); err != nil {
					t.Fatal(err)
				}
				if n := len(eventsOf(t, e.store, audit.ActionDriftFound)); n != 3 {
					t.Fatalf("%d drift.found events after the access came back, want 3", n)
				}
			case grants.DriftRevoke:
				if e.lp.live(left.ID) || e.lp.live(unknown) {
					t.Fatal("revoke left access in place")
				}
				if n := len(eventsOf(t, e.store, audit.ActionDriftRevoked)); n != 2 {
					t.Fatalf("%d drift.revoked events, want 2", n)
				}
			}
		})
	}
}

// TestDriftRevokeReadBack: a drift revocation whose read-back still finds the access is
// recorded as drift.revoke_failed, and the next pass removes it.
func TestDriftRevokeReadBack(t *testing.T) {
	e := newDriftEnv(t)
	ctx := context.Background()
	stray := grants.NewID("g")
	e.lp.set(stray, true)
	e.lp.stuck = 1
	d := e.reconciler(grants.DriftRevoke, nil)
	if _, err := d.Pass(ctx); err == nil {
		t.Fatal("a pass whose revocation did not read back as gone reported no error")
	}
	if n := len(eventsOf(t, e.store, audit.ActionDriftRevokeFailed)); n != 1 {
		t.Fatalf("%d drift.revoke_failed events, want 1", n)
	}
	e.lp.set(stray, true) // the stuck revoke did remove it in the fake; put it back as AWS would still show it
	if _, err := d.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if e.lp.live(stray) || len(eventsOf(t, e.store, audit.ActionDriftRevoked)) != 1 {
		t.Fatal("the second pass did not remove the stray access")
	}
}

// TestDriftIgnoresAccessIssuedDuringTheListing: a grant written ahead and issued while the
// provider is being listed is live, not drift, although the pass started before it existed.
func TestDriftIgnoresAccessIssuedDuringTheListing(t *testing.T) {
	e := newDriftEnv(t)
	var fresh grants.Grant
	e.lp.onList = func() {
		e.lp.onList = nil
		fresh = e.issue(t, time.Hour)
	}
	rep, err := e.reconciler(grants.DriftRevoke, nil).Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Unmanaged) != 0 || !e.lp.live(fresh.ID) {
		t.Fatalf("a grant issued during the listing was taken for drift: %+v", rep.Unmanaged)
	}
	if len(rep.Missing) != 0 {
		t.Fatalf("missing = %v", rep.Missing)
	}
}

type driftMetrics struct {
	mu      sync.Mutex
	checked []string
	missing int
}

func (m *driftMetrics) DriftChecked(resource string, _, missing int, _ error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.checked = append(m.checked, resource)
	m.missing = missing
}
func (m *driftMetrics) DriftRevoked(string, bool) {}

func (m *driftMetrics) passes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.checked)
}

// TestDriftMarksMissingAccess: a live grant whose access was removed out of band is marked
// (Grant.AccessMissingAt, grant.access_missing, the metric) once; when the access is back
// the mark is cleared (grant.access_restored).
func TestDriftMarksMissingAccess(t *testing.T) {
	e := newDriftEnv(t)
	ctx := context.Background()
	g := e.issue(t, time.Hour)
	m := &driftMetrics{}
	d := e.reconciler(grants.DriftFlag, m)
	e.lp.set(g.ID, false) // dropped out of band
	e.clock.Advance(time.Minute)
	for range 2 {
		rep, err := d.Pass(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rep.Missing, []string{g.ID}) || m.missing != 1 {
			t.Fatalf("missing = %v (metric %d), want [%s]", rep.Missing, m.missing, g.ID)
		}
	}
	got, _ := e.store.GetGrant(ctx, g.ID)
	if !got.AccessMissingAt.Equal(e.clock.Now().Truncate(time.Millisecond)) || got.State != grants.StateActive {
		t.Fatalf("grant after the check: state %s, access missing at %v", got.State, got.AccessMissingAt)
	}
	if evs := eventsOf(t, e.store, audit.ActionGrantAccessMissing); len(evs) != 1 || evs[0].GrantID != g.ID {
		t.Fatalf("grant.access_missing events = %+v, want one for %s", evs, g.ID)
	}
	e.lp.set(g.ID, true)
	rep, err := d.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = e.store.GetGrant(ctx, g.ID)
	if !slices.Equal(rep.Restored, []string{g.ID}) || !got.AccessMissingAt.IsZero() || len(eventsOf(t, e.store, audit.ActionGrantAccessRestored)) != 1 {
		t.Fatalf("after the access came back: restored %v, mark %v", rep.Restored, got.AccessMissingAt)
	}
}

// TestDriftListingErrorConcludesNothing: a provider that cannot be listed marks nothing and
// flags nothing.
func TestDriftListingErrorConcludesNothing(t *testing.T) {
	e := newDriftEnv(t)
	g := e.issue(t, time.Hour)
	e.lp.set(g.ID, false)
	e.lp.listErr = errors.New("upstream 503")
	rep, err := e.reconciler(grants.DriftRevoke, nil).Pass(context.Background())
	if err == nil || len(rep.Missing) != 0 || len(rep.Checked) != 0 {
		t.Fatalf("pass over a failing listing: err %v, report %+v", err, rep)
	}
	if got, _ := e.store.GetGrant(context.Background(), g.ID); !got.AccessMissingAt.IsZero() {
		t.Fatal("a failed listing marked the grant")
	}
}

// TestDriftOneReplicaPerPass: two reconcilers on one store, on the fake clock: each interval
// exactly one of them runs a pass (the drift lease).
func TestDriftOneReplicaPerPass(t *testing.T) {
	e := newDriftEnv(t)
	e.issue(t, 4*time.Hour)
	m := &driftMetrics{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 2 {
		d := grants.NewDriftReconciler(e.store, map[string]grants.Provider{"prod-db": e.lp}, e.clock, nil, grants.DriftOptions{
			Instance: []string{"i-a", "i-b"}[i], Interval: 10 * time.Minute, FirstDelay: 10 * time.Minute, Lease: e.store, Metrics: m,
		})
		wg.Add(1)
		go func() { defer wg.Done(); _ = d.Run(ctx) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	wait := func(want int) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second) // hang guard
		defer wcancel()
		if err := e.clock.BlockUntil(wctx, 2); err != nil {
			t.Fatalf("reconcilers never waited on their timers (passes so far %d): %v", m.passes(), err)
		}
		if got := m.passes(); got != want {
			t.Fatalf("after %d intervals: %d passes, want %d", want, got, want)
		}
	}
	wait(0)
	for i := 1; i <= 3; i++ {
		e.clock.Advance(10 * time.Minute)
		wait(i)
	}
}

// TestRevokeCountsOnlyAfterReadBack: a provider whose Revoke answers success while the
// access is still there (read back) leaves the grant revoke_failed and retried; it is revoked
// once the read-back says the access is gone.
func TestRevokeCountsOnlyAfterReadBack(t *testing.T) {
	e := newDriftEnv(t)
	ctx := context.Background()
	g := e.issue(t, time.Hour)
	e.lp.stuck = 1
	if _, err := e.mgr.Revoke(ctx, g.ID, grants.CauseManual, operator, "done"); err != nil {
		t.Fatal(err)
	}
	r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": e.lp}, e.clock, nil, grants.RevokerOptions{BackoffBase: time.Second, Jitter: func() float64 { return 0 }})
	if err := r.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := e.store.GetGrant(ctx, g.ID)
	if got.State != grants.StateRevokeFailed || got.LastError == "" {
		t.Fatalf("after a revoke that did not read back as gone: %s (%q), want revoke_failed", got.State, got.LastError)
	}
	e.clock.Advance(time.Minute)
	if err := r.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ = e.store.GetGrant(ctx, g.ID)
	if got.State != grants.StateRevoked {
		t.Fatalf("after the retry: %s, want revoked", got.State)
	}
	evs := eventsOf(t, e.store, audit.ActionGrantRevoked)
	if len(evs) != 1 || evs[0].Evidence["read_back"] != "gone" {
		t.Fatalf("grant.revoked events = %+v, want one with read_back=gone", evs)
	}
}
