package slack

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	slackgo "github.com/slack-go/slack"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/fixtures/slackfake"
)

const summaryChannel = "C0SUMMARY"

var (
	summarySince = time.Date(2026, 2, 23, 9, 0, 0, 0, time.UTC)
	summaryUntil = summarySince.AddDate(0, 0, 7)
)

// hostile is outside text that must never become a mention, a link or a broadcast.
const hostile = "<!channel> see <http://evil.example|the runbook> & <@U0BOSS>"

// bigReport is a report of n grants, one anomaly of some kind per grant plus a few more,
// with long and hostile reasons, names and details, so that nothing fits unless cut.
func bigReport(n int) audit.Report {
	r := audit.Report{
		Since: summarySince, Until: summaryUntil,
		Options: audit.ReportOptions{LateAfter: time.Minute, RejectionBurst: 3, RejectionWindow: time.Hour, MaxApprovalsPerPair: 3},
		Grants:  n, People: 37, Resources: 12, NotIssued: 3,
		Durations:   audit.Durations{GrantedMedian: time.Hour, GrantedLongest: 4 * time.Hour, LongestGrantID: "g_000004", Ended: n - 1, UsedMedian: 50 * time.Minute, UsedLongest: 4 * time.Hour},
		Extensions:  audit.Extensions{Extensions: 40, Grants: 35, Added: 20 * time.Hour},
		Requests:    audit.RequestCounts{Created: n + 40, Approved: n, Denied: 25, Rejected: 60, Expired: 7},
		Revocations: audit.RevocationHealth{Revoked: n, Failures: 90, FailedGrants: 12, NotRevokedOnTime: 2},
	}
	for _, k := range audit.DecisionKinds {
		r.Decisions = append(r.Decisions, audit.Count{Name: string(k), Count: n / len(audit.DecisionKinds)})
	}
	for _, k := range audit.EarlyEndKinds {
		r.EarlyEnds = append(r.EarlyEnds, audit.Count{Name: k, Count: 9})
	}
	for i := range 12 {
		r.ByResource = append(r.ByResource, audit.Count{Name: fmt.Sprintf("resource-%02d", i), Count: n/12 + 12 - i})
	}
	for i := range 37 {
		r.ByPerson = append(r.ByPerson, audit.Count{Name: fmt.Sprintf("person%02d@example.com", i), Count: n/37 + 37 - i})
	}
	r.Approvers = []audit.Count{{Name: "U0ERIN", Count: 80}, {Name: "U0FRANK", Count: 40}}
	for i := range n {
		issued := summarySince.Add(time.Duration(i) * 20 * time.Minute)
		g := audit.GrantRow{
			GrantID: fmt.Sprintf("g_%06d", i), RequestID: fmt.Sprintf("r_%06d", i), Resource: fmt.Sprintf("resource-%02d", i%12),
			Person: fmt.Sprintf("person%02d@example.com", i%37), IssuedAt: issued, ExpiresAt: issued.Add(time.Hour), Granted: time.Hour,
			Reason: fmt.Sprintf("#%d %s %s", i, hostile, strings.Repeat("a very long explanation ", 40)), Decision: audit.DecisionKinds[i%len(audit.DecisionKinds)],
			DecidedBy: "U0ERIN", OnCall: "false", State: audit.RowRevoked, RevokedAt: issued.Add(time.Hour), RevokeCause: "expired",
		}
		r.Rows = append(r.Rows, g)
		kind := audit.AnomalyKinds[i%len(audit.AnomalyKinds)]
		g.Anomalies = []audit.AnomalyKind{kind}
		r.Anomalies = append(r.Anomalies, audit.Anomaly{Kind: kind, Time: issued, Person: g.Person, Resource: g.Resource, GrantID: g.GrantID,
			Detail: "details " + hostile + strings.Repeat(" and more", 60)})
	}
	for i := range 10 {
		r.Revocations.Late = append(r.Revocations.Late, audit.LateRevocation{GrantID: fmt.Sprintf("g_%06d", i), Lag: 5 * time.Minute})
	}
	return r
}

// checkBlockLimits decodes a message's blocks as Slack would receive them and checks every
// Block Kit limit the summary promises to stay within.
func checkBlockLimits(t *testing.T, raw json.RawMessage) (all string) {
	t.Helper()
	var typed slackgo.Blocks
	if err := json.Unmarshal(raw, &typed); err != nil {
		t.Fatalf("blocks do not decode as Block Kit: %v", err)
	}
	var blocks []struct {
		Type     string `json:"type"`
		Text     *struct{ Type, Text string }
		Fields   []struct{ Type, Text string }
		Elements []struct {
			Type     string          `json:"type"`
			Text     json.RawMessage `json:"text"`
			ActionID string          `json:"action_id"`
			Value    string          `json:"value"`
		}
	}
	if err := json.Unmarshal(raw, &blocks); err != nil {
		t.Fatal(err)
	}
	if len(blocks) == 0 || len(blocks) > SlackMaxBlocks || len(typed.BlockSet) != len(blocks) {
		t.Fatalf("%d blocks (%d decoded); Slack takes 1 to %d", len(blocks), len(typed.BlockSet), SlackMaxBlocks)
	}
	var b strings.Builder
	for i, bl := range blocks {
		switch bl.Type {
		case "header":
			if bl.Text == nil || bl.Text.Type != "plain_text" || utf8.RuneCountInString(bl.Text.Text) > SlackMaxHeaderText {
				t.Errorf("block %d: header text %+v: want plain_text of at most %d characters", i, bl.Text, SlackMaxHeaderText)
			}
		case "section":
			if bl.Text == nil && len(bl.Fields) == 0 {
				t.Errorf("block %d: section without text or fields", i)
			}
			if bl.Text != nil && utf8.RuneCountInString(bl.Text.Text) > SlackMaxSectionText {
				t.Errorf("block %d: section text of %d characters; Slack takes %d", i, utf8.RuneCountInString(bl.Text.Text), SlackMaxSectionText)
			}
			if len(bl.Fields) > SlackMaxFields {
				t.Errorf("block %d: %d fields; Slack takes %d", i, len(bl.Fields), SlackMaxFields)
			}
			for _, f := range bl.Fields {
				if utf8.RuneCountInString(f.Text) > SlackMaxFieldText {
					t.Errorf("block %d: field of %d characters; Slack takes %d", i, utf8.RuneCountInString(f.Text), SlackMaxFieldText)
				}
				b.WriteString(f.Text + "\n")
			}
		case "context":
			if len(bl.Elements) == 0 || len(bl.Elements) > SlackMaxContextElems {
				t.Errorf("block %d: context with %d elements; Slack takes 1 to %d", i, len(bl.Elements), SlackMaxContextElems)
			}
			for _, e := range bl.Elements {
				var text string
				if err := json.Unmarshal(e.Text, &text); err != nil {
					t.Errorf("block %d: context element text is not a string: %s", i, e.Text)
				}
				if utf8.RuneCountInString(text) > SlackMaxSectionText {
					t.Errorf("block %d: context text of %d characters", i, utf8.RuneCountInString(text))
				}
				b.WriteString(text + "\n")
			}
		case "actions":
			// The "Mark reviewed" button, valued with the week.
			if len(bl.Elements) != 1 || bl.Elements[0].Type != "button" || bl.Elements[0].ActionID != ActionReview || bl.Elements[0].Value == "" {
				t.Errorf("block %d: actions %+v; want the one review button", i, bl.Elements)
			}
			b.WriteString("[Mark reviewed " + bl.Elements[0].Value + "]\n")
		case "divider":
		default:
			t.Errorf("block %d: unexpected block type %q", i, bl.Type)
		}
		if bl.Text != nil {
			b.WriteString(bl.Text.Text + "\n")
		}
	}
	return b.String()
}

// TestPostSummaryWithManyGrants posts a 500-grant report through the real slack-go client to
// the fake Slack and checks what arrived.
func TestPostSummaryWithManyGrants(t *testing.T) {
	fake, api, _ := newFakeSlack(t, nil)
	fake.AddChannel(summaryChannel)
	p, err := NewSummaryPoster(api, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	big := bigReport(500)
	notOnCall := 0
	for _, a := range big.Anomalies {
		if a.Kind == audit.AnomalyNotOnCall {
			notOnCall++
		}
	}
	if err := p.PostSummary(t.Context(), summaryChannel, big); err != nil {
		t.Fatal(err)
	}
	msgs := fake.Messages()
	if len(msgs) != 1 || msgs[0].Via != "chat.postMessage" || msgs[0].Channel != summaryChannel {
		t.Fatalf("messages = %+v, want one chat.postMessage to %s", msgs, summaryChannel)
	}
	if calls := fake.Calls("chat.postMessage"); len(calls) != 1 || calls[0].Auth == "" || calls[0].Error != "" {
		t.Fatalf("chat.postMessage calls = %+v, want one authenticated success", calls)
	}
	text := checkBlockLimits(t, msgs[0].Blocks)
	for _, want := range []string{
		"500 to 37 people on 12 resources",
		"*Anomalies (500):*",
		"*Grants (500):*",
		"480 more — run `accessbroker report --since 2026-02-23T09:00:00Z --until 2026-03-02T09:00:00Z --format csv`",
		"470 more anomalies — run `accessbroker report",
		"&lt;!channel&gt;",
		"person00@example.com 50", // top people
		"7 more",                  // beyond the top 5 resources
	} {
		if !strings.Contains(text, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	for _, bad := range []string{"<!channel>", "<http://evil", "<@U0BOSS>"} {
		if strings.Contains(text, bad) {
			t.Errorf("summary contains %q unescaped", bad)
		}
	}
	// The most serious anomalies come first: the 30 lines shown are the overdue grants'
	// first 30 (500 findings spread over the kinds: 50 each); the "not on call" findings are
	// only counted.
	if n := strings.Count(text, "• *not revoked on time*"); n != summaryAnomalyLines {
		t.Errorf("%d not-revoked-on-time lines, want the first %d", n, summaryAnomalyLines)
	}
	if strings.Contains(text, "• *not on call*") || !strings.Contains(text, fmt.Sprintf("%d not on call", notOnCall)) {
		t.Error("the least serious anomalies are listed instead of counted")
	}
	if msgs[0].Text == "" || utf8.RuneCountInString(msgs[0].Text) > 4000 {
		t.Errorf("notification text %q: want a short fallback", msgs[0].Text)
	}
}

func TestSummaryBlocksEmptyWeek(t *testing.T) {
	r := audit.BuildReport(nil, summarySince, summaryUntil, audit.ReportOptions{})
	blocks, fallback := SummaryBlocks(r)
	raw, err := json.Marshal(blocks)
	if err != nil {
		t.Fatal(err)
	}
	text := checkBlockLimits(t, raw)
	for _, want := range []string{"*No grants this week.*", "*Anomalies:* none.", "Mon 23 Feb 09:00 – Mon 2 Mar 09:00 UTC"} {
		if !strings.Contains(text, want) {
			t.Errorf("empty-week summary lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "*Grants (") {
		t.Error("empty-week summary lists grants")
	}
	if !strings.Contains(fallback, "no grants this week") {
		t.Errorf("fallback %q does not say there were no grants", fallback)
	}
}

func TestSummaryBlocksSmallWeekListsEverything(t *testing.T) {
	r := bigReport(4)
	blocks, _ := SummaryBlocks(r)
	raw, err := json.Marshal(blocks)
	if err != nil {
		t.Fatal(err)
	}
	text := checkBlockLimits(t, raw)
	for _, id := range []string{"`g_000000`", "`g_000003`"} {
		if strings.Count(text, id) != 2 { // once among the anomalies, once among the grants
			t.Errorf("%s appears %d times, want in both lists", id, strings.Count(text, id))
		}
	}
	if strings.Contains(text, "more — run") {
		t.Error("a 4-grant week says some were left out")
	}
}

func TestPostSummaryFailures(t *testing.T) {
	fake, api, _ := newFakeSlack(t, nil)
	fake.AddChannel(summaryChannel)
	p, err := NewSummaryPoster(api, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	fake.FailNext("chat.postMessage", slackfake.Fault{Error: "not_in_channel"})
	err = p.PostSummary(t.Context(), summaryChannel, bigReport(3))
	if err == nil || !strings.Contains(err.Error(), summaryChannel) || !strings.Contains(err.Error(), "not_in_channel") {
		t.Errorf("PostSummary = %v, want an error naming the channel and Slack's reason", err)
	}
	// 5xx then success: the retrying client gets it through.
	fake.FailNext("chat.postMessage", slackfake.Fault{Status: 503})
	if err := p.PostSummary(t.Context(), summaryChannel, bigReport(3)); err != nil {
		t.Errorf("PostSummary after one 503 = %v, want success after a retry", err)
	}
	if _, err := NewSummaryPoster(nil, 0, nil); err == nil {
		t.Error("NewSummaryPoster accepted no client")
	}
}

// TestPostSummaryCarriesLatestCheckpoint: the weekly message, posted through slack-go to the
// fake Slack, names the newest checkpoint (seq, hash, time) and its witnesses, and stays
// within Block Kit's limits on a full week.
func TestPostSummaryCarriesLatestCheckpoint(t *testing.T) {
	fake, api, _ := newFakeSlack(t, nil)
	fake.AddChannel(summaryChannel)
	p, err := NewSummaryPoster(api, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	cpTime := summaryUntil.Add(-30 * time.Minute)
	for _, grants := range []int{0, 500} {
		r := bigReport(grants)
		r.Checkpoint = &audit.ReportCheckpoint{Seq: 4211, Hash: audit.Hash{0x5f, 0xec, 0xeb, 0x66}, Time: cpTime, Witnesses: 2, Published: 2}
		if err := p.PostSummary(t.Context(), summaryChannel, r); err != nil {
			t.Fatal(err)
		}
	}
	msgs := fake.Messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	want := "Latest checkpoint: #4211 5feceb660000… at " + audit.FormatTime(cpTime) + "; published to 2 of 2 witnesses"
	for i, m := range msgs {
		text := checkBlockLimits(t, m.Blocks)
		if !strings.Contains(text, want) {
			t.Errorf("message %d lacks %q:\n%s", i, want, text)
		}
		if !strings.Contains(m.Text, "latest checkpoint #4211") {
			t.Errorf("message %d fallback %q lacks the checkpoint", i, m.Text)
		}
	}
}

// TestSummaryBlocksShowDatabaseUse: the summary carries the proxied sessions' figures, per
// week and per grant, and names every anomaly kind in words.
func TestSummaryBlocksShowDatabaseUse(t *testing.T) {
	r := bigReport(4)
	r.Sessions = audit.SessionUse{Sessions: 3, Statements: 10, Connected: time.Hour, Writes: 4, DDL: 1, Failed: 2, PermissionDenied: 1}
	r.LoginFailures = 6
	r.Rows[0].Use = audit.SessionUse{Sessions: 2, Statements: 8, Connected: 40 * time.Minute, Writes: 3, DDL: 1, Failed: 2}
	r.Anomalies = nil
	for _, k := range audit.AnomalyKinds {
		r.Anomalies = append(r.Anomalies, audit.Anomaly{Kind: k, GrantID: "g_000001", Detail: "d"})
	}
	blocks, _ := SummaryBlocks(r)
	raw, err := json.Marshal(blocks)
	if err != nil {
		t.Fatal(err)
	}
	text := checkBlockLimits(t, raw)
	for _, want := range []string{
		"*Database sessions:* 3 (1h connected) · 10 statements: 4 write · 1 DDL · 2 failed (1 permission denied) · 6 refused logins",
		"2 sessions, 8 statements (3 write, 1 DDL, 2 failed), 40m connected",
		"repeated database login failures", "statements after the incident resolved", "permission-denied statements", "granted but never used",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("summary does not contain %q:\n%s", want, text)
		}
	}
	for _, k := range audit.AnomalyKinds {
		if summaryAnomalyWords[k] == "" || !slices.Contains(summaryAnomalyOrder, k) {
			t.Errorf("anomaly kind %s has no words or no place in the summary order", k)
		}
	}
}
