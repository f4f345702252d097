package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// DecisionInput is an approver's click on Approve or Deny.
type DecisionInput struct {
	TeamID    string
	UserID    string // the clicker
	RequestID string
	Approve   bool
	// ResponseURL answers the clicker privately (ephemeral) when set.
	ResponseURL string
}

// maxDecisionRetries bounds the optimistic-concurrency loop: each retry means someone else
// changed the request in between, so a handful is plenty.
const maxDecisionRetries = 8

// Decide records an approver's decision. The clicker must be a configured approver of the
// resource at click time (usergroup membership is looked up now) and never the requester;
// anything else is refused with a request.rejected event and changes nothing. A denial ends
// the request. An approval is recorded once per approver; when the resource's required
// number is reached the request is approved and the grant issued in the same write-ahead
// transaction, so concurrent or repeated clicks produce exactly one grant (the losers see
// the request already decided). The approval messages are updated, the requester told, and
// the credential delivered to the requester by direct message.
//
// The returned error is a *Refusal (already told to the clicker) or an internal error.
func (b *Broker) Decide(ctx context.Context, in DecisionInput) error {
	clicker := Recipient{Person: grants.Person{SlackTeamID: in.TeamID, SlackUserID: in.UserID}, ResponseURL: in.ResponseURL}
	click := "deny"
	if in.Approve {
		click = "approve"
	}
	refuse := func(rej Rejection) error {
		if rej.Evidence == nil {
			rej.Evidence = map[string]string{}
		}
		rej.Evidence[audit.EvidenceRefusedClick] = click
		rf := b.refuseAndRecord(ctx, rej)
		b.tell(ctx, clicker, rf.Message)
		return rf
	}
	if !grants.ValidID("r", in.RequestID) {
		return refuse(Rejection{Actor: slackActor(in.UserID), Reason: "The button refers to no valid request.", Evidence: map[string]string{"request": truncate(in.RequestID, 40)}})
	}
	for range maxDecisionRetries {
		r, err := b.store.GetRequest(ctx, in.RequestID)
		if errors.Is(err, grants.ErrNotFound) {
			return refuse(Rejection{Actor: slackActor(in.UserID), Reason: "That request does not exist.", Evidence: map[string]string{"request": in.RequestID}})
		}
		if err != nil {
			return fmt.Errorf("decide on request %s: %w", in.RequestID, err)
		}
		if r.Evidence == nil {
			r.Evidence = map[string]string{}
		}
		if r.State != grants.RequestPending {
			b.tell(ctx, clicker, fmt.Sprintf("Request %s was already decided: %s.", r.ID, describeDecided(r)))
			return nil
		}
		rej := Rejection{Actor: slackActor(in.UserID), RequestID: r.ID, Resource: r.Resource}
		if in.UserID == r.Requester.SlackUserID {
			rej.Reason = "You cannot approve or deny your own request; another approver must decide."
			return refuse(rej)
		}
		if in.TeamID != r.Requester.SlackTeamID {
			rej.Reason = "Only members of the requester's Slack workspace may decide on this request."
			return refuse(rej)
		}
		res, ok := b.m.Resource(r.Resource)
		if !ok {
			rej.Reason = fmt.Sprintf("Resource %s is no longer configured.", r.Resource)
			return refuse(rej)
		}
		if ok, why := IsApprover(ctx, res, b.groups, in.UserID); !ok {
			rej.Reason = capitalize(why) + "."
			return refuse(rej)
		}
		var done bool
		if in.Approve {
			done, err = b.approve(ctx, r, res, in, clicker)
		} else {
			done, err = b.deny(ctx, r, in)
		}
		if done || err != nil {
			return err
		}
		// ErrConflict: someone else changed the request; look again.
	}
	return fmt.Errorf("decide on request %s: changed concurrently too often: %w", in.RequestID, grants.ErrConflict)
}

func describeDecided(r grants.Request) string {
	var by []string
	for _, a := range r.Approvals {
		if a.Approved == (r.State == grants.RequestApproved) {
			by = append(by, Mention(a.By))
		}
	}
	s := string(r.State)
	if len(by) > 0 {
		s += " by " + strings.Join(by, ", ")
	}
	return s
}

// deny ends the request. done=false means a concurrent change; retry.
func (b *Broker) deny(ctx context.Context, r grants.Request, in DecisionInput) (bool, error) {
	now := b.now()
	r.Approvals = append(r.Approvals, grants.Approval{By: in.UserID, At: now, Approved: false})
	if err := r.Transition(grants.RequestDenied); err != nil {
		return true, err
	}
	r.DecidedAt = now
	if err := r.Advance(grants.StageDecided); err != nil {
		return true, err
	}
	ev := b.requestEvent(audit.ActionRequestDenied, slackActor(in.UserID), &r, "denied by an approver", map[string]string{"approver": in.UserID})
	err := b.store.Apply(ctx, &grants.Change{Requests: []grants.RequestWrite{{Request: &r}}, Events: []*audit.Event{ev}})
	if errors.Is(err, grants.ErrConflict) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("deny request %s: %w", r.ID, err)
	}
	// No wake-up: a denied request has no deadline left. A scheduler armed for its expiry
	// wakes then, finds nothing due, and sleeps until the next one.
	b.updateApproval(ctx, r, ApprovalOutcome{State: grants.RequestDenied, By: []string{in.UserID}})
	b.tell(ctx, Recipient{Person: r.Requester}, fmt.Sprintf("Your request %s for %s was denied by %s. No access was granted.", r.ID, r.Resource, Mention(in.UserID)))
	b.auditLine(ctx, fmt.Sprintf("Request %s by %s for %s denied by %s.", r.ID, r.Requester.Label(), r.Resource, Mention(in.UserID)))
	return true, nil
}

// approverActor is the approver as an audit actor: their Slack id, with their email when
// the directory knows them, so that the audit trail and the reports name approvers as they
// name requesters. An approver the directory cannot resolve is named by id alone (they are a
// configured approver all the same).
func (b *Broker) approverActor(ctx context.Context, teamID, userID string) audit.Actor {
	a := slackActor(userID)
	if p, err := b.dir.Resolve(ctx, teamID, userID); err == nil && p.SlackUserID == userID {
		a.Email = p.Email
	} else if err != nil {
		b.log.DebugContext(ctx, "approver not resolved; audited by Slack id only", "slack_user", userID, "error", err)
	}
	return a
}

// approve records one approval, and issues when enough are in. done=false means a concurrent
// change; retry.
func (b *Broker) approve(ctx context.Context, r grants.Request, res grants.Resource, in DecisionInput, clicker Recipient) (bool, error) {
	need := Needed(res.Policy)
	var by []string
	for _, a := range r.Approvals {
		if a.Approved {
			by = append(by, a.By)
		}
		if a.By == in.UserID && a.Approved {
			b.tell(ctx, clicker, fmt.Sprintf("You already approved request %s; it needs %d approval(s) in all and has %d.", r.ID, need, countApproved(r)))
			return true, nil
		}
	}
	now := b.now()
	r.Approvals = append(r.Approvals, grants.Approval{By: in.UserID, At: now, Approved: true})
	by = append(by, in.UserID)
	recorded := b.requestEvent(audit.ActionApprovalRecorded, b.approverActor(ctx, in.TeamID, in.UserID), &r,
		fmt.Sprintf("approval %d of %d", len(by), need), map[string]string{"approver": in.UserID})

	if len(by) < need {
		err := b.store.Apply(ctx, &grants.Change{Requests: []grants.RequestWrite{{Request: &r}}, Events: []*audit.Event{recorded}})
		if errors.Is(err, grants.ErrConflict) {
			return false, nil
		}
		if err != nil {
			return true, fmt.Errorf("record approval of %s: %w", r.ID, err)
		}
		b.updateApproval(ctx, r, ApprovalOutcome{State: grants.RequestPending, By: by})
		b.tell(ctx, clicker, fmt.Sprintf("Your approval of %s is recorded; it needs %d more.", r.ID, need-len(by)))
		return true, nil
	}

	if err := r.Transition(grants.RequestApproved); err != nil {
		return true, err
	}
	r.DecidedAt = now
	if err := r.Advance(grants.StageDecided); err != nil {
		return true, err
	}
	evidence := map[string]string{"approvers": strings.Join(by, ","), evPath: string(PathApproval)}
	approved := b.requestEvent(audit.ActionRequestApproved, slackActor(in.UserID), &r,
		fmt.Sprintf("approved by %d of %d required approvers", len(by), need), evidence)
	if grantID, ok := ExtensionOf(r); ok {
		evidence[evKind], evidence[evExtends] = kindExtend, grantID
		return b.approveExtension(ctx, r, res, grantID, by, []*audit.Event{recorded, approved}, evidence, in, clicker)
	}
	// A cap at the end of the requester's shift, when the policy asks for it and they are on call.
	capAt := capFromEvidence(r, res)
	g, cred, err := b.m.Issue(ctx, grants.IssueInput{
		Request: &r, RequestEvents: []*audit.Event{recorded, approved},
		Resource: res.Name, Person: r.Requester, Duration: r.Duration, ExpiresAt: capAt, Reason: r.Reason,
		Actor: slackActor(in.UserID), Evidence: evidence,
	})
	if err != nil && errors.Is(err, grants.ErrConflict) && g.ID == "" {
		return false, nil
	}
	if err != nil {
		b.log.ErrorContext(ctx, "issue after approval failed", "request_id", r.ID, "error", err)
		text := issueFailureText(res.Name, err)
		switch {
		case g.ID == "" && errors.Is(err, grants.ErrInvalid):
			// The grant can never be issued as asked (the shift it is capped to is over):
			// end the request rather than leave it for another click.
			_ = b.rejectFresh(ctx, r.ID, text, err)
			b.updateApproval(ctx, r, ApprovalOutcome{State: grants.RequestRejected, By: by, Note: text})
			b.tell(ctx, clicker, text)
			return true, nil
		case g.ID == "":
			text = fmt.Sprintf("Request %s was not approved because the approval could not be recorded. %s", r.ID, UserMessage(err))
			if errors.Is(err, grants.ErrAudit) {
				text += " The request is still open: an approver can click Approve again once the audit log is back."
			}
		case errors.Is(err, grants.ErrAudit):
			text = withheldText(r)
		}
		b.updateApproval(ctx, r, ApprovalOutcome{State: grants.RequestApproved, By: by, Note: text})
		b.tell(ctx, clicker, text)
		b.tell(ctx, Recipient{Person: r.Requester}, text)
		return true, nil
	}
	b.updateApproval(ctx, r, ApprovalOutcome{State: grants.RequestApproved, By: by, GrantID: g.ID, ExpiresAt: g.ExpiresAt})
	mentions := make([]string, len(by))
	for i, u := range by {
		mentions[i] = Mention(u)
	}
	b.deliver(ctx, g, cred, Recipient{Person: r.Requester}, b.requesterRecipient(r), "approved by "+strings.Join(mentions, ", "))
	return true, nil
}

func countApproved(r grants.Request) int {
	n := 0
	for _, a := range r.Approvals {
		if a.Approved {
			n++
		}
	}
	return n
}

// capFromEvidence recovers the shift cap recorded when the request was decided.
func capFromEvidence(r grants.Request, res grants.Resource) time.Time {
	if !res.Policy.CapToShift || r.Evidence["on_call"] != "true" {
		return time.Time{}
	}
	t, err := time.Parse(grants.TimeLayout, r.Evidence["on_call_until"])
	if err != nil {
		return time.Time{}
	}
	return t
}

func (b *Broker) updateApproval(ctx context.Context, r grants.Request, out ApprovalOutcome) {
	refs := decodeNotify(r.Notify).Approvals
	if len(refs) == 0 {
		return
	}
	res, _ := b.m.Resource(r.Resource)
	ask := ApprovalAsk{Request: r, Resource: res, Needed: Needed(res.Policy)}
	if err := b.notify.UpdateApproval(ctx, refs, ask, out); err != nil {
		b.log.WarnContext(ctx, "update approval message failed", "request_id", r.ID, "error", err)
	}
}
