package sink_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// hangGuard bounds every wait of these tests; it only stops a hung test, it measures nothing.
const hangGuard = 60 * time.Second

// env is a real SQLite store on a fake clock.
type env struct {
	t     *testing.T
	clock *clocktest.Fake
	store *sqlstore.Store
	n     int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	clock := clocktest.New(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	st, err := sqlstore.Open(context.Background(), "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), clock, nil)
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return &env{t: t, clock: clock, store: st}
}

// appendEvents commits n audit events (one change each, as the broker would).
func (e *env) appendEvents(n int) {
	e.t.Helper()
	for range n {
		e.n++
		ev := &audit.Event{ID: fmt.Sprintf("e-test-%d", e.n), Time: e.clock.Now(), Actor: audit.Actor{Kind: audit.ActorUser, ID: "U0ALICE", Email: "alice@example.com"},
			Action: audit.ActionGrantIssued, GrantID: fmt.Sprintf("g-%d", e.n), Resource: "prod-db", Reason: "incident #42",
			Evidence: map[string]string{"person": "alice@example.com"}}
		if err := e.store.Apply(context.Background(), &grants.Change{Events: []*audit.Event{ev}}); err != nil {
			e.t.Fatalf("append event %d: %v", e.n, err)
		}
	}
}

// running is a Streamer running in the background until stop.
type running struct {
	s    *grants.Streamer
	stop func()
}

func start(t *testing.T, s *grants.Streamer) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.Run(ctx) })
	r := &running{s: s, stop: func() { cancel(); wg.Wait() }}
	t.Cleanup(r.stop)
	return r
}

// driveUntil advances the fake clock by step each time the streamer waits on it, until cond
// holds (checked after every step) or the hang guard ends.
func (e *env) driveUntil(what string, step time.Duration, cond func() bool) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	for !cond() {
		if err := e.clock.BlockUntil(ctx, 1); err != nil {
			e.t.Fatalf("gave up waiting for %s", what)
		}
		if cond() {
			return
		}
		e.clock.Advance(step)
	}
}

// seqs returns 1..n.
func seqs(from, to int64) []int64 {
	var out []int64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}
