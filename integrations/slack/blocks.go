package slack

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	slackgo "github.com/slack-go/slack"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

// Action ids of accessbroker's buttons; the value of each button is the request or grant id.
const (
	ActionApprove = "approve"
	ActionDeny    = "deny"
	ActionExtend  = "extend"
	ActionDone    = "done"
)

var mentionRE = regexp.MustCompile(regexp.QuoteMeta(broker.MentionMark) + `@([UW][A-Z0-9]{2,20})` + regexp.QuoteMeta(broker.MentionMark))

// Render turns a broker text (plain words, with broker.Mention marks) into Slack mrkdwn: the
// text is escaped so that nothing in it can notify, mention or link, then the broker's own
// mentions become <@U…>. Stray marks are dropped.
func Render(text string) string {
	s := Escape(text)
	s = mentionRE.ReplaceAllString(s, "<@$1>")
	return strings.ReplaceAll(s, broker.MentionMark, "")
}

// plainText strips mention marks for plain_text fields and notification fallbacks.
func plainText(text string) string {
	return strings.ReplaceAll(mentionRE.ReplaceAllString(text, "@$1"), broker.MentionMark, "")
}

// md is a mrkdwn text object marked verbatim, so that Slack does not auto-link URLs or parse
// "@channel"-style words in it: everything we send is escaped and explicit.
func md(s string) *slackgo.TextBlockObject {
	return slackgo.NewTextBlockObject(slackgo.MarkdownType, s, false, true)
}

func pt(s string) *slackgo.TextBlockObject {
	return slackgo.NewTextBlockObject(slackgo.PlainTextType, truncate(plainText(s), 150), false, false)
}

// code renders a value in an inline code span, escaped; backticks inside are replaced so the
// span cannot be closed early.
func code(s string) string {
	return "`" + strings.ReplaceAll(Escape(s), "`", "ˋ") + "`"
}

func codeBlock(lines ...string) string {
	var b strings.Builder
	b.WriteString("```")
	for i, l := range lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(strings.ReplaceAll(Escape(l), "```", "ˋˋˋ"))
	}
	b.WriteString("```")
	return b.String()
}

func userRef(id string) string {
	if mentionRE.MatchString(broker.Mention(id)) {
		return "<@" + id + ">"
	}
	return code(id)
}

// when renders t for people: "14:05 UTC", with the date when it is not today.
func when(t, now time.Time) string {
	t, now = t.UTC(), now.UTC()
	s := t.Format("15:04 UTC")
	if t.Format("2006-01-02") != now.Format("2006-01-02") {
		s += " on " + t.Format("Mon 2 Jan")
	}
	return s
}

// quote renders user text as a mrkdwn block quote, escaped.
func quote(s string) string {
	lines := strings.Split(Escape(broker.Clean(s)), "\n")
	return "> " + strings.Join(lines, "\n> ")
}

// onCallLine describes the on-call evidence recorded on a request.
func onCallLine(r grants.Request) string {
	ev := r.Evidence
	switch ev["on_call"] {
	case "true":
		s := ":pager: *On call*"
		if sh := ev["on_call_shifts"]; sh != "" {
			s += ": " + Escape(sh)
		}
		return s
	case "false":
		return ":zzz: *Not on call* for the schedules and escalation policies " + Escape(r.Resource) + " names."
	case "unknown":
		return ":warning: *On-call status unknown*: the check failed (" + Escape(truncate(ev["on_call_error"], 200)) + "). Treated as not on call."
	}
	return ":grey_question: On-call status not checked."
}

// approversText names who may approve requests for res, leaving out requester (a requester
// never approves their own request; "" leaves nobody out).
func approversText(res grants.Resource, requester string) string {
	var parts []string
	for _, u := range res.Policy.ApproverSlackUsers {
		if u != requester {
			parts = append(parts, userRef(u))
		}
	}
	if g := res.Policy.ApproverSlackUsergroup; g != "" {
		parts = append(parts, "<!subteam^"+Escape(g)+">")
	}
	if len(parts) == 0 {
		return "nobody (no approvers configured)"
	}
	return strings.Join(parts, ", ")
}

func mentionList(ids []string) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = userRef(id)
	}
	return strings.Join(parts, ", ")
}

// ApprovalBlocks is the approval request approvers see: who asks, for what, how long, why,
// the on-call evidence, and Approve/Deny buttons (Deny asks for confirmation). With an
// outcome, the buttons are replaced by the decision and who made it (or, for pending
// progress of an N-of-M approval, kept with the approvals so far). An extension request says
// which grant it extends, until when it runs now, and, when the grant is scheduled to end
// early, that approving overrides that early end.
func ApprovalBlocks(ask broker.ApprovalAsk, out *broker.ApprovalOutcome, now time.Time) []slackgo.Block {
	r := ask.Request
	requester := userRef(r.Requester.SlackUserID)
	if r.Requester.Email != "" {
		requester += " (" + Escape(r.Requester.Email) + ")"
	}
	title, durLabel := "Access request: ", "*Duration*\n"
	grantID, extension := broker.ExtensionOf(r)
	if extension {
		title, durLabel = "Extension request: ", "*Extend by*\n"
	}
	blocks := []slackgo.Block{
		slackgo.NewHeaderBlock(pt(title + r.Resource)),
		slackgo.NewSectionBlock(nil, []*slackgo.TextBlockObject{
			md("*Requester*\n" + requester),
			md("*Resource*\n" + code(r.Resource)),
			md(durLabel + audit.FormatDuration(r.Duration)),
			md("*Request*\n" + code(r.ID)),
		}, nil, slackgo.SectionBlockOptionBlockID("summary")),
	}
	if extension {
		line := "Extends grant " + code(grantID)
		if t, err := time.Parse(grants.TimeLayout, r.Evidence["expires_at"]); err == nil {
			line += ", which now ends at " + when(t, now)
		}
		blocks = append(blocks, slackgo.NewContextBlock("grant", md(line+".")))
		if cause := r.Evidence["scheduled_end"]; cause != "" {
			blocks = append(blocks, slackgo.NewSectionBlock(md(":warning: *Override*: this grant is scheduled to end early because "+
				Escape(earlyEndText(grants.RevokeCause(cause)))+". Approving cancels that early end; the audit trail records it as your override."),
				nil, nil, slackgo.SectionBlockOptionBlockID("override")))
		}
	}
	blocks = append(blocks,
		slackgo.NewSectionBlock(md("*Reason*\n"+quote(r.Reason)), nil, nil, slackgo.SectionBlockOptionBlockID("reason")),
		slackgo.NewContextBlock("oncall", md(onCallLine(r))))
	if r.Evidence["break_glass"] == "true" {
		blocks = append(blocks, slackgo.NewContextBlock("break_glass", md(":rotating_light: Break-glass request.")))
	}
	pending := out == nil || out.State == grants.RequestPending
	if pending {
		needs := fmt.Sprintf("Needs %d approval(s) from %s. Expires at %s. Requesters cannot approve their own requests.",
			max(ask.Needed, 1), approversText(ask.Resource, r.Requester.SlackUserID), when(r.ExpiresAt, now))
		if out != nil && len(out.By) > 0 {
			needs = fmt.Sprintf("Approved so far by %s (%d of %d). ", mentionList(out.By), len(out.By), max(ask.Needed, 1)) + needs
		}
		approve := slackgo.NewButtonBlockElement(ActionApprove, r.ID, pt("Approve")).WithStyle(slackgo.StylePrimary)
		deny := slackgo.NewButtonBlockElement(ActionDeny, r.ID, pt("Deny")).WithStyle(slackgo.StyleDanger).
			WithConfirm(slackgo.NewConfirmationBlockObject(
				pt("Deny this request?"),
				pt(fmt.Sprintf("%s will be told the request for %s was denied. This cannot be undone.", firstNonEmpty(r.Requester.Email, r.Requester.SlackUserID), r.Resource)),
				pt("Deny"), pt("Cancel")).WithStyle(slackgo.StyleDanger))
		return append(blocks,
			slackgo.NewContextBlock("needs", md(needs)),
			slackgo.NewActionBlock("decide", approve, deny))
	}
	var outcome string
	switch out.State {
	case grants.RequestApproved:
		outcome = ":white_check_mark: *Approved* by " + mentionList(out.By)
		if out.GrantID != "" {
			outcome += fmt.Sprintf(". Grant %s until %s.", code(out.GrantID), when(out.ExpiresAt, now))
		}
	case grants.RequestDenied:
		outcome = ":x: *Denied* by " + mentionList(out.By) + ". No access was granted."
	case grants.RequestExpired:
		outcome = ":hourglass: *Expired* at " + when(r.ExpiresAt, now) + " without enough approvals. No access was granted."
	default:
		outcome = "*" + Escape(string(out.State)) + "*"
	}
	if out.Note != "" {
		outcome += "\n" + Render(out.Note)
	}
	return append(blocks, slackgo.NewSectionBlock(md(outcome), nil, nil, slackgo.SectionBlockOptionBlockID("outcome")))
}

// earlyEndText says why a grant's end was brought forward, for approvers.
func earlyEndText(c grants.RevokeCause) string {
	switch c {
	case grants.CauseIncidentResolved:
		return "the incident it was granted for was resolved"
	case grants.CauseShiftEnded:
		return "the on-call shift it was granted for ended"
	}
	return "its end was brought forward (" + string(c) + ")"
}

// approvalFallback is the notification text of an approval message (no secrets, no reason).
func approvalFallback(ask broker.ApprovalAsk) string {
	if grantID, ok := broker.ExtensionOf(ask.Request); ok {
		return fmt.Sprintf("Extension request %s: grant %s (%s) by %s", ask.Request.ID, grantID, ask.Request.Resource, audit.FormatDuration(ask.Request.Duration))
	}
	return fmt.Sprintf("Access request %s: %s for %s", ask.Request.ID, ask.Request.Resource, audit.FormatDuration(ask.Request.Duration))
}

// credentialKind groups provider kinds by how their credential is shown.
func credentialKind(g grants.Grant, c grants.Credential) string {
	k := c.Kind()
	if k == "" {
		k = g.Provider
	}
	switch {
	case k == "postgres":
		return "postgres"
	case strings.HasPrefix(k, "aws"):
		return "aws"
	case strings.HasPrefix(k, "github"):
		return "github"
	}
	return "generic"
}

func fieldMap(c grants.Credential) (map[string]string, []grants.Field) {
	fs := c.Reveal()
	m := make(map[string]string, len(fs))
	for _, f := range fs {
		m[strings.ToLower(f.Name)] = f.Value
	}
	return m, fs
}

func pick(m map[string]string, names ...string) string {
	for _, n := range names {
		if v := m[n]; v != "" {
			return v
		}
	}
	return ""
}

// CredentialBlocks is the private message that hands a credential to its owner, formatted
// per provider: a PostgreSQL connection string; AWS environment exports and a console link;
// a GitHub team membership; any other provider's fields as a list. The message's fallback
// text (shown in notifications) never contains the secret.
func CredentialBlocks(g grants.Grant, c grants.Credential, now time.Time) ([]slackgo.Block, string) {
	fallback := fmt.Sprintf("Your access to %s is ready (grant %s)", g.Resource, g.ID)
	head := fmt.Sprintf(":key: Your access to *%s* is ready: grant %s, until *%s*. Only you can see this.",
		Escape(g.Resource), code(g.ID), when(g.ExpiresAt, now))
	blocks := []slackgo.Block{slackgo.NewSectionBlock(md(head), nil, nil, slackgo.SectionBlockOptionBlockID("head"))}
	m, fields := fieldMap(c)
	var body []string
	switch credentialKind(g, c) {
	case "postgres":
		if cs := pick(m, "connection_string", "dsn", "url"); cs != "" {
			body = append(body, "*Connection string*\n"+codeBlock(cs))
		}
		var parts []string
		for _, k := range []string{"user", "host", "port", "database"} {
			if v := m[k]; v != "" {
				parts = append(parts, k+" "+code(v))
			}
		}
		if len(parts) > 0 {
			body = append(body, strings.Join(parts, " · "))
		}
		if len(body) == 0 {
			body = append(body, genericFields(fields))
		}
	case "aws":
		var exports []string
		for _, kv := range [][3]string{
			{"AWS_ACCESS_KEY_ID", "access_key_id", "aws_access_key_id"},
			{"AWS_SECRET_ACCESS_KEY", "secret_access_key", "aws_secret_access_key"},
			{"AWS_SESSION_TOKEN", "session_token", "aws_session_token"},
			{"AWS_REGION", "region", "aws_region"},
		} {
			if v := pick(m, kv[1], kv[2], strings.ToLower(kv[0])); v != "" {
				exports = append(exports, "export "+kv[0]+"="+v)
			}
		}
		if len(exports) > 0 {
			body = append(body, "*Paste into your shell*\n"+codeBlock(exports...))
		}
		if u := pick(m, "console_url", "signin_url", "console_link"); strings.HasPrefix(u, "https://") {
			body = append(body, "<"+Escape(strings.ReplaceAll(u, "|", "%7C"))+"|Open the AWS console> (the link signs you in; do not share it)")
		}
		if len(body) == 0 && len(fields) > 0 {
			body = append(body, genericFields(fields))
		}
	case "github":
		team := pick(m, "team", "team_slug")
		if org := m["org"]; org != "" && team != "" {
			team = org + "/" + team
		}
		if team == "" {
			team = g.Resource
		}
		fallback = fmt.Sprintf("You are in team %s until %s", team, when(g.ExpiresAt, now))
		body = append(body, fmt.Sprintf(":busts_in_silhouette: You are in team *%s* until *%s*.", Escape(team), when(g.ExpiresAt, now)))
	default:
		if len(fields) > 0 {
			body = append(body, genericFields(fields))
		}
	}
	if len(body) > 0 {
		blocks = append(blocks, slackgo.NewSectionBlock(md(strings.Join(body, "\n")), nil, nil, slackgo.SectionBlockOptionBlockID("credential")))
	}
	blocks = append(blocks, slackgo.NewContextBlock("how",
		md(fmt.Sprintf("Revoked automatically at %s. End it early with %s; add time with %s.",
			when(g.ExpiresAt, now), code("/access done "+g.ID), code("/access extend "+g.ID+" 30m <reason>")))))
	return blocks, fallback
}

func genericFields(fields []grants.Field) string {
	lines := make([]string, 0, len(fields))
	for _, f := range fields {
		lines = append(lines, "*"+Escape(f.Name)+"*: "+code(f.Value))
	}
	return strings.Join(lines, "\n")
}

// ReminderBlocks is the owner's expiry reminder with the extension the policy would allow
// (offer): "Extend by …" when the owner is on call and auto-approved, "Request … more" when
// the approvers must decide, no extension button otherwise; offer.Note says which and why.
// An End now button is always there.
func ReminderBlocks(g grants.Grant, offer broker.ExtendOffer, now time.Time) ([]slackgo.Block, string) {
	left := g.ExpiresAt.Sub(now).Round(time.Minute)
	text := fmt.Sprintf(":alarm_clock: Your access to *%s* (grant %s) ends at *%s*, in %s.", Escape(g.Resource), code(g.ID), when(g.ExpiresAt, now), audit.FormatDuration(max(left, 0)))
	fallback := fmt.Sprintf("Your access to %s ends at %s", g.Resource, when(g.ExpiresAt, now))
	blocks := []slackgo.Block{slackgo.NewSectionBlock(md(text), nil, nil, slackgo.SectionBlockOptionBlockID("reminder"))}
	var buttons []slackgo.BlockElement
	switch {
	case offer.Kind == broker.OfferExtend && offer.By > 0:
		buttons = append(buttons, slackgo.NewButtonBlockElement(ActionExtend, g.ID, pt("Extend by "+audit.FormatDuration(offer.By))).WithStyle(slackgo.StylePrimary))
	case offer.Kind == broker.OfferRequest && offer.By > 0:
		buttons = append(buttons, slackgo.NewButtonBlockElement(ActionExtend, g.ID, pt("Request "+audit.FormatDuration(offer.By)+" more")))
	}
	if offer.Note != "" {
		blocks = append(blocks, slackgo.NewContextBlock("offer", md(Render(offer.Note))))
	}
	buttons = append(buttons, slackgo.NewButtonBlockElement(ActionDone, g.ID, pt("End now")))
	return append(blocks, slackgo.NewActionBlock("grant_actions", buttons...)), fallback
}

// TextBlocks wraps one broker text as a section.
func TextBlocks(text string) []slackgo.Block {
	return []slackgo.Block{slackgo.NewSectionBlock(md(Render(text)), nil, nil)}
}

// revokeWords says why a grant ended, for its owner.
func revokeWords(c grants.RevokeCause) string {
	switch c {
	case grants.CauseExpired:
		return "it expired"
	case grants.CauseManual:
		return "it was ended on request"
	case grants.CauseIncidentResolved:
		return "the incident it was for was resolved"
	case grants.CauseShiftEnded:
		return "your on-call shift ended"
	case grants.CauseDeliveryFailed:
		return "the credential could not be delivered to you privately"
	case grants.CauseIssueFailed, grants.CauseIssueInterrupted:
		return "issuing it failed"
	}
	return string(c)
}

// ListingText renders /access list.
func ListingText(l broker.Listing, now time.Time) string {
	if len(l.Grants) == 0 && len(l.Pending) == 0 {
		return "You have no live grants and no pending requests."
	}
	var b strings.Builder
	if len(l.Grants) > 0 {
		b.WriteString("*Your grants*\n")
		for _, g := range l.Grants {
			state := "until " + when(g.ExpiresAt, now)
			if g.State != grants.StateActive {
				state = Escape(string(g.State))
			}
			fmt.Fprintf(&b, "• %s %s — %s\n", code(g.ID), Escape(g.Resource), state)
		}
	}
	if len(l.Pending) > 0 {
		b.WriteString("*Your pending requests*\n")
		for _, r := range l.Pending {
			if grantID, ok := broker.ExtensionOf(r); ok {
				fmt.Fprintf(&b, "• %s extension of %s (%s) by %s — waiting for approval until %s\n", code(r.ID), code(grantID), Escape(r.Resource), audit.FormatDuration(r.Duration), when(r.ExpiresAt, now))
				continue
			}
			fmt.Fprintf(&b, "• %s %s for %s — waiting for approval until %s\n", code(r.ID), Escape(r.Resource), audit.FormatDuration(r.Duration), when(r.ExpiresAt, now))
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// ResourcesText renders /access resources.
func ResourcesText(rs []grants.Resource) string {
	if len(rs) == 0 {
		return "No resources are configured."
	}
	rs = append([]grants.Resource(nil), rs...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Name < rs[j].Name })
	var b strings.Builder
	b.WriteString("*Resources you may request*\n")
	for _, r := range rs {
		how := "approval by " + approversText(r, "")
		if r.Policy.AutoApproveOnCall {
			how = "at once when you are on call, otherwise " + how
		}
		max := "no maximum"
		if r.MaxDuration > 0 {
			max = "at most " + audit.FormatDuration(r.MaxDuration)
		}
		fmt.Fprintf(&b, "• %s (%s) — %s; %s", code(r.Name), Escape(r.Provider), max, how)
		if r.Policy.BreakGlass {
			b.WriteString("; break-glass allowed")
		}
		b.WriteByte('\n')
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
