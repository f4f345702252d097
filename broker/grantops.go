package broker

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/accessbroker/accessbroker/grants"
)

// Caller is the person acting on a grant, as the front end identified them.
type Caller struct {
	TeamID string
	UserID string
}

func (c Caller) owns(g grants.Grant) bool {
	return g.Person.SlackUserID == c.UserID && g.Person.SlackTeamID == c.TeamID
}

// Listing is what /access list shows: the caller's live grants and pending requests.
type Listing struct {
	Grants  []grants.Grant
	Pending []grants.Request
}

// liveStates are the grant states that may still give access.
var liveStates = []grants.State{grants.StateIssuing, grants.StateActive, grants.StateRevoking, grants.StateRevokeFailed}

// List returns the caller's live grants and pending requests, newest first.
func (b *Broker) List(ctx context.Context, c Caller) (Listing, error) {
	gs, err := b.store.ListGrants(ctx, grants.GrantFilter{SlackUser: c.UserID, States: liveStates, Limit: 50})
	if err != nil {
		return Listing{}, fmt.Errorf("list grants of %s: %w", c.UserID, err)
	}
	rs, err := b.store.ListRequests(ctx, grants.RequestFilter{SlackUser: c.UserID, States: []grants.RequestState{grants.RequestPending}, Limit: 50})
	if err != nil {
		return Listing{}, fmt.Errorf("list requests of %s: %w", c.UserID, err)
	}
	var l Listing
	for _, g := range gs {
		if g.Person.SlackTeamID == c.TeamID {
			l.Grants = append(l.Grants, g)
		}
	}
	for _, r := range rs {
		if r.Requester.SlackTeamID == c.TeamID {
			l.Pending = append(l.Pending, r)
		}
	}
	return l, nil
}

// Resources returns every configured resource, sorted by name.
func (b *Broker) Resources() []grants.Resource {
	rs := b.m.Resources()
	sort.Slice(rs, func(i, j int) bool { return rs[i].Name < rs[j].Name })
	return rs
}

// loadGrant fetches a grant the caller names, refusing unknown ids with a recorded rejection.
func (b *Broker) loadGrant(ctx context.Context, c Caller, id, verb string) (grants.Grant, error) {
	g, err := b.store.GetGrant(ctx, id)
	if errors.Is(err, grants.ErrNotFound) {
		return g, b.refuseAndRecord(ctx, Rejection{Actor: slackActor(c.UserID), GrantID: id,
			Reason: fmt.Sprintf("There is no grant %s to %s; `/access list` shows yours.", id, verb)})
	}
	if err != nil {
		return g, fmt.Errorf("%s grant %s: %w", verb, id, err)
	}
	return g, nil
}

// Revoke ends a grant now. Its owner may revoke it, and so may anyone who may approve
// requests for its resource. The revoker does the work and tells the owner when it is done.
func (b *Broker) Revoke(ctx context.Context, c Caller, grantID string) (grants.Grant, error) {
	g, err := b.loadGrant(ctx, c, grantID, "revoke")
	if err != nil {
		return g, err
	}
	if !c.owns(g) {
		res, _ := b.m.Resource(g.Resource)
		if ok, _ := IsApprover(ctx, res, b.groups, c.UserID); !ok || c.TeamID != g.Person.SlackTeamID {
			return g, b.refuseAndRecord(ctx, Rejection{Actor: slackActor(c.UserID), GrantID: g.ID, RequestID: g.RequestID, Resource: g.Resource,
				Reason: fmt.Sprintf("Grant %s is not yours, and you are not an approver for %s, so you may not revoke it.", g.ID, g.Resource)})
		}
	}
	return b.end(ctx, c, g, "revoked with /access revoke")
}

// Done ends the caller's own grant now.
func (b *Broker) Done(ctx context.Context, c Caller, grantID string) (grants.Grant, error) {
	g, err := b.loadGrant(ctx, c, grantID, "end")
	if err != nil {
		return g, err
	}
	if !c.owns(g) {
		return g, b.refuseAndRecord(ctx, Rejection{Actor: slackActor(c.UserID), GrantID: g.ID, RequestID: g.RequestID, Resource: g.Resource,
			Reason: fmt.Sprintf("Grant %s is not yours; `done` ends your own grants (approvers may use `revoke`).", g.ID)})
	}
	return b.end(ctx, c, g, "ended by its owner with /access done")
}

func (b *Broker) end(ctx context.Context, c Caller, g grants.Grant, why string) (grants.Grant, error) {
	if g.State == grants.StateRevoked {
		return g, &Refusal{Message: fmt.Sprintf("Grant %s already ended (%s).", g.ID, g.RevokeCause)}
	}
	out, err := b.m.Revoke(ctx, g.ID, grants.CauseManual, slackActor(c.UserID), why)
	if err != nil {
		return out, fmt.Errorf("revoke grant %s: %w", g.ID, err)
	}
	b.auditLine(ctx, fmt.Sprintf("Revocation of grant %s (%s for %s) requested by %s: %s.", g.ID, g.Resource, g.Person.Label(), Mention(c.UserID), why))
	return out, nil
}
