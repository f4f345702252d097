package slack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	slackgo "github.com/slack-go/slack"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
)

// Block Kit limits the weekly summary stays within (docs.slack.dev, Block Kit reference:
// at most 50 blocks per message; a section's text at most 3000 characters, its fields at
// most 10 of at most 2000 characters each; a header's plain text at most 150 characters; a
// context block at most 10 elements).
const (
	SlackMaxBlocks       = 50
	SlackMaxSectionText  = 3000
	SlackMaxFields       = 10
	SlackMaxFieldText    = 2000
	SlackMaxHeaderText   = 150
	SlackMaxContextElems = 10
)

// How much of the lists the summary shows; the rest is counted and left to
// `accessbroker report`.
const (
	summaryAnomalyLines = 30
	summaryGrantLines   = 20
	summaryLineRunes    = 280
	summaryTopN         = 5
)

// SummaryPoster posts the weekly report to a channel as Block Kit; it implements
// broker.SummaryPoster.
type SummaryPoster struct {
	api     *slackgo.Client
	timeout time.Duration
	log     *slog.Logger
}

var _ broker.SummaryPoster = (*SummaryPoster)(nil)

// NewSummaryPoster returns a poster over the bot's Web API client (NewClient). Each post is
// bounded by timeout (default 30s; retries included).
func NewSummaryPoster(api *slackgo.Client, timeout time.Duration, logger *slog.Logger) (*SummaryPoster, error) {
	if api == nil {
		return nil, errors.New("slack summary poster: a Slack API client is required")
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &SummaryPoster{api: api, timeout: timeout, log: logger.With("component", "slack_summary")}, nil
}

// PostSummary posts r to channel (chat.postMessage) as the blocks of SummaryBlocks. The bot
// must be a member of the channel.
func (p *SummaryPoster) PostSummary(ctx context.Context, channel string, r audit.Report) error {
	blocks, fallback := SummaryBlocks(r)
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	_, ts, err := p.api.PostMessageContext(ctx, channel, slackgo.MsgOptionText(fallback, false), slackgo.MsgOptionBlocks(blocks...))
	if err != nil {
		return fmt.Errorf("post weekly summary to %s: %w", channel, err)
	}
	p.log.InfoContext(ctx, "weekly summary posted", "channel", channel, "ts", ts, "blocks", len(blocks))
	return nil
}

// SummaryBlocks renders a report as one Slack message within Block Kit's limits, however many
// grants and anomalies it has: the top figures, the anomalies (most serious kinds first) and
// the grants, each list cut at a fixed length with how many more there are and the
// `accessbroker report` command that lists them all. It also returns the notification text.
// Text from outside (reasons, names) is escaped so it cannot mention, link or notify.
func SummaryBlocks(r audit.Report) ([]slackgo.Block, string) {
	window := r.Since.UTC().Format("Mon 2 Jan 15:04") + " – " + r.Until.UTC().Format("Mon 2 Jan 15:04") + " UTC"
	command := fmt.Sprintf("accessbroker report --since %s --until %s --format csv", r.Since.UTC().Format(time.RFC3339), r.Until.UTC().Format(time.RFC3339))
	var blocks []slackgo.Block
	blocks = append(blocks,
		slackgo.NewHeaderBlock(slackgo.NewTextBlockObject(slackgo.PlainTextType, sumCut("Weekly access summary", SlackMaxHeaderText), false, false)),
		slackgo.NewContextBlock("", sumMD(Escape(window)+" · from the audit log")),
	)
	if r.Grants == 0 {
		blocks = append(blocks, slackgo.NewSectionBlock(sumMD("*No grants this week.*"), nil, nil))
	}

	dec := map[string]int{}
	for _, c := range r.Decisions {
		dec[c.Name] = c.Count
	}
	early, earlyParts := 0, []string{}
	for _, c := range r.EarlyEnds {
		if c.Count > 0 {
			early += c.Count
			earlyParts = append(earlyParts, fmt.Sprintf("%d %s", c.Count, strings.ReplaceAll(c.Name, "_", " ")))
		}
	}
	earlyText := "none"
	if early > 0 {
		earlyText = strings.Join(earlyParts, " · ")
	}
	q, v := r.Requests, r.Revocations
	fields := []string{
		fmt.Sprintf("*Grants*\n%d to %d people on %d resources", r.Grants, r.People, r.Resources),
		fmt.Sprintf("*How decided*\n%d on call · %d approved · %d page ack · %d break-glass · %d operator",
			dec[string(audit.DecisionOnCall)], dec[string(audit.DecisionApproval)], dec[string(audit.DecisionPage)],
			dec[string(audit.DecisionBreakGlass)], dec[string(audit.DecisionOperator)]+dec[string(audit.DecisionUnknown)]),
		fmt.Sprintf("*Duration granted*\nmedian %s · longest %s", audit.FormatDuration(r.Durations.GrantedMedian), audit.FormatDuration(r.Durations.GrantedLongest)),
		fmt.Sprintf("*Extensions*\n%d on %d grants (+%s)", r.Extensions.Extensions, r.Extensions.Grants, audit.FormatDuration(r.Extensions.Added)),
		fmt.Sprintf("*Ended early*\n%s", earlyText),
		fmt.Sprintf("*Requests*\n%d made · %d denied · %d rejected · %d expired", q.Created, q.Denied, q.Rejected, q.Expired),
		fmt.Sprintf("*Revocations*\n%d done · %d failed attempts (%d grants)", v.Revoked, v.Failures, v.FailedGrants),
		fmt.Sprintf("*Late revocations*\n%d over %s late · %d not revoked on time", len(v.Late), audit.FormatDuration(r.Options.LateAfter), v.NotRevokedOnTime),
		fmt.Sprintf("*Anomalies*\n%d", len(r.Anomalies)),
		fmt.Sprintf("*Not issued*\n%d (provider failed or interrupted)", r.NotIssued),
	}
	objs := make([]*slackgo.TextBlockObject, 0, SlackMaxFields)
	for _, f := range fields[:min(len(fields), SlackMaxFields)] {
		objs = append(objs, sumMD(sumCut(f, SlackMaxFieldText)))
	}
	blocks = append(blocks, slackgo.NewSectionBlock(nil, objs, nil))
	if r.Grants > 0 {
		top := "*Most grants:* " + sumTop(r.ByResource) + "\n*People:* " + sumTop(r.ByPerson)
		if len(r.Approvers) > 0 {
			top += "\n*Approvers:* " + sumTop(r.Approvers)
		}
		blocks = append(blocks, slackgo.NewSectionBlock(sumMD(sumCut(top, SlackMaxSectionText)), nil, nil))
	}
	if u := r.Sessions; u.Sessions > 0 || r.LoginFailures > 0 {
		db := fmt.Sprintf("*Database sessions:* %d (%s connected) · %d statements: %d write · %d DDL · %d failed (%d permission denied) · %d refused logins",
			u.Sessions, audit.FormatDuration(u.Connected), u.Statements, u.Writes, u.DDL, u.Failed, u.PermissionDenied, r.LoginFailures)
		blocks = append(blocks, slackgo.NewSectionBlock(sumMD(sumCut(db, SlackMaxSectionText)), nil, nil))
	}

	if top := sumMostWrites(r.Rows, 3); top != "" {
		blocks = append(blocks, slackgo.NewSectionBlock(sumMD(sumCut("*Most write activity:*\n"+top, SlackMaxSectionText)), nil, nil))
	}

	// Anomalies, most serious kinds first.
	blocks = append(blocks, slackgo.NewDividerBlock())
	if len(r.Anomalies) == 0 {
		blocks = append(blocks, slackgo.NewSectionBlock(sumMD("*Anomalies:* none."), nil, nil))
	} else {
		byKind := map[audit.AnomalyKind]int{}
		for _, a := range r.Anomalies {
			byKind[a.Kind]++
		}
		var kinds []string
		for _, k := range summaryAnomalyOrder {
			if byKind[k] > 0 {
				kinds = append(kinds, fmt.Sprintf("%d %s", byKind[k], summaryAnomalyWords[k]))
			}
		}
		blocks = append(blocks, slackgo.NewSectionBlock(sumMD(sumCut(fmt.Sprintf(":warning: *Anomalies (%d):* %s", len(r.Anomalies), strings.Join(kinds, " · ")), SlackMaxSectionText)), nil, nil))
		var lines []string
		for _, k := range summaryAnomalyOrder {
			for _, a := range r.Anomalies {
				if a.Kind == k && len(lines) < summaryAnomalyLines {
					lines = append(lines, sumAnomalyLine(a))
				}
			}
		}
		secs, shown := sumSections(lines, 4)
		blocks = append(blocks, secs...)
		if more := len(r.Anomalies) - shown; more > 0 {
			blocks = append(blocks, slackgo.NewContextBlock("", sumMD(fmt.Sprintf("%d more anomalies — run `%s`", more, command))))
		}
	}

	// The grants themselves.
	blocks = append(blocks, slackgo.NewDividerBlock())
	if r.Grants > 0 {
		lines := []string{fmt.Sprintf("*Grants (%d):*", r.Grants)}
		for _, g := range r.Rows[:min(len(r.Rows), summaryGrantLines)] {
			lines = append(lines, sumGrantLine(g))
		}
		secs, shown := sumSections(lines, 3)
		blocks = append(blocks, secs...)
		if more := len(r.Rows) - (shown - 1); more > 0 { // the first line is the title
			blocks = append(blocks, slackgo.NewContextBlock("", sumMD(fmt.Sprintf("%d more — run `%s`", more, command))))
		}
	}
	footer := []slackgo.MixedElement{sumMD("Every grant, with who decided and the on-call evidence: `" + command + "`")}
	if c := r.Checkpoint; c != nil {
		// In the last block, not a block of its own: the message stays within SlackMaxBlocks.
		footer = append(footer, sumMD(":lock: Latest checkpoint: "+Escape(c.String())+" (check with `accessbroker audit verify --witness …`)"))
	}
	// Earlier weeks and their reviews: an unreviewed one is called out until it is reviewed.
	var reviewLines []string
	for _, wr := range r.Reviews { // summaries posted before this one
		if wr.Reviewed() {
			reviewLines = append(reviewLines, fmt.Sprintf("Summary %s was %s.", Escape(wr.Week), Escape(wr.Status())))
		} else {
			reviewLines = append(reviewLines, fmt.Sprintf(":warning: *Summary %s (posted %s) has NOT been reviewed*: a reviewer should press its Mark reviewed button.",
				Escape(wr.Week), wr.PostedAt.UTC().Format("Mon 2 Jan 15:04 UTC")))
		}
	}
	if len(reviewLines) > 0 {
		blocks = append(blocks, slackgo.NewSectionBlock(sumMD(sumCut(strings.Join(reviewLines, "\n"), SlackMaxSectionText)), nil, nil))
	}
	// The reviewers' button: a modal asks, for each anomaly, what was found and done
	// (review.recorded); its value is the week, which names the summary.posted record.
	review := slackgo.NewButtonBlockElement(ActionReview, broker.WeekID(r.Until), slackgo.NewTextBlockObject(slackgo.PlainTextType, "Mark reviewed", false, false))
	blocks = append(blocks, slackgo.NewActionBlock(BlockReview, review))
	blocks = append(blocks, slackgo.NewContextBlock("", footer...))
	if len(blocks) > SlackMaxBlocks { // cannot happen with the caps above; kept as a guard
		blocks = append(blocks[:SlackMaxBlocks-2], blocks[len(blocks)-2:]...)
	}

	fallback := fmt.Sprintf("Weekly access summary %s: %d grants, %d anomalies", window, r.Grants, len(r.Anomalies))
	if r.Grants == 0 {
		fallback = fmt.Sprintf("Weekly access summary %s: no grants this week, %d anomalies", window, len(r.Anomalies))
	}
	if c := r.Checkpoint; c != nil {
		fallback += "; latest checkpoint " + c.String()
	}
	return blocks, fallback
}

// summaryAnomalyOrder puts the kinds that need someone's attention first.
var summaryAnomalyOrder = []audit.AnomalyKind{
	audit.AnomalyNotRevokedOnTime, audit.AnomalyActivityAfterRevocation, audit.AnomalyAfterIncidentResolved, audit.AnomalyBreakGlass, audit.AnomalyPermissionDenied,
	audit.AnomalyLoginFailures, audit.AnomalyRepeatedRejections, audit.AnomalySameApprover, audit.AnomalyOutsideShift,
	audit.AnomalyNotOnCall, audit.AnomalyNeverUsed,
}

var summaryAnomalyWords = map[audit.AnomalyKind]string{
	audit.AnomalyNotRevokedOnTime:        "not revoked on time",
	audit.AnomalyBreakGlass:              "break-glass",
	audit.AnomalyRepeatedRejections:      "repeated rejections",
	audit.AnomalySameApprover:            "same approver again and again",
	audit.AnomalyOutsideShift:            "outside the on-call shift",
	audit.AnomalyNotOnCall:               "not on call",
	audit.AnomalyLoginFailures:           "repeated database login failures",
	audit.AnomalyAfterIncidentResolved:   "statements after the incident resolved",
	audit.AnomalyPermissionDenied:        "permission-denied statements",
	audit.AnomalyNeverUsed:               "granted but never used",
	audit.AnomalyActivityAfterRevocation: "upstream activity after revocation",
}

func sumAnomalyLine(a audit.Anomaly) string {
	parts := []string{"*" + summaryAnomalyWords[a.Kind] + "*"}
	if a.Person != "" {
		parts = append(parts, Escape(a.Person))
	}
	if a.Resource != "" {
		parts = append(parts, Escape(a.Resource))
	}
	if a.GrantID != "" {
		parts = append(parts, sumCode(a.GrantID))
	}
	if !a.Time.IsZero() {
		parts = append(parts, a.Time.UTC().Format("Mon 2 Jan 15:04"))
	}
	return sumCut("• "+strings.Join(parts, " · ")+" — "+Escape(a.Detail), summaryLineRunes)
}

func sumGrantLine(g audit.GrantRow) string {
	end := g.State
	if g.RevokeCause != "" && g.State == audit.RowRevoked {
		why := g.RevokeCause
		if g.EndedEarly != "" {
			why = g.EndedEarly
		}
		end += " (" + why + ")"
	}
	line := fmt.Sprintf("• %s %s → %s, %s, %s, %s — %s", sumCode(g.GrantID), Escape(g.Person), Escape(g.Resource),
		g.IssuedAt.UTC().Format("Mon 2 Jan 15:04"), audit.FormatDuration(g.Granted), strings.ReplaceAll(string(g.Decision), "_", " "), end)
	if u := g.Use; u.Sessions > 0 {
		line += fmt.Sprintf(" · %d sessions, %d statements (%d write, %d DDL, %d failed), %s connected",
			u.Sessions, u.Statements, u.Writes, u.DDL, u.Failed, audit.FormatDuration(u.Connected))
	}
	if a := g.Activity; a.AWSCalls > 0 || a.GitHubActions > 0 {
		line += fmt.Sprintf(" · %d AWS calls (%d write, %d denied), %d GitHub actions", a.AWSCalls, a.AWSWrites, a.AWSDenied, a.GitHubActions)
	}
	if g.Reason != "" {
		line += ": _" + Escape(strings.Join(strings.Fields(g.Reason), " ")) + "_"
	}
	return sumCut(line, summaryLineRunes)
}

// sumSections packs lines into at most n section blocks of at most SlackMaxSectionText
// characters each, and returns how many lines it packed; the rest are left out (the caller
// says how many).
func sumSections(lines []string, n int) ([]slackgo.Block, int) {
	var out []slackgo.Block
	packed := 0
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			out = append(out, slackgo.NewSectionBlock(sumMD(cur.String()), nil, nil))
			cur.Reset()
		}
	}
	for _, l := range lines {
		if cur.Len() > 0 && utf8.RuneCountInString(cur.String())+1+utf8.RuneCountInString(l) > SlackMaxSectionText {
			flush()
			if len(out) == n {
				return out, packed
			}
		}
		if cur.Len() > 0 {
			cur.WriteByte('\n')
		}
		cur.WriteString(sumCut(l, SlackMaxSectionText))
		packed++
	}
	flush()
	return out, packed
}

func sumTop(cs []audit.Count) string {
	var parts []string
	for _, c := range cs[:min(len(cs), summaryTopN)] {
		parts = append(parts, Escape(c.Name)+" "+strconv.Itoa(c.Count))
	}
	if more := len(cs) - summaryTopN; more > 0 {
		parts = append(parts, fmt.Sprintf("%d more", more))
	}
	return strings.Join(parts, " · ")
}

// sumMD is a mrkdwn text object marked verbatim (no auto-linking): everything in it is
// escaped or ours.
func sumMD(s string) *slackgo.TextBlockObject {
	return slackgo.NewTextBlockObject(slackgo.MarkdownType, s, false, true)
}

func sumCode(s string) string { return "`" + strings.ReplaceAll(Escape(s), "`", "ˋ") + "`" }

// sumCut shortens s to at most n characters (runes), marking the cut with "…". It never
// splits an escape sequence such as &amp;.
func sumCut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)[:n-1]
	if i := strings.LastIndexByte(string(r), '&'); i >= 0 && !strings.Contains(string(r)[i:], ";") {
		r = []rune(string(r)[:i])
	}
	return string(r) + "…"
}

// PostLine implements broker.ReminderPoster: one mrkdwn line (broker mentions rendered) to
// channel.
func (p *SummaryPoster) PostLine(ctx context.Context, channel, text string) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if _, _, err := p.api.PostMessageContext(ctx, channel, slackgo.MsgOptionText(Render(text), false)); err != nil {
		return fmt.Errorf("post to %s: %w", channel, err)
	}
	return nil
}
