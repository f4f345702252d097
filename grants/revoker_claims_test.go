package grants_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/grants"
)

// gatedProvider blocks every Revoke until released, and counts the calls per grant.
type gatedProvider struct {
	*fakeProvider
	started chan string
	release chan struct{}
	mu      sync.Mutex
	calls   map[string]int
}

func (p *gatedProvider) Revoke(ctx context.Context, req grants.RevokeRequest) error {
	p.mu.Lock()
	p.calls[req.GrantID]++
	p.mu.Unlock()
	p.started <- req.GrantID
	select {
	case <-p.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return p.fakeProvider.Revoke(ctx, req)
}

// TestSlowProviderKeepsItsClaims: grants claimed by a sweep and waiting for a slow provider
// (one call at a time) keep their claims for as long as they wait, however long past the
// lease: another replica claims none of them, and each grant gets exactly one provider call
// (issue #15: a lapsed claim made the provider be called two or three times per grant).
func TestSlowProviderKeepsItsClaims(t *testing.T) {
	e := newEnv(t)
	const n = 3
	var ids []string
	for range n {
		ids = append(ids, e.issue(t, time.Minute).ID)
	}
	e.clock.Advance(2 * time.Minute)
	prov := &gatedProvider{fakeProvider: e.prov, started: make(chan string, n), release: make(chan struct{}), calls: map[string]int{}}
	const lease = time.Minute
	r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": prov}, e.clock, nil, grants.RevokerOptions{
		Instance: "replica-a", ConcurrencyPerProvider: 1, ClaimLease: lease, AttemptTimeout: time.Hour,
	})
	swept := make(chan error, 1)
	go func() { swept <- r.Sweep(context.Background()) }()
	recv(t, prov.started, "the first provider call")

	// Two minutes of a provider that does not answer, in heartbeats of a third of the lease.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for beat := range 6 {
		if err := e.clock.BlockUntil(ctx, 1); err != nil { // the renewal's timer
			t.Fatalf("beat %d: no renewal timer: %v", beat, err)
		}
		e.clock.Advance(lease / 3)
		want := e.clock.Now().Add(lease).Truncate(time.Millisecond)
		for renewed := false; !renewed; {
			if ctx.Err() != nil {
				t.Fatalf("beat %d: the claims were not renewed to %s", beat, want)
			}
			renewed = true
			for _, id := range ids {
				if g, err := e.store.GetGrant(ctx, id); err != nil || g.ClaimedBy != "replica-a" || g.ClaimedTo.Before(want) {
					renewed = false
				}
			}
		}
	}
	if other, err := e.store.ClaimDue(ctx, "replica-b", e.clock.Now(), 10, lease); err != nil || len(other) != 0 {
		t.Fatalf("another replica claimed %d grants the slow sweep still holds (%v)", len(other), err)
	}

	close(prov.release)
	for range n - 1 {
		recv(t, prov.started, "the next provider call")
	}
	if err := <-swept; err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	for _, id := range ids {
		g, err := e.store.GetGrant(ctx, id)
		if err != nil || g.State != grants.StateRevoked {
			t.Errorf("grant %s: %s, %v; want revoked", id, g.State, err)
		}
		prov.mu.Lock()
		if c := prov.calls[id]; c != 1 {
			t.Errorf("grant %s: %d provider calls, want 1", id, c)
		}
		prov.mu.Unlock()
	}
}
