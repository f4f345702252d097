package grants

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/accessbroker/accessbroker/audit"
)

// Witness keeps a copy of every signed audit checkpoint outside the database, where someone
// who can write the database cannot reach it (another volume, another account). `audit
// verify --witness` reads the copies back and fails when the log is behind one of them.
// integrations/witness (file, HTTPS) and integrations/aws (S3 with Object Lock) implement it.
type Witness interface {
	// Name names the witness in logs, alerts, metrics and verify output, e.g.
	// "file /mnt/witness/checkpoints.jsonl"; it never contains a secret.
	Name() string
	// Publish stores c durably before returning nil. Publishing a checkpoint the witness
	// already holds is allowed (kept once or twice; both verify the same).
	Publish(ctx context.Context, c audit.Checkpoint) error
	// Checkpoints returns every checkpoint the witness holds, in the order it stores them.
	// When part of the store cannot be read (a torn last line after a crash), it returns what
	// it could read together with an error wrapping ErrWitnessIncomplete that says what was
	// skipped; any other error means nothing usable was read.
	Checkpoints(ctx context.Context) ([]audit.Checkpoint, error)
}

// ErrWitnessIncomplete marks a Witness.Checkpoints error that comes with a usable, partial
// result (see Witness).
var ErrWitnessIncomplete = errors.New("witness copy is incomplete")

// CheckpointReader is what the Publisher reads from the store: every stored checkpoint.
type CheckpointReader interface {
	ReadCheckpoints(ctx context.Context) ([]audit.Checkpoint, error)
}

// WitnessAlerter tells people that a witness is failing or works again (the Slack
// notifier's audit channel implements it).
type WitnessAlerter interface {
	PostAudit(ctx context.Context, line string) error
}

// WitnessMetrics counts publications (cmd's Prometheus metrics implement it).
type WitnessMetrics interface {
	WitnessPublished(witness string)
	WitnessFailed(witness string)
}

// PublisherOptions tunes a Publisher. The zero value works.
type PublisherOptions struct {
	// BackoffBase is the first wait after a failed publication; it doubles (with jitter in
	// [d/2, d)) up to BackoffMax, forever. Defaults 2s and 5m.
	BackoffBase, BackoffMax time.Duration
	// Timeout bounds one Publish or Checkpoints call. Default 30s.
	Timeout time.Duration
	// Backlog is the most checkpoints kept in memory per witness while it fails; beyond
	// it the oldest are dropped (newer checkpoints cover everything before them).
	// Default 10000.
	Backlog int
	Alerts  WitnessAlerter // optional
	Metrics WitnessMetrics // optional
	Logger  *slog.Logger
	// Jitter returns a number in [0,1) for backoff jitter (default math/rand).
	Jitter func() float64
}

// Publisher copies every signed checkpoint to each witness, one goroutine per witness, so
// that a slow or failing witness delays nobody: Enqueue never blocks (the Checkpointer calls
// it after committing a checkpoint), and grants, revocation and checkpointing never wait on
// a witness.
//
// At start each witness is reconciled: the checkpoints the store has that are newer than
// the newest the witness holds are published first (all of them up to Backlog, or the
// latest alone when the witness cannot be read), so a checkpoint signed just before a crash
// or a shutdown is published on the next start. A failed publication is logged at WARN,
// counted (WitnessMetrics) and retried with capped, jittered backoff forever; the first
// failure of an outage is alerted once (WitnessAlerter), and so is the recovery.
//
// Several replicas may each run a Publisher: a checkpoint may then reach a witness twice,
// which verifies the same.
type Publisher struct {
	store CheckpointReader
	clock Clock
	opts  PublisherOptions
	log   *slog.Logger
	ws    []*witnessQueue
}

type witnessQueue struct {
	w    Witness
	wake chan struct{}

	mu       sync.Mutex
	queue    []audit.Checkpoint
	last     audit.Checkpoint // newest published by this process
	has      bool
	failing  bool
	failures int
}

// NewPublisher returns a Publisher for ws reading the store's checkpoints at start.
func NewPublisher(store CheckpointReader, ws []Witness, clock Clock, opts PublisherOptions) *Publisher {
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = 2 * time.Second
	}
	if opts.BackoffMax < opts.BackoffBase {
		opts.BackoffMax = max(opts.BackoffBase, 5*time.Minute)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Backlog <= 0 {
		opts.Backlog = 10000
	}
	if opts.Jitter == nil {
		opts.Jitter = rand.Float64
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Publisher{store: store, clock: clock, opts: opts, log: log.With("component", "witness_publisher")}
	for _, w := range ws {
		p.ws = append(p.ws, &witnessQueue{w: w, wake: make(chan struct{}, 1)})
	}
	return p
}

// Witnesses returns how many witnesses the Publisher publishes to.
func (p *Publisher) Witnesses() int { return len(p.ws) }

// Enqueue queues c for every witness and returns at once. A checkpoint not after the newest
// one queued or published for a witness (the start's reconciliation may have queued it
// already) is not queued again.
func (p *Publisher) Enqueue(c audit.Checkpoint) {
	for _, q := range p.ws {
		q.mu.Lock()
		newest, ok := q.last, q.has
		if n := len(q.queue); n > 0 {
			newest, ok = q.queue[n-1], true
		}
		if !ok || checkpointBefore(newest, c) {
			q.queue = p.trim(append(q.queue, c), q.w)
		}
		q.mu.Unlock()
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// trim keeps the newest Backlog checkpoints of queue.
func (p *Publisher) trim(queue []audit.Checkpoint, w Witness) []audit.Checkpoint {
	if n := len(queue) - p.opts.Backlog; n > 0 {
		p.log.Warn("witness backlog full; dropping the oldest unpublished checkpoints (newer ones cover them)",
			"witness", w.Name(), "dropped", n, "oldest_kept_seq", queue[n].Seq)
		queue = slices.Delete(queue, 0, n)
	}
	return queue
}

// Published reports whether this process has published c to the witness at index i (in the
// order given to NewPublisher) or a checkpoint after it.
func (p *Publisher) Published(i int, c audit.Checkpoint) bool {
	q := p.ws[i]
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.has && !checkpointBefore(q.last, c)
}

// checkpointBefore orders checkpoints by seq, then time.
func checkpointBefore(a, b audit.Checkpoint) bool {
	return a.Seq < b.Seq || a.Seq == b.Seq && a.Time.Before(b.Time)
}

// Run reconciles and then publishes to every witness until ctx ends. It returns nil then;
// what is still queued is published by the next start's reconciliation.
func (p *Publisher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, q := range p.ws {
		wg.Go(func() { p.run(ctx, q) })
	}
	wg.Wait()
	return nil
}

func (p *Publisher) run(ctx context.Context, q *witnessQueue) {
	for attempt := 1; ctx.Err() == nil; attempt++ {
		err := p.reconcile(ctx, q)
		if err == nil {
			break
		}
		p.log.WarnContext(ctx, "witness reconciliation failed; will retry", "witness", q.w.Name(), "error", err)
		if !p.sleep(ctx, p.backoff(attempt)) {
			return
		}
	}
	for ctx.Err() == nil {
		q.mu.Lock()
		var next audit.Checkpoint
		ok := len(q.queue) > 0
		if ok {
			next = q.queue[0]
		}
		q.mu.Unlock()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-q.wake:
			}
			continue
		}
		err := p.publish(ctx, q, next)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if !p.sleep(ctx, p.backoff(q.failures)) {
				return
			}
		}
	}
}

// reconcile queues, ahead of anything enqueued since, the store's checkpoints the witness
// does not have yet.
func (p *Publisher) reconcile(ctx context.Context, q *witnessQueue) error {
	cps, err := p.store.ReadCheckpoints(ctx)
	if err != nil {
		return fmt.Errorf("read the store's checkpoints: %w", err)
	}
	if len(cps) == 0 {
		return nil
	}
	slices.SortStableFunc(cps, func(a, b audit.Checkpoint) int {
		return cmp.Or(cmp.Compare(a.Seq, b.Seq), a.Time.Compare(b.Time))
	})
	rctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	held, err := q.w.Checkpoints(rctx)
	cancel()
	var missing []audit.Checkpoint
	switch {
	case err != nil && !errors.Is(err, ErrWitnessIncomplete):
		p.log.WarnContext(ctx, "cannot read the witness at start; republishing the latest checkpoint", "witness", q.w.Name(), "error", err)
		missing = cps[len(cps)-1:]
	default:
		// Only what the witness holds of the store's own checkpoints counts: a foreign or
		// junk entry with a high seq must not make the real ones look published.
		ours := make(map[string]bool, len(cps))
		for _, c := range cps {
			ours[checkpointKey(c)] = true
		}
		var newest audit.Checkpoint
		found := false
		for _, c := range held {
			if ours[checkpointKey(c)] && (!found || checkpointBefore(newest, c)) {
				newest, found = c, true
			}
		}
		for _, c := range cps {
			if !found || checkpointBefore(newest, c) {
				missing = append(missing, c)
			}
		}
	}
	if len(missing) > 0 {
		p.log.InfoContext(ctx, "witness is missing checkpoints; publishing them", "witness", q.w.Name(),
			"count", len(missing), "from_seq", missing[0].Seq, "to_seq", missing[len(missing)-1].Seq)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, c := range q.queue {
		if len(missing) == 0 || checkpointBefore(missing[len(missing)-1], c) {
			missing = append(missing, c)
		}
	}
	q.queue = p.trim(missing, q.w)
	return nil
}

// publish stores c in q's witness and updates q's state, alerting on the first failure of
// an outage and on the recovery.
func (p *Publisher) publish(ctx context.Context, q *witnessQueue, c audit.Checkpoint) error {
	pctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	err := q.w.Publish(pctx, c)
	cancel()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	q.mu.Lock()
	if err != nil {
		q.failures++
		first := !q.failing
		q.failing = true
		n := q.failures
		q.mu.Unlock()
		if p.opts.Metrics != nil {
			p.opts.Metrics.WitnessFailed(q.w.Name())
		}
		p.log.WarnContext(ctx, "publishing a checkpoint to a witness failed; will retry", "witness", q.w.Name(),
			"seq", c.Seq, "attempt", n, "error", err)
		if first {
			p.alert(ctx, fmt.Sprintf(":warning: Audit witness %s is failing: checkpoint #%d (%s) could not be published: %v. Retrying with backoff; grants are not affected. This alert is not repeated until the witness recovers.",
				q.w.Name(), c.Seq, audit.FormatTime(c.Time), err))
		}
		return err
	}
	if len(q.queue) > 0 && q.queue[0].Seq == c.Seq && q.queue[0].Time.Equal(c.Time) {
		q.queue = q.queue[1:]
	}
	if !q.has || checkpointBefore(q.last, c) {
		q.last, q.has = c, true
	}
	recovered := q.failing
	outage := q.failures
	q.failing, q.failures = false, 0
	q.mu.Unlock()
	if p.opts.Metrics != nil {
		p.opts.Metrics.WitnessPublished(q.w.Name())
	}
	p.log.DebugContext(ctx, "checkpoint published to witness", "witness", q.w.Name(), "seq", c.Seq)
	if recovered {
		p.log.InfoContext(ctx, "witness recovered", "witness", q.w.Name(), "failed_attempts", outage)
		p.alert(ctx, fmt.Sprintf(":white_check_mark: Audit witness %s works again after %d failed attempts; checkpoint #%d is published.", q.w.Name(), outage, c.Seq))
	}
	return nil
}

func (p *Publisher) alert(ctx context.Context, line string) {
	if p.opts.Alerts == nil {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opts.Timeout)
	defer cancel()
	if err := p.opts.Alerts.PostAudit(actx, line); err != nil {
		p.log.WarnContext(ctx, "could not post the witness alert to the audit channel", "error", err)
	}
}

// backoff returns the wait before retry number attempt (1-based).
func (p *Publisher) backoff(attempt int) time.Duration {
	d := p.opts.BackoffBase
	for i := 1; i < attempt && d < p.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, p.opts.BackoffMax)
	return d/2 + time.Duration(p.opts.Jitter()*float64(d/2))
}

// sleep waits d on the clock; false when ctx ended first.
func (p *Publisher) sleep(ctx context.Context, d time.Duration) bool {
	t := p.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// Holding counts the witnesses that hold c: those this process published it (or a later
// checkpoint) to, and otherwise those whose Checkpoints include it. A witness that cannot
// be read counts as not holding it. It returns the count and the number of witnesses.
func (p *Publisher) Holding(ctx context.Context, c audit.Checkpoint) (int, int) {
	n := 0
	for i, q := range p.ws {
		if p.Published(i, c) {
			n++
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
		held, err := q.w.Checkpoints(rctx)
		cancel()
		if err != nil && !errors.Is(err, ErrWitnessIncomplete) {
			p.log.WarnContext(ctx, "cannot read witness to count it", "witness", q.w.Name(), "error", err)
			continue
		}
		if slices.ContainsFunc(held, func(h audit.Checkpoint) bool {
			return h.Seq == c.Seq && h.Hash == c.Hash && h.Time.Equal(c.Time)
		}) {
			n++
		}
	}
	return n, len(p.ws)
}

// checkpointKey identifies a checkpoint by what is signed: seq, hash and time.
func checkpointKey(c audit.Checkpoint) string {
	return strconv.FormatInt(c.Seq, 10) + "/" + c.Hash.String() + "/" + audit.FormatTime(c.Time)
}
