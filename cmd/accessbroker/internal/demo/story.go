package demo

// The story, one step per section of the transcript.

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/fixtures/pdfake"
	"github.com/accessbroker/accessbroker/fixtures/slackfake"
	"github.com/accessbroker/accessbroker/grants"
)

// story plays the transcript's sections in order; the error names the one that failed.
func (d *demo) story(ctx context.Context) error {
	first, err := d.stepOnCall(ctx)
	if err != nil {
		return fmt.Errorf("1 (an on-call request): %w", err)
	}
	if err := d.stepApproval(ctx); err != nil {
		return fmt.Errorf("2 (an approval): %w", err)
	}
	if err := d.stepSelfApproval(ctx); err != nil {
		return fmt.Errorf("3 (a self-approval): %w", err)
	}
	if err := d.stepPage(ctx); err != nil {
		return fmt.Errorf("4 (a page): %w", err)
	}
	if err := d.stepExpiry(ctx, first); err != nil {
		return fmt.Errorf("5 (an expiry): %w", err)
	}
	if err := d.stepVerify(ctx); err != nil {
		return fmt.Errorf("6 (audit verify): %w", err)
	}
	if err := d.stepReport(ctx); err != nil {
		return fmt.Errorf("7 (the weekly report): %w", err)
	}
	d.summary(ctx)
	return nil
}

// stepOnCall: alice, on call, asks for prod-db and gets it at once, privately; on PostgreSQL
// she logs in with it.
func (d *demo) stepOnCall(ctx context.Context) (grants.Grant, error) {
	d.section("1. alice is on call and asks for the production database")
	d.say("alice is on call in PagerDuty (escalation policy %s, level 1). prod-db lets on-call engineers in at once.", demoEscalationPolicy)
	reqID, err := d.request(ctx, demoAlice, "prod-db 15m checking replication lag")
	if err != nil {
		return grants.Grant{}, err
	}
	g, err := d.waitGrant(ctx, "alice's prod-db grant", func(g grants.Grant) bool { return g.RequestID == reqID && g.State == grants.StateActive })
	if err != nil {
		return g, err
	}
	text, err := d.delivered(ctx, g, demoAlice, "ephemeral")
	if err != nil {
		return g, err
	}
	d.showSlack()
	d.outcome("alice holds grant %s on prod-db until %s: auto-approved because she is on call.\n"+
		"  The credential went to her alone, as an ephemeral reply to her own command; it is stored nowhere (masked here).",
		g.ID, grants.Timestamp(g.ExpiresAt))
	if d.pg != nil {
		if err := d.useDatabase(ctx, text, true); err != nil {
			return g, err
		}
		if d.pgSession != nil {
			if err := d.showSession(ctx, g.ID, 1); err != nil {
				return g, err
			}
		}
	}
	return g, nil
}

var demoAWSKeyRE = regexp.MustCompile(`AWS_ACCESS_KEY_ID=(\S+)`)

// requestApproval sends a command that needs approval and waits until the approval request is
// in #approvals and the requester was told; it returns the request id.
func (d *demo) requestApproval(ctx context.Context, who demoPerson, text string) (string, error) {
	reqID, err := d.request(ctx, who, text)
	if err != nil {
		return "", err
	}
	if _, err := d.waitMessage(ctx, "the approval request in #approvals", func(m slackfake.Message) bool {
		return m.Channel == demoApprovals && strings.Contains(string(m.Blocks), reqID)
	}); err != nil {
		return "", err
	}
	if _, err := d.waitMessage(ctx, "the broker's answer to "+who.Name, func(m slackfake.Message) bool {
		return d.recipient(m) == who.Slack && strings.Contains(m.Mrkdwn(), reqID)
	}); err != nil {
		return "", err
	}
	return reqID, nil
}

// stepApproval: bob, off call, asks for prod-aws; carol approves in #approvals, and bob's AWS
// session works.
func (d *demo) stepApproval(ctx context.Context) error {
	d.section("2. bob is not on call: an approver decides")
	d.advance(time.Minute, "A minute later")
	reqID, err := d.requestApproval(ctx, demoBob, "prod-aws 30m deploying hotfix 4821 needs the S3 bucket policy")
	if err != nil {
		return err
	}
	d.showSlack()
	d.advance(time.Minute, "A minute later")
	d.say("carol clicks Approve on bob's request in #approvals")
	if _, err := d.click(ctx, demoCarol, "approve", reqID); err != nil {
		return err
	}
	g, err := d.waitGrant(ctx, "bob's prod-aws grant", func(g grants.Grant) bool { return g.RequestID == reqID && g.State == grants.StateActive })
	if err != nil {
		return err
	}
	text, err := d.delivered(ctx, g, demoBob, "dm")
	if err != nil {
		return err
	}
	if _, err := d.waitMessage(ctx, "the updated approval message", func(m slackfake.Message) bool {
		return m.Channel == demoApprovals && strings.Contains(string(m.Blocks), reqID) && m.Updates > 0
	}); err != nil {
		return err
	}
	d.showSlack()
	d.outcome("bob holds grant %s on prod-aws until %s, approved by carol.\n"+
		"  His AWS session credentials went to him alone, by direct message (masked here).", g.ID, grants.Timestamp(g.ExpiresAt))
	if m := demoAWSKeyRE.FindStringSubmatch(text); m != nil {
		d.mu.Lock()
		d.sessions[g.ID] = m[1]
		d.mu.Unlock()
		if err := d.aws.CheckSession(m[1], "s3:GetBucketPolicy"); err == nil {
			d.say("AWS (the fake) accepts bob's session %s for s3:GetBucketPolicy", m[1])
		} else {
			return fmt.Errorf("bob's AWS session %s does not work: %v", m[1], err)
		}
	}
	return nil
}

// stepSelfApproval: bob, an approver of infra-admins, clicks Approve on his own request; the
// refusal is audited and nothing is granted.
func (d *demo) stepSelfApproval(ctx context.Context) error {
	d.section("3. bob tries to approve his own request")
	d.advance(time.Minute, "A minute later")
	reqID, err := d.requestApproval(ctx, demoBob, "infra-admins 1h rotating the deploy key of the payments service")
	if err != nil {
		return err
	}
	d.showSlack()
	d.say("bob is one of infra-admins' approvers, and clicks Approve on his own request")
	rurl, err := d.click(ctx, demoBob, "approve", reqID)
	if err != nil {
		return err
	}
	if _, err := d.waitMessage(ctx, "the answer to bob's click", func(m slackfake.Message) bool { return m.ResponseURL == rurl }); err != nil {
		return err
	}
	rej, err := d.waitEvent(ctx, "the refusal in the audit log", audit.Query{RequestID: reqID, Action: audit.ActionRequestRejected, Limit: 10},
		func(e audit.Event) bool { return e.Actor.ID == demoBob.Slack })
	if err != nil {
		return err
	}
	d.showSlack()
	r, err := d.broker.GetRequest(ctx, reqID)
	if err != nil {
		return err
	}
	if r.State != grants.RequestPending {
		return fmt.Errorf("request %s is %s after bob's self-approval, want pending", reqID, r.State)
	}
	if gs, err := d.broker.ListGrants(ctx, grants.GrantFilter{RequestID: reqID}); err != nil || len(gs) > 0 {
		return fmt.Errorf("a grant exists for request %s after bob's self-approval (%d, %v)", reqID, len(gs), err)
	}
	d.outcome("REFUSED: bob cannot approve his own request. Request %s is still %s and nothing was granted;\n"+
		"  the refusal is audit event #%d (%s by %s).", reqID, r.State, rej.Seq, rej.Action, demoBob.Name)
	return d.stepOtherApprover(ctx, reqID)
}

// stepOtherApprover: carol approves bob's infra-admins request instead, and GitHub shows him
// in the team.
func (d *demo) stepOtherApprover(ctx context.Context, reqID string) error {
	d.advance(30*time.Second, "30 seconds later")
	d.say("carol approves it instead")
	if _, err := d.click(ctx, demoCarol, "approve", reqID); err != nil {
		return err
	}
	g, err := d.waitGrant(ctx, "bob's infra-admins grant", func(g grants.Grant) bool { return g.RequestID == reqID && g.State == grants.StateActive })
	if err != nil {
		return err
	}
	if _, err := d.waitMessage(ctx, "bob's direct message about infra-admins", func(m slackfake.Message) bool {
		return d.recipient(m) == demoBob.Slack && strings.HasPrefix(m.Channel, "D") && strings.Contains(m.Mrkdwn(), g.ID)
	}); err != nil {
		return err
	}
	if _, err := d.waitMessage(ctx, "the #audit note of grant "+g.ID, func(m slackfake.Message) bool {
		return m.Channel == demoAuditChannel && strings.Contains(m.Text, g.ID)
	}); err != nil {
		return err
	}
	d.showSlack()
	role, state, ok := d.gh.Membership(demoGitHubOrg, demoGitHubTeam, demoBob.GitHub)
	if !ok {
		return fmt.Errorf("GitHub has no %s/%s membership for bob after grant %s", demoGitHubOrg, demoGitHubTeam, g.ID)
	}
	d.outcome("bob holds grant %s: GitHub (the fake) shows him as %s of %s/%s (%s) until %s, approved by carol.",
		g.ID, role, demoGitHubOrg, demoGitHubTeam, state, grants.Timestamp(g.ExpiresAt))
	return nil
}

// stepPage: PagerDuty pages alice; her acknowledgement (a signed v3 webhook, confirmed with
// the API) grants prod-db by the auto_grant rule, without asking anyone.
func (d *demo) stepPage(ctx context.Context) error {
	d.section("4. A page: acknowledging it grants access, resolving it takes it away")
	d.advance(90*time.Second, "A minute and a half later")
	now := d.clock.Now()
	inc := pdfake.Incident{ID: "Q0DEMO1042", Number: 1042, Title: "Replication lag above 30 s on prod-db", Status: "triggered",
		ServiceID: demoService, ServiceName: "prod-db", EscalationPolicyID: demoEscalationPolicy, EscalationPolicyName: "prod-db primary",
		Assignees: []string{demoAlice.PagerDuty}, CreatedAt: now, UpdatedAt: now}
	d.pd.PutIncident(inc)
	d.say("PagerDuty pages alice: incident #%d %q on service %s", inc.Number, inc.Title, inc.ServiceID)
	d.advance(30*time.Second, "30 seconds later")
	inc.Status, inc.Acknowledgers, inc.UpdatedAt = "acknowledged", []string{demoAlice.PagerDuty}, d.clock.Now()
	d.pd.PutIncident(inc)
	d.say("alice acknowledges the page; PagerDuty sends a signed v3 webhook, incident.acknowledged, to the broker")
	status, body, err := d.pagerDutyEvent(ctx, "incident.acknowledged", inc.ID, demoAlice.PagerDuty)
	if err != nil {
		return err
	}
	d.say("the broker confirms the acknowledgement with the PagerDuty API and answers HTTP %d %q", status, body)
	if status != http.StatusOK {
		return fmt.Errorf("the webhook was answered with HTTP %d: %s", status, body)
	}
	g, err := d.waitGrant(ctx, "alice's grant for the incident", func(g grants.Grant) bool { return g.IncidentID == inc.ID && g.State == grants.StateActive })
	if err != nil {
		return err
	}
	if _, err := d.delivered(ctx, g, demoAlice, "dm"); err != nil {
		return err
	}
	d.showSlack()
	d.outcome("alice holds grant %s on prod-db until %s for incident #%d:\n"+
		"  granted by the auto_grant rule for %s without asking anyone, and delivered by direct message.",
		g.ID, grants.Timestamp(g.ExpiresAt), inc.Number, demoService)
	return d.stepResolve(ctx, inc, g)
}

// stepResolve: alice resolves the incident, and the grant it gave her is revoked.
func (d *demo) stepResolve(ctx context.Context, inc pdfake.Incident, g grants.Grant) error {
	d.advance(3*time.Minute, "3 minutes later the lag is gone")
	inc.Status, inc.UpdatedAt = "resolved", d.clock.Now()
	d.pd.PutIncident(inc)
	d.say("alice resolves the incident; PagerDuty sends incident.resolved")
	status, body, err := d.pagerDutyEvent(ctx, "incident.resolved", inc.ID, demoAlice.PagerDuty)
	if err != nil {
		return err
	}
	d.say("the broker answers HTTP %d %q", status, body)
	if status != http.StatusOK {
		return fmt.Errorf("the webhook was answered with HTTP %d: %s", status, body)
	}
	g, err = d.waitGrant(ctx, "the incident grant's revocation", func(x grants.Grant) bool { return x.ID == g.ID && x.State == grants.StateRevoked })
	if err != nil {
		return err
	}
	if _, err := d.waitMessage(ctx, "alice's revocation notice", func(m slackfake.Message) bool {
		return d.recipient(m) == demoAlice.Slack && strings.HasPrefix(m.Channel, "D") && strings.Contains(m.Text, g.ID) && !isCredential(m)
	}); err != nil {
		return err
	}
	d.showSlack()
	d.showEvents(ctx, g.ID, audit.ActionGrantRevokeQueued, audit.ActionGrantRevoked)
	d.outcome("grant %s was revoked at %s, cause %s: the incident it was for is resolved.", g.ID, grants.Timestamp(g.RevokedAt), g.RevokeCause)
	return nil
}

// stepExpiry: alice is reminded before her first grant ends, lets it run out, and the revoker
// revokes it at its deadline; on PostgreSQL her login stops working.
func (d *demo) stepExpiry(ctx context.Context, first grants.Grant) error {
	d.section("5. alice's first grant runs out")
	remind := first.ExpiresAt.Add(-5 * time.Minute)
	if now := d.clock.Now(); now.Before(remind) {
		d.advance(remind.Sub(now), fmt.Sprintf("%s later, 5 minutes before alice's grant ends", audit.FormatDuration(remind.Sub(now))))
	}
	rem, err := d.waitMessage(ctx, "alice's expiry reminder", func(m slackfake.Message) bool {
		return d.recipient(m) == demoAlice.Slack && strings.HasPrefix(m.Channel, "D") && strings.Contains(string(m.Blocks), first.ID) &&
			strings.Contains(string(m.Blocks), `"extend"`)
	})
	if err != nil {
		return err
	}
	d.showSlack()
	d.say("alice does not extend it")
	d.advance(first.ExpiresAt.Sub(d.clock.Now())+time.Second, "5 minutes later")
	g, err := d.waitGrant(ctx, "the revocation of "+first.ID, func(g grants.Grant) bool { return g.ID == first.ID && g.State == grants.StateRevoked })
	if err != nil {
		return err
	}
	if _, err := d.waitMessage(ctx, "alice's revocation notice", func(m slackfake.Message) bool {
		return d.recipient(m) == demoAlice.Slack && m.Seq > rem.Seq && strings.Contains(m.Text, g.ID)
	}); err != nil {
		return err
	}
	d.showSlack()
	// With alice's proxied session open, the proxy's session.ended and this grant.revoked
	// race for the next seq.
	d.showEventsNumbered(ctx, g.ID, d.pgSession == nil, audit.ActionGrantRevoked)
	d.outcome("the revoker revoked grant %s at %s, cause %s: its 15 minutes were up.", g.ID, grants.Timestamp(g.RevokedAt), g.RevokeCause)
	if err := d.checkSessionCut(ctx, first.ID); err != nil {
		return err
	}
	if d.pg != nil {
		// alice's delivered message is ephemeral; the narrator reads it back from the fake.
		for _, m := range d.slack.Messages() {
			if d.recipient(m) == demoAlice.Slack && strings.Contains(m.Mrkdwn(), first.ID) && isCredential(m) {
				if err := d.useDatabase(ctx, d.readable(m.Mrkdwn()), false); err != nil {
					return err
				}
				break
			}
		}
	}
	return nil
}

func (d *demo) runCommand(ctx context.Context, args ...string) (int, string) {
	var out, errb bytes.Buffer
	code := d.wiring.Command(ctx, args, &out, &errb)
	return code, strings.TrimRight(out.String()+errb.String(), "\n")
}

// stepVerify runs `accessbroker audit verify` over the demo's database.
func (d *demo) stepVerify(ctx context.Context) error {
	d.section("6. The audit log verifies")
	d.say("$ accessbroker audit verify --config %s", d.configPath)
	code, out := d.runCommand(ctx, "audit", "verify", "--config", d.configPath)
	d.say("%s", quoteLines(out))
	if code != 0 {
		return fmt.Errorf("audit verify exited %d: %s", code, out)
	}
	d.outcome("audit verify passed (exit 0): every event's hash chains to the one before, and the signed checkpoints match.")
	return nil
}

// stepReport runs `accessbroker report` over the week that ends at the simulated now.
func (d *demo) stepReport(ctx context.Context) error {
	d.section("7. The weekly report")
	now := d.clock.Now()
	since, until := grants.Timestamp(now.Add(-168*time.Hour)), grants.Timestamp(now.Add(time.Second))
	d.say("$ accessbroker report --config %s --since %s --until %s", d.configPath, since, until)
	d.say("(the window ends at the simulated now; on a real broker `--since 168h` is enough)")
	code, out := d.runCommand(ctx, "report", "--config", d.configPath, "--since", since, "--until", until, "--format", "markdown")
	d.plain("%s", quoteLines(out))
	if code != 0 {
		return fmt.Errorf("report exited %d", code)
	}
	return nil
}

func (d *demo) grantsTable(ctx context.Context) string {
	gs, err := d.broker.ListGrants(ctx, grants.GrantFilter{})
	if err != nil {
		return "(list grants: " + err.Error() + ")"
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GRANT\tRESOURCE\tWHO\tSTATE\tISSUED\tENDS/ENDED\tWHY IT ENDED")
	for i := len(gs) - 1; i >= 0; i-- {
		g := gs[i]
		end := grants.Timestamp(g.ExpiresAt)
		if !g.RevokedAt.IsZero() {
			end = grants.Timestamp(g.RevokedAt)
		}
		issued := "-"
		if !g.IssuedAt.IsZero() {
			issued = grants.Timestamp(g.IssuedAt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.ID, g.Resource, d.nameOf(g.Person.SlackUserID), g.State, issued, end, g.RevokeCause)
	}
	tw.Flush()
	return strings.TrimRight(b.String(), "\n")
}

func (d *demo) summary(ctx context.Context) {
	d.section("What happened")
	d.plain("%s", quoteLines(d.grantsTable(ctx)))
	d.plain("")
	d.plain("  • alice, on call, got prod-db at once; bob, off call, got prod-aws after carol approved;")
	d.plain("    bob could not approve his own infra-admins request; acknowledging a page granted prod-db,")
	d.plain("    resolving it revoked that grant; a grant that ran out was revoked by the revoker;")
	d.plain("    every step is in a hash-chained, signed audit log that verifies.")
	if d.proxyAddr != "" {
		d.plain("  • alice's database session went through the broker's proxy: her statements are in the grant's")
		d.plain("    audit timeline (accessbroker sessions list --grant G), and the proxy cut the session at expiry.")
	}
	d.plain("  • Next: README.md (what it guarantees), docs/slack.md, docs/pagerduty.md, docs/aws.md,")
	d.plain("    docs/postgres.md to connect real systems, docs/configuration.md, docs/operations.md.")
	if !d.interactiveNext {
		d.plain("  • Try it yourself: accessbroker demo --interactive")
	}
}
