package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// Preview is what a request would lead to if it were submitted now: the policy's path and
// why, whom it would be sent to for approval, and when the grant would end. A dry run
// records nothing and tells nobody.
type Preview struct {
	// Refused is set when the request would be refused outright (bad input, unknown
	// person, nobody can grant it); it says why in plain words. Path is then PathReject.
	Refused string
	Path    Path
	// Reason is the policy's reason for Path, in plain words.
	Reason string
	// Needed is the number of approvals needed (PathApproval).
	Needed int
	// Approvers are the Slack user ids that would be asked (never the requester);
	// ApproverGroup the usergroup whose members would be asked, if any.
	Approvers     []string
	ApproverGroup string
	// Duration is what was asked; EndsAt when the grant would end if issued now, and
	// CappedToShift whether that is earlier because the on-call shift ends first.
	Duration      time.Duration
	EndsAt        time.Time
	CappedToShift bool
	// OnCall is the on-call evidence the decision rests on (as an audit event would carry).
	OnCall map[string]string
	// Pending, when the request would be refused by the pending-request limit
	// (policy.max_pending_per_person), lists the requester's pending requests for the
	// resource that fill it, oldest first.
	Pending []string
}

// DryRun evaluates a request exactly as Submit and Process would (the same input checks, the
// pending-request limit of policy.max_pending_per_person, identity resolution, on-call check
// and policy decision) without recording anything, notifying anyone or issuing anything. Input the broker would refuse is answered with
// Preview.Refused, not an error; an error means the evaluation itself failed.
func (b *Broker) DryRun(ctx context.Context, in RequestInput) (Preview, error) {
	p := Preview{Duration: in.Duration}
	refuse := func(msg string) (Preview, error) {
		p.Path, p.Refused = PathReject, msg
		return p, nil
	}
	if in.TeamID == "" || in.UserID == "" {
		return p, errors.New("dry run: team and user id are required")
	}
	res, ok := b.m.Resource(in.Resource)
	if !ok {
		return refuse(fmt.Sprintf("There is no resource named %q.", Clean(in.Resource)))
	}
	if res.MaxDuration > 0 && in.Duration > res.MaxDuration {
		return refuse(fmt.Sprintf("Duration %s is over %s's maximum of %s; ask for %s or less.", audit.FormatDuration(in.Duration), res.Name, audit.FormatDuration(res.MaxDuration), audit.FormatDuration(res.MaxDuration)))
	}
	if err := res.CheckDuration(in.Duration); err != nil {
		return refuse(capitalize(plain(err)) + ".")
	}
	if strings.TrimSpace(in.Reason) == "" {
		return refuse("A reason is required: say why you need access.")
	}
	if in.BreakGlass && !res.Policy.BreakGlass {
		return refuse(fmt.Sprintf("Break-glass access is not allowed for %s; ask for it normally.", res.Name))
	}
	pending, err := b.pendingOf(ctx, in.TeamID, in.UserID, res.Name)
	if err != nil {
		return p, fmt.Errorf("dry run: %w", err)
	}
	if max := res.Policy.PendingCap(); len(pending) >= max {
		p.Pending = pending
		return refuse("The request would be refused: " + pendingLimitMessage(res.Name, pending, max))
	}
	person, err := b.dir.Resolve(ctx, in.TeamID, in.UserID)
	if err != nil {
		if !errors.Is(err, ErrUnknownPerson) {
			return p, fmt.Errorf("dry run: resolve %s: %w", in.UserID, err)
		}
		return refuse("You could not be identified, so the request would be refused: " + err.Error())
	}
	st, ocErr := b.oncall.Check(ctx, person, res.Policy)
	p.OnCall = OnCallEvidence(st, ocErr)
	d := Decide(res, st, ocErr, in.BreakGlass)
	p.Path, p.Reason, p.Needed = d.Path, d.Reason, d.Needed
	if d.Path == PathReject {
		p.Refused = "The request would be refused: " + d.Reason + "."
		return p, nil
	}
	if d.Path == PathApproval {
		for _, u := range res.Policy.ApproverSlackUsers {
			if u != in.UserID && !slices.Contains(p.Approvers, u) {
				p.Approvers = append(p.Approvers, u)
			}
		}
		p.ApproverGroup = res.Policy.ApproverSlackUsergroup
	}
	p.EndsAt = b.now().Add(in.Duration)
	if !d.CapAt.IsZero() && d.CapAt.Before(p.EndsAt) {
		p.EndsAt, p.CappedToShift = d.CapAt, true
	}
	return p, nil
}

// pendingOf returns the ids of the requests of (team, user) for resource that are pending
// and not yet expired, oldest first: those the store counts against the pending-request
// limit when a new request is recorded (grants.RequestWrite.MaxPending). It only reads.
func (b *Broker) pendingOf(ctx context.Context, team, user, resource string) ([]string, error) {
	rs, err := b.store.ListRequests(ctx, grants.RequestFilter{States: []grants.RequestState{grants.RequestPending}, Resource: resource, SlackUser: user, Limit: 1000})
	if err != nil {
		return nil, fmt.Errorf("list pending requests of %s for %s: %w", user, resource, err)
	}
	now := b.now()
	var ids []string
	for i := len(rs) - 1; i >= 0; i-- { // newest first from the store; oldest first here
		r := rs[i]
		if r.Requester.SlackTeamID != team || !r.ExpiresAt.After(now) {
			continue // another workspace's user with the same id is another person
		}
		ids = append(ids, r.ID)
	}
	return ids, nil
}
