package audit

import (
	"bytes"
	"encoding/csv"
	"slices"
	"strings"
	"testing"
	"time"
)

// reviewLog is a log with three posted summaries (W09 before the window, W10 reviewed by
// dave a day after it was posted, W11 never reviewed) and one grant in W10.
func reviewLog(t *testing.T) []Event {
	t.Helper()
	w10 := time.Date(2026, 3, 9, 9, 0, 0, 0, time.UTC)
	var evs []Event
	add := func(at time.Time, actor Actor, a Action, grant string, ev map[string]string) {
		evs = append(evs, Event{Seq: int64(len(evs) + 1), ID: "e" + FormatTime(at), Time: at, Actor: actor, Action: a, GrantID: grant, Resource: "prod-db", Evidence: ev})
	}
	sys := Actor{Kind: ActorSystem, ID: "accessbroker"}
	posted := func(at time.Time, week string) {
		add(at, sys, ActionSummaryPosted, "", map[string]string{"week": week, "since": FormatTime(at.AddDate(0, 0, -7)), "until": FormatTime(at), "report_sha256": "sha-" + week})
	}
	posted(w10.AddDate(0, 0, -7), "2026-W09")
	add(w10.Add(-48*time.Hour), Actor{Kind: ActorOperator, ID: "ops"}, ActionGrantIssuing, "g1", map[string]string{"person": "alice@example.com", "expires_at": FormatTime(w10.Add(-47 * time.Hour))})
	add(w10.Add(-48*time.Hour+time.Second), Actor{Kind: ActorOperator, ID: "ops"}, ActionGrantIssued, "g1", map[string]string{"expires_at": FormatTime(w10.Add(-47 * time.Hour))})
	posted(w10, "2026-W10")
	add(w10.Add(24*time.Hour), Actor{Kind: ActorUser, ID: "U0DAVE", Email: "dave@example.com"}, ActionReviewRecorded, "", map[string]string{
		"week": "2026-W10", "report_sha256": "sha-2026-W10", "reviewer": "dave@example.com",
		"notes": `[{"kind":"not_on_call","grant_id":"g1","person":"alice@example.com","found":"approved by bob","done":"none"}]`})
	posted(w10.AddDate(0, 0, 7), "2026-W11")
	return evs
}

// TestReadReviews: the summaries overlapping the window, each with its reviews found
// anywhere in the log; an unreviewed week is NOT REVIEWED in the Markdown, the JSON and the
// report CSV's week_reviewed column.
func TestReadReviews(t *testing.T) {
	s := &memSearcher{events: reviewLog(t)}
	since, until := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC), time.Date(2026, 3, 16, 9, 0, 0, 0, time.UTC)
	ws, err := ReadReviews(t.Context(), s, since, until)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 2 || ws[0].Week != "2026-W10" || ws[1].Week != "2026-W11" {
		t.Fatalf("weeks = %+v; want W10 and W11 (W09 ends at the window's start)", ws)
	}
	if !ws[0].Reviewed() || ws[0].Reviews[0].Reviewer != "dave@example.com" || ws[0].Reviews[0].Notes[0].Found != "approved by bob" {
		t.Fatalf("W10 = %+v", ws[0])
	}
	if ws[1].Reviewed() || ws[1].Status() != "NOT REVIEWED" {
		t.Fatalf("W11 = %+v", ws[1])
	}

	r, err := ReadReport(t.Context(), s, time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC), time.Date(2026, 3, 9, 9, 0, 0, 0, time.UTC), ReportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.Reviews = ws
	var md, js, cs bytes.Buffer
	for f, w := range map[string]*bytes.Buffer{FormatMarkdown: &md, FormatJSON: &js, FormatCSV: &cs} {
		if err := RenderReport(w, r, f); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(md.String(), "## Reviews") || !strings.Contains(md.String(), "2026-W11") || !strings.Contains(md.String(), "**NOT REVIEWED**") ||
		!strings.Contains(md.String(), "reviewed by dave@example.com") {
		t.Errorf("markdown reviews section:\n%s", md.String())
	}
	if !strings.Contains(js.String(), `"reviews": [`) || !strings.Contains(js.String(), `"week": "2026-W11"`) {
		t.Errorf("json has no reviews:\n%s", js.String())
	}
	rows, err := csv.NewReader(&cs).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := slices.Index(ReportCSVColumns, "week_reviewed")
	if rows[0][col] != "week_reviewed" || len(rows) != 2 || !strings.HasPrefix(rows[1][col], "yes: dave@example.com at ") {
		t.Fatalf("csv week_reviewed column: %v", rows)
	}
	// The grant's week unreviewed: "no".
	r.Reviews = ws[1:]
	ws[1].Since = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	cs.Reset()
	if err := WriteReportCSV(&cs, r); err != nil {
		t.Fatal(err)
	}
	rows, _ = csv.NewReader(&cs).ReadAll()
	if rows[1][col] != "no" {
		t.Fatalf("unreviewed week in csv: %q", rows[1][col])
	}
}
