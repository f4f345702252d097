package pgproxy

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
)

// batchTap records the size of each batch written and signals each write.
type batchTap struct {
	mu      sync.Mutex
	batches [][]*audit.Event
	wrote   chan struct{}
}

func (b *batchTap) Record(_ context.Context, events ...*audit.Event) error {
	b.mu.Lock()
	b.batches = append(b.batches, append([]*audit.Event(nil), events...))
	b.mu.Unlock()
	b.wrote <- struct{}{}
	return nil
}

func (b *batchTap) sizes() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	var n []int
	for _, x := range b.batches {
		n = append(n, len(x))
	}
	return n
}

// lingeringRecorder starts a recorder of batch 3 whose linger is timed by a fake clock, so
// that nothing depends on how long anything takes: the linger ends when the test advances
// the clock. It returns the recorder, its tap, the clock and the channel that stops it.
func lingeringRecorder(t *testing.T) (*recorder, *batchTap, *clocktest.Fake, chan struct{}) {
	t.Helper()
	tap := &batchTap{wrote: make(chan struct{}, 16)}
	p := &Proxy{cfg: Config{TextLimit: DefaultTextLimit}}
	r := newRecorder(tap, slog.New(slog.DiscardHandler), 3, time.Minute, func(error) { t.Error("fail called") }, p.statementEvent)
	clock := clocktest.New(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC))
	r.lingerClock = clock
	stop := make(chan struct{})
	go r.run(stop)
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-r.done
	})
	return r, tap, clock, stop
}

// waitWrite waits for the tap's next write (a hang guard, not a timing).
func (b *batchTap) waitWrite(t *testing.T) {
	t.Helper()
	select {
	case <-b.wrote:
	case <-time.After(20 * time.Second):
		t.Fatalf("no write; batches so far %v", b.sizes())
	}
}

// waitLingering waits until the recorder waits on its linger timer (a hang guard, not a
// timing).
func waitLingering(t *testing.T, clock *clocktest.Fake) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := clock.BlockUntil(ctx, 1); err != nil {
		t.Fatalf("the recorder does not linger: %v", err)
	}
}

// TestRecorderBatches: events arriving while the recorder lingers share one write; a full
// batch is written without waiting; a queued statement becomes its session.statement event
// in the recorder, in queue order; stopping writes what is left at once. The linger's clock
// never moves here.
func TestRecorderBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, tap, clock, stop := lingeringRecorder(t)
	g := &grants.Grant{ID: "g_1", Resource: "prod-db"}
	end := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	add := func(action audit.Action) {
		t.Helper()
		if err := r.add(ctx, &audit.Event{Action: action}); err != nil {
			t.Fatal(err)
		}
	}

	// A full batch (3) is written without waiting for the linger.
	add(ActionSessionStarted)
	add(ActionSessionStatement)
	add(ActionSessionEnded)
	tap.waitWrite(t)

	// One event: the recorder takes it and waits for more; what comes meanwhile stays
	// queued (no wake-up of the recorder per event) and goes in the same write, made at once
	// when the recorder is stopped.
	add(ActionSessionStarted)
	waitLingering(t, clock)
	if err := r.addStatement(ctx, &queuedStatement{sessionID: "s_1", grant: g, st: Statement{Seq: 1, Protocol: "simple", Text: "SELECT 1", Start: end, End: end}}); err != nil {
		t.Fatal(err)
	}
	for range 50 { // a recorder taking events one by one takes it within this
		if len(r.ch) != 1 {
			t.Fatalf("the lingering recorder took a queued event before its batch was due (queue %d)", len(r.ch))
		}
		time.Sleep(time.Millisecond)
	}
	if got := tap.sizes(); len(got) != 1 {
		t.Fatalf("written before the linger ended: batches %v", got)
	}
	close(stop)
	tap.waitWrite(t)
	<-r.done

	if got, want := tap.sizes(), []int{3, 2}; !slices.Equal(got, want) {
		t.Fatalf("batch sizes %v, want %v", got, want)
	}
	st := tap.batches[1][1]
	if st.Action != ActionSessionStatement || st.GrantID != "g_1" || st.Evidence["session_id"] != "s_1" || st.Evidence["text"] != "SELECT 1" || !st.Time.Equal(end) || !strings.HasPrefix(st.ID, grants.NewOrderedID("e", end)[:12]) {
		t.Fatalf("statement event %+v", st)
	}
}

// TestRecorderLingerEndsAtItsDeadline: a batch that does not fill is written when its
// linger ends, not before, with what was queued meanwhile; one that fills while the recorder
// lingers is written at once, its timer stopped, the clock unmoved.
func TestRecorderLingerEndsAtItsDeadline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, tap, clock, _ := lingeringRecorder(t)
	if r.linger != defaultLinger {
		t.Fatalf("linger %s, want the default %s", r.linger, defaultLinger)
	}
	add := func() {
		t.Helper()
		if err := r.add(ctx, &audit.Event{Action: ActionSessionStatement}); err != nil {
			t.Fatal(err)
		}
	}

	// A partial batch: written when the linger's deadline comes.
	add()
	waitLingering(t, clock)
	add() // queued while the recorder lingers: 2 of 3, not a batch
	clock.Advance(defaultLinger - time.Millisecond)
	if n := clock.Waiters(); n != 1 {
		t.Fatalf("a millisecond before the linger's deadline the recorder has %d timers pending, want its linger's", n)
	}
	if got := tap.sizes(); len(got) != 0 {
		t.Fatalf("written before the linger's deadline: batches %v", got)
	}
	clock.Advance(time.Millisecond)
	tap.waitWrite(t)
	if got := tap.sizes(); !slices.Equal(got, []int{2}) {
		t.Fatalf("at the linger's deadline: batches %v, want [2]", got)
	}

	// A full batch: written at once, without the clock moving.
	add()
	waitLingering(t, clock)
	add()
	add()
	tap.waitWrite(t)
	if got := tap.sizes(); !slices.Equal(got, []int{2, 3}) {
		t.Fatalf("after a full batch: batches %v, want [2 3]", got)
	}
	if n := clock.Waiters(); n != 0 { // stopped before the batch was written
		t.Fatalf("the full batch's linger timer is still pending (%d)", n)
	}
}

// TestEventIDsSortByTime: the proxy's events (built by the proxy and by the recorder) carry
// ids that sort as their times do, across digit carries, and as they were made within one
// millisecond (a frozen clock too), unique, so that a busy proxy's events append at the end
// of the audit table's unique id index.
func TestEventIDsSortByTime(t *testing.T) {
	t.Parallel()
	g := grants.Grant{ID: "g_aaaaaaaaaaaaaaaa", Resource: "prod-db"}
	base := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	clock := clocktest.New(base)
	p := &Proxy{cfg: Config{TextLimit: DefaultTextLimit, Clock: clock}}
	var ids []string
	seen := map[string]bool{}
	for i, d := range []time.Duration{0, 0, 0, time.Millisecond, 31 * time.Millisecond, 32 * time.Millisecond, 1023 * time.Millisecond,
		1024 * time.Millisecond, time.Hour, 24 * 365 * time.Hour} {
		at := base.Add(d)
		st := p.statementEvent(&queuedStatement{sessionID: "s_x", grant: &g, st: Statement{Seq: i + 1, Start: at, End: at}})
		clock.Set(at)
		ev := p.event(ActionSessionEnded, personActor(g), g, nil)
		for _, e := range []*audit.Event{st, ev} {
			if !strings.HasPrefix(e.ID, "e_") || len(e.ID) != 28 {
				t.Fatalf("event id %q: want e_ and 26 digits", e.ID)
			}
			if seen[e.ID] {
				t.Fatalf("event id %q twice", e.ID)
			}
			seen[e.ID] = true
			ids = append(ids, e.ID)
		}
	}
	if !slices.IsSorted(ids) {
		t.Errorf("event ids do not sort by time: %v", ids)
	}
}
