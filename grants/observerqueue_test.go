package grants_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/grants"
)

// hungObserver blocks every notification until released, and records what it got.
type hungObserver struct {
	release chan struct{}
	mu      sync.Mutex
	got     []string
}

func (o *hungObserver) GrantRevoked(_ context.Context, g grants.Grant) {
	<-o.release
	o.mu.Lock()
	o.got = append(o.got, "revoked "+g.ID)
	o.mu.Unlock()
}
func (o *hungObserver) RevokeFailed(_ context.Context, g grants.Grant, _ error) {
	<-o.release
	o.mu.Lock()
	o.got = append(o.got, "failed "+g.ID)
	o.mu.Unlock()
}

// TestHungNotifierNeverDelaysRevocation: with the owner's notifier hung (Slack not
// answering), the revoker revokes every due grant; the notices follow when it answers again.
func TestHungNotifierNeverDelaysRevocation(t *testing.T) {
	e := newEnv(t)
	const n = 5
	var ids []string
	for range n {
		ids = append(ids, e.issue(t, time.Minute).ID)
	}
	e.clock.Advance(2 * time.Minute)
	hung := &hungObserver{release: make(chan struct{})}
	q := grants.NewObserverQueue(hung, 100, nil)
	r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": e.prov}, e.clock, nil, grants.RevokerOptions{
		Observer: q, Batch: 1, // one grant per claim and per record: each would wait on the notifier
	})
	swept := make(chan error, 1)
	go func() { swept <- r.Sweep(context.Background()) }()
	select {
	case err := <-swept:
		if err != nil {
			t.Fatalf("Sweep with a hung notifier: %v", err)
		}
	case <-time.After(30 * time.Second): // a hang guard: the sweep waits on the notifier
		close(hung.release)
		t.Fatal("the revoker waited on the hung notifier")
	}
	for _, id := range ids {
		if g, err := e.store.GetGrant(context.Background(), id); err != nil || g.State != grants.StateRevoked {
			t.Fatalf("grant %s: %s, %v; want revoked while the notifier hangs", id, g.State, err)
		}
	}
	close(hung.release)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a hang guard only
	defer cancel()
	q.Close(ctx)
	hung.mu.Lock()
	defer hung.mu.Unlock()
	if len(hung.got) != n {
		t.Fatalf("notices delivered = %v, want %d", hung.got, n)
	}
}

func TestObserverQueueDropsTheOldestWhenFull(t *testing.T) {
	hung := &hungObserver{release: make(chan struct{})}
	q := grants.NewObserverQueue(hung, 2, nil)
	for i := range 10 {
		q.GrantRevoked(context.Background(), grants.Grant{ID: string(rune('a' + i))})
	}
	close(hung.release)
	q.Close(context.Background())
	hung.mu.Lock()
	defer hung.mu.Unlock()
	// The first was taken before the queue filled (it was blocked in delivery); of the rest,
	// the newest two are kept.
	if len(hung.got) > 3 || hung.got[len(hung.got)-1] != "revoked j" {
		t.Fatalf("delivered %v; want at most the first and the newest two", hung.got)
	}
}

// ctxObserver blocks each notice until its context ends, and says so.
type ctxObserver struct{ started, ended chan error }

func (o ctxObserver) GrantRevoked(ctx context.Context, _ grants.Grant) {
	o.started <- nil
	<-ctx.Done()
	o.ended <- ctx.Err()
}
func (o ctxObserver) RevokeFailed(ctx context.Context, g grants.Grant, _ error) {
	o.GrantRevoked(ctx, g)
}

// TestObserverQueueCloseCancelsTheNoticeInDelivery: when Close gives up waiting, the notice
// being delivered is cancelled rather than left running after the broker stopped.
func TestObserverQueueCloseCancelsTheNoticeInDelivery(t *testing.T) {
	o := ctxObserver{started: make(chan error, 1), ended: make(chan error, 1)}
	q := grants.NewObserverQueue(o, 10, nil)
	q.GrantRevoked(context.Background(), grants.Grant{ID: "g_1"})
	<-o.started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q.Close(ctx)
	select {
	case err := <-o.ended:
		if err == nil {
			t.Fatal("the notice ended without its context ending")
		}
	case <-time.After(30 * time.Second): // a hang guard only
		t.Fatal("the notice in delivery was not cancelled by Close")
	}
}
