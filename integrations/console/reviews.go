package console

import (
	"context"
	"fmt"
	"time"

	"github.com/accessbroker/accessbroker/audit"
)

// weekReviewView is one posted weekly summary that covers part of the report's week, with
// the reviews recorded of it (review.recorded), as the report page shows them.
type weekReviewView struct {
	Week         string
	Since, Until time.Time
	PostedAt     time.Time
	// ReportSHA256 is the digest of the report as posted (summary.posted's evidence).
	ReportSHA256 string
	Reviews      []reviewView
}

// reviewView is one review.recorded event: who, when, the digest of the report they
// reviewed, whether it is the posted one, and their note on each anomaly.
type reviewView struct {
	Seq          int64
	At           time.Time
	Reviewer     string
	ReviewerID   string
	ReportSHA256 string
	// Matches is true when the reviewed digest is the posted report's; Mismatch when both
	// are known and differ (the reviewer saw another rendering of the week).
	Matches, Mismatch bool
	Notes             []audit.ReviewNote
}

// weekReviews reads the review state of the week [since, until): every weekly summary
// posted whose window overlaps it (the summary's window follows slack.summary's weekday
// and time, so a Monday-to-Monday week may overlap two) and the reviews of each. It is read
// on every view, never cached with the week's report: reviews arrive after the week ends.
// Two indexed searches (summary.posted, review.recorded), a few dozen rows a year.
func (c *Console) weekReviews(ctx context.Context, since, until time.Time) ([]weekReviewView, error) {
	ws, err := audit.ReadReviews(ctx, c.cfg.Audit, since, until)
	if err != nil {
		return nil, fmt.Errorf("review state of the week of %s: %w", since.Format("2006-01-02"), err)
	}
	out := make([]weekReviewView, 0, len(ws))
	for _, w := range ws {
		v := weekReviewView{Week: w.Week, Since: w.Since, Until: w.Until, PostedAt: w.PostedAt, ReportSHA256: w.ReportSHA256}
		for _, r := range w.Reviews {
			rv := reviewView{Seq: r.Seq, At: r.At, Reviewer: r.Reviewer, ReviewerID: r.ReviewerID, ReportSHA256: r.ReportSHA256, Notes: r.Notes}
			if r.ReportSHA256 != "" && w.ReportSHA256 != "" {
				rv.Matches, rv.Mismatch = r.ReportSHA256 == w.ReportSHA256, r.ReportSHA256 != w.ReportSHA256
			}
			v.Reviews = append(v.Reviews, rv)
		}
		out = append(out, v)
	}
	return out, nil
}
