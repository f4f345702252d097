package grants_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// memWitness is an in-memory grants.Witness that can fail, hang or refuse to be read.
type memWitness struct {
	name      string
	mu        sync.Mutex
	held      []audit.Checkpoint
	failNext  int           // Publish fails this many more times
	hang      bool          // Publish blocks until its ctx ends
	readErr   error         // Checkpoints fails with this
	attempts  int           // Publish calls
	published chan struct{} // one token per Publish call, whatever its outcome
}

func newMemWitness(name string) *memWitness {
	return &memWitness{name: name, published: make(chan struct{}, 1000)}
}

func (w *memWitness) Name() string { return w.name }

func (w *memWitness) Publish(ctx context.Context, c audit.Checkpoint) error {
	w.mu.Lock()
	w.attempts++
	hang, fail := w.hang, w.failNext > 0
	if fail {
		w.failNext--
	} else if !hang {
		w.held = append(w.held, c)
	}
	w.mu.Unlock()
	w.published <- struct{}{}
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	if fail {
		return errors.New("503 SlowDown")
	}
	return nil
}

func (w *memWitness) Checkpoints(context.Context) ([]audit.Checkpoint, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.held), w.readErr
}

func (w *memWitness) seqs() []int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []int64
	for _, c := range w.held {
		out = append(out, c.Seq)
	}
	return out
}

// waitCalls waits for n more Publish calls (a safety deadline, not a timing assertion).
func (w *memWitness) waitCalls(t *testing.T, n int) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for range n {
		select {
		case <-w.published:
		case <-deadline.C:
			t.Fatalf("witness %s: Publish not called", w.name)
		}
	}
}

type alerts struct {
	mu     sync.Mutex
	lines  []string
	posted chan struct{}
}

func (a *alerts) PostAudit(_ context.Context, line string) error {
	a.mu.Lock()
	a.lines = append(a.lines, line)
	a.mu.Unlock()
	a.posted <- struct{}{}
	return nil
}

func (a *alerts) all() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.lines)
}

type witnessCounts struct {
	mu                sync.Mutex
	published, failed map[string]int
}

func (m *witnessCounts) WitnessPublished(w string) { m.mu.Lock(); m.published[w]++; m.mu.Unlock() }
func (m *witnessCounts) WitnessFailed(w string)    { m.mu.Lock(); m.failed[w]++; m.mu.Unlock() }

// startPublisher runs a publisher over ws on e's store; it stops at cleanup.
func startPublisher(t *testing.T, e *env, opts grants.PublisherOptions, ws ...grants.Witness) *grants.Publisher {
	t.Helper()
	opts.Jitter = func() float64 { return 0.5 }
	p := grants.NewPublisher(e.store, ws, e.clock, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("publisher Run: %v", err)
		}
	})
	return p
}

func newSigner(t *testing.T, e *env, p *grants.Publisher) *grants.Checkpointer {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(nil)
	c := grants.NewCheckpointer(e.store, key, e.clock, nil, 1, time.Hour)
	if p != nil {
		c.AfterSign(p.Enqueue)
	}
	return c
}

func mustSign(t *testing.T, c *grants.Checkpointer) {
	t.Helper()
	if ok, err := c.MaybeCheckpoint(context.Background()); err != nil || !ok {
		t.Fatalf("checkpoint: signed %v, %v", ok, err)
	}
}

func TestPublisherPublishesEachCheckpointToEveryWitness(t *testing.T) {
	e := newEnv(t)
	a, b := newMemWitness("a"), newMemWitness("b")
	p := startPublisher(t, e, grants.PublisherOptions{}, a, b)
	signer := newSigner(t, e, p)
	mustSign(t, signer) // seq 0
	e.issue(t, time.Hour)
	mustSign(t, signer) // seq 2
	a.waitCalls(t, 2)
	b.waitCalls(t, 2)
	for _, w := range []*memWitness{a, b} {
		if got := w.seqs(); !slices.Equal(got, []int64{0, 2}) {
			t.Errorf("witness %s holds seqs %v, want [0 2]", w.name, got)
		}
	}
	last, _, _ := e.store.LastCheckpoint(context.Background())
	deadline := time.NewTimer(10 * time.Second) // safety net; the state follows Publish's return
	defer deadline.Stop()
	for !p.Published(0, last) || !p.Published(1, last) {
		select {
		case <-deadline.C:
			t.Fatal("Published does not report the newest checkpoint as published")
		default:
			runtime.Gosched()
		}
	}
}

// TestPublisherRetriesAndAlertsOncePerOutage: a failing witness is retried with backoff on
// the clock, one alert per outage, one on recovery, every failure counted.
func TestPublisherRetriesAndAlertsOncePerOutage(t *testing.T) {
	e := newEnv(t)
	w := newMemWitness("s3://audit/prod/")
	w.failNext = 3
	al := &alerts{posted: make(chan struct{}, 100)}
	counts := &witnessCounts{published: map[string]int{}, failed: map[string]int{}}
	p := startPublisher(t, e, grants.PublisherOptions{BackoffBase: time.Second, BackoffMax: 4 * time.Second, Alerts: al, Metrics: counts}, w)
	signer := newSigner(t, e, p)
	mustSign(t, signer)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		w.waitCalls(t, 1)
		if err := e.clock.BlockUntil(ctx, 1); err != nil {
			t.Fatalf("publisher did not wait before retrying: %v", err)
		}
		e.clock.Advance(4 * time.Second)
	}
	w.waitCalls(t, 1)
	if got := w.seqs(); !slices.Equal(got, []int64{0}) {
		t.Fatalf("witness holds %v after recovery, want [0]", got)
	}
	// The recovery alert is posted after the successful Publish returns; wait for it.
	for range 2 {
		select {
		case <-al.posted:
		case <-ctx.Done():
			t.Fatalf("alerts so far: %q", al.all())
		}
	}
	lines := al.all()
	if len(lines) != 2 || !strings.Contains(lines[0], "s3://audit/prod/ is failing") || !strings.Contains(lines[0], "503 SlowDown") ||
		!strings.Contains(lines[1], "works again after 3 failed attempts") {
		t.Fatalf("alerts = %q, want one failing alert for the outage and one recovery", lines)
	}
	counts.mu.Lock()
	defer counts.mu.Unlock()
	if counts.failed["s3://audit/prod/"] != 3 || counts.published["s3://audit/prod/"] != 1 {
		t.Fatalf("metrics: failed %v published %v, want 3 and 1", counts.failed, counts.published)
	}
}

// TestPublisherRepublishesWhatAWitnessMissesOnStart: checkpoints signed while no publisher
// ran (a crash between commit and publication) reach the witness on the next start.
func TestPublisherRepublishesWhatAWitnessMissesOnStart(t *testing.T) {
	tests := []struct {
		name    string
		held    int   // how many of the store's checkpoints the witness already holds
		readErr error // the witness cannot be read
		junk    bool  // the witness also holds a foreign entry with a higher seq
		want    []int64
	}{
		{name: "a foreign entry with a high seq hides nothing", held: 1, junk: true, want: []int64{0, 1000, 2, 4}},
		{name: "witness has the first", held: 1, want: []int64{0, 2, 4}},
		{name: "witness is empty", held: 0, want: []int64{0, 2, 4}},
		{name: "witness is current", held: 3, want: []int64{0, 2, 4}},
		{name: "witness unreadable: the latest at least", readErr: errors.New("403 AccessDenied"), want: []int64{4}},
		{name: "witness torn: what it lacks", held: 2, readErr: fmt.Errorf("line 3 torn: %w", grants.ErrWitnessIncomplete), want: []int64{0, 2, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			signer := newSigner(t, e, nil)
			for i := range 3 {
				if i > 0 {
					e.issue(t, time.Hour)
				}
				mustSign(t, signer)
			}
			cps, err := e.store.ReadCheckpoints(context.Background())
			if err != nil || len(cps) != 3 {
				t.Fatalf("store checkpoints: %d, %v", len(cps), err)
			}
			w := newMemWitness("file w")
			w.held = slices.Clone(cps[:tt.held])
			if tt.junk {
				w.held = append(w.held, audit.Checkpoint{Seq: 1000, Time: cps[0].Time})
			}
			w.readErr = tt.readErr
			startPublisher(t, e, grants.PublisherOptions{}, w)
			w.waitCalls(t, len(tt.want)-boolInt(tt.junk)-tt.held*boolInt(tt.readErr == nil || errors.Is(tt.readErr, grants.ErrWitnessIncomplete)))
			if got := w.seqs(); !slices.Equal(got, tt.want) {
				t.Fatalf("witness holds %v, want %v", got, tt.want)
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestWitnessNeverBlocksGrants: with one witness hanging and another failing, issuing,
// revoking and checkpointing all complete.
func TestWitnessNeverBlocksGrants(t *testing.T) {
	e := newEnv(t)
	hung, failing := newMemWitness("hung"), newMemWitness("failing")
	hung.hang, failing.failNext = true, 1<<30
	p := startPublisher(t, e, grants.PublisherOptions{Timeout: time.Hour}, hung, failing)
	signer := newSigner(t, e, p)
	mustSign(t, signer)
	hung.waitCalls(t, 1) // the hung witness is now stuck inside Publish
	failing.waitCalls(t, 1)

	done := make(chan error, 1)
	go func() {
		g := e.issue(t, time.Hour)
		for range 5 {
			if _, err := signer.MaybeCheckpoint(context.Background()); err != nil {
				done <- err
				return
			}
		}
		_, err := e.mgr.Revoke(context.Background(), g.ID, grants.CauseManual, operator, "done")
		if err == nil {
			e.issue(t, time.Hour)
			_, err = signer.MaybeCheckpoint(context.Background())
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second): // a safety net for a deadlock, not a timing assertion
		t.Fatal("issuing, revoking or checkpointing waited on a hanging witness")
	}
}

func TestPublisherHoldingCountsWitnessesThatHaveTheCheckpoint(t *testing.T) {
	e := newEnv(t)
	signer := newSigner(t, e, nil)
	mustSign(t, signer)
	cp, _, _ := e.store.LastCheckpoint(context.Background())
	has, lacks, broken := newMemWitness("has"), newMemWitness("lacks"), newMemWitness("broken")
	has.held = []audit.Checkpoint{cp}
	broken.held, broken.readErr = []audit.Checkpoint{cp}, errors.New("connection refused")
	p := grants.NewPublisher(e.store, []grants.Witness{has, lacks, broken}, e.clock, grants.PublisherOptions{}) // not running
	if n, total := p.Holding(context.Background(), cp); n != 1 || total != 3 {
		t.Fatalf("Holding = %d of %d, want 1 of 3", n, total)
	}
}
