package grants_test

import (
	"context"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// selfReadingProvider is a listing provider whose RevokeWithResult says it read the access
// back itself (RevokeResult.ReadBack) when readBack is set. Its HasAccess still counts calls
// and, with stuck, still claims the access is there: the revoker must not ask it.
type selfReadingProvider struct {
	*listingProvider
	readBack bool
}

func (p *selfReadingProvider) RevokeWithResult(ctx context.Context, req grants.RevokeRequest) (grants.RevokeResult, error) {
	if err := p.Revoke(ctx, req); err != nil {
		return grants.RevokeResult{}, err
	}
	return grants.RevokeResult{ReadBack: p.readBack}, nil
}

// TestRevokerSkipsReadBackTheProviderDid: a revocation whose provider read the access back in
// the same call (RevokeResult.ReadBack) is recorded revoked, with read_back=gone, without a
// HasAccess call of the revoker's own; without ReadBack the revoker reads back as before (and
// a read-back that finds the access leaves the grant revoke_failed).
func TestRevokerSkipsReadBackTheProviderDid(t *testing.T) {
	for _, tc := range []struct {
		name       string
		readBack   bool
		wantChecks int
		want       grants.State
	}{
		{"provider read back", true, 0, grants.StateRevoked},
		{"revoker reads back", false, 1, grants.StateRevokeFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newDriftEnv(t)
			ctx := context.Background()
			p := &selfReadingProvider{listingProvider: e.lp, readBack: tc.readBack}
			g := e.issue(t, time.Hour)
			e.lp.stuck = 1 // a read-back by the revoker would find the access still there
			if _, err := e.mgr.Revoke(ctx, g.ID, grants.CauseManual, operator, "done"); err != nil {
				t.Fatal(err)
			}
			r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": p}, e.clock, nil, grants.RevokerOptions{BackoffBase: time.Second, Jitter: func() float64 { return 0 }})
			if err := r.Sweep(ctx); err != nil {
				t.Fatal(err)
			}
			got, _ := e.store.GetGrant(ctx, g.ID)
			e.lp.mu.Lock()
			checks := e.lp.checks
			e.lp.mu.Unlock()
			if got.State != tc.want || checks != tc.wantChecks {
				t.Fatalf("state %s after %d HasAccess calls, want %s after %d", got.State, checks, tc.want, tc.wantChecks)
			}
			if tc.want != grants.StateRevoked {
				return
			}
			evs := eventsOf(t, e.store, audit.ActionGrantRevoked)
			if len(evs) != 1 || evs[0].Evidence["read_back"] != "gone" {
				t.Fatalf("grant.revoked events = %+v, want one with read_back=gone", evs)
			}
		})
	}
}

// batchSelfReading is a batchFake whose RevokeBatch says it read back the grants it revoked;
// its read-back calls are counted.
type batchSelfReading struct {
	*batchFake
	readBacks int
}

func (p *batchSelfReading) RevokeBatch(ctx context.Context, reqs []grants.RevokeRequest) []grants.BatchResult {
	out := p.batchFake.RevokeBatch(ctx, reqs)
	for i := range out {
		if out[i].Err == nil {
			out[i].ReadBack = true
		}
	}
	return out
}

func (p *batchSelfReading) HasAccess(ctx context.Context, req grants.RevokeRequest) (bool, error) {
	p.bmu.Lock()
	p.readBacks++
	p.bmu.Unlock()
	return p.batchFake.HasAccess(ctx, req)
}

func (p *batchSelfReading) HasAccessBatch(ctx context.Context, reqs []grants.RevokeRequest) ([]bool, error) {
	p.bmu.Lock()
	p.readBacks++
	p.bmu.Unlock()
	return p.batchFake.HasAccessBatch(ctx, reqs)
}

// TestBatchRevokerSkipsReadBackTheProviderDid: grants revoked in a batch whose provider read
// them back (RevokeResult.ReadBack) are recorded revoked with read_back=gone and no read-back
// call.
func TestBatchRevokerSkipsReadBackTheProviderDid(t *testing.T) {
	e := newBatchEnv(t)
	ctx := context.Background()
	var ids []string
	for range 3 {
		ids = append(ids, e.issue(t, time.Hour).ID)
	}
	p := &batchSelfReading{batchFake: e.prov}
	e.clock.Advance(time.Hour + time.Second)
	r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": p}, e.clock, nil, grants.RevokerOptions{BackoffBase: time.Second, Jitter: func() float64 { return 0 }})
	if err := r.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if got, _ := e.store.GetGrant(ctx, id); got.State != grants.StateRevoked {
			t.Errorf("grant %s: %s, want revoked", id, got.State)
		}
	}
	if p.readBacks != 0 {
		t.Errorf("%d read-back calls, want none (the provider read back)", p.readBacks)
	}
	evs := eventsOf(t, e.store, audit.ActionGrantRevoked)
	if len(evs) != len(ids) {
		t.Fatalf("%d grant.revoked events, want %d", len(evs), len(ids))
	}
	for _, ev := range evs {
		if ev.Evidence["read_back"] != "gone" {
			t.Errorf("grant.revoked %s evidence %v, want read_back=gone", ev.GrantID, ev.Evidence)
		}
	}
}
