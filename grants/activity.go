package grants

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/accessbroker/accessbroker/audit"
)

// ActivitySource fetches what a person did with one grant from one upstream (CloudTrail, the
// GitHub audit log). Implementations live in integrations; the ActivityCollector calls them.
type ActivitySource interface {
	// Collect returns the activity of g inside w, continuing from cursor (the Cursor of the
	// batch it returned last time for this grant, "" the first time). It may return fewer
	// items than exist (a page budget); the collector calls again on its next pass. Items may
	// repeat items of earlier batches (sources re-read a window because upstream delivers
	// late): the store records each Key once per grant. An error wrapping
	// ErrActivityNotCollectable ends collection for the grant (nothing to look up by, e.g. a
	// handle written before activity collection existed); any other error is retried later.
	Collect(ctx context.Context, g Grant, w ActivityWindow, cursor string) (ActivityBatch, error)
}

// ErrActivityNotCollectable: the source can never collect this grant's activity (say why in
// the wrapping error).
var ErrActivityNotCollectable = errors.New("activity cannot be collected for this grant")

// ActivityWindow is the span of time a source is asked about.
type ActivityWindow struct {
	// From is when the grant's access began (IssuedAt, else CreatedAt).
	From time.Time
	// To is the end of the look-up: now, or End plus the source's after-end window once
	// that has passed.
	To time.Time
	// End is when the grant ended (RevokedAt); zero while it is live. Activity after End is
	// an anomaly: revocation did not hold.
	End time.Time
}

// ActivityBatch is one Collect answer.
type ActivityBatch struct {
	Items []ActivityItem
	// Cursor is where the next Collect continues (opaque to the collector, stored durably).
	Cursor string
	// Complete reports that everything up to the window's To was read (no page budget left
	// unread). The collector ends a grant's collection only after a complete batch whose
	// window reached the end of the after-end window.
	Complete bool
}

// ActivityItem is one upstream activity record turned into an audit event.
type ActivityItem struct {
	// Key identifies the record upstream (CloudTrail EventId, GitHub audit log _document_id,
	// webhook delivery id); it is recorded once per grant and source.
	Key string
	// Event is appended to the audit chain when Key is new. The store fills Seq and hashes;
	// ID and Time are set by the collector when empty.
	Event *audit.Event
}

// ActivityCursor is the durable state of one grant's collection from one source.
type ActivityCursor struct {
	GrantID string
	Source  string
	// Cursor is the source's own position (ActivityBatch.Cursor).
	Cursor string
	// NextAt is when the collector looks again.
	NextAt time.Time
	// Done: collection ended (the after-end window passed, or nothing can be collected).
	Done bool
	// Failures counts consecutive failed attempts; LastError is the last one's message
	// (no secrets: sources scrub it). Both reset on success.
	Failures  int
	LastError string
	// LastOK is the time of the last successful look-up.
	LastOK time.Time
	// Events is how many activity events were recorded for the grant from this source.
	Events int
	// ClaimedBy/ClaimedTo is the lease of the replica collecting it.
	ClaimedBy string
	ClaimedTo time.Time
}

// ActivityClaim asks the store for cursors to work on.
type ActivityClaim struct {
	Owner  string
	Source string
	// Providers are the provider kinds the source covers: a cursor is created for each grant
	// of those kinds that is past issuing and not revoked before Since.
	Providers []string
	Now       time.Time
	Since     time.Time
	Limit     int
	Lease     time.Duration
}

// ActivityStore keeps activity cursors and records activity events exactly once. It is
// implemented by grants/sqlstore.
type ActivityStore interface {
	// ClaimActivity creates the missing cursors (see ActivityClaim.Providers) and leases up to
	// Limit cursors of Source that are not done, due (NextAt ≤ Now) and not leased by
	// another owner, oldest NextAt first. Two concurrent callers never get the same cursor.
	ClaimActivity(ctx context.Context, c ActivityClaim) ([]ActivityCursor, error)
	// SaveActivity records, in one transaction, the items whose Key is new for the cursor's
	// grant and source (appending their events to the audit chain) and writes the cursor
	// (releasing the lease). It returns how many items were new. It fails with ErrConflict,
	// writing nothing, when owner no longer holds the cursor's lease.
	SaveActivity(ctx context.Context, owner string, cur ActivityCursor, items []ActivityItem) (int, error)
	// ActivityCursors returns the cursors of the given grants (every source).
	ActivityCursors(ctx context.Context, grantIDs []string) ([]ActivityCursor, error)
}

// ActivityMetrics receives the collector's measurements (Prometheus in cmd). Nil is allowed.
type ActivityMetrics interface {
	// ActivityRecorded counts n new activity events from source.
	ActivityRecorded(source string, n int)
	// ActivitySourceUp reports whether the source's last look-up succeeded.
	ActivitySourceUp(source string, up bool)
}

// CollectorSource is one source with the grants it covers and its timing.
type CollectorSource struct {
	// Name is the source's stable name: the cursor key and the metrics label
	// ("aws-cloudtrail", "github-audit-log").
	Name string
	// Providers are the provider kinds whose grants it collects.
	Providers []string
	Source    ActivitySource
	// AfterEnd is how long after a grant ended the source is still read (upstream delivers
	// late). Default 20 minutes.
	AfterEnd time.Duration
	// Poll is the interval between look-ups of one grant. Default 5 minutes.
	Poll time.Duration
}

// CollectorOptions configures an ActivityCollector.
type CollectorOptions struct {
	// Instance names this replica in leases (required).
	Instance string
	// Batch is how many cursors one claim takes (default 20).
	Batch int
	// Lease is how long a claim is held (default 10 minutes): longer than a batch takes.
	Lease time.Duration
	// MaxBackoff caps the delay after repeated failures (default 30 minutes).
	MaxBackoff time.Duration
	Metrics    ActivityMetrics
	Logger     *slog.Logger
}

// ActivityCollector pulls each grant's activity from its sources during the grant and for a
// while after it ended, durably (cursors in the store), once per event, on one replica at a
// time per grant (leases).
type ActivityCollector struct {
	grants  Store
	store   ActivityStore
	clock   Clock
	sources []CollectorSource
	opts    CollectorOptions
	log     *slog.Logger
}

// NewActivityCollector builds a collector. It fails when a source has no name, provider or
// implementation, or the instance is empty.
func NewActivityCollector(grants Store, store ActivityStore, clock Clock, sources []CollectorSource, opts CollectorOptions) (*ActivityCollector, error) {
	if opts.Instance == "" {
		return nil, fmt.Errorf("activity collector: empty instance name: %w", ErrInvalid)
	}
	if opts.Batch <= 0 {
		opts.Batch = 20
	}
	if opts.Lease <= 0 {
		opts.Lease = 10 * time.Minute
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if clock == nil {
		clock = RealClock{}
	}
	srcs := make([]CollectorSource, len(sources))
	for i, s := range sources {
		if s.Name == "" || s.Source == nil || len(s.Providers) == 0 {
			return nil, fmt.Errorf("activity collector: source %d needs a name, providers and an implementation: %w", i, ErrInvalid)
		}
		if s.AfterEnd <= 0 {
			s.AfterEnd = 20 * time.Minute
		}
		if s.Poll <= 0 {
			s.Poll = 5 * time.Minute
		}
		srcs[i] = s
	}
	return &ActivityCollector{grants: grants, store: store, clock: clock, sources: srcs, opts: opts, log: opts.Logger.With("component", "activity")}, nil
}

// Run collects until ctx ends: each round it works through every due cursor of every source,
// then sleeps until the shortest poll interval has passed. It returns ctx's error.
func (c *ActivityCollector) Run(ctx context.Context) error {
	poll := time.Hour
	for _, s := range c.sources {
		poll = min(poll, s.Poll)
	}
	for {
		for _, s := range c.sources {
			if _, err := c.Pass(ctx, s.Name); err != nil && ctx.Err() == nil {
				c.log.WarnContext(ctx, "activity pass failed", "source", s.Name, "error", err.Error())
			}
		}
		t := c.clock.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C():
		}
	}
}

// Pass works through every cursor of the named source that is due now, in batches, and
// returns how many new activity events it recorded.
func (c *ActivityCollector) Pass(ctx context.Context, source string) (int, error) {
	var src *CollectorSource
	for i := range c.sources {
		if c.sources[i].Name == source {
			src = &c.sources[i]
		}
	}
	if src == nil {
		return 0, fmt.Errorf("activity pass: unknown source %q: %w", source, ErrInvalid)
	}
	total := 0
	for {
		now := c.clock.Now().Truncate(time.Millisecond)
		curs, err := c.store.ClaimActivity(ctx, ActivityClaim{
			Owner: c.opts.Instance, Source: src.Name, Providers: src.Providers,
			Now: now, Since: now.Add(-src.AfterEnd), Limit: c.opts.Batch, Lease: c.opts.Lease,
		})
		if err != nil {
			return total, fmt.Errorf("claim %s activity cursors: %w", src.Name, err)
		}
		if len(curs) == 0 {
			return total, nil
		}
		for _, cur := range curs {
			if ctx.Err() != nil {
				return total, ctx.Err()
			}
			n, err := c.collectOne(ctx, src, cur)
			total += n
			if err != nil {
				return total, err
			}
		}
	}
}

// collectOne reads one grant from one source and saves the result; a source failure is
// recorded on the cursor (and backs off), not returned.
func (c *ActivityCollector) collectOne(ctx context.Context, src *CollectorSource, cur ActivityCursor) (int, error) {
	g, err := c.grants.GetGrant(ctx, cur.GrantID)
	if err != nil {
		return 0, fmt.Errorf("activity: read grant %s: %w", cur.GrantID, err)
	}
	now := c.clock.Now().Truncate(time.Millisecond)
	w := ActivityWindow{From: g.IssuedAt, To: now}
	if w.From.IsZero() {
		w.From = g.CreatedAt
	}
	final := false
	if g.State == StateRevoked && !g.RevokedAt.IsZero() {
		w.End = g.RevokedAt
		if stop := g.RevokedAt.Add(src.AfterEnd); !now.Before(stop) {
			w.To, final = stop, true
		}
	}
	log := c.log.With("grant_id", g.ID, "resource", g.Resource, "source", src.Name)
	batch, err := src.Source.Collect(ctx, g, w, cur.Cursor)
	next := cur
	next.ClaimedBy, next.ClaimedTo = "", time.Time{}
	switch {
	case errors.Is(err, ErrActivityNotCollectable):
		log.InfoContext(ctx, "activity not collected", "reason", err.Error())
		next.Done, next.LastError, next.Failures = true, shortError(err), 0
		batch = ActivityBatch{}
	case err != nil:
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		next.Failures++
		next.LastError = shortError(err)
		next.NextAt = now.Add(min(src.Poll<<min(next.Failures-1, 10), c.opts.MaxBackoff))
		log.WarnContext(ctx, "activity look-up failed; retrying later", "failures", next.Failures, "error", next.LastError,
			"next_at", Timestamp(next.NextAt))
		if c.opts.Metrics != nil {
			c.opts.Metrics.ActivitySourceUp(src.Name, false)
		}
		batch = ActivityBatch{}
	default:
		next.Cursor = batch.Cursor
		next.Failures, next.LastError, next.LastOK = 0, "", now
		next.NextAt = now.Add(src.Poll)
		if final && batch.Complete {
			next.Done = true
		} else if !batch.Complete {
			next.NextAt = now // more pages to read: come back in the next round
		}
		if c.opts.Metrics != nil {
			c.opts.Metrics.ActivitySourceUp(src.Name, true)
		}
	}
	for _, it := range batch.Items {
		if it.Event.ID == "" {
			it.Event.ID = NewOrderedID("e", now)
		}
		if it.Event.Time.IsZero() {
			it.Event.Time = now
		}
		it.Event.GrantID, it.Event.Resource = g.ID, g.Resource
		if it.Event.RequestID == "" {
			it.Event.RequestID = g.RequestID
		}
	}
	n, err := c.store.SaveActivity(ctx, c.opts.Instance, next, batch.Items)
	if err != nil {
		if errors.Is(err, ErrConflict) {
			log.WarnContext(ctx, "activity lease lost to another replica; its work is kept, this one dropped")
			return 0, nil
		}
		return 0, fmt.Errorf("activity: save grant %s from %s: %w", g.ID, src.Name, err)
	}
	if n > 0 {
		log.InfoContext(ctx, "activity recorded", "events", n)
		if c.opts.Metrics != nil {
			c.opts.Metrics.ActivityRecorded(src.Name, n)
		}
	}
	return n, nil
}

// shortError is err's message cut to 500 bytes for the cursor row (sources keep secrets out of
// their errors: the AWS and GitHub clients never echo credentials).
func shortError(err error) string {
	s := err.Error()
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return s
}
