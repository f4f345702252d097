package grants_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// memSink is an in-memory grants.Sink recording which process delivered each seq.
type memSink struct {
	mu  sync.Mutex
	got map[int64][]string // seq → deliverers, one per copy
	seq []int64            // in delivery order
}

func newMemSink() *memSink { return &memSink{got: map[int64][]string{}} }

func (s *memSink) Name() string { return "https https://siem.example.com/in" }

// as is the sink as seen by one process, so deliveries are attributed to it.
func (s *memSink) as(holder string) grants.Sink { return holderSink{s, holder} }

type holderSink struct {
	*memSink
	holder string
}

func (h holderSink) Deliver(_ context.Context, evs []audit.Event) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range evs {
		h.got[e.Seq] = append(h.got[e.Seq], h.holder)
		h.seq = append(h.seq, e.Seq)
	}
	return nil
}

func (s *memSink) delivered() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seq)
}

func (s *memSink) by(seq int64) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got[seq])
}

var eventIDs atomic.Int64

func appendN(t *testing.T, st *sqlstore.Store, clock grants.Clock, n int) {
	t.Helper()
	for range n {
		ev := &audit.Event{ID: fmt.Sprintf("e-sink-%d", eventIDs.Add(1)), Time: clock.Now(),
			Actor: audit.Actor{Kind: audit.ActorSystem, ID: "test"}, Action: audit.ActionSummaryPosted}
		if err := st.Apply(context.Background(), &grants.Change{Events: []*audit.Event{ev}}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStreamerOneReplicaDelivers: two processes sharing a store and an https-like sink
// (no tail of its own) deliver each event once between them, under the sink's lease; when
// the holder stops, the other takes over after the lease lapses and continues from the
// shared cursor, sending nothing twice.
func TestStreamerOneReplicaDelivers(t *testing.T) {
	clock := clocktest.New(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	st, err := sqlstore.Open(context.Background(), "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sink := newMemSink()
	opts := func(holder string) grants.StreamerOptions {
		return grants.StreamerOptions{Poll: time.Second, Timeout: 5 * time.Second, Leaser: st, Holder: holder, Jitter: func() float64 { return 0 }}
	}
	run := func(holder string) (stop func()) {
		s := grants.NewStreamer(st, []grants.StreamSink{{Sink: sink.as(holder), BatchSize: 4}}, clock, opts(holder))
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { s.Run(ctx) })
		stop = func() { cancel(); wg.Wait() }
		t.Cleanup(stop)
		return stop
	}
	drive := func(what string, waiters int, cond func() bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for !cond() {
			if err := clock.BlockUntil(ctx, waiters); err != nil {
				t.Fatalf("gave up waiting for %s (delivered %v)", what, sink.delivered())
			}
			if !cond() {
				clock.Advance(time.Second)
			}
		}
	}

	appendN(t, st, clock, 10)
	stopA := run("replica-a")
	drive("replica-a to deliver 10", 1, func() bool { return len(sink.delivered()) == 10 })
	run("replica-b")
	appendN(t, st, clock, 6)
	drive("16 delivered with both running", 2, func() bool { return len(sink.delivered()) == 16 })
	for seq := int64(1); seq <= 16; seq++ {
		if by := sink.by(seq); len(by) != 1 || by[0] != "replica-a" {
			t.Fatalf("seq %d delivered by %v; want once, by the lease holder replica-a", seq, by)
		}
	}

	stopA()
	appendN(t, st, clock, 5)
	// replica-b takes over once replica-a's lease (timeout + 3 polls + 10s) lapses.
	drive("replica-b to take over", 1, func() bool { return len(sink.delivered()) == 21 })
	if d := sink.delivered(); !slices.Equal(d, seqs(1, 21)) {
		t.Fatalf("deliveries %v; want 1..21 in order, once each", d)
	}
	for seq := int64(17); seq <= 21; seq++ {
		if by := sink.by(seq); len(by) != 1 || by[0] != "replica-b" {
			t.Fatalf("seq %d delivered by %v; want once by replica-b", seq, by)
		}
	}
}

// TestStreamerFlushInterval: with a flush interval a partial batch waits until that long
// after the previous delivery; a full batch goes at once.
func TestStreamerFlushInterval(t *testing.T) {
	clock := clocktest.New(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	st, err := sqlstore.Open(context.Background(), "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sink := newMemSink()
	s := grants.NewStreamer(st, []grants.StreamSink{{Sink: sink.as("p"), BatchSize: 5, FlushInterval: time.Minute}}, clock,
		grants.StreamerOptions{Poll: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	hctx, hcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer hcancel()
	waitTimer := func() {
		t.Helper()
		if err := clock.BlockUntil(hctx, 1); err != nil {
			t.Fatal("the streamer never waited")
		}
	}

	appendN(t, st, clock, 2)
	s.Wake()
	for len(sink.delivered()) < 2 { // the first partial batch goes at once
		waitTimer()
		clock.Advance(time.Second)
	}
	appendN(t, st, clock, 2)
	s.Wake()
	waitTimer()
	clock.Advance(30 * time.Second)
	waitTimer()
	if n := len(sink.delivered()); n != 2 {
		t.Fatalf("a partial batch went %d s into a 60 s flush interval (%d delivered)", 30, n)
	}
	appendN(t, st, clock, 4) // now 6 waiting: a full batch of 5 goes at once
	for len(sink.delivered()) < 7 {
		s.Wake()
		// Give the streamer real time to look before the fake clock moves: on a loaded
		// machine it may not have run yet, and every second moved brings the flush
		// interval nearer.
		for wait := time.Now().Add(5 * time.Second); len(sink.delivered()) < 7 && time.Now().Before(wait); {
			time.Sleep(10 * time.Millisecond)
		}
		waitTimer()
		if len(sink.delivered()) < 7 {
			clock.Advance(time.Second)
		}
		if clock.Now().Sub(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)) > 50*time.Second {
			break
		}
	}
	if n := len(sink.delivered()); n != 7 {
		t.Fatalf("a full batch waited for the flush interval (%d delivered, want 7)", n)
	}
}

func seqs(from, to int64) []int64 {
	var out []int64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}
