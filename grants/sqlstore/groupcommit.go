package sqlstore

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// groupCommit writes concurrent changes in shared transactions (see Apply): 200 requests
// arriving at once, or 8 clients issuing grants, would otherwise queue behind one synced
// commit each. Callers that arrive while a commit is in flight are written together by the
// next one (leader-based group commit, no background goroutine). If a batch fails with
// ErrConflict (a stale version, a duplicate key, two changes of one row) or ErrPendingLimit
// (a requester over the pending cap) its changes are retried one by one in arrival order,
// which is what committing them one after the other would have done, so each caller gets its
// own answer. The same holds for a batch that PostgreSQL refuses for a value in one change
// (see changeAtFault). Errors of the database itself (unreachable, out of space, a COMMIT
// whose outcome is unknown) are every caller's answer.
type groupCommit struct {
	// apply writes a change in one transaction. If late is not nil, apply may call it once
	// the transaction holds the audit chain's lock, and then appends the events it returns
	// after the change's own: those of waiting changes that write nothing else (see commit).
	apply func(ctx context.Context, c *grants.Change, late func() []*audit.Event) error

	// gather makes a leader yield once before it takes its batch (see submit). PostgreSQL
	// only: there every transaction costs the chain lock's round trip and flush whatever it
	// carries. On SQLite its effect could not be told from the shared machine's noise, so
	// SQLite keeps the previous behaviour.
	gather bool

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
		case <-it.lead: // the previous leader finished its batch and handed over
		}
	} else {
		g.leading = true
		g.mu.Unlock()
	}
	if g.gather {
		// The previous batch's callers were just woken: let those that go on writing queue
		// up behind us before we take the batch. Without this the new leader runs first (Go
		// runs the goroutine woken last first), or, when no one was waiting, the first of
		// them to come back leads alone; the writers then settle into groups that alternate
		// (4.6 instead of 7 events per commit with 8 writers on one PostgreSQL store).
		// Alone, this costs nothing: no other goroutine wants to run.
		runtime.Gosched()
	}
	// Leader: our item is the queue's first (the queue was empty, or the previous leader
	// handed over to its first waiter). Take it and those behind it, commit, hand over.
	g.mu.Lock()
	n := min(len(g.queue), maxBatch)
	batch := g.queue[:n:n]
	g.queue = g.queue[n:]
	g.mu.Unlock()
	g.commit(ctx, batch)
	g.mu.Lock()
	if len(g.queue) == 0 {
		g.leading = false
	} else {
		close(g.queue[0].lead)
	}
	g.mu.Unlock()
	return it.err
}

// changeAtFault reports that a batch failed because of what one of its changes holds, not
// because of the database: a conflict (a stale version, a duplicate key, two changes of one
// row), a pending limit, or a value PostgreSQL refuses (SQLSTATE class 22, data exception,
// e.g. a NUL byte in a text; class 23, integrity constraint). Nothing of the batch was
// written, and the other changes must not fail for it.
func changeAtFault(err error) bool {
	if errors.Is(err, grants.ErrConflict) || errors.Is(err, grants.ErrPendingLimit) {
		return true
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23"))
}

// commit writes a batch in one transaction, or one by one after a conflict. The leader's
// context bounds the write; a waiter whose own context ended still gets the outcome.
//
// Changes that carry only events and wait at the head of the queue when the transaction
// takes the chain lock join it there (see apply): they write no rows, so they need nothing
// the lock's holder could wait for. Only the head of the queue joins, so changes still
// commit in arrival order.
func (g *groupCommit) commit(ctx context.Context, batch []*commitItem) {
	finish := func(it *commitItem, err error) {
		it.err = err
		close(it.done)
	}
	var joined []*commitItem
	var joinedEvents []*audit.Event
	pulled := false
	late := func() []*audit.Event {
		if pulled { // a retried transaction carries the same changes again
			return joinedEvents
		}
		pulled = true
		g.mu.Lock()
		n := 0
		for n < len(g.queue) && len(batch)+n < maxBatch && eventsOnly(g.queue[n].c) {
			n++
		}
		joined = g.queue[:n:n]
		g.queue = g.queue[n:]
		g.mu.Unlock()
		for _, it := range joined {
			joinedEvents = append(joinedEvents, it.c.Events...)
		}
		return joinedEvents
	}
	merged := batch[0].c
	if len(batch) > 1 {
		merged = &grants.Change{}
		for _, it := range batch {
			merged.Requests = append(merged.Requests, it.c.Requests...)
			merged.Grants = append(merged.Grants, it.c.Grants...)
			merged.Events = append(merged.Events, it.c.Events...)
		}
	}
	err := g.apply(context.WithoutCancel(ctx), merged, late)
	all := append(batch, joined...)
	if len(all) > 1 && changeAtFault(err) {
		// Apply wrote nothing; find the culprit(s) by committing each on its own. Versions
		// were not incremented, so the changes are still as their callers built them.
		for _, it := range all {
			finish(it, g.apply(context.WithoutCancel(ctx), it.c, nil))
		}
		return
	}
	for _, it := range all {
		finish(it, err)
	}
}

// eventsOnly reports that c writes no request or grant.
func eventsOnly(c *grants.Change) bool { return len(c.Requests) == 0 && len(c.Grants) == 0 }
