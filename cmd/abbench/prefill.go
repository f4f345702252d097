package main

import (
	"context"
	"fmt"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// prefillEventsPerGrant is how many audit events one past grant's story has: request.created,
// grant.issuing, grant.issued, grant.revoked.
const prefillEventsPerGrant = 4

// prefillKeyPrefix begins the handle key of every prefilled grant (no such role exists).
const prefillKeyPrefix = "ab_past_"

// PrefillStats says what the store held before the measurement.
type PrefillStats struct {
	Grants int     `json:"grants"`
	Events int     `json:"events"`
	BuildS float64 `json:"build_s"`
}

// prefill writes past history into the store before anything is measured: grants past
// grants of the benchmark's resource, each with its request and its request, issue and
// revocation events, all revoked and dated back over the last 90 days, then filler events
// (rejected webhooks) up to events in all. Everything goes through Store.Apply in large
// changes, so the chain is the store's own and verifies; the grants' handles name roles that
// do not exist (their revocation is long done).
func prefill(ctx context.Context, st *sqlstore.Store, pastGrants, events int, now time.Time) (PrefillStats, error) {
	sw := grants.StartStopwatch()
	begin := now.Add(-90 * 24 * time.Hour)
	step := time.Duration(0)
	if pastGrants > 0 {
		step = 80 * 24 * time.Hour / time.Duration(pastGrants)
	}
	sys := audit.Actor{Kind: audit.ActorSystem, ID: "accessbroker"}
	c := &grants.Change{}
	written := 0
	flush := func() error {
		if len(c.Events) == 0 {
			return nil
		}
		err := st.Apply(ctx, c)
		written += len(c.Events)
		c = &grants.Change{}
		if err != nil {
			return fmt.Errorf("prefill: %w", err)
		}
		return ctx.Err()
	}
	for i := range pastGrants {
		at := begin.Add(time.Duration(i) * step).Truncate(time.Millisecond)
		user := fmt.Sprintf("UPAST%05d", i%5000)
		person := grants.Person{SlackTeamID: "T0BENCH", SlackUserID: user, Email: fmt.Sprintf("past%05d@example.com", i%5000)}
		r := &grants.Request{ID: grants.NewID("r"), Requester: person, Resource: resourceName, Duration: time.Hour, Reason: "abbench prefill",
			Source: grants.SourceSlack, State: grants.RequestApproved, Stage: grants.StageDecided, CreatedAt: at, DecidedAt: at,
			ExpiresAt: at.Add(time.Hour), Evidence: map[string]string{"path": "on_call"}}
		g := &grants.Grant{ID: grants.NewID("g"), RequestID: r.ID, Resource: resourceName, Provider: "postgres", Person: person,
			State: grants.StateRevoked, Reason: r.Reason, CreatedAt: at, IssuedAt: at.Add(time.Second), ExpiresAt: at.Add(time.Hour),
			RevokedAt: at.Add(time.Hour + time.Second), RevokeCause: grants.CauseExpired, DueAt: at.Add(time.Hour),
			Handle: grants.Handle{Key: fmt.Sprintf("%s%07d", prefillKeyPrefix, i)}}
		re := grants.NewGrantEvent(at, audit.Actor{Kind: audit.ActorUser, ID: user}, audit.ActionRequestCreated, g, r.Reason, map[string]string{"duration": "1h0m0s", "source": "slack"})
		re.GrantID = ""
		c.Requests = append(c.Requests, grants.RequestWrite{Request: r, Create: true})
		c.Grants = append(c.Grants, grants.GrantWrite{Grant: g, Create: true})
		c.Events = append(c.Events, re,
			grants.NewGrantEvent(at, sys, audit.ActionGrantIssuing, g, r.Reason, map[string]string{"expires_at": grants.Timestamp(g.ExpiresAt)}),
			grants.NewGrantEvent(at.Add(time.Second), sys, audit.ActionGrantIssued, g, r.Reason, map[string]string{"expires_at": grants.Timestamp(g.ExpiresAt)}),
			grants.NewGrantEvent(g.RevokedAt, sys, audit.ActionGrantRevoked, g, "expired", map[string]string{"cause": "expired"}))
		if len(c.Events) >= 4000 {
			if err := flush(); err != nil {
				return PrefillStats{}, err
			}
		}
	}
	filler := events - pastGrants*prefillEventsPerGrant
	at := now.Add(-24 * time.Hour).Truncate(time.Millisecond)
	for range filler {
		c.Events = append(c.Events, &audit.Event{ID: grants.NewID("e"), Time: at, Actor: audit.Actor{Kind: audit.ActorUnknown, ID: "203.0.113.9"},
			Action: audit.ActionWebhookRejected, Reason: "bad signature"})
		if len(c.Events) >= 4000 {
			if err := flush(); err != nil {
				return PrefillStats{}, err
			}
		}
	}
	if err := flush(); err != nil {
		return PrefillStats{}, err
	}
	return PrefillStats{Grants: pastGrants, Events: written, BuildS: round(sw.Elapsed().Seconds())}, nil
}
