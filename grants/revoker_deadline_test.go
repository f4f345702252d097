package grants_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/grants"
)

// countingStore counts NextDue reads.
type countingStore struct {
	grants.Store
	mu   sync.Mutex
	next int
}

func (s *countingStore) NextDue(ctx context.Context) (time.Time, bool, error) {
	s.mu.Lock()
	s.next++
	s.mu.Unlock()
	return s.Store.NextDue(ctx)
}

func (s *countingStore) reads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

// runRevoker runs r until the test ends.
func runRevoker(t *testing.T, r *grants.Revoker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// TestNeverRevokedBeforeItsDeadline: grants with deadlines spread over ten minutes, issued
// through a Manager wired to the revoker's WakeAt while the revoker runs, some of them
// while earlier ones are being revoked, and spurious wake-ups on top: the clock moves in
// steps of 7 s, and every grant is revoked at or after its expiry, never before, and all of
// them in the end.
func TestNeverRevokedBeforeItsDeadline(t *testing.T) {
	e := newEnv(t)
	obs := newObserver()
	r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": e.prov}, e.clock, nil, grants.RevokerOptions{Observer: obs})
	mgr := grants.NewManager(e.store, map[string]grants.Provider{"prod-db": e.prov}, []grants.Resource{testResource}, e.clock, nil,
		grants.ManagerOptions{Instance: "i-test", WakeAt: r.WakeAt})
	runRevoker(t, r)
	n := 0
	issue := func(d time.Duration) grants.Grant {
		t.Helper()
		n++ // a person each: no grant overlaps another
		p := grants.Person{SlackTeamID: "T1", SlackUserID: fmt.Sprintf("U%03d", n)}
		g, _, err := mgr.Issue(context.Background(), grants.IssueInput{Resource: "prod-db", Person: p, Duration: d, Reason: "deadline test", Actor: operator})
		if err != nil {
			t.Fatalf("Issue: %v", err)
		}
		return g
	}
	expires := map[string]time.Time{}
	for i := range 20 {
		g := issue(time.Minute + time.Duration(i)*29*time.Second)
		expires[g.ID] = g.ExpiresAt
	}
	revoked := map[string]grants.Grant{}
	for step := 0; len(revoked) < len(expires) && step < 400; step++ {
		waitSleeping(t, e)
		e.clock.Advance(7 * time.Second)
		if step%5 == 0 && step < 60 {
			r.WakeAt(e.clock.Now()) // a spurious wake-up claims nothing early
			g := issue(time.Minute + time.Duration(step)*time.Second)
			expires[g.ID] = g.ExpiresAt
		}
		for drained := false; !drained; {
			select {
			case g := <-obs.revoked:
				revoked[g.ID] = g
			default:
				drained = true
			}
		}
	}
	if len(revoked) < len(expires) {
		t.Fatalf("%d of %d grants revoked", len(revoked), len(expires))
	}
	for id, exp := range expires {
		g := revoked[id]
		if g.RevokedAt.Before(exp) {
			t.Errorf("grant %s revoked at %s, before its expiry %s", id, grants.Timestamp(g.RevokedAt), grants.Timestamp(exp))
		}
	}
}

// TestIssuingLaterGrantsDoesNotWakeTheRevoker: while the revoker sleeps until a grant's
// deadline, issuing grants that end later does not make it read the store again; one that
// ends earlier does, and is revoked at its own deadline.
func TestIssuingLaterGrantsDoesNotWakeTheRevoker(t *testing.T) {
	e := newEnv(t)
	obs := newObserver()
	cs := &countingStore{Store: e.store}
	r := grants.NewRevoker(cs, map[string]grants.Provider{"prod-db": e.prov}, e.clock, nil, grants.RevokerOptions{Observer: obs, IdleWait: time.Hour})
	mgr := grants.NewManager(e.store, map[string]grants.Provider{"prod-db": e.prov}, []grants.Resource{testResource}, e.clock, nil,
		grants.ManagerOptions{Instance: "i-test", WakeAt: r.WakeAt})
	issue := func(d time.Duration) grants.Grant {
		t.Helper()
		g, _, err := mgr.Issue(context.Background(), grants.IssueInput{Resource: "prod-db", Person: alice, Duration: d, Reason: "wake test", Actor: operator})
		if err != nil {
			t.Fatalf("Issue: %v", err)
		}
		return g
	}
	first := issue(30 * time.Minute)
	runRevoker(t, r)
	waitSleeping(t, e)
	before := cs.reads()
	for i := range 10 {
		issue(time.Hour + time.Duration(i)*time.Minute)
	}
	early := issue(10 * time.Minute)
	// The early one woke it: it reads the store once more and sleeps again.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for cs.reads() == before && ctx.Err() == nil {
		if err := e.clock.BlockUntil(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	waitSleeping(t, e)
	if got := cs.reads() - before; got != 1 {
		t.Errorf("the revoker read the next deadline %d times after 10 later grants and one earlier one, want 1", got)
	}
	e.clock.Advance(10 * time.Minute)
	if got := recv(t, obs.revoked, "the early grant's revocation"); got.ID != early.ID {
		t.Fatalf("revoked %s first, want the early grant %s", got.ID, early.ID)
	}
	waitSleeping(t, e)
	e.clock.Advance(20 * time.Minute)
	if got := recv(t, obs.revoked, "the first grant's revocation"); got.ID != first.ID {
		t.Fatalf("revoked %s, want %s", got.ID, first.ID)
	}
}

// TestClaimsWhileRevocationsAreInFlight: a grant that falls due while an earlier one is stuck
// in its provider call is revoked at once; the revoker does not wait for the stuck one.
func TestClaimsWhileRevocationsAreInFlight(t *testing.T) {
	e := newEnv(t)
	obs := newObserver()
	issue := func(who string, d time.Duration) grants.Grant {
		t.Helper()
		g, _, err := e.mgr.Issue(context.Background(), grants.IssueInput{Resource: "prod-db", Person: grants.Person{SlackTeamID: "T1", SlackUserID: who},
			Duration: d, Reason: "in flight test", Actor: operator})
		if err != nil {
			t.Fatalf("Issue: %v", err)
		}
		return g
	}
	stuck := issue("U0ALICE", time.Minute)
	next := issue("U0BOB", 2*time.Minute)
	prov := &gatedProvider{fakeProvider: e.prov, started: make(chan string, 2), release: make(chan struct{}), calls: map[string]int{}}
	r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": prov}, e.clock, nil, grants.RevokerOptions{Observer: obs, AttemptTimeout: time.Hour})
	runRevoker(t, r)
	waitSleeping(t, e)
	e.clock.Advance(time.Minute)
	if got := recv(t, prov.started, "the first provider call"); got != stuck.ID {
		t.Fatalf("first call for %s, want %s", got, stuck.ID)
	}
	// The revoker sleeps until the next deadline while the first call hangs.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.clock.BlockUntil(ctx, 2); err != nil { // the claim renewal and the sleep
		t.Fatalf("the revoker did not sleep until the next deadline: %v", err)
	}
	e.clock.Advance(time.Minute)
	if got := recv(t, prov.started, "the second provider call, while the first still hangs"); got != next.ID {
		t.Fatalf("second call for %s, want %s", got, next.ID)
	}
	close(prov.release)
	for range 2 {
		recv(t, obs.revoked, "both revocations")
	}
}

// claimCountingStore counts ClaimDue and NextDue calls.
type claimCountingStore struct {
	grants.Store
	mu           sync.Mutex
	claims, next int
}

func (s *claimCountingStore) ClaimDue(ctx context.Context, owner string, now time.Time, limit int, lease time.Duration) ([]grants.Grant, error) {
	s.mu.Lock()
	s.claims++
	s.mu.Unlock()
	return s.Store.ClaimDue(ctx, owner, now, limit, lease)
}

func (s *claimCountingStore) NextDue(ctx context.Context) (time.Time, bool, error) {
	s.mu.Lock()
	s.next++
	s.mu.Unlock()
	return s.Store.NextDue(ctx)
}

func (s *claimCountingStore) counts() (claims, next int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.claims, s.next
}

// TestOneClaimPerDeadline: when a claim comes back with fewer grants than it asked for, it
// took all that were due, and the revoker goes back to sleep until the next deadline without
// claiming again at once: one claim (one write transaction) per deadline, not two (#16.3:
// with deadlines spread out, every grant paid for an empty claim on the one SQLite writer).
func TestOneClaimPerDeadline(t *testing.T) {
	e := newEnv(t)
	e.issue(t, time.Hour)
	st := &claimCountingStore{Store: e.store}
	obs := newObserver()
	r := grants.NewRevoker(st, map[string]grants.Provider{"prod-db": e.prov}, e.clock, nil, grants.RevokerOptions{Observer: obs})
	runRevoker(t, r)
	waitSleeping(t, e)
	if claims, next := st.counts(); claims != 1 || next != 1 {
		t.Fatalf("before the deadline: %d claims, %d next-deadline reads; want 1 and 1", claims, next)
	}
	e.clock.Advance(time.Hour)
	recv(t, obs.revoked, "the revocation")
	deadline := time.Now().Add(10 * time.Second) // a hang guard, not a timing assertion
	for {
		claims, next := st.counts()
		if next >= 2 { // the revoker read the next deadline to sleep until it
			if claims != 2 {
				t.Fatalf("%d claims for one deadline (with the one at start); want 2", claims)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the revoker never read the next deadline after revoking")
		}
		time.Sleep(time.Millisecond)
	}
}
