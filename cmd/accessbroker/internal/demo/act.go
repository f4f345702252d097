package demo

// Acting as Slack and PagerDuty, and waiting for outcomes.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/fixtures/slackfake"
	"github.com/accessbroker/accessbroker/grants"
)

// postSlack sends body to the broker as Slack would, signed at the simulated time.
func (d *demo) postSlack(ctx context.Context, path string, body []byte) (int, []byte, error) {
	req, err := slackfake.SignedRequest(ctx, d.base+path, d.signingSecret, d.clock.Now(), body)
	if err != nil {
		return 0, nil, err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

func (d *demo) responseURL(user string) string {
	u := d.slack.NewResponseURL()
	d.mu.Lock()
	d.responses[u] = user
	d.mu.Unlock()
	return u
}

// command types "/access text" as who, with the documented slash-command form
// (fixtures/slack/slash-command.txt), and returns the immediate ephemeral answer.
func (d *demo) command(ctx context.Context, who demoPerson, text string) (string, error) {
	form, err := slackfake.CommandForm(slackfake.Command{TeamID: demoTeam, TeamDomain: "demo", ChannelID: demoOpsChannel, ChannelName: "ops",
		UserID: who.Slack, UserName: who.Name, Command: "/access", Text: text, APIAppID: "A0DEMO", ResponseURL: d.responseURL(who.Slack)})
	if err != nil {
		return "", err
	}
	status, body, err := d.postSlack(ctx, "/slack/commands", []byte(form.Encode()))
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("the broker answered the slash command with HTTP %d: %s", status, firstLine(string(body), 200))
	}
	var ans struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return "", fmt.Errorf("the broker's answer to the slash command is not Slack JSON: %w", err)
	}
	return d.readable(ans.Text), nil
}

// approvalMessage finds the approval request for requestID in #approvals.
func (d *demo) approvalMessage(requestID string) (slackfake.Message, bool) {
	for _, m := range d.slack.Messages() {
		if m.Channel == demoApprovals && strings.Contains(string(m.Blocks), requestID) {
			return m, true
		}
	}
	return slackfake.Message{}, false
}

// click presses Approve or Deny on requestID's approval message as who, with the documented
// block_actions payload (fixtures/slack/block-actions.json). It returns the click's
// response_url, where the broker answers the clicker privately.
func (d *demo) click(ctx context.Context, who demoPerson, action, requestID string) (string, error) {
	msg, _ := d.approvalMessage(requestID)
	rurl := d.responseURL(who.Slack)
	body, err := slackfake.BlockActions(slackfake.Click{TeamID: demoTeam, TeamDomain: "demo", UserID: who.Slack, UserName: who.Name,
		APIAppID: "A0DEMO", ChannelID: demoApprovals, ChannelName: "approvals", Message: msg, BotID: "B0BOT",
		ActionID: action, BlockID: "decide", Value: requestID, Label: map[string]string{"approve": "Approve", "deny": "Deny"}[action],
		ResponseURL: rurl, At: d.clock.Now()})
	if err != nil {
		return "", err
	}
	status, body, err := d.postSlack(ctx, "/slack/interactions", body)
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("the broker answered the click with HTTP %d: %s", status, firstLine(string(body), 200))
	}
	return rurl, nil
}

// pagerDutyEvent delivers a v3 incident webhook as PagerDuty would: the body built from the
// fake's incident, signed with the subscription's secret, occurred_at the simulated now.
func (d *demo) pagerDutyEvent(ctx context.Context, eventType, incidentID, agent string) (int, string, error) {
	del, err := d.pd.IncidentDelivery(eventType, incidentID, agent, d.clock.Now(), d.webhookSecret)
	if err != nil {
		return 0, "", err
	}
	req, err := del.Request(ctx, d.base+"/pagerduty/webhook")
	if err != nil {
		return 0, "", err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("POST /pagerduty/webhook: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// advance moves the simulated clock and lets the broker's timers see it: due timers fire, and
// the revoker and scheduler are woken so that a loop which read the clock just before the move
// looks again (with a real clock, time would simply keep passing).
func (d *demo) advance(by time.Duration, narration string) {
	d.clock.Advance(by)
	d.broker.Wake()
	if !d.blank {
		d.plain("")
	}
	d.say("⏩ %s (simulated: the clock moved %s)", narration, audit.FormatDuration(by))
}

// ---------------------------------------------------------------------------------------
// Waiting for outcomes (the deadline guards against a hang; it asserts nothing about speed)

func (d *demo) waitMessage(ctx context.Context, what string, pred func(slackfake.Message) bool) (slackfake.Message, error) {
	wctx, cancel := context.WithTimeout(ctx, demoWait)
	defer cancel()
	var found slackfake.Message
	_, err := d.slack.WaitFor(wctx, func(ms []slackfake.Message) bool {
		for _, m := range ms {
			if pred(m) {
				found = m
				return true
			}
		}
		return false
	})
	if err != nil {
		return found, fmt.Errorf("%s never arrived in Slack (see %s)", what, d.logPath)
	}
	return found, nil
}

func (d *demo) poll(ctx context.Context, what string, cond func() (bool, error)) error {
	wctx, cancel := context.WithTimeout(ctx, demoWait)
	defer cancel()
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return nil
		}
		t := realClock.NewTimer(20 * time.Millisecond)
		select {
		case <-wctx.Done():
			t.Stop()
			return fmt.Errorf("gave up waiting for %s (see %s)", what, d.logPath)
		case <-t.C():
		}
	}
}

func (d *demo) waitGrant(ctx context.Context, what string, pred func(grants.Grant) bool) (grants.Grant, error) {
	var found grants.Grant
	err := d.poll(ctx, what, func() (bool, error) {
		gs, err := d.broker.ListGrants(ctx, grants.GrantFilter{})
		if err != nil {
			return false, err
		}
		for _, g := range gs {
			if pred(g) {
				found = g
				return true, nil
			}
		}
		return false, nil
	})
	return found, err
}

func (d *demo) waitEvent(ctx context.Context, what string, q audit.Query, pred func(audit.Event) bool) (audit.Event, error) {
	var found audit.Event
	err := d.poll(ctx, what, func() (bool, error) {
		evs, err := d.broker.Search(ctx, q)
		if err != nil {
			return false, err
		}
		for _, e := range evs {
			if pred(e) {
				found = e
				return true, nil
			}
		}
		return false, nil
	})
	return found, err
}

// settle waits until the fake Slack has been quiet for a moment (interactive mode, where the
// narrator does not know what to expect).
func (d *demo) settle(ctx context.Context) {
	last, quiet := -1, 0
	_ = d.poll(ctx, "Slack to settle", func() (bool, error) {
		n := len(d.slack.Calls(""))
		if n == last {
			quiet++
		} else {
			last, quiet = n, 0
		}
		return quiet >= 15, nil // 300 ms without a Slack call
	})
}

func (d *demo) showEvents(ctx context.Context, grantID string, actions ...audit.Action) {
	d.showEventsNumbered(ctx, grantID, true, actions...)
}

// showEventsNumbered is showEvents, with each event's seq when numbered: an event that races
// another writer for its seq (the proxy's session.ended and the revoker's grant.revoked at
// expiry) is shown without it, so that the transcript does not depend on who won.
func (d *demo) showEventsNumbered(ctx context.Context, grantID string, numbered bool, actions ...audit.Action) {
	evs, err := d.broker.Search(ctx, audit.Query{GrantID: grantID, Limit: 100})
	if err != nil {
		d.say("(audit search failed: %v)", err)
		return
	}
	for _, e := range evs {
		for _, a := range actions {
			if e.Action != a {
				continue
			}
			who := e.Actor.ID
			if n := d.nameOf(who); n != who {
				who = n
			}
			num := fmt.Sprintf(" #%d", e.Seq)
			if !numbered {
				num = ""
			}
			line := fmt.Sprintf("audit log%s %s: %s by %s:%s", num, grants.Timestamp(e.Time), e.Action, e.Actor.Kind, who)
			if c := e.Evidence["cause"]; c != "" {
				line += ", cause " + c
			}
			line += sessionDetail(e)
			if e.Reason != "" {
				line += ": " + e.Reason
			}
			d.say("%s", line)
		}
	}
}

var demoRequestIDRE = regexp.MustCompile(`\br_[a-z2-7]{16}\b`)

// request types /access as who and returns the request id from the immediate answer.
func (d *demo) request(ctx context.Context, who demoPerson, text string) (string, error) {
	d.say("%s types in #ops:  /access %s", who.Name, text)
	ack, err := d.command(ctx, who, text)
	if err != nil {
		return "", err
	}
	d.say("Slack → %s, ephemeral (the command's immediate answer):\n%s", who.Name, quoteLines(ack))
	id := demoRequestIDRE.FindString(ack)
	if !grants.ValidID("r", id) {
		return "", fmt.Errorf("the broker did not accept %q: %s", text, ack)
	}
	return id, nil
}

// isCredential reports whether m is a credential delivery (its blocks carry the credential).
func isCredential(m slackfake.Message) bool {
	return strings.Contains(string(m.Blocks), `"block_id":"credential"`)
}

// delivered waits until grant g's credential reached owner privately and returns the
// message, unmasked, for the narrator's own use.
func (d *demo) delivered(ctx context.Context, g grants.Grant, owner demoPerson, how string) (string, error) {
	m, err := d.waitMessage(ctx, fmt.Sprintf("the credential of grant %s for %s", g.ID, owner.Name), func(m slackfake.Message) bool {
		return d.recipient(m) == owner.Slack && strings.Contains(m.Mrkdwn(), g.ID) && isCredential(m)
	})
	if err != nil {
		return "", err
	}
	switch how {
	case "ephemeral":
		if m.Via != slackfake.ResponseURLMethod && !m.Ephemeral {
			return "", fmt.Errorf("grant %s: the credential was not delivered ephemerally", g.ID)
		}
	case "dm":
		if !strings.HasPrefix(m.Channel, "D") {
			return "", fmt.Errorf("grant %s: the credential was not delivered by direct message", g.ID)
		}
	}
	if _, err := d.waitMessage(ctx, "the #audit note of grant "+g.ID, func(m slackfake.Message) bool {
		return m.Channel == demoAuditChannel && strings.Contains(m.Text, g.ID)
	}); err != nil {
		return "", err
	}
	raw := m.Mrkdwn()
	d.learn(raw)
	return d.readable(raw), nil
}

// sessionDetail is what a line of the audit timeline shows of a session event: the session,
// and the statement with its command tag, or why the session ended.
func sessionDetail(e audit.Event) string {
	ev := e.Evidence
	switch e.Action {
	case audit.ActionSessionStarted:
		return fmt.Sprintf(", session %s as %s on %s", ev["session_id"], ev["role"], ev["database"])
	case audit.ActionSessionStatement:
		s := fmt.Sprintf(", session %s #%s (%s): %q", ev["session_id"], ev["order"], ev["protocol"], ev["text"])
		if t := ev["tag"]; t != "" {
			s += " → " + t
		}
		if c := ev["sqlstate"]; c != "" {
			s += " → SQLSTATE " + c
		}
		return s
	case audit.ActionSessionEnded:
		return fmt.Sprintf(", session %s, reason %s, %s statement(s)", ev["session_id"], ev["reason"], ev["statements"])
	}
	return ""
}
