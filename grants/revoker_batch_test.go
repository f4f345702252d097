package grants_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
)

// batchFake is a fakeProvider that revokes in batches (grants.BatchRevoker) and reads back
// (grants.BatchAccessChecker). It records each call's size, fails the grants in fail once
// each, leaves the access of the grants in stuck in place once each while reporting success,
// and notes any grant handed to it before its expiry.
type batchFake struct {
	*fakeProvider
	clock *clocktest.Fake

	bmu     sync.Mutex
	expires map[string]time.Time
	calls   []int
	fail    map[string]bool
	stuck   map[string]bool
	early   []string
	gate    chan struct{} // when set, the first batch call waits for it
	gated   int           // the size of the call waiting at the gate
}

func newBatchFake(clock *clocktest.Fake) *batchFake {
	return &batchFake{fakeProvider: newFakeProvider(), clock: clock, expires: map[string]time.Time{},
		fail: map[string]bool{}, stuck: map[string]bool{}}
}

func (p *batchFake) Issue(ctx context.Context, req grants.IssueRequest) (grants.Issued, error) {
	p.bmu.Lock()
	p.expires[req.GrantID] = req.ExpiresAt
	p.bmu.Unlock()
	return p.fakeProvider.Issue(ctx, req)
}

func (p *batchFake) RevokeBatch(ctx context.Context, reqs []grants.RevokeRequest) []grants.BatchResult {
	p.bmu.Lock()
	gate := p.gate
	p.gate = nil
	if gate != nil {
		p.gated = len(reqs)
	}
	p.bmu.Unlock()
	if gate != nil {
		<-gate
	}
	p.bmu.Lock()
	defer p.bmu.Unlock()
	p.calls = append(p.calls, len(reqs))
	out := make([]grants.BatchResult, len(reqs))
	for i, req := range reqs {
		if exp := p.expires[req.GrantID]; p.clock.Now().Before(exp) {
			p.early = append(p.early, req.GrantID)
		}
		switch {
		case p.fail[req.GrantID]:
			delete(p.fail, req.GrantID)
			out[i].Err = errors.New("upstream 503 for this one")
		case p.stuck[req.GrantID]:
			delete(p.stuck, req.GrantID)
		default:
			p.mu.Lock()
			delete(p.access, req.GrantID)
			p.revokes++
			p.mu.Unlock()
		}
	}
	return out
}

func (p *batchFake) HasAccess(_ context.Context, req grants.RevokeRequest) (bool, error) {
	return p.live(req.GrantID), nil
}

func (p *batchFake) HasAccessBatch(_ context.Context, reqs []grants.RevokeRequest) ([]bool, error) {
	out := make([]bool, len(reqs))
	for i, req := range reqs {
		out[i] = p.live(req.GrantID)
	}
	return out, nil
}

// waitGathered waits until the call held at the gate and the grants queued behind it make n.
func (p *batchFake) waitGathered(t *testing.T, r *grants.Revoker, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second) // a hang guard, not a timing assertion
	for time.Now().Before(deadline) {
		p.bmu.Lock()
		gated := p.gated
		p.bmu.Unlock()
		if gated > 0 && gated+r.BatchQueued("prod-db") >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%d grants never gathered for the provider", n)
}

func (p *batchFake) record() (calls []int, early []string) {
	p.bmu.Lock()
	defer p.bmu.Unlock()
	return append([]int(nil), p.calls...), append([]string(nil), p.early...)
}

// batchEnv is a Manager and a revoker on one batchFake; each issued grant has its own person
// (no two overlap).
type batchEnv struct {
	*env
	prov *batchFake
	mgr  *grants.Manager
	n    int
}

func newBatchEnv(t *testing.T) *batchEnv {
	t.Helper()
	e := newEnv(t)
	p := newBatchFake(e.clock)
	mgr := grants.NewManager(e.store, map[string]grants.Provider{"prod-db": p}, []grants.Resource{testResource}, e.clock, nil, grants.ManagerOptions{Instance: "i-test"})
	return &batchEnv{env: e, prov: p, mgr: mgr}
}

func (e *batchEnv) issue(t *testing.T, d time.Duration) grants.Grant {
	t.Helper()
	e.n++
	p := grants.Person{SlackTeamID: "T1", SlackUserID: fmt.Sprintf("U%03d", e.n)}
	g, _, err := e.mgr.Issue(context.Background(), grants.IssueInput{Resource: "prod-db", Person: p, Duration: d, Reason: "batch test", Actor: operator})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return g
}

func (e *batchEnv) revoker(t *testing.T, obs *observer, opts grants.RevokerOptions) *grants.Revoker {
	t.Helper()
	opts.Observer = obs
	opts.BackoffBase, opts.BackoffMax, opts.Jitter = 5*time.Second, time.Minute, func() float64 { return 0.5 }
	return grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": e.prov}, e.clock, nil, opts)
}

// TestBatchRevokerGetsTheDueGrantsTogether: grants due at once reach a BatchRevoker in few
// calls: while one call is in flight the others gather and go in the next one, each grant
// is revoked exactly once, read back, and recorded with its own grant.revoked.
func TestBatchRevokerGetsTheDueGrantsTogether(t *testing.T) {
	e := newBatchEnv(t)
	const n = 20
	var ids []string
	for range n {
		ids = append(ids, e.issue(t, time.Hour).ID)
	}
	gate := make(chan struct{})
	e.prov.gate = gate
	obs := newObserver()
	r := e.revoker(t, obs, grants.RevokerOptions{ConcurrencyPerProvider: 1})
	runRevoker(t, r)
	waitSleeping(t, e.env)
	e.clock.Advance(time.Hour)
	// The first call holds the provider's only slot; the other grants queue behind it.
	e.prov.waitGathered(t, r, n)
	close(gate)
	revoked := map[string]grants.Grant{}
	for range n {
		g := recv(t, obs.revoked, "grant.revoked")
		revoked[g.ID] = g
	}
	calls, early := e.prov.record()
	if len(early) > 0 {
		t.Errorf("grants handed to the provider before their expiry: %v", early)
	}
	total := 0
	for _, c := range calls {
		total += c
	}
	if total != n || len(calls) > 2 {
		t.Errorf("batch calls %v: want all %d grants in at most 2 calls, each once", calls, n)
	}
	for _, id := range ids {
		g, ok := revoked[id]
		if !ok {
			t.Fatalf("grant %s not revoked", id)
		}
		if e.prov.live(id) {
			t.Errorf("grant %s recorded revoked, access still there", id)
		}
		if got := countAction(actions(t, e.store, id), "grant.revoked"); got != 1 {
			t.Errorf("grant %s: %d grant.revoked events, want 1", id, got)
		}
		if g.State != grants.StateRevoked {
			t.Errorf("grant %s state %s", id, g.State)
		}
	}
}

func countAction(acts []string, want string) int {
	n := 0
	for _, a := range acts {
		if a == want {
			n++
		}
	}
	return n
}

// TestBatchPartialFailure: in one batch, one grant fails at the provider and one is reported
// revoked but read back as still there; the others are recorded revoked, those two get a
// grant.revoke_failed each (never grant.revoked), keep their access until the retry, and are
// revoked by the retry after their backoff.
func TestBatchPartialFailure(t *testing.T) {
	e := newBatchEnv(t)
	var ids []string
	for range 5 {
		ids = append(ids, e.issue(t, time.Hour).ID)
	}
	failing, stuck := ids[1], ids[3]
	e.prov.fail[failing] = true
	e.prov.stuck[stuck] = true
	gate := make(chan struct{})
	e.prov.gate = gate
	obs := newObserver()
	r := e.revoker(t, obs, grants.RevokerOptions{ConcurrencyPerProvider: 1})
	runRevoker(t, r)
	waitSleeping(t, e.env)
	e.clock.Advance(time.Hour)
	e.prov.waitGathered(t, r, 5)
	close(gate)
	revoked := map[string]bool{}
	for range 3 {
		revoked[recv(t, obs.revoked, "grant.revoked").ID] = true
	}
	failed := map[string]grants.Grant{}
	for range 2 {
		g := recv(t, obs.failed, "grant.revoke_failed")
		failed[g.ID] = g
	}
	for _, id := range []string{failing, stuck} {
		g, ok := failed[id]
		if !ok || revoked[id] {
			t.Fatalf("grant %s: failed %v, revoked %v; want failed only", id, ok, revoked[id])
		}
		if g.State != grants.StateRevokeFailed || g.Attempts != 1 {
			t.Errorf("grant %s: state %s attempts %d, want revoke_failed after 1", id, g.State, g.Attempts)
		}
		if got := countAction(actions(t, e.store, id), "grant.revoked"); got != 0 {
			t.Errorf("grant %s: %d grant.revoked events before the retry", id, got)
		}
	}
	if !e.prov.live(stuck) {
		t.Error("the stuck grant's access is gone: the fake is wrong")
	}
	for _, id := range ids {
		if id != failing && id != stuck && (!revoked[id] || e.prov.live(id)) {
			t.Errorf("grant %s: revoked %v, live %v; want revoked and gone", id, revoked[id], e.prov.live(id))
		}
	}
	// The retries (backoff 2.5 s with this jitter), in their own batch.
	waitSleeping(t, e.env)
	e.clock.Advance(5 * time.Second)
	for range 2 {
		g := recv(t, obs.revoked, "grant.revoked (retry)")
		if _, ok := failed[g.ID]; !ok || g.Attempts != 1 {
			t.Errorf("retry revoked %s (attempts %d), want one of the failed two", g.ID, g.Attempts)
		}
	}
	for _, id := range ids {
		if got := countAction(actions(t, e.store, id), "grant.revoked"); got != 1 || e.prov.live(id) {
			t.Errorf("grant %s: %d grant.revoked, live %v; want 1 and gone", id, got, e.prov.live(id))
		}
	}
}

// TestBatchNeverBeforeTheDeadline: deadlines spread over ten minutes, the clock moving in
// 7 s steps with spurious wake-ups: the BatchRevoker never receives a grant before its
// expiry, and every grant is revoked.
func TestBatchNeverBeforeTheDeadline(t *testing.T) {
	e := newBatchEnv(t)
	obs := newObserver()
	r := e.revoker(t, obs, grants.RevokerOptions{})
	e.mgr = grants.NewManager(e.store, map[string]grants.Provider{"prod-db": e.prov}, []grants.Resource{testResource}, e.clock, nil,
		grants.ManagerOptions{Instance: "i-test", WakeAt: r.WakeAt})
	runRevoker(t, r)
	want := 0
	for i := range 30 {
		e.issue(t, time.Minute+time.Duration(i%10)*53*time.Second)
		want++
	}
	got := 0
	for step := 0; got < want && step < 400; step++ {
		waitSleeping(t, e.env)
		e.clock.Advance(7 * time.Second)
		r.WakeAt(e.clock.Now())
		for drained := false; !drained; {
			select {
			case <-obs.revoked:
				got++
			default:
				drained = true
			}
		}
	}
	if got < want {
		t.Fatalf("%d of %d grants revoked", got, want)
	}
	calls, early := e.prov.record()
	if len(early) > 0 {
		t.Errorf("grants handed to the provider before their expiry: %v", early)
	}
	total := 0
	for _, c := range calls {
		total += c
	}
	if total != want {
		t.Errorf("the batch provider received %d grants in %d calls, want %d", total, len(calls), want)
	}
}
