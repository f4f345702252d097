package broker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

// pausingStore is a store whose next ListGrants, once armed, signals entered and waits for
// release: the scheduler's pass stops there, after it has listed the pending requests.
type pausingStore struct {
	grants.Store
	mu      sync.Mutex
	armed   bool
	entered chan struct{}
	release chan struct{}
}

func (s *pausingStore) arm() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.armed, s.entered, s.release = true, make(chan struct{}), make(chan struct{})
}

func (s *pausingStore) ListGrants(ctx context.Context, f grants.GrantFilter) ([]grants.Grant, error) {
	s.mu.Lock()
	pause := s.armed
	s.armed = false
	entered, release := s.entered, s.release
	s.mu.Unlock()
	if pause {
		close(entered)
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.Store.ListGrants(ctx, f)
}

// waitExpired waits (bounded by ctx) until request id is expired in the store, and fails the
// test if it is not.
func waitExpired(t *testing.T, ctx context.Context, e *env, id string) {
	t.Helper()
	for e.request(t, id).State != grants.RequestExpired {
		select {
		case <-ctx.Done():
			t.Fatalf("request %s is %s at %s, want expired: the scheduler slept past its expiry", id, e.request(t, id).State, e.clock.Now().Format(time.RFC3339))
		case <-time.After(5 * time.Millisecond): // polling interval only; the outcome waits for no wall time
		}
	}
	if n := e.countAction(t, audit.ActionRequestExpired); n != 1 {
		t.Errorf("request.expired events = %d, want 1", n)
	}
}

// TestSchedulerShortensItsSleepForAnEarlierDeadline: the scheduler, armed for a far deadline
// (nothing known: a day's IdleWait), expires a request submitted with an earlier expiry when
// the clock reaches that expiry, without the clock ever reaching the far deadline, whether
// the request arrives while the scheduler sleeps (WakeAt wakes it) or while a pass is running
// after that pass has listed the pending requests (WakeAt keeps the deadline in armedState's
// early, and the sleep that follows ends no later).
func TestSchedulerShortensItsSleepForAnEarlierDeadline(t *testing.T) {
	t.Parallel()
	const far, ttl = 24 * time.Hour, 10 * time.Minute
	for _, duringPass := range []bool{false, true} {
		name := "while sleeping"
		if duringPass {
			name = "while a pass runs"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			st := &pausingStore{Store: e.store}
			b := broker.New(broker.Deps{Manager: e.mgr, Store: st, Clock: e.clock, Leases: e.store, Once: e.store, OnCall: e.oncall,
				Directory: e.dir, Notifier: e.notes, Groups: e.groups, Logger: testLogger(t),
				Options: broker.Options{IdleWait: far, PendingTTL: ttl}})
			if duringPass {
				st.arm() // the first pass stops after listing the (no) pending requests
			}
			ctx := waitCtx(t)
			done := make(chan error, 1)
			go func() { done <- b.Run(ctx) }()
			t.Cleanup(func() { <-done })

			if duringPass {
				select {
				case <-st.entered:
				case <-ctx.Done():
					t.Fatal("the scheduler's pass never listed the grants")
				}
			} else if err := e.clock.BlockUntil(ctx, 1); err != nil { // asleep for the far deadline
				t.Fatal(err)
			}
			r, err := b.Submit(t.Context(), broker.RequestInput{TeamID: team, UserID: alice, Resource: "prod-db",
				Duration: time.Hour, Reason: "checking replication lag"})
			if err != nil {
				t.Fatal(err)
			}
			if want := start.Add(ttl); !r.ExpiresAt.Equal(want) {
				t.Fatalf("request expires at %s, want %s", r.ExpiresAt, want)
			}
			if duringPass {
				close(st.release)
				// The pass saw no pending request; it ends and the scheduler sleeps.
				if err := e.clock.BlockUntil(ctx, 1); err != nil {
					t.Fatal(err)
				}
			}
			e.clock.Set(r.ExpiresAt)
			waitExpired(t, ctx, e, r.ID)
			if got := e.clock.Now(); !got.Before(start.Add(far)) {
				t.Fatalf("clock at %s, reached the far deadline", got)
			}
		})
	}
}
