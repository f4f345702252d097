package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// recordEvents appends audit-only events through the app, as serve would.
func (p *inProcess) recordEvents(evs ...*audit.Event) {
	p.t.Helper()
	cfg, ok := loadConfigFlag(p.config, io.Discard)
	if !ok {
		p.t.Fatal("config")
	}
	a, err := newApp(context.Background(), cfg, appOptions{logOut: io.Discard})
	if err != nil {
		p.t.Fatal(err)
	}
	defer a.Close()
	if err := a.manager.Record(context.Background(), evs...); err != nil {
		p.t.Fatal(err)
	}
}

// TestReportReviews: `report --reviews` lists the weekly summaries of the window and their
// reviews in each format, an unreviewed week as such; the report's CSV says per grant
// whether its week was reviewed.
func TestReportReviews(t *testing.T) {
	p := newInProcess(t)
	p.history()
	now := time.Now().UTC()
	posted := func(week string, since, until time.Time) *audit.Event {
		return &audit.Event{Actor: grants.SystemActor(), Action: audit.ActionSummaryPosted, Evidence: map[string]string{
			"week": week, "since": audit.FormatTime(since), "until": audit.FormatTime(until), "report_sha256": "d1ge57-" + week}}
	}
	p.recordEvents(
		posted("2026-W48", now.Add(-time.Hour), now.Add(time.Hour)),
		posted("2026-W47", now.Add(-9*24*time.Hour), now.Add(-2*24*time.Hour)),
		&audit.Event{Actor: audit.Actor{Kind: audit.ActorUser, ID: "U0DAVE", Email: "dave@example.com"}, Action: audit.ActionReviewRecorded,
			Evidence: map[string]string{"week": "2026-W48", "report_sha256": "d1ge57-2026-W48", "reviewer": "dave@example.com",
				"notes": `[{"kind":"not_on_call","person":"alice@example.com","found":"=cmd|calc","done":"none"}]`}},
		&audit.Event{Actor: audit.Actor{Kind: audit.ActorUser, ID: "U0EVE"}, Action: audit.ActionReviewRecorded,
			Evidence: map[string]string{"week": "2026-W48", "reviewer": "=HYPERLINK(\"http://x\")", "notes": `[]`}},
	)
	md := p.mustRun("report", "--config", p.config, "--since", "240h", "--reviews")
	for _, want := range []string{"## 2026-W48", "Reviewed by dave@example.com", "## 2026-W47", "**NOT REVIEWED.**", "d1ge57-2026-W48"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	var ws []audit.WeekReview
	if err := json.Unmarshal([]byte(p.mustRun("report", "--config", p.config, "--since", "240h", "--reviews", "--format", "json")), &ws); err != nil {
		t.Fatal(err)
	}
	if len(ws) != 2 || ws[0].Reviewed() == ws[1].Reviewed() {
		t.Fatalf("json = %+v", ws)
	}
	rows, err := csv.NewReader(strings.NewReader(p.mustRun("report", "--config", p.config, "--since", "240h", "--reviews", "--format", "csv"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 || rows[0][5] != "reviewed" {
		t.Fatalf("csv = %v", rows)
	}
	for _, r := range rows[1:] {
		if r[0] == "2026-W48" && (r[5] != "true" || (r[7] == "U0EVE" && r[6] != `'=HYPERLINK("http://x")`)) {
			t.Fatalf("reviewed row %v (a cell starting with = must be defused)", r)
		}
		if r[0] == "2026-W47" && r[5] != "false" {
			t.Fatalf("unreviewed row %v", r)
		}
	}
	report, err := csv.NewReader(strings.NewReader(p.mustRun("report", "--config", p.config, "--since", "2h", "--format", "csv"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	last := slices.Index(report[0], "week_reviewed") // the activity columns (issue 17) come after it
	if last < 0 || len(report) < 2 || !strings.HasPrefix(report[1][last], "yes: dave@example.com") {
		t.Fatalf("report csv week_reviewed: %v", report)
	}
}
