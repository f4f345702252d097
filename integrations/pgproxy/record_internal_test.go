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

// TestRecorderBatches: events arriving while the recorder lingers share one write; a full
// batch is written without waiting; a queued statement becomes its session.statement event
// in the recorder, in queue order; stopping writes what is left at once. The linger is an
// hour here, so nothing depends on how long anything takes.
func TestRecorderBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tap := &batchTap{wrote: make(chan struct{}, 16)}
	p := &Proxy{cfg: Config{TextLimit: DefaultTextLimit}}
	r := newRecorder(tap, slog.New(slog.DiscardHandler), 3, time.Minute, func(error) { t.Error("fail called") }, p.statementEvent)
	r.linger = time.Hour
	lingering := make(chan struct{}, 16)
	r.lingering = func() { lingering <- struct{}{} }
	stop := make(chan struct{})
	go r.run(stop)
	wait := func() {
		t.Helper()
		select {
		case <-tap.wrote:
		case <-time.After(20 * time.Second):
			t.Fatalf("no write; batches so far %v", tap.sizes())
		}
	}
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
	wait()

	// One event: the recorder takes it and waits for more; what comes meanwhile stays
	// queued (no wake-up of the recorder per event) and goes in the same write, made at once
	// when the recorder is stopped.
	for len(lingering) > 0 { // from the first batch
		<-lingering
	}
	add(ActionSessionStarted)
	<-lingering
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
	wait()
	<-r.done

	if got, want := tap.sizes(), []int{3, 2}; !slices.Equal(got, want) {
		t.Fatalf("batch sizes %v, want %v", got, want)
	}
	st := tap.batches[1][1]
	if st.Action != ActionSessionStatement || st.GrantID != "g_1" || st.Evidence["session_id"] != "s_1" || st.Evidence["text"] != "SELECT 1" || !st.Time.Equal(end) || !strings.HasPrefix(st.ID, grants.NewOrderedID("e", end)[:12]) {
		t.Fatalf("statement event %+v", st)
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
