package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Review actions.
const (
	// ActionReviewRecorded: a configured reviewer marked a weekly report reviewed. Evidence:
	// week, since, until, report_sha256 (of the report as posted), anomalies (how many) and
	// notes (a JSON array of ReviewNote, one per anomaly).
	ActionReviewRecorded Action = "review.recorded"
	// ActionReviewRefused: someone tried to mark a report reviewed and was refused (not a
	// configured reviewer, an anomaly about their own grants, a week with no posted
	// summary, bad notes). Evidence: week and refused (why). Nothing was recorded as reviewed.
	ActionReviewRefused Action = "review.refused"
)

// ReviewNote is a reviewer's answer about one anomaly of the report: what was found and
// what was done.
type ReviewNote struct {
	Kind    AnomalyKind `json:"kind"`
	GrantID string      `json:"grant_id,omitempty"`
	Person  string      `json:"person,omitempty"`
	Found   string      `json:"found"`
	Done    string      `json:"done"`
}

// ReportSHA256 is the lowercase hex SHA-256 of the report's JSON rendering (RenderReport
// with FormatJSON): the digest a review.recorded event names, so that auditors can tell
// which report was reviewed (`accessbroker report --format json` of the same window and
// options renders the same bytes, less the checkpoint line, which is live).
func ReportSHA256(r Report) (string, error) {
	var b bytes.Buffer
	if err := RenderReport(&b, r, FormatJSON); err != nil {
		return "", fmt.Errorf("hash the report: %w", err)
	}
	sum := sha256.Sum256(b.Bytes())
	return hex.EncodeToString(sum[:]), nil
}

// ReviewRecord is one review.recorded event.
type ReviewRecord struct {
	Seq          int64        `json:"seq"`
	At           time.Time    `json:"at"`
	ReviewerID   string       `json:"reviewer_id"`
	Reviewer     string       `json:"reviewer"`
	ReportSHA256 string       `json:"report_sha256"`
	Notes        []ReviewNote `json:"notes"`
}

// WeekReview is one posted weekly summary (summary.posted) and the reviews recorded of it.
type WeekReview struct {
	Week         string         `json:"week"`
	Since        time.Time      `json:"since"`
	Until        time.Time      `json:"until"`
	PostedAt     time.Time      `json:"posted_at"`
	ReportSHA256 string         `json:"report_sha256,omitempty"`
	Reviews      []ReviewRecord `json:"reviews"`
}

// Reviewed reports whether the week has at least one review.
func (w WeekReview) Reviewed() bool { return len(w.Reviews) > 0 }

// Status is one line for people: "reviewed by a, b" or "NOT REVIEWED".
func (w WeekReview) Status() string {
	if !w.Reviewed() {
		return "NOT REVIEWED"
	}
	var names []string
	for _, r := range w.Reviews {
		names = append(names, r.Reviewer+" at "+FormatTime(r.At))
	}
	return "reviewed by " + strings.Join(names, ", ")
}

// ReadReviews returns the weekly summaries posted whose window overlaps [since, until), in
// posting order, each with every review recorded of it anywhere in the log (a review comes
// after its summary, often in the next week). A week posted twice (a crash between the post
// and its record) appears once.
func ReadReviews(ctx context.Context, s Searcher, since, until time.Time) ([]WeekReview, error) {
	var out []WeekReview
	idx := map[string]int{}
	err := searchPages(ctx, s, Query{Action: ActionSummaryPosted}, func(evs ...Event) {
		for _, e := range evs {
			wk := e.Evidence["week"]
			ws, err1 := time.Parse(time.RFC3339, e.Evidence["since"])
			wu, err2 := time.Parse(time.RFC3339, e.Evidence["until"])
			if wk == "" || err1 != nil || err2 != nil || !ws.Before(until) || !wu.After(since) {
				continue
			}
			if _, dup := idx[wk]; dup {
				continue
			}
			idx[wk] = len(out)
			out = append(out, WeekReview{Week: wk, Since: ws.UTC(), Until: wu.UTC(), PostedAt: e.Time, ReportSHA256: e.Evidence["report_sha256"], Reviews: []ReviewRecord{}})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("read the posted summaries: %w", err)
	}
	if len(out) == 0 {
		return out, nil
	}
	err = searchPages(ctx, s, Query{Action: ActionReviewRecorded}, func(evs ...Event) {
		for _, e := range evs {
			i, ok := idx[e.Evidence["week"]]
			if !ok {
				continue
			}
			rec := ReviewRecord{Seq: e.Seq, At: e.Time, ReviewerID: e.Actor.ID, Reviewer: e.Evidence["reviewer"], ReportSHA256: e.Evidence["report_sha256"], Notes: []ReviewNote{}}
			if rec.Reviewer == "" {
				rec.Reviewer = e.Actor.ID
			}
			_ = json.Unmarshal([]byte(e.Evidence["notes"]), &rec.Notes)
			out[i].Reviews = append(out[i].Reviews, rec)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("read the reviews: %w", err)
	}
	return out, nil
}

// reviewOf is the review status of the week covering t, for the report's CSV column: "yes:
// reviewer at time; …", "no", or "" when no posted summary covers t.
func reviewOf(ws []WeekReview, t time.Time) string {
	for _, w := range ws {
		if !t.Before(w.Since) && t.Before(w.Until) {
			if !w.Reviewed() {
				return "no"
			}
			return "yes: " + strings.TrimPrefix(w.Status(), "reviewed by ")
		}
	}
	return ""
}
