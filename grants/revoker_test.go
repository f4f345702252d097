package grants_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// observer reports revocation outcomes on channels.
type observer struct {
	revoked chan grants.Grant
	failed  chan grants.Grant
	gate    chan struct{} // if set, RevokeFailed returns only once it is closed
}

func newObserver() *observer {
	return &observer{revoked: make(chan grants.Grant, 100), failed: make(chan grants.Grant, 100)}
}
func (o *observer) GrantRevoked(_ context.Context, g grants.Grant) { o.revoked <- g }
func (o *observer) RevokeFailed(_ context.Context, g grants.Grant, _ error) {
	o.failed <- g
	if o.gate != nil {
		<-o.gate
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second): // a hang guard, not a timing assertion
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// startRevoker runs a revoker until the test ends and waits for it to sleep.
func startRevoker(t *testing.T, e *env, obs *observer) *grants.Revoker {
	t.Helper()
	r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": e.prov}, e.clock, nil, grants.RevokerOptions{
		Observer: obs, BackoffBase: 5 * time.Second, BackoffMax: time.Minute, Jitter: func() float64 { return 0.5 },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

func waitSleeping(t *testing.T, e *env) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.clock.BlockUntil(ctx, 1); err != nil {
		t.Fatalf("revoker never went to sleep: %v", err)
	}
}

func TestRevokedAtExpiry(t *testing.T) {
	e := newEnv(t)
	obs := newObserver()
	g := e.issue(t, time.Hour)
	startRevoker(t, e, obs)
	waitSleeping(t, e)
	e.clock.Advance(59 * time.Minute)
	select {
	case got := <-obs.revoked:
		t.Fatalf("revoked %s before expiry", got.ID)
	default:
	}
	waitSleeping(t, e)
	e.clock.Advance(time.Minute)
	got := recv(t, obs.revoked, "revocation")
	if got.ID != g.ID || got.State != grants.StateRevoked || got.RevokeCause != grants.CauseExpired {
		t.Fatalf("revoked %+v", got)
	}
	if e.prov.live(g.ID) {
		t.Fatal("access still live at the provider")
	}
	if got := strings.Join(actions(t, e.store, g.ID), ","); got != "grant.issuing,grant.issued,grant.revoked" {
		t.Errorf("audit = %s", got)
	}
}

func TestRevokeRetriesUntilItSucceeds(t *testing.T) {
	e := newEnv(t)
	obs := newObserver()
	e.prov.failRevokes = 5
	g := e.issue(t, time.Hour)
	startRevoker(t, e, obs)
	waitSleeping(t, e)
	e.clock.Advance(time.Hour)
	for i := 1; i <= 5; i++ {
		f := recv(t, obs.failed, fmt.Sprintf("failure %d", i))
		if f.State != grants.StateRevokeFailed || f.Attempts != i || f.LastError == "" {
			t.Fatalf("failure %d: %+v", i, f)
		}
		listed, err := e.store.ListGrants(context.Background(), grants.GrantFilter{States: []grants.State{grants.StateRevokeFailed}})
		if err != nil || len(listed) != 1 {
			t.Fatalf("revoke_failed grants = %d (%v), want the failing one visible", len(listed), err)
		}
		waitSleeping(t, e)
		e.clock.Advance(time.Minute) // the backoff cap
	}
	got := recv(t, obs.revoked, "final revocation")
	if got.ID != g.ID || got.Attempts != 5 {
		t.Fatalf("final %+v", got)
	}
	if _, revokes := e.prov.counts(); revokes != 6 {
		t.Errorf("provider revoke calls = %d, want 6", revokes)
	}
	acts := actions(t, e.store, g.ID)
	if n := strings.Count(strings.Join(acts, ","), "grant.revoke_failed"); n != 5 {
		t.Errorf("revoke_failed events = %d, want 5: %v", n, acts)
	}
	if acts[len(acts)-1] != "grant.revoked" {
		t.Errorf("last event %s, want grant.revoked", acts[len(acts)-1])
	}
}

// A retry that falls due while its failure is still being announced (the observer tells the
// owner in Slack, which can take seconds) is claimed then, and must be revoked then: not
// dropped as a claim still in flight, to wait out the lease it was just given.
func TestRetryClaimedWhileItsFailureIsAnnounced(t *testing.T) {
	e := newEnv(t)
	obs := newObserver()
	obs.gate = make(chan struct{})
	e.prov.failRevokes = 1
	g := e.issue(t, time.Hour)
	startRevoker(t, e, obs)
	waitSleeping(t, e)
	e.clock.Advance(time.Hour)
	recv(t, obs.failed, "the failure") // the observer now holds on to it
	waitSleeping(t, e)
	e.clock.Advance(time.Minute) // the backoff cap: the retry is due
	waitFor(t, "the retry's claim", func() bool {
		got, err := e.store.GetGrant(context.Background(), g.ID)
		return err == nil && got.ClaimedBy != "" && got.ClaimedTo.After(e.clock.Now())
	})
	close(obs.gate)
	// No further clock step: the claim just taken is the one that revokes.
	if got := recv(t, obs.revoked, "the retry's revocation"); got.ID != g.ID || got.Attempts != 1 {
		t.Fatalf("revoked %+v", got)
	}
}

func TestRevokeNeedsOperatorStillRetries(t *testing.T) {
	e := newEnv(t)
	e.prov.failRevokes = 1
	e.prov.revokeErr = fmt.Errorf("AccessDenied: %w", grants.ErrNeedsOperator)
	g := e.issue(t, time.Minute)
	e.clock.Advance(time.Minute)
	r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": e.prov}, e.clock, nil, grants.RevokerOptions{BackoffBase: time.Second})
	if err := r.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, _ := e.store.GetGrant(context.Background(), g.ID)
	if got.State != grants.StateRevokeFailed {
		t.Fatalf("state %s", got.State)
	}
	evs, _ := e.store.Search(context.Background(), auditQuery(g.ID, "grant.revoke_failed"))
	if len(evs) != 1 || evs[0].Evidence["class"] != "needs_operator" {
		t.Fatalf("revoke_failed events = %+v", evs)
	}
	e.clock.Advance(time.Minute)
	if err := r.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.store.GetGrant(context.Background(), g.ID); got.State != grants.StateRevoked {
		t.Fatalf("state after retry %s", got.State)
	}
}

func TestManualRevokeWakesRevoker(t *testing.T) {
	e := newEnv(t)
	obs := newObserver()
	g := e.issue(t, 4*time.Hour)
	r := startRevoker(t, e, obs)
	waitSleeping(t, e)
	mgr := grants.NewManager(e.store, map[string]grants.Provider{"prod-db": e.prov}, []grants.Resource{testResource}, e.clock, nil, grants.ManagerOptions{Wake: r.Wake})
	if _, err := mgr.Revoke(context.Background(), g.ID, grants.CauseManual, operator, "done early"); err != nil {
		t.Fatal(err)
	}
	got := recv(t, obs.revoked, "manual revocation") // no clock advance needed
	if got.RevokeCause != grants.CauseManual {
		t.Errorf("cause %s", got.RevokeCause)
	}
}

func TestOverlappingGrantsKeepAccess(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	first := e.issue(t, time.Hour)
	e.prov.preexisting = true // the provider sees the access the first grant made
	second := e.issue(t, 3*time.Hour)
	if second.Handle.Preexisting {
		t.Fatal("access created by another live grant was marked preexisting")
	}
	e.clock.Advance(time.Hour)
	r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": e.prov}, e.clock, nil, grants.RevokerOptions{})
	if err := r.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.store.GetGrant(ctx, first.ID); got.State != grants.StateRevoked {
		t.Fatalf("first grant %s", got.State)
	}
	if _, revokes := e.prov.counts(); revokes != 0 {
		t.Fatalf("provider revoked while the second grant still gives the access")
	}
	e.clock.Advance(2 * time.Hour)
	if err := r.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, revokes := e.prov.counts(); revokes != 1 {
		t.Fatalf("provider revokes = %d after the last grant ended, want 1", revokes)
	}
}

func TestPreexistingAccessIsLeftInPlace(t *testing.T) {
	e := newEnv(t)
	e.prov.preexisting = true
	g := e.issue(t, time.Hour)
	if !g.Handle.Preexisting {
		t.Fatal("handle not preexisting")
	}
	e.clock.Advance(time.Hour)
	r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": e.prov}, e.clock, nil, grants.RevokerOptions{})
	if err := r.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, _ := e.store.GetGrant(context.Background(), g.ID)
	if got.State != grants.StateRevoked {
		t.Fatalf("state %s", got.State)
	}
	if _, revokes := e.prov.counts(); revokes != 0 {
		t.Error("provider removed access the person had before the grant")
	}
}

func TestReconcileRevokesInterruptedIssue(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// A dead process wrote this grant ahead and its provider created the access, then it died.
	now := e.clock.Now()
	g := &grants.Grant{ID: grants.NewID("g"), Resource: "prod-db", Provider: "fake", Person: alice, State: grants.StateIssuing,
		Reason: "x", CreatedAt: now, ExpiresAt: now.Add(time.Hour), DueAt: now.Add(time.Minute), ClaimedBy: "i-dead", ClaimedTo: now.Add(time.Minute)}
	if err := e.store.Apply(ctx, &grants.Change{Grants: []grants.GrantWrite{{Grant: g, Create: true}},
		Events: []*audit.Event{grants.NewGrantEvent(now, operator, audit.ActionGrantIssuing, g, "x", nil)}}); err != nil {
		t.Fatal(err)
	}
	e.prov.access[g.ID] = true

	// Shared store, lease still held: another replica may be issuing it right now.
	if n, err := e.mgr.ReconcileOnStart(ctx, false); err != nil || n != 0 {
		t.Fatalf("non-exclusive reconcile with a live lease queued %d (%v), want 0", n, err)
	}
	// Exclusive store (SQLite): nobody else can be issuing it.
	if n, err := e.mgr.ReconcileOnStart(ctx, true); err != nil || n != 1 {
		t.Fatalf("exclusive reconcile queued %d (%v), want 1", n, err)
	}
	r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": e.prov}, e.clock, nil, grants.RevokerOptions{})
	if err := r.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if e.prov.live(g.ID) {
		t.Fatal("access left behind by an interrupted issue")
	}
	got, _ := e.store.GetGrant(ctx, g.ID)
	if got.State != grants.StateRevoked || got.RevokeCause != grants.CauseIssueInterrupted {
		t.Fatalf("grant %s cause %s", got.State, got.RevokeCause)
	}
}

func TestIssueTimeoutQueuesRevocation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	slow := grants.NewManager(e.store, map[string]grants.Provider{"prod-db": hangingProvider{e.prov}}, []grants.Resource{testResource}, e.clock, nil, grants.ManagerOptions{IssueTimeout: time.Millisecond})
	g, _, err := slow.Issue(ctx, grants.IssueInput{Resource: "prod-db", Person: alice, Duration: time.Hour, Reason: "x", Actor: operator})
	if err == nil {
		t.Fatal("hanging issue succeeded")
	}
	r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": e.prov}, e.clock, nil, grants.RevokerOptions{})
	if err := r.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if e.prov.live(g.ID) {
		t.Fatal("access created by a timed-out issue was left behind")
	}
}

func TestBackoffIsCappedAndJittered(t *testing.T) {
	e := newEnv(t)
	e.prov.failRevokes = 100
	g := e.issue(t, time.Minute)
	e.clock.Advance(time.Minute)
	r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": e.prov}, e.clock, nil, grants.RevokerOptions{
		BackoffBase: time.Second, BackoffMax: 10 * time.Second, Jitter: func() float64 { return 0 }})
	var delays []time.Duration
	for range 6 {
		if err := r.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		got, _ := e.store.GetGrant(context.Background(), g.ID)
		d := got.DueAt.Sub(e.clock.Now())
		delays = append(delays, d)
		e.clock.Advance(d)
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i := range want {
		if delays[i] != want[i] {
			t.Fatalf("delays = %v, want %v (half of capped exponential with zero jitter)", delays, want)
		}
	}
}

func auditQuery(grantID, action string) audit.Query {
	return audit.Query{GrantID: grantID, Action: audit.Action(action), Limit: 100}
}

// hangingProvider creates the access, then never answers within the issue timeout.
type hangingProvider struct{ *fakeProvider }

func (h hangingProvider) Issue(ctx context.Context, req grants.IssueRequest) (grants.Issued, error) {
	h.mu.Lock()
	h.access[req.GrantID] = true
	h.mu.Unlock()
	<-ctx.Done()
	return grants.Issued{}, ctx.Err()
}

// waitFor polls cond until it holds; the bound is a hang guard, not a timing assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
