package audit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// parallelLog is a MemLog that says it can be read from several goroutines at once, and
// counts how many reads ran at once.
type parallelLog struct {
	*MemLog
	reads int

	mu                  sync.Mutex
	running, maxRunning int
}

func (p *parallelLog) ParallelReads() int { return p.reads }

func (p *parallelLog) ReadEvents(ctx context.Context, after int64, limit int) ([]Event, error) {
	p.mu.Lock()
	p.running++
	p.maxRunning = max(p.maxRunning, p.running)
	p.mu.Unlock()
	defer func() { p.mu.Lock(); p.running--; p.mu.Unlock() }()
	return p.MemLog.ReadEvents(ctx, after, limit)
}

// gatedLog calls gate before each read.
type gatedLog struct {
	*MemLog
	gate func(ctx context.Context, after int64)
}

func (g *gatedLog) ParallelReads() int { return 2 }

func (g *gatedLog) ReadEvents(ctx context.Context, after int64, limit int) ([]Event, error) {
	g.gate(ctx, after)
	return g.MemLog.ReadEvents(ctx, after, limit)
}

// verifyBoth verifies m one row after the other (a plain MemLog) and in parallel chunks, and
// fails unless both give the same Result, to the word.
func verifyBoth(t *testing.T, m *MemLog, opts VerifyOptions, reads, chunkPages int) Result {
	t.Helper()
	pub := PublicKeyOf(testKey())
	want, err := Verify(t.Context(), m, pub, opts)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	opts.chunkPages = chunkPages
	p := &parallelLog{MemLog: m, reads: reads}
	got, err := Verify(t.Context(), p, pub, opts)
	if err != nil {
		t.Fatalf("parallel Verify: %v", err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("parallel Verify (reads %d, chunks of %d pages of %d) differs (-one by one +parallel):\n%s", reads, chunkPages, opts.PageSize, d)
	}
	if p.running != 0 {
		t.Errorf("%d reads still running after Verify returned", p.running)
	}
	return got
}

// TestVerifyParallelMatchesSequential: every tamper probe gives the same verdict, first bad
// seq, detail and counts whether the log is checked row after row or in parallel chunks, for
// chunk and page sizes that put the damage anywhere in a chunk, at its start or across two.
func TestVerifyParallelMatchesSequential(t *testing.T) {
	t.Parallel()
	base := newProbeLog(t)
	for _, p := range probes() {
		for _, pageSize := range []int{1, 2, 4, 0} {
			for _, chunkPages := range []int{1, 2, 3} {
				t.Run(fmt.Sprintf("%s/page=%d/chunk=%d", p.name, pageSize, chunkPages), func(t *testing.T) {
					t.Parallel()
					m := cloneLog(base)
					if p.mutate != nil {
						p.mutate(t, m)
					}
					opts := p.opts
					opts.PageSize = pageSize
					for _, reads := range []int{2, 3} {
						verifyBoth(t, m, opts, reads, chunkPages)
					}
				})
			}
		}
	}
}

// TestVerifyParallelRandomTamper: random edits, deletions, swaps, duplicated rows and
// rewritten checkpoints anywhere in a 3,000-event log give the same Result both ways; and
// the intact log is read with reads running at once.
func TestVerifyParallelRandomTamper(t *testing.T) {
	t.Parallel()
	base := buildLog(t, 3000, 100)
	opts := VerifyOptions{PageSize: 50, RequireCheckpoint: true, CheckpointEvery: 100}
	res := verifyBoth(t, base, opts, 2, 2)
	if !res.OK || res.Events != 3000 || res.Checkpoints != 31 {
		t.Fatalf("intact log: %s", res)
	}
	if runtime.GOMAXPROCS(0) > 1 {
		// The first read waits until a read of the second chunk has begun: one row after
		// the other, that never happens (and the test hangs until its timeout).
		second := make(chan struct{})
		var once sync.Once
		g := &gatedLog{MemLog: base, gate: func(ctx context.Context, after int64) {
			switch {
			case after == 0:
				select {
				case <-second:
				case <-ctx.Done():
				}
			case after >= 100:
				once.Do(func() { close(second) })
			}
		}}
		o := opts
		o.chunkPages = 2 // chunks of 100 rows
		if res, err := Verify(t.Context(), g, PublicKeyOf(testKey()), o); err != nil || !res.OK {
			t.Fatalf("gated Verify: %s, %v", res, err)
		}
	}
	rng := rand.New(rand.NewPCG(5, 16))
	for i := range 60 {
		m := cloneLog(base)
		seq := 1 + rng.Int64N(3000)
		kind := rng.IntN(6)
		switch kind {
		case 0:
			at(t, m, seq).Reason = "edited"
		case 1:
			to := min(seq+rng.Int64N(5), 3000)
			deleteSeqs(t, m, seq, to)
		case 2:
			other := 1 + rng.Int64N(3000)
			if other != seq {
				swapContents(t, m, seq, other)
			}
		case 3:
			m.Events = slices.Insert(m.Events, int(seq), m.Events[seq-1])
		case 4:
			m.Checkpoints[rng.IntN(len(m.Checkpoints))].Hash[0] ^= 1
		case 5:
			// A consistent rewrite from seq on: every hash recomputed.
			at(t, m, seq).Reason = "rewritten"
			prev := Genesis
			if seq > 1 {
				prev = at(t, m, seq-1).Hash
			}
			for s := seq; s <= 3000; s++ {
				e := at(t, m, s)
				if err := Seal(prev, e); err != nil {
					t.Fatal(err)
				}
				prev = e.Hash
			}
		}
		t.Run(fmt.Sprintf("%d-kind%d-seq%d", i, kind, seq), func(t *testing.T) {
			for _, chunkPages := range []int{1, 3} {
				// A swap with itself, or a duplicated row at a page boundary (a Reader pages
				// by seq > after), leaves nothing to see.
				if got := verifyBoth(t, m, opts, 2, chunkPages); got.OK && kind != 2 && kind != 3 {
					t.Errorf("tampered log verifies: %s", got)
				}
			}
		})
	}
}
