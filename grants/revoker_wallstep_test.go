package grants_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/grants"
)

// stepMetrics records the wall clock steps the revoker reports.
type stepMetrics struct {
	mu    sync.Mutex
	steps []time.Duration
}

func (m *stepMetrics) Revoked(string, time.Duration) {}
func (m *stepMetrics) RevokeFailed(string, bool)     {}
func (m *stepMetrics) WallClockStepped(d time.Duration) {
	m.mu.Lock()
	m.steps = append(m.steps, d)
	m.mu.Unlock()
}
func (m *stepMetrics) seen() []time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]time.Duration(nil), m.steps...)
}

// wallTolerance is how late after a step a grant may be revoked: one WallCheck (the default
// 1 s) plus the millisecond the store truncates to.
const wallTolerance = time.Second + time.Millisecond

func nearly(got, want time.Duration) bool {
	d := got - want
	return d > -grants.WallStepTolerance && d < grants.WallStepTolerance
}

// TestWallClockStepForwardRevokesWithinASecond (issue #15, one clock for deadlines, SQLite):
// the revoker sleeps until a grant's deadline an hour away; the wall clock steps an hour
// forward (no timer fires: timers follow the monotonic clock). Within one WallCheck of real
// time the grant is revoked, and the step is reported. Before the fix the revoker slept on
// until its monotonic timer (up to IdleWait) and the grant stayed live past its deadline.
func TestWallClockStepForwardRevokesWithinASecond(t *testing.T) {
	e := newEnv(t)
	obs := newObserver()
	m := &stepMetrics{}
	g := e.issue(t, time.Hour)
	r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": e.prov}, e.clock, nil, grants.RevokerOptions{Observer: obs, Metrics: m})
	runRevoker(t, r)
	waitSleeping(t, e)

	e.clock.StepWall(time.Hour)
	select {
	case got := <-obs.revoked:
		t.Fatalf("revoked %s before any time passed", got.ID)
	default:
	}
	e.clock.Advance(time.Second) // one WallCheck of real time
	got := recv(t, obs.revoked, "the revocation after the wall clock stepped past the deadline")
	if got.ID != g.ID {
		t.Fatalf("revoked %s, want %s", got.ID, g.ID)
	}
	if late := got.RevokedAt.Sub(g.ExpiresAt); late < 0 || late > wallTolerance {
		t.Errorf("revoked %s after its deadline (wall clock), want within [0, %s]", late, wallTolerance)
	}
	if s := m.seen(); len(s) != 1 || !nearly(s[0], time.Hour) {
		t.Errorf("steps reported %v, want one of about 1h", s)
	}
}

// TestWallClockStepBackwardNeverRevokesEarly: the wall clock steps an hour back while the
// revoker sleeps until a deadline ten minutes away. When the revoker's timer fires (ten
// minutes of real time later) the deadline has not come on the wall clock, which is what the
// store's deadlines mean: nothing is revoked; the grant is revoked once the wall clock
// reaches its deadline, within one WallCheck.
func TestWallClockStepBackwardNeverRevokesEarly(t *testing.T) {
	e := newEnv(t)
	obs := newObserver()
	m := &stepMetrics{}
	g := e.issue(t, 10*time.Minute)
	r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": e.prov}, e.clock, nil, grants.RevokerOptions{Observer: obs, Metrics: m})
	runRevoker(t, r)
	waitSleeping(t, e)

	e.clock.StepWall(-time.Hour)
	for e.clock.Now().Add(30 * time.Second).Before(g.ExpiresAt) {
		e.clock.Advance(30 * time.Second)
		waitSleeping(t, e)
		select {
		case got := <-obs.revoked:
			t.Fatalf("revoked %s at %s (wall clock), %s before its deadline", got.ID, grants.Timestamp(got.RevokedAt), g.ExpiresAt.Sub(got.RevokedAt))
		default:
		}
	}
	live, err := e.store.GetGrant(context.Background(), g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if live.State != grants.StateActive {
		t.Fatalf("grant is %s %s before its deadline (wall clock), want active", live.State, g.ExpiresAt.Sub(e.clock.Now()))
	}
	e.clock.Advance(g.ExpiresAt.Sub(e.clock.Now()))
	got := recv(t, obs.revoked, "the revocation once the wall clock reached the deadline")
	if late := got.RevokedAt.Sub(g.ExpiresAt); late < 0 || late > wallTolerance {
		t.Errorf("revoked %s after its deadline (wall clock), want within [0, %s]", late, wallTolerance)
	}
	if s := m.seen(); len(s) != 1 || !nearly(s[0], -time.Hour) {
		t.Errorf("steps reported %v, want one of about -1h", s)
	}
}

// TestWallClockStepForwardKeepsInFlightClaims: a revocation hangs in its provider when the
// wall clock steps ten minutes forward, past the claim's two-minute lease. The revoker renews
// its claim judged by the time that really passed, so over the next two and a half minutes it
// never claims that grant again: one provider call, one grant.revoked. Before the fix the
// claim looked lapsed after the step, the revoker claimed the grant again and called the
// provider a second time while the first call still ran.
func TestWallClockStepForwardKeepsInFlightClaims(t *testing.T) {
	e := newEnv(t)
	obs := newObserver()
	stuck := e.issue(t, time.Minute)
	prov := &gatedProvider{fakeProvider: e.prov, started: make(chan string, 4), release: make(chan struct{}), calls: map[string]int{}}
	r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": prov}, e.clock, nil, grants.RevokerOptions{
		Observer: obs, AttemptTimeout: time.Hour, ClaimLease: 2 * time.Minute})
	runRevoker(t, r)
	var release sync.Once
	open := func() { release.Do(func() { close(prov.release) }) }
	t.Cleanup(open) // before the revoker stops: its shutdown grace runs on the fake clock
	waitSleeping(t, e)
	e.clock.Advance(time.Minute)
	if got := recv(t, prov.started, "the provider call"); got != stuck.ID {
		t.Fatalf("call for %s, want %s", got, stuck.ID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.clock.BlockUntil(ctx, 2); err != nil { // the claim renewal and the sleep
		t.Fatalf("the revoker did not sleep while the call hangs: %v", err)
	}

	e.clock.StepWall(10 * time.Minute)
	for range 30 { // 150 s of real time, more than the lease
		e.clock.Advance(5 * time.Second)
		if err := e.clock.BlockUntil(ctx, 2); err != nil {
			t.Fatalf("the revoker did not sleep again: %v", err)
		}
		select {
		case id := <-prov.started:
			t.Fatalf("a second provider call for %s while the first still runs", id)
		default:
		}
	}
	open()
	got := recv(t, obs.revoked, "the revocation")
	if got.ID != stuck.ID {
		t.Fatalf("revoked %s, want %s", got.ID, stuck.ID)
	}
	prov.mu.Lock()
	calls := prov.calls[stuck.ID]
	prov.mu.Unlock()
	if calls != 1 {
		t.Errorf("%d provider calls, want 1", calls)
	}
	select {
	case f := <-obs.failed:
		t.Errorf("a failed attempt was recorded for %s", f.ID)
	default:
	}
}
