package slack

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// gatedStore holds every Apply until released, then commits it, and numbers the commit of
// the change that creates a request in the sequence shared with the answer's writes.
type gatedStore struct {
	*sqlstore.Store
	entered   chan *grants.Change // each change as its Apply is held
	release   chan struct{}
	seq       *atomic.Int64
	committed atomic.Int64 // seq at the moment the request's change committed (0: not yet)
}

func (g *gatedStore) Apply(ctx context.Context, c *grants.Change) error {
	g.entered <- c
	<-g.release
	err := g.Store.Apply(ctx, c)
	if err == nil && createsRequest(c) {
		// The request's commit, not a later one of the background work: that one may
		// come before the test looks, after the answer.
		g.committed.CompareAndSwap(0, g.seq.Add(1))
	}
	return err
}

// createsRequest reports that c creates a request with its request.created event.
func createsRequest(c *grants.Change) bool {
	created := false
	for _, e := range c.Events {
		created = created || e.Action == audit.ActionRequestCreated
	}
	for _, rw := range c.Requests {
		if rw.Create && created {
			return true
		}
	}
	return false
}

// orderedRecorder is a ResponseWriter that numbers its first write in the shared sequence.
type orderedRecorder struct {
	*httptest.ResponseRecorder
	seq     *atomic.Int64
	mu      sync.Mutex
	written int64  // seq of the first WriteHeader or Write (0: nothing written)
	atFirst func() // if set, called as the first write begins, before it goes out
}

func (r *orderedRecorder) mark() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.written == 0 {
		r.written = r.seq.Add(1)
		if r.atFirst != nil {
			r.atFirst()
		}
	}
}

func (r *orderedRecorder) setAtFirst(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.atFirst = f
}

func (r *orderedRecorder) first() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.written
}

func (r *orderedRecorder) WriteHeader(code int) { r.mark(); r.ResponseRecorder.WriteHeader(code) }
func (r *orderedRecorder) Write(b []byte) (int, error) {
	r.mark()
	return r.ResponseRecorder.Write(b)
}

// TestAckOnlyAfterTheRequestIsDurable: while the store holds the request's write, nothing of
// the answer is written; the answer comes after the request row and its request.created
// event are committed: the store's Apply has returned, and the row is in the database for
// another connection to read as the answer's first byte goes out.
func TestAckOnlyAfterTheRequestIsDurable(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	var seq atomic.Int64
	gs := &gatedStore{Store: e.store, entered: make(chan *grants.Change), release: make(chan struct{}), seq: &seq}
	b := broker.New(broker.Deps{Manager: e.mgr, Store: gs, Clock: e.clock, Leases: e.store, Once: e.store, OnCall: e.oncall,
		Directory: e.dir, Notifier: e.n})
	v, err := NewVerifier(e.clock, 0, signingSecret)
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(HandlerOptions{Verifier: v, Service: b, Teller: e.n, Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	rec := &orderedRecorder{ResponseRecorder: httptest.NewRecorder(), seq: &seq}
	req := e.signed(CommandsPath, e.commandBody(alice, "prod-db 1h checking replication lag"), e.clock.Now())
	done := make(chan struct{})
	go func() { defer close(done); h.Commands(rec, req) }()

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a hang guard, not a timing
	defer cancel()
	var held string   // the id of the request whose write is held
	var readErr error // GetRequest(held) as the answer began (set once, under rec.mu)
	select {
	case c := <-gs.entered:
		if !createsRequest(c) {
			t.Fatalf("the first write held is not the request's: %d requests, %d events", len(c.Requests), len(c.Events))
		}
		held = c.Requests[0].Request.ID
	case <-ctx.Done():
		t.Fatal("the request was never written")
	}
	// The store's readers see committed rows only.
	rec.setAtFirst(func() { _, readErr = e.store.GetRequest(context.WithoutCancel(ctx), held) })
	if n := rec.first(); n != 0 {
		t.Fatalf("the answer was written (%q) while the request's write was held", rec.Body.String())
	}
	close(gs.release)
	// The background work (on-call check, …) writes through the same store.
	go func() {
		for {
			select {
			case <-gs.entered:
			case <-ctx.Done():
				return
			}
		}
	}()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the handler never answered")
	}
	if c, w := gs.committed.Load(), rec.first(); c == 0 || w == 0 || w < c {
		t.Fatalf("commit #%d, first write of the answer #%d: the answer must come after the commit", c, w)
	}
	rec.mu.Lock()
	err = readErr
	rec.mu.Unlock()
	if err != nil {
		t.Fatalf("as the answer began, request %s was not committed: %v", held, err)
	}
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "received") {
		t.Fatalf("answer = %d %s", rec.Code, rec.Body.String())
	}
	if id := requestIDIn(rec.Body.String()); id != held {
		t.Fatalf("the answer names request %q, the held write was %s's", id, held)
	}
	if _, err := e.store.GetRequest(t.Context(), held); err != nil {
		t.Fatalf("request %q named in the answer: %v", held, err)
	}
	if err := h.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

func requestIDIn(s string) string {
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == '`' || r == ' ' || r == '"' }) {
		if grants.ValidID("r", f) {
			return f
		}
	}
	return ""
}

// TestBackgroundWorkWaitsForAnswersInFlight: background work started while answers are being
// written waits for them (in a burst of commands the answers Slack waits for go first), and
// starts after AckFirst at the latest when answers keep coming.
func TestBackgroundWorkWaitsForAnswersInFlight(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		end  func(e *e2e) // what lets the background work start
	}{
		{"the answers end", func(e *e2e) { e.h.acks.leave() }},
		{"AckFirst passes", func(e *e2e) { e.clock.Advance(time.Second) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newE2E(t)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a hang guard
			defer cancel()
			e.h.acks.enter() // an answer is being written
			ran := make(chan struct{})
			e.h.background(httptest.NewRequest(http.MethodPost, CommandsPath, nil), "test", func(context.Context) error {
				close(ran)
				return nil
			})
			// The job is waiting on the AckFirst timer, not running.
			if err := e.clock.BlockUntil(ctx, 1); err != nil {
				t.Fatalf("the background job does not wait for the answer in flight: %v", err)
			}
			select {
			case <-ran:
				t.Fatal("the background job ran while an answer was in flight")
			default:
			}
			tc.end(e)
			select {
			case <-ran:
			case <-ctx.Done():
				t.Fatal("the background job never ran")
			}
			if err := e.h.Wait(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestAckGateCounts: quiet is closed exactly while nothing is in flight.
func TestAckGateCounts(t *testing.T) {
	t.Parallel()
	g := newAckGate()
	isQuiet := func() bool {
		select {
		case <-g.quiet():
			return true
		default:
			return false
		}
	}
	if !isQuiet() {
		t.Fatal("a new gate is not quiet")
	}
	g.enter()
	g.enter()
	q := g.quiet()
	g.leave()
	if isQuiet() {
		t.Fatal("quiet with one answer still in flight")
	}
	g.leave()
	select {
	case <-q: // the channel taken while busy is closed when the last answer ends
	default:
		t.Fatal("quiet not closed when the last answer ended")
	}
	if !isQuiet() {
		t.Fatal("not quiet after every answer ended")
	}
}
