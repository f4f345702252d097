package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

func requestChange(key string) *grants.Change {
	return &grants.Change{
		Requests: []grants.RequestWrite{{Request: &grants.Request{ID: "r-" + key, ExternalKey: key}, Create: true}},
		Events:   []*audit.Event{{Action: audit.ActionRequestCreated}},
	}
}

// TestGroupCommitBatchesWaiters: callers that arrive while a commit is in flight are written by
// the next commit together, and each gets its own answer; a conflict in a batch is retried one
// change at a time so that only the culprit fails.
func TestGroupCommitBatchesWaiters(t *testing.T) {
	t.Parallel()
	const waiters = 20
	inFirst, releaseFirst := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var txSizes []int
	seen := map[string]bool{}
	g := &groupCommit{apply: func(_ context.Context, c *grants.Change, _ func() []*audit.Event) error {
		mu.Lock()
		first := len(txSizes) == 0
		txSizes = append(txSizes, len(c.Requests))
		mu.Unlock()
		if first {
			close(inFirst)
			<-releaseFirst
		}
		mu.Lock()
		defer mu.Unlock()
		batch := map[string]bool{}
		for _, rw := range c.Requests {
			k := rw.Request.ExternalKey
			if seen[k] || batch[k] {
				return fmt.Errorf("insert request %s: %w", k, grants.ErrConflict)
			}
			batch[k] = true
		}
		for k := range batch {
			seen[k] = true
		}
		return nil
	}}

	errs := make(chan error, 1)
	go func() { errs <- g.submit(t.Context(), requestChange("lead")) }()
	<-inFirst
	var wg sync.WaitGroup
	results := make([]error, waiters)
	for i := range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Two callers per key: one of each pair is a duplicate.
			results[i] = g.submit(t.Context(), requestChange(fmt.Sprintf("k%d", i/2)))
		}()
	}
	// Every waiter must be queued before the first commit ends, or they would not share one.
	for spins := 0; ; spins++ {
		g.mu.Lock()
		n := len(g.queue)
		g.mu.Unlock()
		if n == waiters {
			break
		}
		if spins == 50_000_000 {
			t.Fatalf("%d of %d callers queued behind the commit in flight", n, waiters)
		}
		runtime.Gosched()
	}
	close(releaseFirst)
	wg.Wait()
	if err := <-errs; err != nil {
		t.Fatalf("leader: %v", err)
	}
	ok, dup := 0, 0
	for i, err := range results {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, grants.ErrConflict):
			dup++
		default:
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if ok != waiters/2 || dup != waiters/2 {
		t.Errorf("ok = %d, conflicts = %d; want %d each", ok, dup, waiters/2)
	}
	// The lead's own transaction, then the merged batch of every waiter (which conflicted),
	// then one transaction per waiter.
	if len(txSizes) != 2+waiters || txSizes[0] != 1 || txSizes[1] != waiters {
		t.Errorf("transaction sizes = %v; want [1 %d] then %d of 1", txSizes, waiters, waiters)
	}
}
