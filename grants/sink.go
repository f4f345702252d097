package grants

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/accessbroker/accessbroker/audit"
)

// Sink receives a copy of every audit event, in seq order, for the security team's tools
// (a SIEM, a log pipeline, an archive bucket). integrations/sink (JSON-lines file, HTTPS)
// and integrations/aws (S3 objects) implement it; the Streamer feeds it.
type Sink interface {
	// Name names the sink in logs, alerts, metrics and its cursor, e.g. "https
	// https://siem.example.com/ingest"; it never contains a secret. It must stay the same
	// across restarts: the sink's durable cursor is kept under it.
	Name() string
	// Deliver stores events durably before returning nil. events is not empty and holds
	// consecutive seqs in ascending order, each starting right after the last one
	// delivered. An error means some, none or all of them may have been stored: the same
	// events are delivered again later. Receivers deduplicate by seq (at least once).
	Deliver(ctx context.Context, events []audit.Event) error
}

// SinkTail is a Sink whose own content is the truth about what it holds (the file sink: its
// last line). The Streamer then continues after Tail and keeps no cursor in the store; the
// sink is written by every process that configures it (each holds its own copy).
type SinkTail interface {
	// Tail returns the seq and chain hash of the last event the sink holds durably (0 and
	// audit.Genesis when it holds none). A write torn by a crash is removed first: it is
	// not counted and is written again.
	Tail(ctx context.Context) (seq int64, hash audit.Hash, err error)
}

// SinkStore is what the Streamer needs from the store: the events, the head, and a durable
// cursor per sink (the seq of the last event delivered).
type SinkStore interface {
	// ReadEvents returns up to limit events after seq, in seq order.
	ReadEvents(ctx context.Context, after int64, limit int) ([]audit.Event, error)
	// Head returns the last event's seq, hash and time (0 and audit.Genesis when empty).
	Head(ctx context.Context) (int64, audit.Hash, time.Time, error)
	// SinkCursor returns the seq of the last event delivered to the named sink (0: none).
	SinkCursor(ctx context.Context, sink string) (int64, error)
	// AdvanceSinkCursor records seq as delivered to the named sink; a cursor never moves
	// back (a smaller seq is ignored).
	AdvanceSinkCursor(ctx context.Context, sink string, seq int64) error
}

// SinkMetrics counts deliveries (cmd's Prometheus metrics implement it).
type SinkMetrics interface {
	// SinkDelivered counts n events delivered to sink.
	SinkDelivered(sink string, n int)
	// SinkFailed counts one failed delivery attempt (retried).
	SinkFailed(sink string)
	// SinkLag sets how many events the sink is behind the head of the log.
	SinkLag(sink string, events int64)
}

// RetryAfterer is an error saying how long the receiver asked to wait (HTTP 429 with
// Retry-After, S3 SlowDown); the Streamer waits at least that long before the next attempt,
// up to StreamerOptions.MaxRetryAfter.
type RetryAfterer interface {
	RetryAfter() time.Duration
}

// ErrSinkDiverged marks a sink whose last event is not the store's event of that seq (the
// file belongs to another database, or the log was rolled back): nothing more is delivered
// to it until an operator looks (alerted; retried with backoff).
var ErrSinkDiverged = errors.New("the sink's last event is not the audit log's event of that seq")

// StreamSink is one sink with its batching.
type StreamSink struct {
	Sink Sink
	// BatchSize is the most events one Deliver carries. Default 100.
	BatchSize int
	// FlushInterval, when positive, holds a batch that is not full until this long after
	// the previous delivery, so that a sink paying per request (S3 objects) gets fewer,
	// larger ones. A full batch is delivered at once.
	FlushInterval time.Duration
}

// StreamerOptions tunes a Streamer. The zero value works.
type StreamerOptions struct {
	// Poll is how often an idle sink looks for new events (Wake looks at once). Default 1s.
	Poll time.Duration
	// BackoffBase is the first wait after a failed delivery; it doubles (jittered in
	// [d/2, d)) up to BackoffMax, forever. Defaults 1s and 5m.
	BackoffBase, BackoffMax time.Duration
	// MaxRetryAfter caps a receiver's Retry-After. Default 15m.
	MaxRetryAfter time.Duration
	// Timeout bounds one Deliver or Tail call. Default 30s.
	Timeout time.Duration
	// Leaser, when set, makes each sink without its own tail (https, s3) delivered by one
	// process at a time among those sharing the store: the holder of the lease
	// "audit-sink:" + the sink's name. Holder names this process.
	Leaser  Leaser
	Holder  string
	Alerts  WitnessAlerter // optional: outage and recovery lines in the audit channel
	Metrics SinkMetrics    // optional
	Logger  *slog.Logger
	// Jitter returns a number in [0,1) for backoff jitter (default math/rand).
	Jitter func() float64
}

// Streamer copies every audit event to each configured sink, in seq order and at least
// once, one goroutine per sink, so that a slow or failing sink delays nobody: grants,
// revocation and auditing never wait on a sink, which reads the committed log on its own.
//
// Each sink continues from its durable cursor: its own tail (SinkTail) or the store's
// cursor for it, advanced after each delivery. A failed delivery is logged at WARN, counted
// and retried with capped, jittered backoff (at least the receiver's Retry-After) forever;
// the first failure of an outage is alerted once, and so is the recovery. A crash between a
// delivery and its cursor update delivers those events again: receivers deduplicate by seq.
type Streamer struct {
	store SinkStore
	clock Clock
	opts  StreamerOptions
	log   *slog.Logger
	sinks []*sinkState
}

type sinkState struct {
	StreamSink
	tail SinkTail // nil: the cursor is in the store
	wake chan struct{}

	mu        sync.Mutex
	cursor    int64 // last seq known delivered; -1 until read
	delivered int64 // events delivered by this process
	failures  int
	failing   bool
	lastSend  time.Time
	ahead     bool // the sink's cursor is past the head (warned once)
}

// NewStreamer returns a Streamer of sinks reading the store.
func NewStreamer(store SinkStore, sinks []StreamSink, clock Clock, opts StreamerOptions) *Streamer {
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = time.Second
	}
	if opts.BackoffMax < opts.BackoffBase {
		opts.BackoffMax = max(opts.BackoffBase, 5*time.Minute)
	}
	if opts.MaxRetryAfter <= 0 {
		opts.MaxRetryAfter = 15 * time.Minute
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Jitter == nil {
		opts.Jitter = rand.Float64
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Streamer{store: store, clock: clock, opts: opts, log: log.With("component", "audit_sinks")}
	for _, ss := range sinks {
		if ss.BatchSize <= 0 {
			ss.BatchSize = 100
		}
		st := &sinkState{StreamSink: ss, wake: make(chan struct{}, 1), cursor: -1}
		st.tail, _ = ss.Sink.(SinkTail)
		s.sinks = append(s.sinks, st)
	}
	return s
}

// Sinks returns how many sinks the Streamer feeds.
func (s *Streamer) Sinks() int { return len(s.sinks) }

// Wake makes every idle sink look for new events now instead of at its next poll. It never
// blocks and does not shorten a backoff.
func (s *Streamer) Wake() {
	for _, q := range s.sinks {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// Delivered returns the seq of the last event this process knows delivered to the sink at
// index i (in the order given to NewStreamer), or -1 before it has read the sink's cursor.
func (s *Streamer) Delivered(i int) int64 {
	q := s.sinks[i]
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.cursor
}

// Run delivers to every sink until ctx ends, then returns nil; what is not delivered yet
// is delivered by the next start, from the sink's cursor.
func (s *Streamer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, q := range s.sinks {
		wg.Go(func() { s.run(ctx, q) })
	}
	wg.Wait()
	return nil
}

func (s *Streamer) run(ctx context.Context, q *sinkState) {
	for ctx.Err() == nil {
		wait, idle, err := s.step(ctx, q)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			wait = s.failed(ctx, q, err)
			idle = false
		}
		if wait <= 0 {
			continue
		}
		if !s.sleep(ctx, wait, q, idle) {
			return
		}
	}
}

// leaseName is the lease a shared sink is delivered under.
func leaseName(sink string) string { return "audit-sink:" + sink }

// step delivers at most one batch. It returns how long to wait before the next step and
// whether that wait is idle (a Wake may cut it short).
func (s *Streamer) step(ctx context.Context, q *sinkState) (time.Duration, bool, error) {
	name := q.Sink.Name()
	head, _, _, err := s.store.Head(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("read the audit log's head: %w", err)
	}
	if q.tail == nil && s.opts.Leaser != nil {
		ttl := s.opts.Timeout + 3*s.opts.Poll + 10*time.Second
		mine, err := s.opts.Leaser.AcquireLease(ctx, leaseName(name), s.opts.Holder, ttl)
		if err != nil {
			return 0, false, fmt.Errorf("acquire the sink's lease: %w", err)
		}
		if !mine {
			// Another replica delivers; keep the lag gauge true from the shared cursor.
			if c, err := s.store.SinkCursor(ctx, name); err == nil {
				s.lag(q, head, c)
			}
			q.mu.Lock()
			q.cursor = -1 // re-read when this process takes over
			q.mu.Unlock()
			return s.opts.Poll, true, nil
		}
	}
	cursor, err := s.cursor(ctx, q)
	if err != nil {
		return 0, false, err
	}
	s.lag(q, head, cursor)
	if head <= cursor {
		q.mu.Lock()
		warn := head < cursor && !q.ahead
		q.ahead = head < cursor
		q.mu.Unlock()
		if warn { // once, not at every poll
			s.log.WarnContext(ctx, "the sink holds events past the audit log's head; waiting for the log to pass it",
				"sink", name, "sink_seq", cursor, "head_seq", head)
		}
		return s.opts.Poll, true, nil
	}
	events, err := s.store.ReadEvents(ctx, cursor, q.BatchSize)
	if err != nil {
		return 0, false, fmt.Errorf("read audit events after seq %d: %w", cursor, err)
	}
	if len(events) == 0 {
		return s.opts.Poll, true, nil
	}
	// Deliver only the run of consecutive seqs right after the cursor: a sink never gets a
	// gap, whatever the store returns.
	n := 0
	for n < len(events) && events[n].Seq == cursor+int64(n)+1 {
		n++
	}
	if n == 0 {
		return 0, false, fmt.Errorf("the audit log has no event of seq %d (the next one is %d): not delivering past a gap", cursor+1, events[0].Seq)
	}
	events = events[:n]
	if q.FlushInterval > 0 && len(events) < q.BatchSize {
		q.mu.Lock()
		last := q.lastSend
		q.mu.Unlock()
		if !last.IsZero() {
			if left := q.FlushInterval - s.clock.Now().Sub(last); left > 0 {
				// Look again at the next poll: a batch that fills up meanwhile goes at once.
				return min(left, s.opts.Poll), true, nil
			}
		}
	}
	dctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	err = q.Sink.Deliver(dctx, events)
	cancel()
	if err != nil {
		return 0, false, fmt.Errorf("deliver seq %d-%d: %w", events[0].Seq, events[len(events)-1].Seq, err)
	}
	last := events[len(events)-1].Seq
	if q.tail == nil {
		if err := s.store.AdvanceSinkCursor(ctx, name, last); err != nil {
			// Delivered but not recorded: the next step re-reads the cursor and delivers
			// these again (receivers deduplicate by seq).
			q.mu.Lock()
			q.cursor = -1
			q.mu.Unlock()
			return 0, false, fmt.Errorf("record the sink's cursor at seq %d (the batch is delivered again): %w", last, err)
		}
	}
	s.delivered(ctx, q, last, len(events))
	s.lag(q, head, last)
	if len(events) == q.BatchSize {
		return 0, false, nil // more may be waiting
	}
	return s.opts.Poll, true, nil
}

// cursor returns what the sink holds: for a SinkTail, its tail (read once, and again after
// a failure), checked against the store's event of that seq; else the store's cursor.
func (s *Streamer) cursor(ctx context.Context, q *sinkState) (int64, error) {
	q.mu.Lock()
	c := q.cursor
	q.mu.Unlock()
	if c >= 0 && q.tail != nil {
		return c, nil
	}
	name := q.Sink.Name()
	if q.tail == nil {
		c, err := s.store.SinkCursor(ctx, name)
		if err != nil {
			return 0, fmt.Errorf("read the sink's cursor: %w", err)
		}
		q.mu.Lock()
		q.cursor = c
		q.mu.Unlock()
		return c, nil
	}
	tctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	seq, hash, err := q.tail.Tail(tctx)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("read what the sink holds: %w", err)
	}
	if seq > 0 {
		evs, err := s.store.ReadEvents(ctx, seq-1, 1)
		if err != nil {
			return 0, fmt.Errorf("read audit event %d: %w", seq, err)
		}
		if len(evs) == 1 && evs[0].Seq == seq && evs[0].Hash != hash {
			return 0, fmt.Errorf("%w: the sink's event %d has hash %s, the log's %s", ErrSinkDiverged, seq, hash, evs[0].Hash)
		}
	}
	s.log.InfoContext(ctx, "audit sink continues after its last event", "sink", name, "seq", seq)
	q.mu.Lock()
	q.cursor = seq
	q.mu.Unlock()
	return seq, nil
}

// delivered records a successful delivery, with the recovery alert after an outage.
func (s *Streamer) delivered(ctx context.Context, q *sinkState, last int64, n int) {
	q.mu.Lock()
	q.cursor = last
	q.delivered += int64(n)
	q.lastSend = s.clock.Now()
	recovered, outage := q.failing, q.failures
	q.failing, q.failures = false, 0
	q.mu.Unlock()
	if s.opts.Metrics != nil {
		s.opts.Metrics.SinkDelivered(q.Sink.Name(), n)
	}
	s.log.DebugContext(ctx, "audit events delivered to sink", "sink", q.Sink.Name(), "count", n, "last_seq", last)
	if recovered {
		s.log.InfoContext(ctx, "audit sink recovered", "sink", q.Sink.Name(), "failed_attempts", outage, "last_seq", last)
		s.alert(ctx, fmt.Sprintf(":white_check_mark: Audit sink %s works again after %d failed attempts; it has events up to #%d and is catching up.", q.Sink.Name(), outage, last))
	}
}

// failed records a failed step and returns the wait before the next one.
func (s *Streamer) failed(ctx context.Context, q *sinkState, err error) time.Duration {
	q.mu.Lock()
	q.failures++
	first := !q.failing
	q.failing = true
	n := q.failures
	if q.tail != nil {
		q.cursor = -1 // a failed write may have left part of a batch: read the tail again
	}
	q.mu.Unlock()
	if s.opts.Metrics != nil {
		s.opts.Metrics.SinkFailed(q.Sink.Name())
	}
	wait := s.backoff(n)
	var ra RetryAfterer
	if errors.As(err, &ra) {
		wait = max(wait, min(ra.RetryAfter(), s.opts.MaxRetryAfter))
	}
	s.log.WarnContext(ctx, "audit sink delivery failed; will retry", "sink", q.Sink.Name(), "attempt", n, "retry_in", wait.String(), "error", err)
	if first {
		s.alert(ctx, fmt.Sprintf(":warning: Audit sink %s is failing: %v. Retrying with backoff; grants are not affected, and the sink catches up from where it stopped. This alert is not repeated until the sink recovers.",
			q.Sink.Name(), err))
	}
	return wait
}

func (s *Streamer) lag(q *sinkState, head, cursor int64) {
	if s.opts.Metrics != nil {
		s.opts.Metrics.SinkLag(q.Sink.Name(), max(head-cursor, 0))
	}
}

func (s *Streamer) alert(ctx context.Context, line string) {
	if s.opts.Alerts == nil {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.Timeout)
	defer cancel()
	if err := s.opts.Alerts.PostAudit(actx, line); err != nil {
		s.log.WarnContext(ctx, "could not post the sink alert to the audit channel", "error", err)
	}
}

// backoff returns the wait before retry number attempt (1-based).
func (s *Streamer) backoff(attempt int) time.Duration {
	d := s.opts.BackoffBase
	for i := 1; i < attempt && d < s.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, s.opts.BackoffMax)
	return d/2 + time.Duration(s.opts.Jitter()*float64(d/2))
}

// sleep waits d on the clock (an idle wait ends early on Wake); false when ctx ended.
func (s *Streamer) sleep(ctx context.Context, d time.Duration, q *sinkState, idle bool) bool {
	t := s.clock.NewTimer(d)
	defer t.Stop()
	var wake <-chan struct{}
	if idle {
		wake = q.wake
	}
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	case <-wake:
		return true
	}
}
