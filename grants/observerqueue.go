package grants

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// ObserverQueue is an Observer that hands each notification to another Observer (the Slack
// notifier) from a goroutine of its own, so that the revoker never waits on it: a hung chat
// service delays the notices, never the next revocation. At most Size notifications wait;
// beyond that the oldest is dropped and logged (the revocation itself is recorded and
// audited whatever happens to its notice).
type ObserverQueue struct {
	next Observer
	size int
	log  *slog.Logger

	mu      sync.Mutex
	queue   []func(context.Context)
	dropped int
	wake    chan struct{}
	closed  bool
	done    chan struct{}
	ctx     context.Context // each notice's context; cancelled when Close gives up
	cancel  context.CancelFunc
}

// noticeTimeout bounds one notice: a hung chat service must not stop the ones after it.
const noticeTimeout = 30 * time.Second

// NewObserverQueue starts a queue of at most size notifications in front of next. Close it to
// stop.
func NewObserverQueue(next Observer, size int, logger *slog.Logger) *ObserverQueue {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	q := &ObserverQueue{next: next, size: max(size, 1), log: logger, wake: make(chan struct{}, 1), done: make(chan struct{})}
	q.ctx, q.cancel = context.WithCancel(context.Background())
	go q.run()
	return q
}

// GrantRevoked implements Observer without blocking.
func (q *ObserverQueue) GrantRevoked(ctx context.Context, g Grant) {
	q.push(func(ctx context.Context) { q.next.GrantRevoked(ctx, g) })
}

// RevokeFailed implements Observer without blocking.
func (q *ObserverQueue) RevokeFailed(ctx context.Context, g Grant, err error) {
	q.push(func(ctx context.Context) { q.next.RevokeFailed(ctx, g, err) })
}

func (q *ObserverQueue) push(fn func(context.Context)) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	if len(q.queue) >= q.size {
		q.queue = q.queue[1:]
		q.dropped++
		if q.dropped == 1 || q.dropped%1000 == 0 {
			q.log.Warn("revocation notices are backing up; dropping the oldest (the revocations are recorded and audited)",
				"dropped", q.dropped, "queue", q.size)
		}
	}
	q.queue = append(q.queue, fn)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *ObserverQueue) run() {
	defer close(q.done)
	for {
		q.mu.Lock()
		if len(q.queue) == 0 {
			closed := q.closed
			q.mu.Unlock()
			if closed {
				return
			}
			<-q.wake
			continue
		}
		fn := q.queue[0]
		q.queue = q.queue[1:]
		q.mu.Unlock()
		ctx, cancel := context.WithTimeout(q.ctx, noticeTimeout)
		fn(ctx)
		cancel()
	}
}

// Close stops taking notifications and waits until the queued ones are delivered or ctx
// ends (those left are dropped).
func (q *ObserverQueue) Close(ctx context.Context) {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	select {
	case <-q.done:
	case <-ctx.Done():
		q.mu.Lock()
		n := len(q.queue)
		q.queue = nil
		q.mu.Unlock()
		if n > 0 {
			q.log.Warn("revocation notices not delivered at shutdown", "count", n)
		}
		q.cancel() // the notice in delivery is cancelled too
		select {
		case <-q.done:
		case <-time.After(time.Second): // a notice that ignores its context is left behind
		}
	}
	q.cancel()
}
