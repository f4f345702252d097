package demo

// The transcript: narration, masking, and Slack messages as people see them.

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/fixtures/slackfake"
	"github.com/accessbroker/accessbroker/grants"
)

func (d *demo) addSecret(v string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(v) < 6 {
		return
	}
	for _, s := range d.secrets {
		if s == v {
			return
		}
	}
	d.secrets = append(d.secrets, v)
	if u, err := url.PathUnescape(v); err == nil && u != v {
		d.secrets = append(d.secrets, u)
	}
}

// mask replaces every known secret value.
func (d *demo) mask(s string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, v := range d.secrets {
		s = strings.ReplaceAll(s, v, Mask)
	}
	return s
}

// demoSecretREs find the secret parts of delivered credentials (group 1), in Slack mrkdwn.
var demoSecretREs = []*regexp.Regexp{
	regexp.MustCompile(`postgres(?:ql)?://[^:/@\s]+:([^@\s]+)@`),
	regexp.MustCompile(`AWS_SECRET_ACCESS_KEY=([^\s` + "`" + `]+)`),
	regexp.MustCompile(`AWS_SESSION_TOKEN=([^\s` + "`" + `]+)`),
	regexp.MustCompile(`SigninToken=([^&\s|>]+)`),
	regexp.MustCompile(`(?i)\*(?:secret|password|token|secret_access_key|session_token)\*: ` + "`([^`]+)`"),
}

// learn remembers the secrets in a delivered message so that they are masked everywhere.
func (d *demo) learn(raw string) {
	for _, re := range demoSecretREs {
		for _, m := range re.FindAllStringSubmatch(raw, -1) {
			d.addSecret(m[1])
		}
	}
}

func (d *demo) stamp() string { return grants.Timestamp(d.clock.Now()) }

// say prints a transcript line at the simulated time; continuation lines are indented.
func (d *demo) say(format string, args ...any) {
	d.emit(d.stamp()+"  ", fmt.Sprintf(format, args...))
}

func (d *demo) emit(prefix, text string) {
	pad := strings.Repeat(" ", len(prefix))
	lines := strings.Split(d.mask(text), "\n")
	d.blank = strings.TrimSpace(prefix+lines[len(lines)-1]) == ""
	for i, l := range lines {
		if i == 0 {
			fmt.Fprintln(d.out, strings.TrimRight(prefix+l, " "))
		} else {
			fmt.Fprintln(d.out, strings.TrimRight(pad+l, " "))
		}
	}
}

// plain prints without a time.
func (d *demo) plain(format string, args ...any) {
	d.emit("", fmt.Sprintf(format, args...))
}

func (d *demo) section(title string) {
	d.plain("\n%s\n%s", title, strings.Repeat("─", len([]rune(title))))
	d.blank = true // the rule separates enough
}

func (d *demo) outcome(format string, args ...any) {
	d.say("✔ "+format, args...)
}

func quoteLines(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "    │ " + l
	}
	return strings.Join(lines, "\n")
}

func (d *demo) intro(roleARN string) {
	d.plain("accessbroker demo: the whole product on this machine, with no network and no accounts.")
	d.plain("The real broker (the code `serve` runs) talks to fake Slack, PagerDuty, AWS and GitHub servers on")
	d.plain("loopback through the same SDK clients it uses in production. Slack commands, button clicks and")
	d.plain("PagerDuty webhooks are signed exactly as Slack and PagerDuty sign them.")
	d.plain("Time is SIMULATED: the broker runs on a fake clock that started at the real time and that this")
	d.plain("narrator moves forward (\"15 minutes later…\") instead of waiting. Times are UTC, RFC 3339.")
	d.plain("Secrets are masked (%s) here; each credential is delivered to its owner only.", Mask)
	d.section("Setup")
	kept := "removed at exit; --keep DIR keeps them"
	if d.keep {
		kept = "kept"
	}
	d.plain("  files      %s\n             (config.yaml, accessbroker.db, audit.key, broker.log: %s)", d.dir, kept)
	d.plain("  Slack      fake workspace %s at %s:\n             alice %s, bob %s, carol %s; #approvals %s, #audit %s",
		demoTeam, d.slack.URL(), demoAlice.Slack, demoBob.Slack, demoCarol.Slack, demoApprovals, demoAuditChannel)
	d.plain("  PagerDuty  fake REST API at %s: alice is on call (escalation policy %s, level 1) until %s",
		d.pd.URL, demoEscalationPolicy, grants.Timestamp(d.start.Add(6*time.Hour)))
	d.plain("  AWS        fake STS and IAM at %s: role %s", d.aws.URL(), roleARN)
	d.plain("  GitHub     fake REST API at %s: organization %s, team %s", d.gh.URL(), demoGitHubOrg, demoGitHubTeam)
	if d.pg != nil {
		d.plain("  prod-db    PostgreSQL %s at %s:\n             throwaway database %s and group role %s (dropped at exit);",
			d.pg.version, d.pg.where, d.pg.db, d.pg.role)
		d.plain("             each grant is a real login role with VALID UNTIL, dropped on revocation;")
		d.plain("             connections go through the broker's session proxy at %s (TLS, self-signed certificate in the folder),", d.proxyAddr)
		d.plain("             which records every statement in the audit log and ends the sessions when the grant does")
	} else {
		d.plain("  prod-db    NO PostgreSQL: %s.", d.noPG)
		d.plain("             prod-db therefore uses the webhook provider against a fake service (fixtures/webhookfake):")
		d.plain("             its credential is a made-up account and secret, not a database login. Set")
		d.plain("             %s to a PostgreSQL URL (a superuser, or CREATEDB and CREATEROLE) to use a real one.", PostgresEnv)
	}
	d.plain("  policies   prod-db, prod-aws: at once when on call (PagerDuty %s), otherwise carol approves", demoEscalationPolicy)
	d.plain("             infra-admins (GitHub team): carol or bob approves, never their own request")
	d.plain("             auto_grant: acknowledging a page on PagerDuty service %s grants prod-db for 1h; resolving it revokes", demoService)
	d.plain("  broker     %s (newServer + Run, as `serve`)\n             configuration %s\n             log %s", d.base, d.configPath, d.logPath)
}

// Slack messages as people see them.

var (
	demoMentionRE = regexp.MustCompile(`<@([UW][A-Z0-9]+)>`)
	demoLinkRE    = regexp.MustCompile(`<(https?://[^|>]+)\|([^>]+)>`)
	demoSubteamRE = regexp.MustCompile(`<!subteam\^([A-Z0-9]+)>`)
	demoEmojiRE   = regexp.MustCompile(`:[a-z][a-z0-9_+-]*: ?`)
)

func (d *demo) nameOf(slackID string) string {
	for _, p := range demoPeople {
		if p.Slack == slackID {
			return p.Name
		}
	}
	return slackID
}

func (d *demo) person(name string) (demoPerson, bool) {
	for _, p := range demoPeople {
		if strings.EqualFold(p.Name, name) || strings.EqualFold(p.Slack, name) {
			return p, true
		}
	}
	return demoPerson{}, false
}

// recipient is the Slack user who sees m ("" for a channel message).
func (d *demo) recipient(m slackfake.Message) string {
	switch {
	case m.Via == slackfake.ResponseURLMethod:
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.responses[m.ResponseURL]
	case m.Ephemeral:
		return m.User
	case strings.HasPrefix(m.Channel, "D"):
		for _, p := range demoPeople {
			if d.slack.DMChannel(p.Slack) == m.Channel {
				return p.Slack
			}
		}
	}
	return ""
}

func (d *demo) audience(m slackfake.Message) string {
	who := d.nameOf(d.recipient(m))
	switch {
	case m.Via == slackfake.ResponseURLMethod, m.Ephemeral:
		return fmt.Sprintf("Slack → %s, ephemeral (only %s sees it)", who, who)
	case strings.HasPrefix(m.Channel, "D"):
		return "Slack → " + who + ", direct message"
	case m.Channel == demoApprovals:
		return "Slack #approvals"
	case m.Channel == demoAuditChannel:
		return "Slack #audit"
	}
	return "Slack " + m.Channel
}

// readable turns mrkdwn into plain text, unmasked: for the narrator's own use.
func (d *demo) readable(s string) string {
	s = demoMentionRE.ReplaceAllStringFunc(s, func(m string) string {
		return "@" + d.nameOf(demoMentionRE.FindStringSubmatch(m)[1])
	})
	s = demoLinkRE.ReplaceAllString(s, "$2 <$1>")
	s = demoSubteamRE.ReplaceAllString(s, "@group-$1")
	s = demoEmojiRE.ReplaceAllString(s, "")
	s = strings.NewReplacer("```", "", "`", "", "*", "").Replace(s)
	s = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s)
	return strings.TrimSpace(s)
}

// slackText is what the recipient of m reads, with secrets masked.
func (d *demo) slackText(m slackfake.Message) string {
	raw := m.Mrkdwn()
	d.learn(raw)
	return d.mask(d.readable(raw))
}

// showSlack prints every message (or update) the fake Slack received since the last call.
func (d *demo) showSlack() {
	for _, m := range d.slack.Messages() {
		d.mu.Lock()
		n, seen := d.shown[m.Seq]
		d.shown[m.Seq] = m.Updates
		d.mu.Unlock()
		switch {
		case !seen:
			d.say("%s:\n%s", d.audience(m), quoteLines(d.slackText(m)))
		case m.Updates > n:
			d.say("%s, the message above is updated:\n%s", d.audience(m), quoteLines(d.slackText(m)))
		}
	}
}
