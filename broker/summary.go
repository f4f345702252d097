package broker

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// SummaryPoster posts a weekly report to a channel (integrations/slack implements it on
// Block Kit). An error means the summary may not have been posted; it will be posted again.
type SummaryPoster interface {
	PostSummary(ctx context.Context, channel string, r audit.Report) error
}

// SummaryRecorder appends audit-only events (grants.Manager implements it).
type SummaryRecorder interface {
	Record(ctx context.Context, events ...*audit.Event) error
}

// SummaryCheckpoints tells the summary the newest signed checkpoint of the audit log and how
// many witnesses hold it (cmd implements it over the store and the witness Publisher).
type SummaryCheckpoints interface {
	// LatestCheckpoint returns ok=false when the log has no checkpoint yet.
	LatestCheckpoint(ctx context.Context) (c audit.ReportCheckpoint, ok bool, err error)
}

// SummaryLeaseName is the lease that decides which process posts a week's summary.
const SummaryLeaseName = "weekly-summary"

// Summary defaults; see SummaryDeps.
const (
	DefaultSummaryLeaseTTL   = 10 * time.Minute
	DefaultSummaryLeaseRetry = time.Minute
	DefaultSummaryRetry      = time.Minute
	DefaultSummaryMaxRetry   = 30 * time.Minute
	DefaultSummaryFreshGrace = time.Hour
)

// SummaryDeps are the weekly summary's collaborators and schedule. Clock, Events, Leases,
// Recorder, Poster and Channel are required.
type SummaryDeps struct {
	Clock    grants.Clock
	Events   audit.Searcher // the audit log the report is built from
	Leases   Leaser
	Recorder SummaryRecorder
	Poster   SummaryPoster
	// Channel is where the summary goes (slack.summary.channel).
	Channel string
	// Weekday, Hour and Minute are the schedule, in UTC (slack.summary.weekday and .time).
	Weekday      time.Weekday
	Hour, Minute int
	// Holder names this process in the lease (default: a random instance id). Two
	// processes must not share one.
	Holder string
	// Report tunes the anomaly rules.
	Report audit.ReportOptions
	// Checkpoints, when set, puts the latest checkpoint in the summary (Report.Checkpoint).
	// If it fails the summary is posted without it, and the failure is logged.
	Checkpoints SummaryCheckpoints
	Logger      *slog.Logger

	// LeaseTTL bounds one attempt: the lease lasts this long, and an attempt (reading the
	// log, posting, recording) is cancelled after half of it. Default 10m.
	LeaseTTL time.Duration
	// LeaseRetry is how soon a process that found the lease taken looks again. Default 1m.
	LeaseRetry time.Duration
	// Retry is the first wait after a failed attempt, doubled each time up to MaxRetry.
	// Defaults 1m and 30m.
	Retry, MaxRetry time.Duration
	// FreshGrace: a process starting when no summary was ever recorded posts the latest
	// scheduled week only if it was scheduled less than this long ago. Default 1h.
	FreshGrace time.Duration
}

// Summary posts the report of the past week to the summary channel once a week, at the
// configured weekday and time (UTC). It is safe to run in several processes on one database:
// exactly one posts each week.
//
// How a week is posted, exactly once:
//  1. The week is identified by the ISO week of its scheduled time ("2026-W10"); the report
//     covers the 7 days before the scheduled time.
//  2. If a summary.posted audit event with that week id exists, the week is done.
//  3. Otherwise the process takes the store's lease (SummaryLeaseName). A process that finds
//     it taken looks again after LeaseRetry, and then normally finds the record of step 2.
//  4. Holding the lease, it checks the record again, builds the report from the audit log
//     (audit.ReadReport), posts it, and records summary.posted with
//     the week id, the window and the channel in its evidence.
//
// Crashes: posting comes before recording, so delivery is at-least-once. A crash (or a
// failed write) between posting and recording makes the week be posted again — by this
// process after a restart, or by another one once the lease has expired — rather than
// silently skipped. A process that posted but could not record keeps that in memory and
// retries only the record, so a failing database does not repeat the post.
//
// Restarts and missed weeks: at start the latest scheduled week is posted if it is not
// recorded and either an earlier summary was recorded (the broker has been posting, so a
// missing week is a missed one, however late) or it was scheduled less than FreshGrace ago.
// A new installation therefore waits for its first scheduled time instead of posting at
// start-up. Only the latest week is caught up; failures are retried with backoff until the
// next scheduled time, each logged at error level. A week with no grants is posted too.
type Summary struct {
	d   SummaryDeps
	log *slog.Logger

	// unrecorded is the week this process posted but could not record yet.
	unrecorded string
}

// NewSummary returns the weekly summary. It panics when a required dependency is missing or
// the schedule is out of range (the configuration is validated before this).
func NewSummary(d SummaryDeps) *Summary {
	if d.Clock == nil || d.Events == nil || d.Leases == nil || d.Recorder == nil || d.Poster == nil || d.Channel == "" {
		panic("broker.NewSummary: Clock, Events, Leases, Recorder, Poster and Channel are required")
	}
	if d.Weekday < time.Sunday || d.Weekday > time.Saturday || d.Hour < 0 || d.Hour > 23 || d.Minute < 0 || d.Minute > 59 {
		panic(fmt.Sprintf("broker.NewSummary: schedule %s %02d:%02d is out of range", d.Weekday, d.Hour, d.Minute))
	}
	if d.Holder == "" {
		d.Holder = grants.NewID("i")
	}
	if d.LeaseTTL <= 0 {
		d.LeaseTTL = DefaultSummaryLeaseTTL
	}
	if d.LeaseRetry <= 0 {
		d.LeaseRetry = DefaultSummaryLeaseRetry
	}
	if d.Retry <= 0 {
		d.Retry = DefaultSummaryRetry
	}
	if d.MaxRetry < d.Retry {
		d.MaxRetry = max(d.Retry, DefaultSummaryMaxRetry)
	}
	if d.FreshGrace <= 0 {
		d.FreshGrace = DefaultSummaryFreshGrace
	}
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Summary{d: d, log: log.With("component", "weekly_summary", "holder", d.Holder)}
}

// LastSlot returns the latest scheduled time at or before now (UTC).
func (s *Summary) LastSlot(now time.Time) time.Time {
	now = now.UTC()
	t := time.Date(now.Year(), now.Month(), now.Day(), s.d.Hour, s.d.Minute, 0, 0, time.UTC)
	t = t.AddDate(0, 0, -((int(t.Weekday()) - int(s.d.Weekday) + 7) % 7))
	if t.After(now) {
		t = t.AddDate(0, 0, -7)
	}
	return t
}

// WeekID names the week whose summary is scheduled at slot: its ISO year and week
// ("2026-W10").
func WeekID(slot time.Time) string {
	y, w := slot.UTC().ISOWeek()
	return fmt.Sprintf("%04d-W%02d", y, w)
}

type attemptResult int

const (
	weekDone attemptResult = iota // posted now, or recorded before
	weekBusy                      // another process holds the lease
)

// Run posts each week's summary until ctx ends; it returns nil then. It never returns
// early: failures are logged and retried.
func (s *Summary) Run(ctx context.Context) error {
	now := s.d.Clock.Now()
	slot := s.LastSlot(now)
	due, err := s.dueAtStart(ctx, slot, now)
	if err != nil {
		s.log.ErrorContext(ctx, "weekly summary: cannot tell whether the last week was posted; will try it", "week", WeekID(slot), "error", err)
		due = true
	}
	failures := 0
	for {
		if ctx.Err() != nil {
			return nil
		}
		now = s.d.Clock.Now()
		if cur := s.LastSlot(now); !cur.Equal(slot) {
			if due {
				s.log.ErrorContext(ctx, "weekly summary: giving up on a week that could not be posted before the next one was due", "week", WeekID(slot))
			}
			slot, due, failures = cur, true, 0
		}
		wait := s.LastSlot(now).AddDate(0, 0, 7).Sub(now) // until the next scheduled time
		if due {
			res, err := s.attempt(ctx, slot)
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				failures++
				retry := min(s.d.Retry<<min(failures-1, 20), s.d.MaxRetry)
				s.log.ErrorContext(ctx, "weekly summary failed; will retry", "week", WeekID(slot), "attempt", failures, "retry_in", retry.String(), "error", err)
				wait = min(wait, retry)
			case res == weekBusy:
				wait = min(wait, s.d.LeaseRetry)
			default:
				due, failures = false, 0
			}
		}
		t := s.d.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// dueAtStart decides whether the latest scheduled week still needs posting when the process
// starts (see Summary's doc).
func (s *Summary) dueAtStart(ctx context.Context, slot, now time.Time) (bool, error) {
	posted, err := s.recorded(ctx, slot)
	if err != nil || posted {
		return !posted, err
	}
	if now.Sub(slot) < s.d.FreshGrace {
		return true, nil
	}
	ever, err := s.d.Events.Search(ctx, audit.Query{Action: audit.ActionSummaryPosted, Limit: 1, Descending: true})
	if err != nil {
		return true, fmt.Errorf("look for earlier summaries: %w", err)
	}
	if len(ever) == 0 {
		s.log.InfoContext(ctx, "weekly summary: no summary was ever posted; waiting for the first scheduled time",
			"next", audit.FormatTime(slot.AddDate(0, 0, 7)))
		return false, nil
	}
	s.log.WarnContext(ctx, "weekly summary: the last week was not posted; posting it late", "week", WeekID(slot))
	return true, nil
}

// recorded reports whether the summary of the week scheduled at slot was recorded.
func (s *Summary) recorded(ctx context.Context, slot time.Time) (bool, error) {
	id := WeekID(slot)
	q := audit.Query{Action: audit.ActionSummaryPosted, Since: slot.Add(-24 * time.Hour), Limit: audit.MaxQueryLimit}
	for {
		evs, err := s.d.Events.Search(ctx, q)
		if err != nil {
			return false, fmt.Errorf("look for the summary of %s: %w", id, err)
		}
		for _, e := range evs {
			if e.Evidence["week"] == id {
				return true, nil
			}
		}
		if len(evs) < q.Limit {
			return false, nil
		}
		q.AfterSeq = evs[len(evs)-1].Seq
	}
}

// attempt posts the week scheduled at slot unless it is recorded or another process holds
// the lease.
func (s *Summary) attempt(ctx context.Context, slot time.Time) (attemptResult, error) {
	id := WeekID(slot)
	ctx, cancel := context.WithTimeout(ctx, s.d.LeaseTTL/2)
	defer cancel()
	if posted, err := s.recorded(ctx, slot); err != nil || posted {
		return weekDone, err
	}
	ok, err := s.d.Leases.AcquireLease(ctx, SummaryLeaseName, s.d.Holder, s.d.LeaseTTL)
	if err != nil {
		return weekBusy, fmt.Errorf("take the summary lease: %w", err)
	}
	if !ok {
		s.log.DebugContext(ctx, "weekly summary: another process holds the lease", "week", id)
		return weekBusy, nil
	}
	// Holding the lease: nobody else posts now. Look again, the previous holder may have
	// finished just before.
	if posted, err := s.recorded(ctx, slot); err != nil || posted {
		return weekDone, err
	}
	since, until := slot.AddDate(0, 0, -7), slot
	r, err := audit.ReadReport(ctx, s.d.Events, since, until, s.d.Report)
	if err != nil {
		return weekDone, fmt.Errorf("build the summary of %s: %w", id, err)
	}
	// The previous weeks' summaries and whether they were reviewed: an unreviewed one is
	// shown in this one.
	if rv, err := audit.ReadReviews(ctx, s.d.Events, since.AddDate(0, 0, -7), until); err != nil {
		s.log.WarnContext(ctx, "weekly summary: the reviews could not be read; posting without them", "week", id, "error", err)
	} else {
		r.Reviews = rv
	}
	if s.d.Checkpoints != nil {
		if c, ok, err := s.d.Checkpoints.LatestCheckpoint(ctx); err != nil {
			s.log.WarnContext(ctx, "weekly summary: the latest checkpoint could not be read; posting without it", "week", id, "error", err)
		} else if ok {
			r.Checkpoint = &c
		}
	}
	if s.unrecorded != id {
		if err := s.d.Poster.PostSummary(ctx, s.d.Channel, r); err != nil {
			return weekDone, fmt.Errorf("post the summary of %s to %s: %w", id, s.d.Channel, err)
		}
		s.unrecorded = id
		s.log.InfoContext(ctx, "weekly summary posted", "week", id, "channel", s.d.Channel, "grants", r.Grants, "anomalies", len(r.Anomalies))
	}
	ev := &audit.Event{
		Actor: grants.SystemActor(), Action: audit.ActionSummaryPosted,
		Reason: fmt.Sprintf("weekly summary for %s – %s posted to %s", audit.FormatTime(since), audit.FormatTime(until), s.d.Channel),
		Evidence: map[string]string{
			"week": id, "since": audit.FormatTime(since), "until": audit.FormatTime(until), "channel": s.d.Channel,
			"grants": strconv.Itoa(r.Grants), "anomalies": strconv.Itoa(len(r.Anomalies)), "holder": s.d.Holder,
		},
	}
	// The digest of the report as posted, which a review names (review.recorded).
	if digest, err := audit.ReportSHA256(r); err == nil {
		ev.Evidence["report_sha256"] = digest
	}
	if err := s.d.Recorder.Record(ctx, ev); err != nil {
		return weekDone, fmt.Errorf("record that the summary of %s was posted (it was; only the record is retried): %w", id, err)
	}
	s.unrecorded = ""
	return weekDone, nil
}
