package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// AutoGrantRule grants resources to whoever acknowledges a page on the listed PagerDuty
// services (config auto_grant).
type AutoGrantRule struct {
	PagerDutyServices []string
	Resources         []string
	Duration          time.Duration
	RevokeOnResolve   bool
	GracePeriod       time.Duration // after incident.resolved, before revocation
}

// PagePeople finds the person behind a PagerDuty user.
type PagePeople interface {
	// ByPagerDuty returns the person for a PagerDuty user id and email. Refusals wrap
	// ErrUnknownPerson; other errors are transient.
	ByPagerDuty(ctx context.Context, pdUserID, email string) (grants.Person, error)
}

// EndByManager is the grants.Manager ability Pages needs beyond Manager.
type EndByManager interface {
	EndBy(ctx context.Context, grantID string, at time.Time, cause grants.RevokeCause, actor audit.Actor, reason string) (grants.Grant, error)
}

// Pages turns acknowledged and resolved PagerDuty incidents into grants and revocations. It
// implements the PagerDuty webhook's Pages port.
type Pages struct {
	b      *Broker
	rules  []AutoGrantRule
	people PagePeople
	ender  EndByManager
}

// NewPages returns the auto-grant use case over a broker. ender is usually the same
// *grants.Manager the broker uses.
func NewPages(b *Broker, rules []AutoGrantRule, people PagePeople, ender EndByManager) *Pages {
	return &Pages{b: b, rules: rules, people: people, ender: ender}
}

func (p *Pages) rulesFor(service string) []AutoGrantRule {
	var out []AutoGrantRule
	for _, r := range p.rules {
		if slices.Contains(r.PagerDutyServices, service) {
			out = append(out, r)
		}
	}
	return out
}

func pdActor(userID, email string) audit.Actor {
	return audit.Actor{Kind: audit.ActorPagerDuty, ID: userID, Email: email}
}

// Acknowledged grants the auto_grant rules' resources for the incident's service to the
// acknowledging engineer, if they are on call for it, and sends them the credentials by
// direct message. It is idempotent per event and per (incident, resource, person). A page
// that grants nothing (no rule, unknown person, not on call) is audited and returns nil; an
// error means a redelivery may succeed.
func (p *Pages) Acknowledged(ctx context.Context, ack PageAck) error {
	b := p.b
	actor := pdActor(ack.AcknowledgerPDUserID, ack.AcknowledgerEmail)
	evidence := map[string]string{"incident": ack.IncidentID, "incident_number": fmt.Sprint(ack.IncidentNumber),
		"service": ack.ServiceID, "pagerduty_event": ack.EventID}
	rules := p.rulesFor(ack.ServiceID)
	if len(rules) == 0 {
		return b.RecordRejection(ctx, Rejection{Actor: actor, Reason: fmt.Sprintf("page acknowledged on PagerDuty service %s, which has no auto_grant rule: nothing granted", ack.ServiceID), Evidence: evidence})
	}
	person, err := p.people.ByPagerDuty(ctx, ack.AcknowledgerPDUserID, ack.AcknowledgerEmail)
	if errors.Is(err, ErrUnknownPerson) {
		rej := Rejection{Actor: actor, Reason: "page acknowledged by someone accessbroker cannot identify: " + truncate(err.Error(), 300), Evidence: evidence}
		var conflict *IdentityConflict
		if !errors.As(err, &conflict) {
			return b.RecordRejection(ctx, rej)
		}
		// The conflict and the rejection are recorded together.
		rejected := &audit.Event{Actor: rej.Actor, Action: audit.ActionRequestRejected, Reason: truncate(rej.Reason, 500), Evidence: rej.Evidence}
		if err := b.m.Record(ctx, b.conflictEvent(conflict, actor, nil), rejected); err != nil {
			return fmt.Errorf("record identity conflict of PagerDuty user %s: %w", ack.AcknowledgerPDUserID, err)
		}
		b.auditLine(ctx, conflictLine(conflict))
		return nil
	}
	if err != nil {
		return fmt.Errorf("resolve PagerDuty user %s: %w", ack.AcknowledgerPDUserID, err)
	}
	if person.PagerDutyID == "" {
		person.PagerDutyID = ack.AcknowledgerPDUserID
	}
	reason := fmt.Sprintf("PagerDuty incident #%d: %s (%s)", ack.IncidentNumber, ack.Title, ack.URL)
	var firstErr error
	for _, rule := range rules {
		for _, name := range rule.Resources {
			if err := p.grantOne(ctx, ack, rule, name, person, reason, evidence); err != nil && firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
}

func (p *Pages) grantOne(ctx context.Context, ack PageAck, rule AutoGrantRule, name string, person grants.Person, reason string, base map[string]string) error {
	b := p.b
	res, ok := b.m.Resource(name)
	if !ok {
		return b.RecordRejection(ctx, Rejection{Actor: userActor(person), Reason: "auto_grant names resource " + name + ", which is not configured", Evidence: base})
	}
	// One grant per incident, resource and person, whatever the number of deliveries. A
	// redelivery of one event is stopped by the request's ExternalKey; different events for
	// the same acknowledgement (a re-acknowledgement, two at once on two replicas) by the
	// check below, which must therefore not race with another event's write-ahead of the grant.
	release, err := p.serialize(ctx, "autogrant:"+ack.IncidentID+":"+name+":"+person.SlackUserID, ack.EventID)
	if err != nil {
		return fmt.Errorf("auto-grant %s for incident %s: %w", name, ack.IncidentID, err)
	}
	defer release()
	live, err := b.store.ListGrants(ctx, grants.GrantFilter{IncidentID: ack.IncidentID, Resource: name, SlackUser: person.SlackUserID,
		States: []grants.State{grants.StateIssuing, grants.StateActive}})
	if err != nil {
		return fmt.Errorf("check existing grants for incident %s: %w", ack.IncidentID, err)
	}
	if len(live) > 0 {
		return nil
	}
	now := b.now()
	r := grants.Request{
		ID: grants.NewCompactOrderedID("r", now), Requester: person, Resource: name, Duration: rule.Duration, Reason: reason,
		Source: grants.SourcePagerDuty, State: grants.RequestPending, IncidentID: ack.IncidentID,
		ExternalKey: "pagerduty:" + ack.EventID + ":" + name, CreatedAt: now, ExpiresAt: now.Add(b.opts.PendingTTL),
		Stage: grants.StageDecided, Evidence: map[string]string{},
	}
	for k, v := range base {
		r.Evidence[k] = v
	}
	created := b.requestEvent(audit.ActionRequestCreated, pdActor(ack.AcknowledgerPDUserID, ack.AcknowledgerEmail), &r, reason, base)
	err = b.store.Apply(ctx, &grants.Change{Requests: []grants.RequestWrite{{Request: &r, Create: true}}, Events: []*audit.Event{created}})
	if errors.Is(err, grants.ErrConflict) {
		return nil // this delivery was already handled
	}
	if err != nil {
		return fmt.Errorf("record auto-grant request: %w", err)
	}

	ev := map[string]string{}
	capAt := time.Time{}
	if len(res.Policy.OnCallEscalationPolicies) == 0 && len(res.Policy.OnCallSchedules) == 0 {
		// The policy names no schedule: the acknowledgement itself, confirmed through the
		// PagerDuty API as one of the incident's acknowledgers, is the evidence.
		ev["on_call"] = "incident_acknowledger"
	} else {
		st, ocErr := b.oncall.Check(ctx, person, res.Policy)
		ev = OnCallEvidence(st, ocErr)
		if ocErr != nil || !st.OnCall {
			why := "not on call for " + name + " at an allowed level"
			if ocErr != nil {
				why = "on-call status could not be confirmed with PagerDuty"
			}
			b.tell(ctx, Recipient{Person: person}, fmt.Sprintf("You acknowledged PagerDuty incident #%d, but %s, so no access to %s was granted automatically. Use /access %s to ask for it.", ack.IncidentNumber, why, name, name))
			return b.rejectRecorded(ctx, r, "auto-grant refused: "+why, ev)
		}
		if res.Policy.CapToShift {
			capAt = st.ShiftEnd()
		}
	}
	ev[evPath] = "page_ack"
	ev["resolved_by"] = person.ResolvedBy
	for k, v := range ev {
		r.Evidence[k] = v
	}
	if err := r.Transition(grants.RequestApproved); err != nil {
		return err
	}
	r.DecidedAt = b.now()
	approved := b.requestEvent(audit.ActionRequestApproved, audit.Actor{Kind: audit.ActorSystem, ID: "accessbroker"}, &r, "auto-granted on page acknowledgement", ev)
	g, cred, err := b.m.Issue(ctx, grants.IssueInput{
		Request: &r, RequestEvents: []*audit.Event{approved}, Resource: name, Person: person, Duration: rule.Duration,
		ExpiresAt: capAt, Reason: reason, IncidentID: ack.IncidentID, Actor: pdActor(ack.AcknowledgerPDUserID, ack.AcknowledgerEmail),
		Evidence: mergeInto(ev, base),
	})
	if err != nil {
		b.log.ErrorContext(ctx, "auto-grant issue failed", "incident", ack.IncidentID, "resource", name, "error", err)
		if g.ID == "" {
			_ = b.rejectFresh(ctx, r.ID, issueFailureText(name, err), err)
		} else if errors.Is(err, grants.ErrAudit) {
			b.tell(ctx, Recipient{Person: person}, withheldText(r))
		} else {
			b.tell(ctx, Recipient{Person: person}, issueFailureText(name, err))
		}
		return nil
	}
	to := Recipient{Person: person}
	b.deliver(ctx, g, cred, to, to, fmt.Sprintf("acknowledged PagerDuty incident #%d", ack.IncidentNumber))
	return nil
}

// autoGrantLeaseTTL bounds how long one acknowledgement event holds the right to grant a
// resource to a person for an incident, should its process die before releasing it. It
// covers the on-call check and the grant's write-ahead; after that the grant row itself stops
// the next event.
const autoGrantLeaseTTL = 2 * time.Minute

// serialize takes the named lease for the event, so that the events of one incident, resource
// and person are granted one at a time across replicas. When another event holds it, the
// error says to retry: the webhook then answers 5xx and PagerDuty redelivers, and by then the
// other event's grant exists (or it failed, and this one gets its turn). release gives the
// lease up by renewing it to expire now.
func (p *Pages) serialize(ctx context.Context, lease, eventID string) (release func(), err error) {
	ls := p.b.leases
	mine, err := ls.AcquireLease(ctx, lease, eventID, autoGrantLeaseTTL)
	if err != nil {
		return nil, fmt.Errorf("take lease %s: %w", lease, err)
	}
	if !mine {
		return nil, fmt.Errorf("another acknowledgement event of the incident is being granted (lease %s): %w", lease, ErrBusy)
	}
	return func() {
		if _, err := ls.AcquireLease(context.WithoutCancel(ctx), lease, eventID, 0); err != nil {
			p.b.log.WarnContext(ctx, "release auto-grant lease; it lapses on its own", "lease", lease, "error", err)
		}
	}, nil
}

func mergeInto(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	for k, v := range b {
		out[k] = v
	}
	for k, v := range a {
		out[k] = v
	}
	return out
}

// Resolved revokes the grants tied to a resolved incident whose rule says revoke_on_resolve,
// after the rule's grace period. It is idempotent.
func (p *Pages) Resolved(ctx context.Context, res PageResolved) error {
	b := p.b
	live, err := b.store.ListGrants(ctx, grants.GrantFilter{IncidentID: res.IncidentID, States: []grants.State{grants.StateIssuing, grants.StateActive}})
	if err != nil {
		return fmt.Errorf("list grants of incident %s: %w", res.IncidentID, err)
	}
	actor := audit.Actor{Kind: audit.ActorPagerDuty, ID: "incident:" + res.IncidentID}
	var firstErr error
	for _, g := range live {
		revoke, grace := false, time.Duration(0)
		for _, rule := range p.rulesFor(res.ServiceID) {
			if rule.RevokeOnResolve && slices.Contains(rule.Resources, g.Resource) {
				revoke, grace = true, max(grace, rule.GracePeriod)
			}
		}
		if !revoke {
			continue
		}
		why := fmt.Sprintf("PagerDuty incident %s resolved", res.IncidentID)
		if grace > 0 {
			why += fmt.Sprintf("; access ends after a %s grace period", grace)
		}
		if _, err := p.ender.EndBy(ctx, g.ID, b.now().Add(grace), grants.CauseIncidentResolved, actor, why); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("end grant %s: %w", g.ID, err)
		}
	}
	if len(live) == 0 {
		b.log.InfoContext(ctx, "incident resolved with no live grants", "incident", res.IncidentID)
	}
	return firstErr
}
