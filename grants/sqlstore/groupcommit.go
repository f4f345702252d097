package sqlstore

import (
	"context"
	"errors"
	"sync"

	"github.com/accessbroker/accessbroker/grants"
)

// groupCommit writes concurrent changes in shared transactions (see Apply): 200 requests
// arriving at once, or 8 clients issuing grants, would otherwise queue behind one synced
// commit each. Callers that arrive while a commit is in flight are written together by the
// next one (leader-based group commit, no background goroutine). If a batch fails with
// ErrConflict (a stale version, a duplicate key, two changes of one row) or ErrPendingLimit
// (a requester over the pending cap) its changes are retried one by one in arrival order,
// which is what committing them one after the other would have done, so each caller gets its
// own answer.
type groupCommit struct {
	apply func(context.Context, *grants.Change) error // one transaction

	mu      sync.Mutex
	queue   []*commitItem
	leading bool
}

type commitItem struct {
	c    *grants.Change
	err  error
	done chan struct{} // closed when err is set
	lead chan struct{} // closed to hand leadership to this waiter
}

// maxBatch bounds one transaction.
const maxBatch = 256

func (g *groupCommit) submit(ctx context.Context, c *grants.Change) error {
	it := &commitItem{c: c, done: make(chan struct{}), lead: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, it)
	if g.leading {
		g.mu.Unlock()
		select {
		case <-it.done:
			return it.err
		case <-it.lead: // the previous leader finished its own item and handed over
		}
	} else {
		g.leading = true
		g.mu.Unlock()
	}
	// Leader: commit batches until our own item is done, then hand over.
	for {
		g.mu.Lock()
		n := min(len(g.queue), maxBatch)
		batch := g.queue[:n:n]
		g.queue = g.queue[n:]
		g.mu.Unlock()
		if len(batch) > 0 {
			g.commit(ctx, batch)
		}
		select {
		case <-it.done:
		default:
			continue
		}
		g.mu.Lock()
		if len(g.queue) == 0 {
			g.leading = false
		} else {
			close(g.queue[0].lead)
		}
		g.mu.Unlock()
		return it.err
	}
}

// commit writes a batch in one transaction, or one by one after a conflict. The leader's
// context bounds the write; a waiter whose own context ended still gets the outcome.
func (g *groupCommit) commit(ctx context.Context, batch []*commitItem) {
	finish := func(it *commitItem, err error) {
		it.err = err
		close(it.done)
	}
	if len(batch) == 1 {
		finish(batch[0], g.apply(context.WithoutCancel(ctx), batch[0].c))
		return
	}
	merged := &grants.Change{}
	for _, it := range batch {
		merged.Requests = append(merged.Requests, it.c.Requests...)
		merged.Grants = append(merged.Grants, it.c.Grants...)
		merged.Events = append(merged.Events, it.c.Events...)
	}
	err := g.apply(context.WithoutCancel(ctx), merged)
	if errors.Is(err, grants.ErrConflict) || errors.Is(err, grants.ErrPendingLimit) {
		// Apply wrote nothing; find the culprit(s) by committing each on its own. Versions
		// were not incremented, so the changes are still as their callers built them.
		for _, it := range batch {
			finish(it, g.apply(context.WithoutCancel(ctx), it.c))
		}
		return
	}
	for _, it := range batch {
		finish(it, err)
	}
}
