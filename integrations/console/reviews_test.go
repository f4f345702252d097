package console_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/broker/brokertest"
	"github.com/accessbroker/accessbroker/grants"
)

// TestReportReviewState: the weekly report page says whether the week's posted summary was
// reviewed. Before a review it is marked NOT REVIEWED with the posted report's SHA-256;
// after carol reviews it through the broker (the Slack path: review.recorded), the page
// names her, the time, the seq, the reviewed digest, and her note on each anomaly. A week
// without a posted summary is marked NOT REVIEWED too. The week's report is cached, the
// review state is not: the review shows on the next view.
func TestReportReviewState(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	// erin is not on call: bob approves her request, so the week has a not_on_call anomaly.
	r, err := e.b.Submit(ctx, broker.RequestInput{TeamID: team, UserID: erin, Resource: "prod-db", Duration: time.Hour, Reason: "slow queries"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.b.Process(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.b.Decide(ctx, broker.DecisionInput{TeamID: team, UserID: bob, RequestID: r.ID, Approve: true}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(7 * 24 * time.Hour) // Monday 2026-03-09 13:00: the week of 03-02 is over

	// The summary of the week, posted Monday 09:00 as broker.Summary records it.
	slot := time.Date(2026, 3, 9, 9, 0, 0, 0, time.UTC)
	since, until := slot.AddDate(0, 0, -7), slot
	week := broker.WeekID(slot)
	rep, err := audit.ReadReport(ctx, e.store, since, until, audit.ReportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Anomalies) == 0 {
		t.Fatal("the week has no anomaly; the test needs one to show a note")
	}
	digest, err := audit.ReportSHA256(rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.mgr.Record(ctx, &audit.Event{Actor: grants.SystemActor(), Action: audit.ActionSummaryPosted, Reason: "weekly summary posted",
		Evidence: map[string]string{"week": week, "since": audit.FormatTime(since), "until": audit.FormatTime(until), "channel": "C0SUMMARY",
			"grants": fmt.Sprint(rep.Grants), "anomalies": fmt.Sprint(len(rep.Anomalies)), "report_sha256": digest}}); err != nil {
		t.Fatal(err)
	}

	u := e.browser(t).signIn(carol)
	u.get("/ui/report?week=2026-03-02").mustStatus(http.StatusOK).
		mustSee(`id="review"`, "Summary "+week, "NOT REVIEWED", digest)
	if strings.Contains(u.body, "Reviewed by") {
		t.Fatalf("an unreviewed week shows a reviewer:\n%s", u.body)
	}

	reviews := broker.NewReviews(broker.ReviewDeps{Clock: e.clock, Events: e.store, Recorder: e.mgr,
		Directory: brokertest.NewDirectory(grants.Person{SlackUserID: carol, Email: "carol@example.com"}),
		Reviewers: []string{carol}, Logger: slog.New(slog.DiscardHandler)})
	rc, err := reviews.Open(ctx, broker.Caller{TeamID: team, UserID: carol}, week)
	if err != nil {
		t.Fatal(err)
	}
	var answers []broker.ReviewAnswer
	for i := range rc.Items {
		answers = append(answers, broker.ReviewAnswer{Found: fmt.Sprintf("found-note-%d: erin was paged", i), Done: fmt.Sprintf("done-note-%d: none needed", i)})
	}
	e.clock.Advance(time.Hour)
	ev, err := reviews.Record(ctx, broker.Caller{TeamID: team, UserID: carol}, week, answers)
	if err != nil {
		t.Fatal(err)
	}

	u.get("/ui/report?week=2026-03-02").mustStatus(http.StatusOK).
		mustSee("reviewed</span>", "Reviewed by carol@example.com", carol, audit.FormatTime(ev.Time), fmt.Sprintf("seq %d", ev.Seq),
			digest, "(the report as posted)", "Notes on each anomaly", string(rep.Anomalies[0].Kind))
	for i := range answers {
		u.mustSee(fmt.Sprintf("found-note-%d", i), fmt.Sprintf("done-note-%d", i))
	}
	if strings.Contains(u.body, "NOT REVIEWED") {
		t.Fatalf("a reviewed week is still marked NOT REVIEWED:\n%s", u.body)
	}

	// The week before: no summary was posted, so it is not reviewed.
	u.get("/ui/report?week=2026-02-23").mustStatus(http.StatusOK).mustSee("NOT REVIEWED", "no weekly summary covering this week was posted")
}
