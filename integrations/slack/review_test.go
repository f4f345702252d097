package slack

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	slackfixtures "github.com/accessbroker/accessbroker/fixtures/slack"
	"github.com/accessbroker/accessbroker/grants"
)

// postedWeek makes a week with one anomaly about alice (a grant approved while she was not
// on call), posts its summary to Slack as the weekly summary does, and records
// summary.posted. It returns the week id read from the posted "Mark reviewed" button and
// the report's digest.
func postedWeek(t *testing.T, e *e2e) (week, digest string) {
	t.Helper()
	e.command(t, alice, "prod-db 2h investigating slow queries")
	if a := e.click(t, bob, ActionApprove, e.allRequests(t)[0].ID, e.approvalRef(t)); a.status != http.StatusOK {
		t.Fatalf("approve: %+v", a)
	}
	since, until := t0.Add(-time.Hour), t0.Add(time.Hour)
	r, err := audit.ReadReport(t.Context(), e.store, since, until, audit.ReportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Anomalies) == 0 {
		t.Fatal("setup: the week has no anomaly")
	}
	e.fake.AddChannel(summaryChannel, bob)
	poster, err := NewSummaryPoster(e.n.o.API, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := poster.PostSummary(t.Context(), summaryChannel, r); err != nil {
		t.Fatal(err)
	}
	digest, err = audit.ReportSHA256(r)
	if err != nil {
		t.Fatal(err)
	}
	week = broker.WeekID(until)
	if err := e.mgr.Record(t.Context(), &audit.Event{Actor: grants.SystemActor(), Action: audit.ActionSummaryPosted,
		Evidence: map[string]string{"week": week, "since": audit.FormatTime(since), "until": audit.FormatTime(until), "report_sha256": digest}}); err != nil {
		t.Fatal(err)
	}
	msgs := e.messages(inChannel(summaryChannel))
	if len(msgs) != 1 || !strings.Contains(string(msgs[0].Blocks), `"action_id":"review_open"`) || !strings.Contains(string(msgs[0].Blocks), `"value":"`+week+`"`) {
		t.Fatalf("the summary has no Mark reviewed button for %s: %s", week, msgs[0].Blocks)
	}
	return week, digest
}

// submitBody is a view_submission (fixtures/slack/view-submission.json) of the review modal
// by user, with answers for items 0..n-1.
func (e *e2e) submitBody(user, week string, answers []broker.ReviewAnswer) []byte {
	var p map[string]any
	if err := json.Unmarshal(slackfixtures.Read("view-submission.json"), &p); err != nil {
		panic(err)
	}
	p["team"] = map[string]any{"id": testTeam, "domain": "acme"}
	p["user"] = map[string]any{"id": user, "username": strings.ToLower(user), "team_id": testTeam}
	view := p["view"].(map[string]any)
	view["callback_id"], view["private_metadata"] = CallbackReview, week
	values := map[string]any{}
	for i, a := range answers {
		values[foundBlock(i)] = map[string]any{"found": map[string]any{"type": "plain_text_input", "value": a.Found}}
		values[doneBlock(i)] = map[string]any{"done": map[string]any{"type": "plain_text_input", "value": a.Done}}
	}
	view["state"] = map[string]any{"values": values}
	b, _ := json.Marshal(p)
	return []byte(url.Values{"payload": {string(b)}}.Encode())
}

// submit sends a signed view_submission and returns the status and body of the answer.
func (e *e2e) submit(t *testing.T, user, week string, answers []broker.ReviewAnswer) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(e.signed(InteractionsPath, e.submitBody(user, week, answers), e.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *e2e) reviewEvents(t *testing.T, action audit.Action) []audit.Event {
	t.Helper()
	evs, err := e.store.Search(t.Context(), audit.Query{Action: action, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestReviewThroughModal: a configured reviewer clicks "Mark reviewed" on the posted
// summary, gets the modal (views.open) with one found/done pair per anomaly, submits it,
// and the review is recorded as review.recorded with the reviewer, the notes and the
// report's SHA-256, in a chain that verifies.
func TestReviewThroughModal(t *testing.T) {
	e := newE2E(t, func(o *e2eOptions) { o.reviewers = []string{dave} })
	week, digest := postedWeek(t, e)

	e.click(t, dave, ActionReview, week, broker.MessageRef{Channel: summaryChannel, TS: "1.2"})
	opens := e.fake.Calls("views.open")
	if len(opens) != 1 {
		t.Fatalf("views.open called %d times", len(opens))
	}
	var req struct {
		TriggerID string `json:"trigger_id"`
		View      struct {
			CallbackID      string `json:"callback_id"`
			PrivateMetadata string `json:"private_metadata"`
			Blocks          []struct {
				Type    string `json:"type"`
				BlockID string `json:"block_id"`
			} `json:"blocks"`
		} `json:"view"`
	}
	if err := json.Unmarshal(opens[0].JSON, &req); err != nil {
		t.Fatal(err)
	}
	var inputs []string
	for _, b := range req.View.Blocks {
		if b.Type == "input" {
			inputs = append(inputs, b.BlockID)
		}
	}
	if req.TriggerID == "" || req.View.CallbackID != CallbackReview || req.View.PrivateMetadata != week || len(inputs) < 2 || inputs[0] != foundBlock(0) || inputs[1] != doneBlock(0) {
		t.Fatalf("modal = %+v; inputs %v", req.View, inputs)
	}
	if !strings.Contains(string(opens[0].JSON), digest) {
		t.Error("the modal does not show the report's SHA-256")
	}

	answers := make([]broker.ReviewAnswer, len(inputs)/2)
	for i := range answers {
		answers[i] = broker.ReviewAnswer{Found: fmt.Sprintf("checked item %d with the requester", i+1), Done: "nothing needed: incident INC-42"}
	}
	// An empty answer is refused in the modal and records nothing as reviewed.
	bad := append([]broker.ReviewAnswer(nil), answers...)
	bad[0].Done = " "
	if status, body := e.submit(t, dave, week, bad); status != http.StatusOK || !strings.Contains(body, `"response_action":"errors"`) {
		t.Fatalf("empty answer: %d %s", status, body)
	}
	if status, body := e.submit(t, dave, week, answers); status != http.StatusOK || strings.TrimSpace(body) != "" {
		t.Fatalf("submission answered %d %q; want an empty 200 (closes the modal)", status, body)
	}
	recs := e.reviewEvents(t, audit.ActionReviewRecorded)
	if len(recs) != 1 {
		t.Fatalf("%d review.recorded events", len(recs))
	}
	ev := recs[0]
	if ev.Actor.ID != dave || ev.Actor.Email != "dave@example.com" || ev.Evidence["report_sha256"] != digest || ev.Evidence["week"] != week {
		t.Fatalf("review.recorded = %+v", ev)
	}
	var notes []audit.ReviewNote
	if err := json.Unmarshal([]byte(ev.Evidence["notes"]), &notes); err != nil || len(notes) != len(answers) {
		t.Fatalf("notes %q: %v", ev.Evidence["notes"], err)
	}
	if notes[0].Found != answers[0].Found || notes[0].Done != answers[0].Done || notes[0].Person != "alice@example.com" || notes[0].Kind == "" {
		t.Fatalf("note = %+v", notes[0])
	}
	pub, _, _ := ed25519.GenerateKey(nil)
	if res, err := audit.Verify(context.Background(), e.store, pub, audit.VerifyOptions{}); err != nil || !res.OK {
		t.Fatalf("audit verify after the review: %+v %v", res, err)
	}
}

// TestReviewRefused: someone who is not a configured reviewer, and a reviewer with an
// anomaly about their own grant, get no modal, cannot submit one either, and each attempt
// is recorded as review.refused; nothing is recorded as reviewed.
func TestReviewRefused(t *testing.T) {
	e := newE2E(t, func(o *e2eOptions) { o.reviewers = []string{alice, dave} })
	week, _ := postedWeek(t, e)
	answers := []broker.ReviewAnswer{{Found: "fine", Done: "nothing"}}
	cases := []struct {
		name, user, why string
	}{
		{"not a reviewer", carol, "only the configured reviewers"},
		{"own grant", alice, "an anomaly about you"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.reviewEvents(t, audit.ActionReviewRefused))
			e.click(t, tc.user, ActionReview, week, broker.MessageRef{Channel: summaryChannel, TS: "1.2"})
			if n := len(e.fake.Calls("views.open")); n != 0 {
				t.Fatalf("a modal was opened for %s", tc.user)
			}
			eph := e.ephemerals(tc.user)
			if len(eph) == 0 || !strings.Contains(content(eph[len(eph)-1]), tc.why) {
				t.Fatalf("%s was not told why: %+v", tc.user, eph)
			}
			status, body := e.submit(t, tc.user, week, answers)
			if status != http.StatusOK || !strings.Contains(body, `"response_action":"errors"`) || !strings.Contains(body, tc.why) {
				t.Fatalf("forged submission answered %d %s", status, body)
			}
			refused := e.reviewEvents(t, audit.ActionReviewRefused)
			if len(refused)-before != 2 {
				t.Fatalf("%d review.refused events for a click and a submission, want 2", len(refused)-before)
			}
			if last := refused[len(refused)-1]; last.Actor.ID != tc.user || !strings.Contains(last.Evidence["refused"], tc.why) {
				t.Fatalf("review.refused = %+v", last)
			}
		})
	}
	if n := len(e.reviewEvents(t, audit.ActionReviewRecorded)); n != 0 {
		t.Fatalf("%d reviews recorded by people who may not review", n)
	}
	// A week whose summary was never posted cannot be reviewed by anyone.
	if status, body := e.submit(t, dave, "2030-W01", answers); status != http.StatusOK || !strings.Contains(body, "no weekly summary") {
		t.Fatalf("unknown week: %d %s", status, body)
	}
}

// TestSummaryShowsUnreviewedWeek: the next summary calls out an earlier week nobody
// reviewed, and names the reviewers of one that was.
func TestSummaryShowsUnreviewedWeek(t *testing.T) {
	r := audit.Report{Since: t0, Until: t0.AddDate(0, 0, 7), Reviews: []audit.WeekReview{
		{Week: "2026-W09", PostedAt: t0.AddDate(0, 0, -7), Reviews: []audit.ReviewRecord{{Reviewer: "dave@example.com", At: t0.AddDate(0, 0, -6)}}},
		{Week: "2026-W10", PostedAt: t0},
	}}
	blocks, _ := SummaryBlocks(r)
	raw, err := json.Marshal(blocks)
	if err != nil {
		t.Fatal(err)
	}
	all := checkBlockLimits(t, raw)
	for _, want := range []string{"Summary 2026-W10 (posted Mon 2 Mar 13:00 UTC) has NOT been reviewed", "Summary 2026-W09 was reviewed by dave@example.com"} {
		if !strings.Contains(all, want) {
			t.Errorf("summary lacks %q:\n%s", want, all)
		}
	}
}

// TestReviewReminder: a summary still unreviewed 72 h after it was posted is reminded once
// in the summary channel, mentioning the reviewers; a reviewed one is not.
func TestReviewReminder(t *testing.T) {
	e := newE2E(t, func(o *e2eOptions) { o.reviewers = []string{dave} })
	week, _ := postedWeek(t, e)
	poster, err := NewSummaryPoster(e.n.o.API, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	rem := broker.NewReviewReminder(broker.ReviewReminderDeps{Clock: e.clock, Events: e.store, Once: e.store, Poster: poster,
		Channel: summaryChannel, Reviewers: []string{dave}})
	remind := func() int {
		t.Helper()
		n, err := rem.RemindDue(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	e.clock.Advance(71 * time.Hour)
	if n := remind(); n != 0 {
		t.Fatalf("reminded after 71 h (%d)", n)
	}
	e.clock.Advance(2 * time.Hour)
	if n := remind(); n != 1 {
		t.Fatalf("not reminded after 73 h (%d)", n)
	}
	if n := remind(); n != 0 {
		t.Fatalf("reminded twice (%d)", n)
	}
	msgs := e.messages(inChannel(summaryChannel))
	last := msgs[len(msgs)-1]
	if !strings.Contains(last.Text, week) || !strings.Contains(last.Text, "<@"+dave+">") || !strings.Contains(last.Text, "not been reviewed") {
		t.Fatalf("reminder = %q", last.Text)
	}
	// Once reviewed, a week is never reminded (a second, reviewed week posted now).
	since, until := e.clock.Now().Add(-time.Hour), e.clock.Now().Add(time.Hour)
	if err := e.mgr.Record(t.Context(), &audit.Event{Actor: grants.SystemActor(), Action: audit.ActionSummaryPosted,
		Evidence: map[string]string{"week": "2026-W11", "since": audit.FormatTime(since), "until": audit.FormatTime(until)}}); err != nil {
		t.Fatal(err)
	}
	// Its one anomaly: alice's grant, never revoked (no revoker runs in this test).
	if status, body := e.submit(t, dave, "2026-W11", []broker.ReviewAnswer{{Found: "revoker down", Done: "revoked by hand"}}); status != http.StatusOK || strings.TrimSpace(body) != "" {
		t.Fatalf("review of W11: %d %s", status, body)
	}
	e.clock.Advance(80 * time.Hour)
	if n := remind(); n != 0 {
		t.Fatalf("a reviewed week was reminded (%d)", n)
	}
}
