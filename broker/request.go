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

// RequestInput is a request for access as a front end received it, before anything was
// looked up.
type RequestInput struct {
	Source     grants.Source // default slack
	TeamID     string
	UserID     string
	Resource   string
	Duration   time.Duration
	Reason     string
	BreakGlass bool
	// ExternalKey deduplicates deliveries (a Slack trigger id): a second Submit with the same
	// key returns ErrDuplicate and records nothing.
	ExternalKey string
	// ResponseURL and ChannelID say where to answer the requester privately.
	ResponseURL string
	ChannelID   string
}

// Submit validates a request against the configuration and records it (state pending, audit
// event request.created), so that it survives a crash before it is decided. It does no
// network I/O; the front end acknowledges after it returns and then calls Process.
//
// Errors: a *Refusal (recorded as request.rejected) for an unknown resource, a duration out
// of the resource's bounds, an empty reason or a break-glass request the policy forbids;
// ErrDuplicate when ExternalKey was seen; otherwise an internal error (nothing recorded).
func (b *Broker) Submit(ctx context.Context, in RequestInput) (grants.Request, error) {
	actor := slackActor(in.UserID)
	reject := func(reason string) (grants.Request, error) {
		return grants.Request{}, b.refuseAndRecord(ctx, Rejection{Actor: actor, Resource: in.Resource, Reason: reason,
			Evidence: map[string]string{"team": in.TeamID, "duration": in.Duration.String()}})
	}
	if in.TeamID == "" || in.UserID == "" {
		return grants.Request{}, errors.New("submit request: team and user id are required")
	}
	res, ok := b.m.Resource(in.Resource)
	if !ok {
		return reject(fmt.Sprintf("There is no resource named %q. `/access resources` lists what you may request.", Clean(in.Resource)))
	}
	if res.MaxDuration > 0 && in.Duration > res.MaxDuration {
		return reject(fmt.Sprintf("Duration %s is over %s's maximum of %s; ask for %s or less.", audit.FormatDuration(in.Duration), res.Name, audit.FormatDuration(res.MaxDuration), audit.FormatDuration(res.MaxDuration)))
	}
	if err := res.CheckDuration(in.Duration); err != nil {
		return reject(capitalize(plain(err)) + ".")
	}
	if strings.TrimSpace(in.Reason) == "" {
		return reject("A reason is required: say why you need access.")
	}
	if in.BreakGlass && !res.Policy.BreakGlass {
		return reject(fmt.Sprintf("Break-glass access is not allowed for %s; ask for it normally.", res.Name))
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
		Duration:    in.Duration,
		Reason:      in.Reason,
		Source:      src,
		State:       grants.RequestPending,
		ExternalKey: in.ExternalKey,
		Notify:      notifyState{ResponseURL: in.ResponseURL, ChannelID: in.ChannelID}.encode(),
		CreatedAt:   now,
		ExpiresAt:   now.Add(b.opts.PendingTTL),
		Evidence:    map[string]string{},
	}
	if in.BreakGlass {
		r.Evidence[evBreakGlass] = "true"
	}
	ev := b.requestEvent(audit.ActionRequestCreated, actor, r, r.Reason, map[string]string{
		"duration": in.Duration.String(), "source": string(src), evBreakGlass: r.Evidence[evBreakGlass],
	})
	err := b.store.Apply(ctx, &grants.Change{Requests: []grants.RequestWrite{{Request: r, Create: true, MaxPending: res.Policy.PendingCap()}}, Events: []*audit.Event{ev}})
	if err != nil {
		if errors.Is(err, grants.ErrConflict) && in.ExternalKey != "" {
			return grants.Request{}, fmt.Errorf("request with key %s: %w", in.ExternalKey, ErrDuplicate)
		}
		if rej, ok := b.pendingLimitRejection(err, actor, res.Name); ok {
			rej.Evidence["team"], rej.Evidence["duration"] = in.TeamID, in.Duration.String()
			return grants.Request{}, b.refuseAndRecord(ctx, rej)
		}
		return grants.Request{}, fmt.Errorf("record request for %s: %w", res.Name, err)
	}
	b.WakeAt(r.ExpiresAt) // only its expiry is new to the scheduler
	return *r, nil
}

// evPendingRequests is the evidence key of a refusal for too many pending requests: the ids of
// the requester's pending requests for the resource, comma-separated, oldest first.
const evPendingRequests = "pending_requests"

// pendingLimitRejection turns a store's *grants.PendingLimitError into the rejection to record
// and tell the requester (naming the pending requests); ok is false for any other error.
func (b *Broker) pendingLimitRejection(err error, actor audit.Actor, resource string) (Rejection, bool) {
	var pl *grants.PendingLimitError
	if !errors.As(err, &pl) {
		return Rejection{}, false
	}
	msg := pendingLimitMessage(resource, pl.Pending, pl.Max)
	return Rejection{Actor: actor, Resource: resource, Reason: msg,
		Evidence: map[string]string{evPendingRequests: strings.Join(pl.Pending, ","), "max_pending": fmt.Sprint(pl.Max)}}, true
}

// pendingLimitMessage tells a requester that pending (their pending requests for resource,
// oldest first, at least one) already reach the cap max. Submit and DryRun say the same.
func pendingLimitMessage(resource string, pending []string, max int) string {
	if len(pending) > 1 || max > 1 {
		return fmt.Sprintf("You already have %d pending requests for %s: %s (at most %d per person for %s). Nothing new was recorded; wait until one is decided or expires, then ask again.",
			len(pending), resource, strings.Join(pending, ", "), max, resource)
	}
	return fmt.Sprintf("You already have a pending request for %s: %s (at most 1 pending request per person for %s). Nothing new was recorded; wait until it is decided or expires, then ask again.",
		resource, pending[0], resource)
}

// Process finishes a recorded request: it resolves the requester, checks on-call status,
// applies the policy, and either issues and delivers the credential, asks the approvers, or
// rejects the request, telling the requester in every case. It is idempotent: a request that
// is no longer pending, or whose approvers were already asked, is left alone.
func (b *Broker) Process(ctx context.Context, requestID string) error {
	r, err := b.store.GetRequest(ctx, requestID)
	if err != nil {
		return fmt.Errorf("process request %s: %w", requestID, err)
	}
	if r.State != grants.RequestPending || r.Stage != grants.StageRecorded {
		return nil
	}
	if r.Evidence == nil {
		r.Evidence = map[string]string{}
	}
	if grantID, ok := ExtensionOf(r); ok {
		return b.processExtension(ctx, r, grantID)
	}
	res, ok := b.m.Resource(r.Resource)
	if !ok {
		return b.rejectRecorded(ctx, r, fmt.Sprintf("Resource %s is no longer configured.", r.Resource), nil)
	}
	person, err := b.dir.Resolve(ctx, r.Requester.SlackTeamID, r.Requester.SlackUserID)
	if err != nil {
		msg := "You could not be identified, so the request was refused: " + err.Error()
		if !errors.Is(err, ErrUnknownPerson) {
			b.log.WarnContext(ctx, "identity lookup failed", "request_id", r.ID, "error", err)
			msg = "Your identity could not be looked up just now, so the request was refused. Please try again."
		}
		var conflict *IdentityConflict
		var extra []*audit.Event
		if errors.As(err, &conflict) {
			// Recorded with the rejection, in one transaction: no audit, no refusal either.
			extra = append(extra, b.conflictEvent(conflict, slackActor(r.Requester.SlackUserID), &r))
		}
		if err := b.rejectRecorded(ctx, r, msg, map[string]string{"identity_error": truncate(err.Error(), 300)}, extra...); err != nil {
			return err
		}
		if conflict != nil {
			b.auditLine(ctx, conflictLine(conflict))
		}
		return nil
	}
	person.SlackTeamID, person.SlackUserID = r.Requester.SlackTeamID, r.Requester.SlackUserID
	r.Requester = person

	st, ocErr := b.oncall.Check(ctx, person, res.Policy)
	evidence := OnCallEvidence(st, ocErr)
	evidence["resolved_by"] = person.ResolvedBy
	d := Decide(res, st, ocErr, r.Evidence[evBreakGlass] == "true")
	for k, v := range evidence {
		r.Evidence[k] = v
	}
	r.Evidence[evPath] = string(d.Path)
	checked := b.requestEvent(audit.ActionOnCallChecked, audit.Actor{Kind: audit.ActorSystem, ID: "accessbroker"}, &r, d.Reason, evidence)

	switch d.Path {
	case PathReject:
		return b.rejectRecorded(ctx, r, "Your request was refused: "+d.Reason+".", evidence, checked)
	case PathApproval:
		return b.askApprovers(ctx, r, res, d, checked)
	}
	// Auto-approve or break-glass: issue now.
	if err := r.Advance(grants.StageDecided); err != nil {
		return err
	}
	if err := r.Transition(grants.RequestApproved); err != nil {
		return err
	}
	r.DecidedAt = b.now()
	approved := b.requestEvent(audit.ActionRequestApproved, audit.Actor{Kind: audit.ActorSystem, ID: "accessbroker"}, &r, d.Reason, evidence)
	g, cred, err := b.m.Issue(ctx, grants.IssueInput{
		Request: &r, RequestEvents: []*audit.Event{checked, approved},
		Resource: res.Name, Person: person, Duration: r.Duration, ExpiresAt: d.CapAt, Reason: r.Reason,
		Actor: userActor(person), Evidence: withPath(evidence, d.Path),
	})
	to := b.requesterRecipient(r)
	if err != nil {
		if errors.Is(err, grants.ErrConflict) {
			return nil // someone else decided it meanwhile
		}
		b.log.ErrorContext(ctx, "issue failed", "request_id", r.ID, "resource", res.Name, "error", err)
		if g.ID == "" {
			// Nothing was written: end the request so that it is not decided again later.
			return b.rejectFresh(ctx, r.ID, issueFailureText(res.Name, err), err)
		}
		text := issueFailureText(res.Name, err)
		if errors.Is(err, grants.ErrAudit) {
			text = withheldText(r)
		}
		b.tell(ctx, to, text)
		b.auditLine(ctx, fmt.Sprintf("Issuing %s for %s failed (request %s, grant %s); anything partly created is being revoked.", res.Name, person.Label(), r.ID, g.ID))
		return nil
	}
	if d.Path == PathBreakGlass {
		b.auditLine(ctx, fmt.Sprintf("BREAK-GLASS: %s took %s access (grant %s, until %s) without approval: %s", person.Label(), res.Name, g.ID, stamp(g.ExpiresAt), Clean(r.Reason)))
	}
	b.deliver(ctx, g, cred, to, to, d.Reason)
	return nil
}

func withPath(ev map[string]string, p Path) map[string]string {
	out := make(map[string]string, len(ev)+1)
	for k, v := range ev {
		out[k] = v
	}
	out[evPath] = string(p)
	return out
}

// withheldText is what the requester reads when the access was created but the audit log
// could not record it, even after retrying while the issue lease held (grants.Manager.Issue):
// the credential was withheld and is being removed, the request is finished, and a new one
// is the way on. It gives the command to send.
func withheldText(r grants.Request) string {
	return fmt.Sprintf("Request %s for %s was approved, but the audit log could not record the access, so it was withheld (no audit, no access) and is being removed. "+
		"This request is finished: once the audit log is back (the operators have been alerted), ask again with `/access %s %s %s`.",
		r.ID, r.Resource, r.Resource, audit.FormatDuration(r.Duration), Clean(r.Reason))
}

func issueFailureText(resource string, err error) string {
	if errors.Is(err, grants.ErrInvalid) {
		return fmt.Sprintf("Access to %s could not be issued: %s.", resource, plain(err))
	}
	return fmt.Sprintf("Access to %s could not be issued. Nothing usable was created, and anything partly created is being revoked. %s", resource, UserMessage(err))
}

// askApprovers posts the approval request, then records that the approvers were asked.
func (b *Broker) askApprovers(ctx context.Context, r grants.Request, res grants.Resource, d Decision, checked *audit.Event) error {
	ask := ApprovalAsk{Request: r, Resource: res, Needed: d.Needed}
	refs, err := b.notify.AskApproval(ctx, ask)
	if err != nil || len(refs) == 0 {
		b.log.ErrorContext(ctx, "ask approvers failed", "request_id", r.ID, "error", err)
		return b.rejectRecorded(ctx, r, "Your request was refused because the approvers could not be reached in Slack. Please tell the operators.",
			map[string]string{"notify_error": fmt.Sprint(err)}, checked)
	}
	n := decodeNotify(r.Notify)
	n.Approvals = refs
	r.Notify = n.encode()
	if err := r.Advance(grants.StageAwaitingApproval); err != nil {
		return err
	}
	err = b.store.Apply(ctx, &grants.Change{Requests: []grants.RequestWrite{{Request: &r}}, Events: []*audit.Event{checked}})
	if errors.Is(err, grants.ErrConflict) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("record approval request %s: %w", r.ID, err)
	}
	// Its expiry is the only deadline the scheduler has of it, as when it was submitted:
	// wake a scheduler that sleeps past it (Wake made it list every pending request and
	// active grant for each request that needs approval).
	b.WakeAt(r.ExpiresAt)
	what := fmt.Sprintf("Your request %s for %s (%s)", r.ID, res.Name, audit.FormatDuration(r.Duration))
	if grantID, ok := ExtensionOf(r); ok {
		what = fmt.Sprintf("Your request %s to extend grant %s (%s) by %s (%s)", r.ID, grantID, res.Name, audit.FormatDuration(r.Duration), d.Reason)
	}
	b.tell(ctx, b.requesterRecipient(r), fmt.Sprintf("%s needs %d approval(s): %s. You will get a direct message when it is decided; it expires at %s.",
		what, d.Needed, approverText(res.Policy, r.Requester.SlackUserID), stamp(r.ExpiresAt)))
	return nil
}

// approverText names who may approve, leaving out the requester (who never may).
func approverText(pol grants.Policy, requester string) string {
	var parts []string
	for _, u := range pol.ApproverSlackUsers {
		if u != requester {
			parts = append(parts, Mention(u))
		}
	}
	if pol.ApproverSlackUsergroup != "" {
		parts = append(parts, "the approver group")
	}
	return strings.Join(parts, ", ")
}

// rejectFresh re-reads a request and rejects it (telling the requester); if that cannot be
// recorded either, the requester is still told.
func (b *Broker) rejectFresh(ctx context.Context, id, msg string, cause error) error {
	r, err := b.store.GetRequest(ctx, id)
	if err == nil && r.State == grants.RequestPending {
		err = b.rejectRecorded(ctx, r, msg, map[string]string{"issue_error": truncate(cause.Error(), 300)})
	}
	if err != nil {
		b.log.ErrorContext(ctx, "reject request after failed issue", "request_id", id, "error", err)
		b.tell(ctx, b.requesterRecipient(r), msg)
	}
	return nil
}

// rejectRecorded moves a recorded pending request to rejected, with its events, and tells
// the requester.
func (b *Broker) rejectRecorded(ctx context.Context, r grants.Request, msg string, evidence map[string]string, extra ...*audit.Event) error {
	if err := r.Transition(grants.RequestRejected); err != nil {
		return err
	}
	r.DecidedAt = b.now()
	if err := r.Advance(grants.StageDecided); err != nil {
		return err
	}
	ev := b.requestEvent(audit.ActionRequestRejected, audit.Actor{Kind: audit.ActorSystem, ID: "accessbroker"}, &r, msg, evidence)
	events := append(append([]*audit.Event(nil), extra...), ev)
	err := b.store.Apply(ctx, &grants.Change{Requests: []grants.RequestWrite{{Request: &r}}, Events: events})
	if errors.Is(err, grants.ErrConflict) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reject request %s: %w", r.ID, err)
	}
	b.tell(ctx, b.requesterRecipient(r), msg)
	b.auditLine(ctx, fmt.Sprintf("Request %s by %s for %s was refused: %s", r.ID, r.Requester.Label(), r.Resource, msg))
	return nil
}

// deliver hands the credential to its owner only (to). If that fails the grant is revoked at
// once (cause delivery_failed) and the owner is told why through tellTo (which may offer a
// fresher path, such as the command's response_url); nothing is ever posted to a channel.
func (b *Broker) deliver(ctx context.Context, g grants.Grant, cred grants.Credential, to, tellTo Recipient, why string) {
	err := b.notify.DeliverCredential(ctx, to, g, cred)
	if err == nil {
		b.auditLine(ctx, fmt.Sprintf("Granted %s to %s until %s (grant %s, request %s): %s.", g.Resource, g.Person.Label(), stamp(g.ExpiresAt), g.ID, g.RequestID, why))
		return
	}
	b.log.WarnContext(ctx, "credential delivery failed; revoking", "grant_id", g.ID, "error", err)
	if _, rerr := b.m.Revoke(ctx, g.ID, grants.CauseDeliveryFailed, audit.Actor{Kind: audit.ActorSystem, ID: "accessbroker"},
		"the credential could not be delivered privately to its owner: "+truncate(err.Error(), 300)); rerr != nil {
		b.log.ErrorContext(ctx, "revoke undelivered grant", "grant_id", g.ID, "error", rerr)
	}
	b.tell(ctx, tellTo,
		fmt.Sprintf("Your access to %s (grant %s) was revoked right away because the credential could not be delivered to you privately, and it is never posted in a channel. Check that you can receive direct messages from the app, then ask again.", g.Resource, g.ID))
	b.auditLine(ctx, fmt.Sprintf("Grant %s of %s for %s revoked: the credential could not be delivered privately.", g.ID, g.Resource, g.Person.Label()))
}

// Recover finishes requests that were recorded but not decided (the process stopped between
// the acknowledgement and the decision). Requests older than Options.RecoverWindow are
// rejected instead, and their requesters told to ask again. Call it once on start, before
// serving. It returns how many requests it decided.
func (b *Broker) Recover(ctx context.Context) (int, error) {
	pending, err := b.store.ListRequests(ctx, grants.RequestFilter{States: []grants.RequestState{grants.RequestPending}})
	if err != nil {
		return 0, fmt.Errorf("recover: list pending requests: %w", err)
	}
	n := 0
	for i := len(pending) - 1; i >= 0; i-- { // oldest first
		r := pending[i]
		if r.Stage != grants.StageRecorded || (r.Source != grants.SourceSlack && r.Source != grants.SourceConsole) {
			continue
		}
		if b.now().Sub(r.CreatedAt) > b.opts.RecoverWindow {
			err := b.rejectRecorded(ctx, r, fmt.Sprintf("accessbroker stopped before deciding your request %s for %s, and it is now too old to decide. Nothing was granted; please ask again.", r.ID, r.Resource),
				map[string]string{"recovered": "too_old"})
			if err != nil {
				b.log.ErrorContext(ctx, "reject stale request", "request_id", r.ID, "error", err)
				continue
			}
			n++
			continue
		}
		if err := b.Process(ctx, r.ID); err != nil {
			b.log.ErrorContext(ctx, "recover request", "request_id", r.ID, "error", err)
			continue
		}
		n++
	}
	if n > 0 {
		b.log.InfoContext(ctx, "recovered undecided requests", "count", n)
	}
	return n, nil
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
