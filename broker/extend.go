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

// An extension is a request of kind "extend" naming the grant. It is recorded, checked
// against the resource's policy and decided exactly like a request for new access: an
// on-call owner is auto-approved only while on call (and capped to the shift end when the
// policy says so); anyone else needs the approvers (N-of-M, never themselves). It is applied
// through Manager.Extend only once decided, in the same transaction as the decision. A grant
// whose end was brought forward (incident resolved, shift ended) is never extended on the
// owner's word: only the approvers may, and the grant.extended event records the override.

// Evidence keys of an extension request (Request.Evidence), also recorded on its events.
const (
	evKind           = "kind"             // kindExtend on an extension; absent on a request for new access
	evExtends        = "extends_grant"    // the grant to extend
	evScheduledEnd   = "scheduled_end"    // the grant's early-end cause when the extension was asked
	evScheduledEndAt = "scheduled_end_at" // and when it was due to end
	kindExtend       = "extend"
)

// ExtensionOf returns the grant an extension request extends; ok is false for a request for
// new access.
func ExtensionOf(r grants.Request) (grantID string, ok bool) {
	if r.Evidence[evKind] != kindExtend || r.Evidence[evExtends] == "" {
		return "", false
	}
	return r.Evidence[evExtends], true
}

// ExtensionInput is a grant's owner asking for more time, as a front end received it.
type ExtensionInput struct {
	Source  grants.Source // default slack
	TeamID  string
	UserID  string
	GrantID string
	By      time.Duration // how much later the grant should end
	Reason  string
	// ExternalKey deduplicates deliveries (a Slack trigger id): a second submission with the
	// same key returns ErrDuplicate and records nothing.
	ExternalKey string
	// ResponseURL and ChannelID say where to answer the owner privately.
	ResponseURL string
	ChannelID   string
}

// SubmitExtension validates an extension request and records it (a pending request of kind
// extend naming the grant, audit event request.created), without network I/O; the front end
// acknowledges and then calls Process, which decides it under the resource's policy.
//
// Errors: a *Refusal (recorded as request.rejected, nothing else changed) when the grant is
// unknown, not the caller's, no longer active, the extension is empty or passes the
// resource's maximum, the reason is empty, or the grant is scheduled to end early and nobody
// may approve an override; ErrDuplicate for a seen ExternalKey; otherwise an internal error.
func (b *Broker) SubmitExtension(ctx context.Context, in ExtensionInput) (grants.Request, error) {
	if in.TeamID == "" || in.UserID == "" {
		return grants.Request{}, errors.New("submit extension: team and user id are required")
	}
	c := Caller{TeamID: in.TeamID, UserID: in.UserID}
	g, err := b.loadGrant(ctx, c, in.GrantID, "extend")
	if err != nil {
		return grants.Request{}, err
	}
	rej := Rejection{Actor: slackActor(in.UserID), GrantID: g.ID, RequestID: g.RequestID, Resource: g.Resource,
		Evidence: map[string]string{evKind: kindExtend, "by": in.By.String()}}
	refuse := func(reason string) (grants.Request, error) {
		rej.Reason = reason
		return grants.Request{}, b.refuseAndRecord(ctx, rej)
	}
	if !c.owns(g) {
		return refuse(fmt.Sprintf("Grant %s is not yours; only its owner may ask to extend it, and the approvers decide on that request.", g.ID))
	}
	res, ok := b.m.Resource(g.Resource)
	if !ok {
		return refuse(fmt.Sprintf("Resource %s is no longer configured, so grant %s cannot be extended.", g.Resource, g.ID))
	}
	if msg := b.extendable(g, res, in.By); msg != "" {
		return refuse(msg)
	}
	if strings.TrimSpace(in.Reason) == "" {
		return refuse("A reason is required: say why you need more time.")
	}
	if g.RevokeCause != "" && !HasApprovers(res.Policy) {
		return refuse(fmt.Sprintf("Grant %s is scheduled to end at %s because %s. Only an approver can extend it, and %s has no approvers configured.",
			g.ID, stamp(g.ExpiresAt), earlyEndWords(g.RevokeCause), res.Name))
	}
	src := in.Source
	if src == "" {
		src = grants.SourceSlack
	}
	now := b.now()
	r := &grants.Request{
		ID:          grants.NewCompactOrderedID("r", now),
		Requester:   grants.Person{SlackTeamID: in.TeamID, SlackUserID: in.UserID},
		Resource:    res.Name,
		Duration:    in.By,
		Reason:      in.Reason,
		Source:      src,
		State:       grants.RequestPending,
		ExternalKey: in.ExternalKey,
		Notify:      notifyState{ResponseURL: in.ResponseURL, ChannelID: in.ChannelID}.encode(),
		CreatedAt:   now,
		ExpiresAt:   now.Add(b.opts.PendingTTL),
		Evidence:    map[string]string{evKind: kindExtend, evExtends: g.ID},
	}
	if g.RevokeCause != "" {
		r.Evidence[evScheduledEnd], r.Evidence[evScheduledEndAt] = string(g.RevokeCause), grants.Timestamp(g.ExpiresAt)
	}
	ev := b.requestEvent(audit.ActionRequestCreated, slackActor(in.UserID), r, r.Reason, map[string]string{
		"duration": in.By.String(), "source": string(src), evKind: kindExtend, evExtends: g.ID,
		"expires_at": grants.Timestamp(g.ExpiresAt), evScheduledEnd: r.Evidence[evScheduledEnd],
	})
	ev.GrantID = g.ID
	err = b.store.Apply(ctx, &grants.Change{Requests: []grants.RequestWrite{{Request: r, Create: true, MaxPending: res.Policy.PendingCap()}}, Events: []*audit.Event{ev}})
	if err != nil {
		if errors.Is(err, grants.ErrConflict) && in.ExternalKey != "" {
			return grants.Request{}, fmt.Errorf("extension with key %s: %w", in.ExternalKey, ErrDuplicate)
		}
		if pr, ok := b.pendingLimitRejection(err, rej.Actor, res.Name); ok {
			rej.Reason = pr.Reason
			rej.Evidence[evPendingRequests], rej.Evidence["max_pending"] = pr.Evidence[evPendingRequests], pr.Evidence["max_pending"]
			return grants.Request{}, b.refuseAndRecord(ctx, rej)
		}
		return grants.Request{}, fmt.Errorf("record extension of grant %s: %w", g.ID, err)
	}
	b.WakeAt(r.ExpiresAt) // only its expiry is new to the scheduler
	return *r, nil
}

// extendable says in plain words why g cannot get by more time (empty: it can, as far as
// the grant and the resource's maximum go; the policy decides the rest).
func (b *Broker) extendable(g grants.Grant, res grants.Resource, by time.Duration) string {
	now := b.now()
	if g.State != grants.StateActive || !g.ExpiresAt.After(now) || g.ClaimedTo.After(now) {
		state := string(g.State)
		switch {
		case g.State == grants.StateActive && !g.ExpiresAt.After(now):
			state = "expired"
		case g.State == grants.StateActive:
			state = "being revoked"
		}
		return fmt.Sprintf("Grant %s is %s and can no longer be extended; ask for new access with `/access %s <duration> <reason>`.", g.ID, state, g.Resource)
	}
	if by < grants.MinDuration {
		return fmt.Sprintf("An extension must be at least %s.", audit.FormatDuration(grants.MinDuration))
	}
	if res.MaxDuration > 0 {
		latest := g.CreatedAt.Add(res.MaxDuration)
		left := latest.Sub(g.ExpiresAt).Truncate(time.Minute)
		if left < grants.MinDuration {
			return fmt.Sprintf("Grant %s is already at %s's maximum duration of %s; ask again with a new request.", g.ID, res.Name, audit.FormatDuration(res.MaxDuration))
		}
		if g.ExpiresAt.Add(by).After(latest) {
			return fmt.Sprintf("Extending grant %s by %s would pass %s's maximum of %s counted from its start (latest end %s); ask for %s or less.",
				g.ID, audit.FormatDuration(by), res.Name, audit.FormatDuration(res.MaxDuration), stamp(latest), audit.FormatDuration(left))
		}
	}
	return ""
}

// earlyEndWords says why a grant's end was brought forward.
func earlyEndWords(c grants.RevokeCause) string {
	switch c {
	case grants.CauseIncidentResolved:
		return "the incident it was granted for was resolved"
	case grants.CauseShiftEnded:
		return "the on-call shift it was granted for ended"
	}
	return "its end was brought forward (" + string(c) + ")"
}

// processExtension decides a recorded extension request under the resource's policy.
func (b *Broker) processExtension(ctx context.Context, r grants.Request, grantID string) error {
	res, ok := b.m.Resource(r.Resource)
	if !ok {
		return b.rejectRecorded(ctx, r, fmt.Sprintf("Resource %s is no longer configured.", r.Resource), nil)
	}
	g, err := b.store.GetGrant(ctx, grantID)
	if errors.Is(err, grants.ErrNotFound) {
		return b.rejectRecorded(ctx, r, fmt.Sprintf("Grant %s does not exist.", grantID), nil)
	}
	if err != nil {
		return fmt.Errorf("process extension %s: %w", r.ID, err)
	}
	if g.Person.SlackUserID != r.Requester.SlackUserID || g.Person.SlackTeamID != r.Requester.SlackTeamID {
		return b.rejectRecorded(ctx, r, fmt.Sprintf("Grant %s is not yours; only its owner may ask to extend it.", g.ID), nil)
	}
	if msg := b.extendable(g, res, r.Duration); msg != "" {
		return b.rejectRecorded(ctx, r, msg, nil)
	}
	person, err := b.dir.Resolve(ctx, r.Requester.SlackTeamID, r.Requester.SlackUserID)
	if err != nil {
		msg := "You could not be identified, so the extension was refused: " + err.Error()
		if !errors.Is(err, ErrUnknownPerson) {
			b.log.WarnContext(ctx, "identity lookup failed", "request_id", r.ID, "error", err)
			msg = "Your identity could not be looked up just now, so the extension was refused. Please try again."
		}
		return b.rejectRecorded(ctx, r, msg, map[string]string{"identity_error": truncate(err.Error(), 300)})
	}
	person.SlackTeamID, person.SlackUserID = r.Requester.SlackTeamID, r.Requester.SlackUserID
	r.Requester = person

	st, ocErr := b.oncall.Check(ctx, person, res.Policy)
	evidence := OnCallEvidence(st, ocErr)
	evidence["resolved_by"] = person.ResolvedBy
	evidence[evKind], evidence[evExtends], evidence["expires_at"] = kindExtend, g.ID, grants.Timestamp(g.ExpiresAt)
	d := Decide(res, st, ocErr, false)
	if g.RevokeCause != "" || r.Evidence[evScheduledEnd] != "" {
		// A scheduled early end is undone only by the approvers, whatever the on-call answer.
		cause := g.RevokeCause
		if cause == "" {
			cause = grants.RevokeCause(r.Evidence[evScheduledEnd])
		}
		evidence[evScheduledEnd], evidence[evScheduledEndAt] = string(cause), grants.Timestamp(g.ExpiresAt)
		r.Evidence[evScheduledEnd], r.Evidence[evScheduledEndAt] = string(cause), grants.Timestamp(g.ExpiresAt)
		why := fmt.Sprintf("grant %s is scheduled to end early because %s; only an approver may extend it", g.ID, earlyEndWords(cause))
		if HasApprovers(res.Policy) {
			d = Decision{Path: PathApproval, Reason: why, Needed: Needed(res.Policy), CapAt: d.CapAt}
		} else {
			d = Decision{Path: PathReject, Reason: why + ", and " + res.Name + " has no approvers configured"}
		}
	}
	for k, v := range evidence {
		r.Evidence[k] = v
	}
	r.Evidence[evPath] = string(d.Path)
	checked := b.requestEvent(audit.ActionOnCallChecked, grants.SystemActor(), &r, d.Reason, evidence)
	checked.GrantID = g.ID

	switch d.Path {
	case PathReject:
		return b.rejectRecorded(ctx, r, "Your extension request was refused: "+d.Reason+".", evidence, checked)
	case PathApproval:
		return b.askApprovers(ctx, r, res, d, checked)
	}
	// On call and auto-approved: extend now, capped to the shift end when the policy says so.
	if !d.CapAt.IsZero() && d.CapAt.Sub(g.ExpiresAt) < grants.MinDuration {
		return b.rejectRecorded(ctx, r, fmt.Sprintf("Grant %s already ends at %s, and %s caps grants to the end of your on-call shift (%s), so it cannot be extended.",
			g.ID, stamp(g.ExpiresAt), res.Name, stamp(d.CapAt)), evidence, checked)
	}
	if err := r.Advance(grants.StageDecided); err != nil {
		return err
	}
	if err := r.Transition(grants.RequestApproved); err != nil {
		return err
	}
	r.DecidedAt = b.now()
	approved := b.requestEvent(audit.ActionRequestApproved, grants.SystemActor(), &r, d.Reason, evidence)
	approved.GrantID = g.ID
	out, err := b.m.Extend(ctx, grants.ExtendInput{
		GrantID: g.ID, By: r.Duration, NotAfter: d.CapAt,
		Request: &r, RequestEvents: []*audit.Event{checked, approved},
		Actor: userActor(person), Reason: r.Reason, Evidence: withPath(evidence, d.Path),
	})
	if err != nil {
		return b.extensionFailed(ctx, r, g, err)
	}
	b.extended(ctx, r, g, out, b.requesterRecipient(r), d.Reason)
	return nil
}

// extensionFailed ends an extension request that could not be applied (the grant changed
// or ended meanwhile, or the write failed), telling the owner.
func (b *Broker) extensionFailed(ctx context.Context, r grants.Request, g grants.Grant, err error) error {
	b.log.WarnContext(ctx, "extension not applied", "request_id", r.ID, "grant_id", g.ID, "error", err)
	text := fmt.Sprintf("Grant %s was not extended. %s", g.ID, UserMessage(err))
	switch {
	case errors.Is(err, grants.ErrInvalid):
		text = fmt.Sprintf("Grant %s was not extended: %s.", g.ID, plain(err))
	case errors.Is(err, grants.ErrConflict):
		text = fmt.Sprintf("Grant %s changed while the extension was being decided, so it was not extended. Ask again if you still need more time.", g.ID)
	}
	return b.rejectFresh(ctx, r.ID, text, err)
}

// extended tells the owner and the audit channel about an applied extension.
func (b *Broker) extended(ctx context.Context, r grants.Request, before, g grants.Grant, to Recipient, why string) {
	b.sched.forgetReminder(g.ID)
	b.Wake()
	text := fmt.Sprintf("Grant %s (%s) now ends at %s: %s.", g.ID, g.Resource, stamp(g.ExpiresAt), why)
	if want := before.ExpiresAt.Add(r.Duration); g.ExpiresAt.Before(want) {
		text += fmt.Sprintf(" It was capped at the end of your on-call shift, not the %s you asked for.", audit.FormatDuration(r.Duration))
	}
	b.tell(ctx, to, text)
	line := fmt.Sprintf("Grant %s (%s for %s) extended from %s to %s (request %s: %s): %s", g.ID, g.Resource, g.Person.Label(),
		stamp(before.ExpiresAt), stamp(g.ExpiresAt), r.ID, why, Clean(r.Reason))
	if cause := r.Evidence[evScheduledEnd]; cause != "" {
		line += fmt.Sprintf(". OVERRIDE: the scheduled early end (%s) was cancelled by the approvers.", cause)
	}
	b.auditLine(ctx, line)
}

// approveExtension applies an extension whose approvals are complete (approve's last step).
// done=false means a concurrent change; retry.
func (b *Broker) approveExtension(ctx context.Context, r grants.Request, res grants.Resource, grantID string, by []string,
	events []*audit.Event, evidence map[string]string, in DecisionInput, clicker Recipient) (bool, error) {
	g, err := b.store.GetGrant(ctx, grantID)
	if err != nil {
		return true, fmt.Errorf("approve extension %s: %w", r.ID, err)
	}
	for _, e := range events {
		e.GrantID = g.ID
	}
	if g.State == grants.StateActive && g.RevokeCause != "" && r.Evidence[evScheduledEnd] == "" {
		// The early end was scheduled after the approvers were asked: their approval does not
		// cover undoing it. A new request would say so on its approval message.
		text := fmt.Sprintf("Grant %s was not extended: after this request was sent, its end was brought forward because %s, which the approval did not cover. The owner may ask again; the approvers will see the override.",
			g.ID, earlyEndWords(g.RevokeCause))
		_ = b.rejectFresh(ctx, r.ID, text, errors.New("scheduled early end after the request was sent"))
		b.updateApproval(ctx, r, ApprovalOutcome{State: grants.RequestRejected, By: by, Note: text})
		b.tell(ctx, clicker, text)
		return true, nil
	}
	out, err := b.m.Extend(ctx, grants.ExtendInput{
		GrantID: g.ID, By: r.Duration, NotAfter: capFromEvidence(r, res),
		// The approvers saw the scheduled early end on the approval message: theirs is the
		// decision to undo it. An early end scheduled after they were asked is not overridden.
		Override: r.Evidence[evScheduledEnd] != "",
		Request:  &r, RequestEvents: events,
		Actor: slackActor(in.UserID), Reason: r.Reason, Evidence: evidence,
	})
	if errors.Is(err, grants.ErrConflict) {
		return false, nil
	}
	if err != nil {
		text := fmt.Sprintf("Grant %s was not extended. %s", g.ID, UserMessage(err))
		if errors.Is(err, grants.ErrInvalid) {
			text = fmt.Sprintf("Grant %s was not extended: %s.", g.ID, plain(err))
			_ = b.rejectFresh(ctx, r.ID, text, err)
			b.updateApproval(ctx, r, ApprovalOutcome{State: grants.RequestRejected, By: by, Note: text})
		} else {
			b.log.ErrorContext(ctx, "extend after approval failed", "request_id", r.ID, "grant_id", g.ID, "error", err)
			b.tell(ctx, Recipient{Person: r.Requester}, text)
		}
		b.tell(ctx, clicker, text)
		return true, nil
	}
	b.updateApproval(ctx, r, ApprovalOutcome{State: grants.RequestApproved, By: by, GrantID: out.ID, ExpiresAt: out.ExpiresAt})
	mentions := make([]string, len(by))
	for i, u := range by {
		mentions[i] = Mention(u)
	}
	b.extended(ctx, r, g, out, Recipient{Person: r.Requester}, "approved by "+strings.Join(mentions, ", "))
	return true, nil
}

// OfferKind is what a grant's expiry reminder offers its owner.
type OfferKind string

// Reminder offers.
const (
	OfferNone    OfferKind = "none"    // no extension button; ExtendOffer.Note says why
	OfferExtend  OfferKind = "extend"  // the owner is on call and auto-approved: the button extends at once
	OfferRequest OfferKind = "request" // the button asks the approvers for more time
)

// ExtendOffer is the extension the policy would allow a grant's owner now, for the reminder.
type ExtendOffer struct {
	Kind OfferKind
	By   time.Duration // how much the button asks for (zero with OfferNone)
	// Note is plain words on what the button does or why there is none (it names the shift
	// end an on-call extension is capped to, the approval needed, the scheduled early end or
	// the maximum reached).
	Note string
}

// ExtendOffer works out what the reminder should offer for g: Options.ExtendStep, capped at
// what the resource's maximum still allows, applied at once when the owner is on call and
// auto-approved (capped to the shift end when the policy caps grants to it), otherwise sent
// to the approvers; nothing for a grant whose end was brought forward (only an approver can
// undo that) or that is at its maximum. It asks the OnCall port; a failed check counts as not
// on call. The click is decided again when it comes, under the same policy.
func (b *Broker) ExtendOffer(ctx context.Context, g grants.Grant) ExtendOffer {
	res, ok := b.m.Resource(g.Resource)
	if !ok {
		return ExtendOffer{Kind: OfferNone, Note: fmt.Sprintf("Resource %s is no longer configured.", g.Resource)}
	}
	if g.RevokeCause != "" {
		return ExtendOffer{Kind: OfferNone, Note: fmt.Sprintf("It ends early because %s; only an approver can extend it (`/access extend %s <duration> <reason>` asks them).",
			earlyEndWords(g.RevokeCause), g.ID)}
	}
	step := b.reminderStep(g, res)
	if step == 0 {
		return ExtendOffer{Kind: OfferNone, Note: fmt.Sprintf("It is at %s's maximum duration; ask again with a new request if you need more.", res.Name)}
	}
	st, err := b.oncall.Check(ctx, g.Person, res.Policy)
	d := Decide(res, st, err, false)
	switch d.Path {
	case PathAutoApprove:
		if d.CapAt.IsZero() {
			return ExtendOffer{Kind: OfferExtend, By: step, Note: "You are on call, so it is extended at once."}
		}
		room := d.CapAt.Sub(g.ExpiresAt).Truncate(time.Minute)
		if room < grants.MinDuration {
			return ExtendOffer{Kind: OfferNone, Note: fmt.Sprintf("%s caps grants to the end of your on-call shift (%s), so it cannot be extended.", res.Name, stamp(d.CapAt))}
		}
		return ExtendOffer{Kind: OfferExtend, By: min(step, room), Note: fmt.Sprintf("You are on call, so it is extended at once, up to the end of your shift at %s.", stamp(d.CapAt))}
	case PathApproval:
		return ExtendOffer{Kind: OfferRequest, By: step, Note: fmt.Sprintf("More time needs %d approval(s) (%s).", d.Needed, d.Reason)}
	}
	return ExtendOffer{Kind: OfferNone, Note: "Nobody can approve an extension: " + d.Reason + "."}
}

// reminderStep is Options.ExtendStep capped at what the resource's maximum still allows
// (zero when nothing is left).
func (b *Broker) reminderStep(g grants.Grant, res grants.Resource) time.Duration {
	step := b.opts.ExtendStep
	if res.MaxDuration > 0 {
		left := g.CreatedAt.Add(res.MaxDuration).Sub(g.ExpiresAt)
		step = min(step, left.Truncate(time.Minute))
	}
	if step < grants.MinDuration {
		return 0
	}
	return step
}

// ExtendFromReminder handles the reminder's extension button: it submits an extension of
// in.GrantID by the reminder's step (in.By and in.Reason are filled in) and decides it at
// once under the policy, exactly as SubmitExtension followed by Process. The owner is told
// the outcome; a *Refusal is returned for what SubmitExtension refuses.
func (b *Broker) ExtendFromReminder(ctx context.Context, in ExtensionInput) (grants.Request, error) {
	c := Caller{TeamID: in.TeamID, UserID: in.UserID}
	g, err := b.loadGrant(ctx, c, in.GrantID, "extend")
	if err != nil {
		return grants.Request{}, err
	}
	res, ok := b.m.Resource(g.Resource)
	if ok {
		in.By = b.reminderStep(g, res)
	}
	if in.By == 0 {
		in.By = b.opts.ExtendStep // refused below with the reason (maximum reached)
	}
	in.Reason = "more time asked from the expiry reminder; grant reason: " + truncate(g.Reason, 300)
	r, err := b.SubmitExtension(ctx, in)
	if err != nil {
		return r, err
	}
	if err := b.Process(ctx, r.ID); err != nil {
		return r, fmt.Errorf("decide extension %s: %w", r.ID, err)
	}
	return r, nil
}
