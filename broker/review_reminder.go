package broker

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// ReminderPoster posts a line to a channel (integrations/slack's SummaryPoster implements
// it; mentions as in Notifier texts).
type ReminderPoster interface {
	PostLine(ctx context.Context, channel, text string) error
}

// Review reminder defaults; see ReviewReminderDeps.
const (
	DefaultReviewRemindAfter = 72 * time.Hour
	DefaultReviewRemindEvery = time.Hour
)

// ReviewReminderDeps are the collaborators of the reminder. All but Logger, RemindAfter
// and Every are required.
type ReviewReminderDeps struct {
	Clock  grants.Clock
	Events audit.Searcher
	Once   Once // one reminder per week across every process on the database
	Poster ReminderPoster
	// Channel is the summary channel (slack.summary.channel).
	Channel string
	// Reviewers are mentioned in the reminder (slack.summary.reviewers).
	Reviewers []string
	// RemindAfter is how long after a summary was posted an unreviewed one is reminded.
	// Default 72h.
	RemindAfter time.Duration
	// Every is how often the reminder looks. Default 1h.
	Every  time.Duration
	Logger *slog.Logger
}

// ReviewReminder reminds the reviewers, once per week, of a weekly summary still unreviewed
// RemindAfter after it was posted (and less than a week after: the next summary then shows
// it as not reviewed). Safe in several processes: the store's Once key
// "review-reminder:<week>" lets one of them post it.
type ReviewReminder struct {
	d   ReviewReminderDeps
	log *slog.Logger
}

// NewReviewReminder returns the reminder.
func NewReviewReminder(d ReviewReminderDeps) *ReviewReminder {
	if d.RemindAfter <= 0 {
		d.RemindAfter = DefaultReviewRemindAfter
	}
	if d.Every <= 0 {
		d.Every = DefaultReviewRemindEvery
	}
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ReviewReminder{d: d, log: log.With("component", "review_reminder")}
}

// Run looks every Every until ctx ends; it returns nil then. Failures are logged and tried
// again at the next look.
func (r *ReviewReminder) Run(ctx context.Context) error {
	for {
		if _, err := r.RemindDue(ctx); err != nil && ctx.Err() == nil {
			r.log.ErrorContext(ctx, "review reminder failed; will retry", "error", err)
		}
		t := r.d.Clock.NewTimer(r.d.Every)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// RemindDue posts the reminder of every week now due and returns how many it posted.
func (r *ReviewReminder) RemindDue(ctx context.Context) (int, error) {
	now := r.d.Clock.Now()
	ws, err := audit.ReadReviews(ctx, r.d.Events, now.Add(-r.d.RemindAfter-8*24*time.Hour), now)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, w := range ws {
		age := now.Sub(w.PostedAt)
		if w.Reviewed() || age < r.d.RemindAfter || age >= 7*24*time.Hour {
			continue
		}
		first, err := r.d.Once.Seen(ctx, "review-reminder:"+w.Week)
		if err != nil {
			return n, fmt.Errorf("claim the review reminder of %s: %w", w.Week, err)
		}
		if !first {
			continue
		}
		var who []string
		for _, u := range r.d.Reviewers {
			who = append(who, Mention(u))
		}
		to := strings.Join(who, " ")
		if to == "" {
			to = "Nobody is configured to review (slack.summary.reviewers)."
		}
		text := fmt.Sprintf(":hourglass: The weekly summary %s (posted %s) has not been reviewed yet. %s: please press its Mark reviewed button.",
			Clean(w.Week), audit.FormatTime(w.PostedAt), to)
		if err := r.d.Poster.PostLine(ctx, r.d.Channel, text); err != nil {
			// Claimed but not posted: the claim stays (no reminder storm); the next summary
			// still shows the week as not reviewed.
			return n, fmt.Errorf("post the review reminder of %s: %w", w.Week, err)
		}
		r.log.InfoContext(ctx, "review reminder posted", "week", w.Week)
		n++
	}
	return n, nil
}
