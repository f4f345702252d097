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

// Observer hears about revocation outcomes after they are recorded, to tell the owner and the
// audit channel. Implementations must not block for long. The error RevokeFailed receives is
// already scrubbed of RevokerOptions.Secrets and keeps the grants error kinds for errors.Is.
type Observer interface {
	GrantRevoked(ctx context.Context, g Grant)
	RevokeFailed(ctx context.Context, g Grant, err error)
}

// RevokerMetrics receives revocation measurements. Optional.
type RevokerMetrics interface {
	// Revoked is called once per completed revocation with the lag past its due time.
	Revoked(provider string, lag time.Duration)
	// RevokeFailed is called once per failed attempt.
	RevokeFailed(provider string, needsOperator bool)
}

// RevokerOptions tunes a Revoker. Zero values take the documented defaults.
type RevokerOptions struct {
	Instance               string // claim owner name (default random)
	ConcurrencyPerProvider int    // provider calls in flight per provider kind (default 32)
	Batch                  int    // grants claimed per store round trip (default 256)
	// ProviderBatch is the most grants handed to one call of a provider that can revoke
	// many at once (a BatchRevoker; default DefaultProviderBatch).
	ProviderBatch  int
	BackoffBase    time.Duration // first retry delay (default 5s)
	BackoffMax     time.Duration // retry delay cap (default 5m)
	ClaimLease     time.Duration // how long a claim holds (default 2m)
	AttemptTimeout time.Duration // one provider Revoke call (default 30s)
	IdleWait       time.Duration // longest sleep without a known deadline (default 1m)
	ShutdownGrace  time.Duration // in-flight revocations may finish this long after stop (default 10s)
	// WallCheck is the longest the revoker sleeps without reading the wall clock again
	// (default 1s): after a step of the wall clock a grant is revoked at most about this
	// late, and never early (see wallclock.go).
	WallCheck time.Duration
	Observer  Observer
	Metrics   RevokerMetrics
	// Jitter returns a number in [0,1) for backoff jitter (default math/rand).
	Jitter func() float64
	// Secrets are the configured secret values (tokens, DSNs and their passwords). A
	// provider's error is scrubbed of them before it is logged, audited
	// (grant.revoke_failed), stored (Grant.LastError) or handed to the Observer.
	Secrets []string
}

// Revoker ends grants on a durable timer: it sleeps until the next deadline (or until woken),
// claims due grants, revokes them with bounded concurrency per provider, and records every
// outcome. A failed revocation is retried with capped, jittered exponential backoff, forever.
type Revoker struct {
	store     Store
	providers map[string]Provider
	clock     Clock
	log       *slog.Logger
	opts      RevokerOptions
	wake      chan struct{}
	// armed is the deadline the sleeping Run loop waits for (farFuture while it reads the
	// next one, zero while it claims and revokes): WakeAt wakes it only for an earlier one.
	armedMu  sync.Mutex
	armed    time.Time
	semMu    sync.Mutex
	sems     map[string]chan struct{}
	batchers map[string]*revokeBatcher // by resource, for BatchRevoker providers
	watch    *wallWatch
}

// NewRevoker returns a revoker; call Run to start it. providers is keyed by resource name.
func NewRevoker(store Store, providers map[string]Provider, clock Clock, logger *slog.Logger, opts RevokerOptions) *Revoker {
	if opts.Instance == "" {
		opts.Instance = NewID("i")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if opts.ConcurrencyPerProvider <= 0 {
		opts.ConcurrencyPerProvider = 32
	}
	if opts.Batch <= 0 {
		opts.Batch = 256
	}
	if opts.ProviderBatch <= 0 {
		opts.ProviderBatch = DefaultProviderBatch
	}
	def(&opts.BackoffBase, 5*time.Second)
	def(&opts.BackoffMax, 5*time.Minute)
	def(&opts.ClaimLease, 2*time.Minute)
	def(&opts.AttemptTimeout, 30*time.Second)
	def(&opts.IdleWait, time.Minute)
	def(&opts.ShutdownGrace, 10*time.Second)
	def(&opts.WallCheck, time.Second)
	if opts.Jitter == nil {
		opts.Jitter = rand.Float64
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Revoker{store: store, providers: providers, clock: clock, log: logger, opts: opts,
		wake: make(chan struct{}, 1), sems: map[string]chan struct{}{}, batchers: map[string]*revokeBatcher{},
		watch: newWallWatch(clock)}
}

// Wake makes a sleeping revoker look at the store again now. It never blocks.
func (r *Revoker) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// WakeAt tells the revoker that a grant is now due at t (just committed: issued, queued for
// revocation, brought forward). It wakes the revoker only when t is earlier than the deadline
// it sleeps until, so that issuing grants that end later costs the revoker nothing. It
// never blocks.
func (r *Revoker) WakeAt(t time.Time) {
	r.armedMu.Lock()
	defer r.armedMu.Unlock()
	if t.Before(r.armed) {
		r.armed = t
		r.Wake()
	}
}

// farFuture stands for "no deadline known yet" while the next one is being read.
var farFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// Run revokes due grants until ctx ends. It claims due grants as they fall due, also while
// earlier ones are still being revoked, and in between sleeps until the next deadline (or a
// WakeAt with an earlier one). Revocations in flight when ctx ends get ShutdownGrace to
// finish and be recorded; any that do not stay claimed until their lease lapses and are
// picked up again after restart. Run returns nil on shutdown.
func (r *Revoker) Run(ctx context.Context) error {
	for {
		err := r.sweep(ctx, true)
		if ctx.Err() != nil {
			return nil
		}
		r.log.ErrorContext(ctx, "revocation sweep failed; retrying", "error", err)
		if !r.sleep(ctx, r.opts.BackoffBase) {
			return nil
		}
	}
}

// sleepUntilNext reads the next deadline and sleeps until then (at most IdleWait), a wake-up
// or the end of ctx; it reports false when ctx ended.
func (r *Revoker) sleepUntilNext(ctx context.Context, held *heldClaims) bool {
	r.armedMu.Lock()
	r.armed = farFuture // from here on every WakeAt is remembered
	r.armedMu.Unlock()
	now := r.clock.Now()
	wait := r.opts.IdleWait
	next, ok, err := r.store.NextDue(ctx)
	if err != nil {
		r.log.ErrorContext(ctx, "read next revocation deadline", "error", err)
		wait = r.opts.BackoffBase
	} else if ok {
		wait = min(wait, max(next.Sub(now), 0))
	}
	r.armedMu.Lock()
	at := now.Add(wait)
	if r.armed.Before(at) { // a grant committed while we read is due earlier
		at = r.armed
	}
	r.armed = at
	r.armedMu.Unlock()
	awake := r.sleepUntil(ctx, at, wait, held)
	r.armedMu.Lock()
	r.armed = time.Time{} // awake: what is committed from now on is seen by the next claim
	r.armedMu.Unlock()
	return awake
}

// sleep waits for d, a wake-up or the end of ctx; it reports false when ctx ended.
func (r *Revoker) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := r.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
	case <-r.wake:
	}
	return true
}

type outcome struct {
	g     *Grant
	ev    *audit.Event
	err   error // the provider error, for the observer
	lag   time.Duration
	final bool
}

// Sweep revokes every grant due now and returns when none is left (or ctx ends). It is safe to
// run in several processes at once: claims keep them apart.
func (r *Revoker) Sweep(ctx context.Context) error {
	return r.sweep(ctx, false)
}

// sweep claims and revokes due grants. With keepGoing (Run) it does not stop when nothing is
// due: it sleeps until the next deadline and claims again, while the revocations it started
// go on, and returns only when ctx ends or a claim fails.
func (r *Revoker) sweep(ctx context.Context, keepGoing bool) error {
	jobCtx, cancelJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelJobs()
	stop := context.AfterFunc(ctx, func() {
		t := r.clock.NewTimer(r.opts.ShutdownGrace)
		go func() {
			defer t.Stop()
			select {
			case <-t.C():
				cancelJobs()
			case <-jobCtx.Done():
			}
		}()
	})
	defer stop()

	// Claims are renewed while their grants wait for a provider slot or a provider answer, so
	// that a slow provider never lets them lapse into another claimer's hands (one provider
	// call per grant, on one replica or several).
	held := &heldClaims{ids: map[string]struct{}{}, changed: make(chan struct{}, 1), freed: make(chan struct{}, 1)}
	renewCtx, stopRenewing := context.WithCancel(jobCtx)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		r.renewClaims(renewCtx, held)
	}()
	defer func() { stopRenewing(); <-renewed }()

	// Finished revocations wait in outs for the recorder, never in a provider slot: a burst's
	// claims go on while earlier outcomes are still being written.
	outs := newOutcomeQueue()
	var collectErr error
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		collectErr = r.collect(jobCtx, outs, held)
	}()

	var wg sync.WaitGroup
	inflight := make(chan struct{}, 2*r.opts.Batch)
	maxHeld := heldPerBatch * r.opts.Batch
	var err error
	for ctx.Err() == nil {
		room := min(cap(inflight)-len(inflight), maxHeld-held.count())
		if room <= 0 {
			// Wait for a revocation to finish (or, with too many claims held, for outcomes
			// to be recorded) before claiming more; meanwhile the recorder has the writer.
			outs.setClaiming(false)
			if held.count() >= maxHeld {
				select {
				case <-held.freed:
				case <-ctx.Done():
				}
			} else {
				inflight <- struct{}{}
				<-inflight
			}
			continue
		}
		// A step of the wall clock is handled (held claims renewed) before claiming, so that
		// this process never claims again what it is revoking.
		r.checkWall(ctx, held)
		limit := min(room, r.opts.Batch)
		r.watch.mu.Lock()
		batch, cerr := r.store.ClaimDue(ctx, r.opts.Instance, r.clock.Now(), limit, r.opts.ClaimLease)
		r.watch.mu.Unlock()
		if cerr != nil {
			if ctx.Err() == nil {
				err = fmt.Errorf("claim due grants: %w", cerr)
			}
			break
		}
		// A full claim means more may be due: the next claim goes first, before the outcomes
		// wait for the writer (recording them is what the grants that are still unclaimed
		// would otherwise wait behind).
		outs.setClaiming(len(batch) == limit)
		if len(batch) == 0 {
			if keepGoing && r.sleepUntilNext(ctx, held) {
				continue
			}
			break
		}
		// A grant still in flight here that came back (its claim looked lapsed although the
		// wall-step renewal ran, e.g. the renewal failed) is not called twice at once. The
		// claim moved its version, so the attempt under way cannot record its outcome; the
		// grant is claimed again once that claim lapses and revoked idempotently.
		partial := len(batch) < limit
		batch = held.add(batch)
		for i := range batch {
			g := batch[i]
			inflight <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-inflight }()
				outs.push(r.revokeOne(jobCtx, &g))
			}()
		}
		// A claim that came back short took every grant due at its now: the next one can
		// only be due later, so the loop sleeps until then rather than claiming again at once
		// (a claim is a write: with deadlines spread out, every grant paid for an empty one).
		if partial && keepGoing && !r.sleepUntilNext(ctx, held) {
			break
		}
	}
	outs.setClaiming(false)
	wg.Wait()
	outs.close()
	<-collected
	return errors.Join(err, collectErr)
}

// heldPerBatch bounds a sweep's claims held at once (claimed, not yet recorded) to this many
// times RevokerOptions.Batch: enough for a burst of 10,000 grants due at once to be claimed
// and revoked before its outcomes are recorded.
const heldPerBatch = 64

// recordGroup is the most outcomes one record transaction writes, in Batches.
const recordGroup = 4

// outcomeQueue holds finished revocations until they are recorded. While the sweep is
// claiming a burst (its last claim came back full), the recorder waits: the claims and the
// records share one writer, and a grant's revocation waits for its claim, not for the
// records of others. The wait is bounded by the sweep's cap on held claims.
type outcomeQueue struct {
	mu       sync.Mutex
	cond     *sync.Cond
	items    []outcome
	claiming bool
	closed   bool
}

func newOutcomeQueue() *outcomeQueue {
	q := &outcomeQueue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *outcomeQueue) push(o outcome) {
	q.mu.Lock()
	q.items = append(q.items, o)
	q.mu.Unlock()
	q.cond.Broadcast()
}

func (q *outcomeQueue) setClaiming(v bool) {
	q.mu.Lock()
	changed := q.claiming != v
	q.claiming = v
	q.mu.Unlock()
	if changed {
		q.cond.Broadcast()
	}
}

func (q *outcomeQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

// take waits for outcomes to record and returns up to max of them, oldest first; ok is
// false once the queue is closed and empty.
func (q *outcomeQueue) take(max int) (group []outcome, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 || q.claiming && !q.closed {
		if q.closed && len(q.items) == 0 {
			return nil, false
		}
		q.cond.Wait()
	}
	n := min(len(q.items), max)
	group = append([]outcome(nil), q.items[:n]...)
	q.items = append(q.items[:0], q.items[n:]...)
	return group, true
}

// collect records outcomes in groups: one transaction for as many as have arrived, so a
// burst of revocations costs a few commits, not one each. Every grant's state change commits
// with its own audit event.
func (r *Revoker) collect(ctx context.Context, outs *outcomeQueue, held *heldClaims) error {
	var firstErr error
	for {
		group, ok := outs.take(recordGroup * r.opts.Batch)
		if !ok {
			return firstErr
		}
		if err := r.record(ctx, group, held); err != nil && firstErr == nil {
			firstErr = err
		}
	}
}

// heldClaims are the ids of the grants this sweep has claimed and not yet recorded.
type heldClaims struct {
	mu      sync.Mutex
	ids     map[string]struct{}
	changed chan struct{} // signalled when the set becomes empty or stops being empty
	freed   chan struct{} // signalled when claims are removed
}

// add holds gs and returns those not held already.
func (h *heldClaims) add(gs []Grant) []Grant {
	h.mu.Lock()
	defer h.mu.Unlock()
	was := len(h.ids)
	fresh := gs[:0]
	for _, g := range gs {
		if _, ok := h.ids[g.ID]; ok {
			continue
		}
		h.ids[g.ID] = struct{}{}
		fresh = append(fresh, g)
	}
	if was == 0 && len(h.ids) > 0 {
		h.signal()
	}
	return fresh
}

func (h *heldClaims) remove(outs []outcome) {
	h.mu.Lock()
	defer h.mu.Unlock()
	was := len(h.ids)
	for _, o := range outs {
		delete(h.ids, o.g.ID)
	}
	if was > 0 && len(h.ids) == 0 {
		h.signal()
	}
	select {
	case h.freed <- struct{}{}:
	default:
	}
}

func (h *heldClaims) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ids)
}

func (h *heldClaims) signal() {
	select {
	case h.changed <- struct{}{}:
	default:
	}
}

func (h *heldClaims) empty() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ids) == 0
}

func (h *heldClaims) list() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.ids))
	for id := range h.ids {
		out = append(out, id)
	}
	return out
}

// renewClaims extends the held claims every third of ClaimLease until ctx ends. A failed
// renewal is logged and tried again at the next beat: the claims then hold for what is left
// of their lease. While it holds no claim it has no timer running (the Run loop's sleep is
// then the revoker's only timer).
func (r *Revoker) renewClaims(ctx context.Context, held *heldClaims) {
	beat := max(r.opts.ClaimLease/3, time.Millisecond)
	for {
		if held.empty() {
			select {
			case <-ctx.Done():
				return
			case <-held.changed:
			}
			continue
		}
		t := r.clock.NewTimer(beat)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-held.changed: // emptied (or refilled meanwhile): look again
			t.Stop()
			continue
		case <-t.C():
		}
		if r.checkWall(ctx, held) {
			continue // renewed, judged by the time that really passed
		}
		ids := held.list()
		if len(ids) == 0 {
			continue
		}
		now := r.clock.Now()
		n, err := r.store.RenewClaims(ctx, r.opts.Instance, ids, now, now.Add(r.opts.ClaimLease))
		switch {
		case err != nil && ctx.Err() == nil:
			r.log.WarnContext(ctx, "renew revocation claims failed; they hold until their lease ends", "claims", len(ids), "error", err)
		case err == nil && n < len(ids):
			// Recorded meanwhile (the common case), or lapsed before this beat.
			r.log.DebugContext(ctx, "renewed revocation claims", "held", len(ids), "renewed", n)
		}
	}
}

// record commits a group of outcomes and releases their claims, then tells the scheduler of
// the retries and the observer of the outcomes.
func (r *Revoker) record(ctx context.Context, group []outcome, held *heldClaims) error {
	c := &Change{}
	for _, o := range group {
		c.Grants = append(c.Grants, GrantWrite{Grant: o.g})
		c.Events = append(c.Events, o.ev)
	}
	err := r.store.Apply(ctx, c)
	if errors.Is(err, ErrConflict) && len(group) > 1 {
		// One row changed under us; record the others one by one.
		var firstErr error
		for _, o := range group {
			if err := r.record(ctx, []outcome{o}, held); err != nil && firstErr == nil {
				firstErr = err
			}
		}
		return firstErr
	}
	// Recorded, or not: either way the claims are no longer renewed (an outcome that could not
	// be recorded is retried after its claim lapses). They are released before anyone learns
	// of a retry's due time: a claim that returns the grant from then on must find it not held,
	// or held.add would drop it as still in flight and the retry would wait a whole lease.
	held.remove(group)
	if err != nil {
		// Not recorded: the claims lapse and the grants are revoked (idempotently) again.
		r.log.ErrorContext(ctx, "record revocation outcomes", "count", len(group), "error", err)
		return fmt.Errorf("record %d revocation outcomes: %w", len(group), err)
	}
	for _, o := range group {
		if !o.final {
			r.WakeAt(o.g.DueAt) // the retry
		}
	}
	for _, o := range group {
		if o.final {
			if r.opts.Metrics != nil {
				r.opts.Metrics.Revoked(o.g.Provider, o.lag)
			}
			if r.opts.Observer != nil {
				r.opts.Observer.GrantRevoked(ctx, *o.g)
			}
		} else {
			if r.opts.Metrics != nil {
				r.opts.Metrics.RevokeFailed(o.g.Provider, errors.Is(o.err, ErrNeedsOperator))
			}
			if r.opts.Observer != nil {
				r.opts.Observer.RevokeFailed(ctx, *o.g, o.err)
			}
		}
	}
	return nil
}

// revokeOne runs one revocation attempt for a claimed grant and returns its outcome, not yet
// recorded.
func (r *Revoker) revokeOne(ctx context.Context, g *Grant) outcome {
	due := g.DueAt
	cause := g.RevokeCause
	switch g.State {
	case StateActive:
		if cause == "" { // EndBy may have set incident_resolved or shift_ended
			cause = CauseExpired
		}
	case StateIssuing:
		cause = CauseIssueInterrupted
	}
	if cause == "" {
		cause = CauseExpired
	}
	g.RevokeCause = cause

	note, found, err := r.attempt(ctx, g)
	err = scrubError(err, r.opts.Secrets)
	found.Evidence = r.providerEvidence(found.Evidence)
	now := r.clock.Now().Truncate(time.Millisecond)
	g.ClaimedBy, g.ClaimedTo = "", time.Time{}
	if err == nil || errors.Is(err, ErrGone) {
		_ = g.Transition(StateRevoked)
		g.RevokedAt, g.LastError = now, ""
		ev := NewGrantEvent(now, systemActor, audit.ActionGrantRevoked, g, note, mergeEvidence(map[string]string{
			"cause": string(cause), "attempts": fmt.Sprint(g.Attempts + 1),
		}, found.Evidence))
		return outcome{g: g, ev: ev, lag: now.Sub(due), final: true}
	}
	g.Attempts++
	_ = g.Transition(StateRevokeFailed)
	delay := r.backoff(g.Attempts)
	g.DueAt = now.Add(delay)
	g.LastError = scrub(err.Error(), nil)
	class := "retryable"
	if errors.Is(err, ErrNeedsOperator) {
		class = "needs_operator"
	}
	r.log.WarnContext(ctx, "revocation failed; will retry", "grant_id", g.ID, "provider", g.Provider,
		"attempt", g.Attempts, "class", class, "retry_at", Timestamp(g.DueAt), "error", g.LastError)
	ev := NewGrantEvent(now, systemActor, audit.ActionGrantRevokeFailed, g, g.LastError, mergeEvidence(map[string]string{
		"cause": string(cause), "attempt": fmt.Sprint(g.Attempts), "class": class, "retry_at": Timestamp(g.DueAt),
	}, found.Evidence))
	return outcome{g: g, ev: ev, err: err}
}

// providerEvidence is a provider's evidence without the key NewGrantEvent owns ("person") and
// scrubbed of secrets (defence in depth: providers must not put any there).
func (r *Revoker) providerEvidence(ev map[string]string) map[string]string {
	if len(ev) == 0 {
		return nil
	}
	out := make(map[string]string, len(ev))
	for k, v := range ev {
		if k != "person" {
			out[k] = ScrubText(v, r.opts.Secrets)
		}
	}
	return out
}

// attempt calls the provider unless the access must stay (it predates the grant, or another
// live grant still gives it). It returns a note for the audit record and what a
// RevokeReporter said it did (also when it failed part way).
func (r *Revoker) attempt(ctx context.Context, g *Grant) (string, RevokeResult, error) {
	if g.Handle.Preexisting {
		return "the person had this access before the grant; left in place", RevokeResult{}, nil
	}
	if g.Handle.Key != "" {
		others, err := r.store.ListGrants(ctx, GrantFilter{HandleKey: g.Handle.Key, States: []State{StateIssuing, StateActive}})
		if err != nil {
			return "", RevokeResult{}, fmt.Errorf("check overlapping grants: %w", err)
		}
		now := r.clock.Now()
		for _, o := range others {
			if o.ID != g.ID && (o.State == StateIssuing || o.ExpiresAt.After(now)) {
				return fmt.Sprintf("access still granted by %s; left in place", o.ID), RevokeResult{}, nil
			}
		}
	}
	p, ok := r.providers[g.Resource]
	if !ok {
		return "", RevokeResult{}, fmt.Errorf("resource %q is no longer configured, so its %s provider cannot be called; restore it in the config: %w", g.Resource, g.Provider, ErrNeedsOperator)
	}
	req := RevokeRequest{GrantID: g.ID, Resource: g.Resource, Person: g.Person, Handle: g.Handle}
	if bp, ok := p.(BatchRevoker); ok {
		// Revoked together with the resource's other grants due now, read back the same way.
		res, err := r.batcher(g.Resource, g.Provider, bp).revoke(ctx, req)
		return "", res, err
	}
	sem := r.sem(g.Provider)
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return "", RevokeResult{}, ctx.Err()
	}
	defer func() { <-sem }()
	actx, cancel := context.WithTimeout(ctx, r.opts.AttemptTimeout)
	defer cancel()
	var (
		res RevokeResult
		err error
	)
	if rr, ok := p.(RevokeReporter); ok {
		res, err = rr.RevokeWithResult(actx, req)
	} else {
		err = p.Revoke(actx, req)
	}
	if err != nil {
		return "", res, fmt.Errorf("revoke grant %s: %w", g.ID, err)
	}
	if c, ok := p.(AccessChecker); ok && !res.ReadBack {
		// Read back: the revocation counts only once the provider says the access is gone
		// (an Identity Center deletion still IN_PROGRESS, a role that survived, a membership
		// re-added meanwhile are retried as any failed attempt).
		has, err := c.HasAccess(actx, req)
		if err != nil {
			return "", res, fmt.Errorf("revoke grant %s: read back after revoke: %w", g.ID, err)
		}
		if has {
			return "", res, fmt.Errorf("revoke grant %s: read back after revoke: the access is still there", g.ID)
		}
		res.ReadBack = true
	}
	if res.ReadBack {
		res.Evidence = mergeEvidence(map[string]string{"read_back": "gone"}, res.Evidence)
	}
	return "", res, nil
}

func (r *Revoker) sem(kind string) chan struct{} {
	r.semMu.Lock()
	defer r.semMu.Unlock()
	s, ok := r.sems[kind]
	if !ok {
		s = make(chan struct{}, r.opts.ConcurrencyPerProvider)
		r.sems[kind] = s
	}
	return s
}

// backoff returns the delay before retry number attempt (1-based): exponential from
// BackoffBase, capped at BackoffMax, with jitter in [d/2, d).
func (r *Revoker) backoff(attempt int) time.Duration {
	d := r.opts.BackoffBase
	for i := 1; i < attempt && d < r.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, r.opts.BackoffMax)
	return d/2 + time.Duration(r.opts.Jitter()*float64(d/2))
}
