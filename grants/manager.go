package grants

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/audit"
)

// ManagerOptions tunes a Manager. Zero values take the documented defaults.
type ManagerOptions struct {
	// Instance names this process in claims (default: a random id).
	Instance string
	// IssueTimeout bounds one provider Issue call. A grant left in issuing longer than this
	// is treated as interrupted and revoked. Default 1m.
	IssueTimeout time.Duration
	// Wake is called after a change that may move the next revocation deadline earlier (the
	// revoker's Wake), when WakeAt is not set. Optional.
	Wake func()
	// WakeAt is called after a change with the grant's new due time (the revoker's WakeAt,
	// which wakes it only when that is earlier than the deadline it sleeps until). Optional;
	// it takes precedence over Wake.
	WakeAt func(time.Time)
	// Secrets are the configured secret values (tokens, DSNs and their passwords). Every
	// provider error is scrubbed of them, and of the failed grant's own credential values,
	// before it is logged, audited, stored or returned to the caller (and so to Slack).
	Secrets []string
	// Gate is asked before every issue and extension; an error refuses them (the
	// AuditGuard's IssueAllowed: no new access while the audit log is suspect). Revocation
	// never asks it. Optional.
	Gate IssueGate
}

// IssueGate decides whether new access may be issued or extended right now.
type IssueGate interface {
	IssueAllowed() error
}

// Manager issues, extends and ends grants. It is the only writer of grant state outside the
// revoker, and it enforces write-ahead: the grant row with its expiry and its audit event are
// durable before any provider is called.
type Manager struct {
	store     Store
	providers map[string]Provider
	resources map[string]Resource
	clock     Clock
	log       *slog.Logger
	opts      ManagerOptions
}

// NewManager returns a Manager over the given store, providers (keyed by resource name: two
// resources of one kind have two configured providers) and resources.
func NewManager(store Store, providers map[string]Provider, resources []Resource, clock Clock, logger *slog.Logger, opts ManagerOptions) *Manager {
	if opts.Instance == "" {
		opts.Instance = NewID("i")
	}
	if opts.IssueTimeout <= 0 {
		opts.IssueTimeout = time.Minute
	}
	if opts.Wake == nil {
		opts.Wake = func() {}
	}
	if opts.WakeAt == nil {
		wake := opts.Wake
		opts.WakeAt = func(time.Time) { wake() }
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	rs := make(map[string]Resource, len(resources))
	for _, r := range resources {
		rs[r.Name] = r
	}
	return &Manager{store: store, providers: providers, resources: rs, clock: clock, log: logger, opts: opts}
}

// Resource returns the configured resource with that name.
func (m *Manager) Resource(name string) (Resource, bool) {
	r, ok := m.resources[name]
	return r, ok
}

// Resources returns every configured resource, in no particular order.
func (m *Manager) Resources() []Resource {
	out := make([]Resource, 0, len(m.resources))
	for _, r := range m.resources {
		out = append(out, r)
	}
	return out
}

// IssueInput is what Issue needs.
type IssueInput struct {
	// Request, when set, is written in the write-ahead transaction (its Version must be
	// current), together with RequestEvents.
	Request       *Request
	RequestEvents []*audit.Event
	Resource      string
	Person        Person
	Duration      time.Duration // checked against the resource's limits
	ExpiresAt     time.Time     // optional hard cap (end of shift); the earlier end wins
	Reason        string
	IncidentID    string
	Actor         audit.Actor
	Evidence      map[string]string
}

// Issue creates a grant: it records the grant (state issuing, with its expiry) and its audit
// event, then calls the provider, then records the outcome. A provider that is an
// IssuePreparer prepares the issue while the record commits and commits it after. The credential is returned to be
// delivered once; it is never stored. If recording fails before the provider call, nothing
// is issued and the error wraps ErrAudit. If the provider fails, the grant is queued for an
// idempotent revocation and the error says why.
func (m *Manager) Issue(ctx context.Context, in IssueInput) (Grant, Credential, error) {
	res, ok := m.resources[in.Resource]
	if !ok {
		return Grant{}, Credential{}, fmt.Errorf("unknown resource %q: %w", in.Resource, ErrInvalid)
	}
	if err := m.gate(); err != nil {
		return Grant{}, Credential{}, fmt.Errorf("issue access to %s: %w", in.Resource, err)
	}
	prov, ok := m.providers[res.Name]
	if !ok {
		return Grant{}, Credential{}, fmt.Errorf("resource %s: no %s provider is configured for it", res.Name, res.Provider)
	}
	if err := res.CheckDuration(in.Duration); err != nil {
		return Grant{}, Credential{}, err
	}
	if strings.TrimSpace(in.Reason) == "" {
		return Grant{}, Credential{}, fmt.Errorf("a reason is required: %w", ErrInvalid)
	}
	now := m.clock.Now().Truncate(time.Millisecond)
	exp := now.Add(in.Duration)
	if !in.ExpiresAt.IsZero() && in.ExpiresAt.Before(exp) {
		exp = in.ExpiresAt.UTC().Truncate(time.Millisecond)
	}
	if exp.Sub(now) < MinDuration {
		return Grant{}, Credential{}, fmt.Errorf("grant would end at %s, less than %s from now: %w", Timestamp(exp), MinDuration, ErrInvalid)
	}
	lease := now.Add(m.opts.IssueTimeout)
	g := &Grant{
		ID: NewCompactOrderedID("g", now), Resource: res.Name, Provider: res.Provider, Person: in.Person,
		State: StateIssuing, Reason: in.Reason, IncidentID: in.IncidentID,
		CreatedAt: now, ExpiresAt: exp,
		DueAt: lease, ClaimedBy: m.opts.Instance, ClaimedTo: lease,
	}
	if in.Request != nil {
		g.RequestID = in.Request.ID
	}
	ev := m.event(now, in.Actor, audit.ActionGrantIssuing, g, in.Reason, mergeEvidence(in.Evidence, map[string]string{
		"expires_at": Timestamp(exp), "provider": res.Provider,
	}))
	c := &Change{Grants: []GrantWrite{{Grant: g, Create: true}}}
	if in.Request != nil {
		c.Requests = []RequestWrite{{Request: in.Request}}
	}
	for _, e := range in.RequestEvents {
		m.stamp(now, e)
		c.Events = append(c.Events, e)
	}
	c.Events = append(c.Events, ev)
	req := IssueRequest{GrantID: g.ID, Resource: res.Name, Person: in.Person, ExpiresAt: exp, Reason: in.Reason}
	// The provider call has its own deadline, from the write-ahead on (the issue lease);
	// recording the outcome gets a fresh one.
	pctx, cancelP := context.WithTimeout(context.WithoutCancel(ctx), m.opts.IssueTimeout)
	defer cancelP()
	// A provider that can prepare does its slow part while the write-ahead record commits;
	// it makes the access real only in Commit, after the record is durable.
	var prepared chan PreparedIssue
	if pp, ok := prov.(IssuePreparer); ok {
		prepared = make(chan PreparedIssue, 1)
		go func() { prepared <- pp.PrepareIssue(pctx, req) }()
	}
	if err := m.store.Apply(ctx, c); err != nil {
		if prepared != nil {
			cancelP() // nothing prepared may take effect; stop it and discard it
			actx, cancelA := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
			(<-prepared).Abort(actx)
			cancelA()
		}
		if errors.Is(err, ErrConflict) {
			return Grant{}, Credential{}, fmt.Errorf("record grant for %s: %w", res.Name, err)
		}
		return Grant{}, Credential{}, fmt.Errorf("record grant for %s before issuing, so nothing was issued: %w: %w", res.Name, ErrAudit, err)
	}

	// From here on the grant is durable; finish even if the caller goes away.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	var (
		issued Issued
		perr   error
	)
	if prepared != nil {
		issued, perr = (<-prepared).Commit(pctx)
	} else {
		issued, perr = prov.Issue(pctx, req)
	}
	done := m.clock.Now().Truncate(time.Millisecond)
	if perr != nil {
		perr = scrubError(perr, slices.Concat(m.opts.Secrets, issued.Credential.Values()))
		msg := scrub(perr.Error(), nil)
		m.log.WarnContext(ctx, "issue failed; queueing revocation", "grant_id", g.ID, "resource", res.Name, "provider", res.Provider, "error", msg)
		_ = g.Transition(StateRevoking)
		g.RevokeCause, g.DueAt, g.ClaimedBy, g.ClaimedTo, g.LastError = CauseIssueFailed, done, "", time.Time{}, msg
		fev := m.event(done, systemActor, audit.ActionGrantIssueFailed, g, msg, nil)
		if err := m.store.Apply(wctx, &Change{Grants: []GrantWrite{{Grant: g}}, Events: []*audit.Event{fev}}); err != nil {
			m.log.ErrorContext(ctx, "record issue failure; the claim lease will revoke it", "grant_id", g.ID, "error", err)
		}
		m.opts.WakeAt(g.DueAt)
		return *g, Credential{}, fmt.Errorf("issue %s access to %s: %w", res.Name, in.Person.Label(), perr)
	}

	h := issued.Handle
	if h.Preexisting && h.Key != "" {
		owned, err := m.ownedElsewhere(wctx, h.Key, g.ID)
		if err != nil {
			m.log.WarnContext(ctx, "overlap check failed; treating access as preexisting", "grant_id", g.ID, "error", err)
		}
		if owned {
			h.Preexisting = false // another live grant of ours created it: we share it
		}
	}
	if err := g.Transition(StateActive); err != nil {
		return *g, Credential{}, err
	}
	g.IssuedAt, g.Handle, g.DueAt, g.ClaimedBy, g.ClaimedTo = done, h, exp, "", time.Time{}
	iev := m.event(done, in.Actor, audit.ActionGrantIssued, g, in.Reason, map[string]string{
		"expires_at": Timestamp(exp), "handle_key": h.Key, "preexisting": fmt.Sprint(h.Preexisting),
	})
	// A failed record is retried while the issue lease holds (issuerecord.go).
	// Its context bounds hung I/O only (the wall clock); the injected clock ends the retries.
	rctx, cancelR := context.WithTimeout(context.WithoutCancel(ctx), max(lease.Sub(done), 0)+recordTimeout)
	defer cancelR()
	if err := m.recordIssued(rctx, g, iev, lease); err != nil {
		// The access exists but is not recorded as active: do not hand it out. The claim lease
		// on the issuing row makes the revoker remove it.
		m.log.ErrorContext(ctx, "record issued grant failed; withholding credential, revoker will remove it", "grant_id", g.ID, "error", err)
		return *g, Credential{}, fmt.Errorf("record issued grant %s, so the credential was withheld and will be revoked: %w: %w", g.ID, ErrAudit, err)
	}
	m.opts.WakeAt(g.DueAt)
	return *g, issued.Credential, nil
}

// ownedElsewhere reports whether another live grant, not itself preexisting, holds key.
func (m *Manager) ownedElsewhere(ctx context.Context, key, self string) (bool, error) {
	others, err := m.store.ListGrants(ctx, GrantFilter{HandleKey: key, States: []State{StateIssuing, StateActive, StateRevoking, StateRevokeFailed}})
	if err != nil {
		return false, err
	}
	for _, o := range others {
		if o.ID != self && !o.Handle.Preexisting {
			return true, nil
		}
	}
	return false, nil
}

// Revoke queues a grant for revocation now, records why, and wakes the revoker. Revoking a
// grant that is already ending or ended returns it unchanged.
func (m *Manager) Revoke(ctx context.Context, grantID string, cause RevokeCause, actor audit.Actor, reason string) (Grant, error) {
	for range 3 {
		g, err := m.store.GetGrant(ctx, grantID)
		if err != nil {
			return Grant{}, fmt.Errorf("revoke grant %s: %w", grantID, err)
		}
		now := m.clock.Now().Truncate(time.Millisecond)
		if g.State == StateRevoked || g.State == StateRevoking || g.State == StateRevokeFailed ||
			(g.State == StateActive && g.ClaimedTo.After(now)) {
			return g, nil
		}
		if err := g.Transition(StateRevoking); err != nil {
			return g, err
		}
		g.RevokeCause, g.DueAt, g.ClaimedBy, g.ClaimedTo = cause, now, "", time.Time{}
		ev := m.event(now, actor, audit.ActionGrantRevokeQueued, &g, reason, map[string]string{"cause": string(cause)})
		err = m.store.Apply(ctx, &Change{Grants: []GrantWrite{{Grant: &g}}, Events: []*audit.Event{ev}})
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return g, fmt.Errorf("revoke grant %s: %w", grantID, err)
		}
		m.opts.WakeAt(g.DueAt)
		return g, nil
	}
	return Grant{}, fmt.Errorf("revoke grant %s: changed concurrently too often: %w", grantID, ErrConflict)
}

// EndBy brings an active grant's end forward to at (never later than it already is) and
// records why: it will be revoked then with the given cause (incident resolved after a grace
// period, shift end). A grant that is already ending or ended is returned unchanged.
func (m *Manager) EndBy(ctx context.Context, grantID string, at time.Time, cause RevokeCause, actor audit.Actor, reason string) (Grant, error) {
	for range 3 {
		g, err := m.store.GetGrant(ctx, grantID)
		if err != nil {
			return Grant{}, fmt.Errorf("end grant %s: %w", grantID, err)
		}
		now := m.clock.Now().Truncate(time.Millisecond)
		if g.State != StateActive || g.ClaimedTo.After(now) {
			return g, nil
		}
		at = at.UTC().Truncate(time.Millisecond)
		if at.Before(now) {
			at = now
		}
		if at.Before(g.ExpiresAt) {
			g.ExpiresAt, g.DueAt = at, at
		}
		g.RevokeCause = cause
		ev := m.event(now, actor, audit.ActionGrantRevokeQueued, &g, reason, map[string]string{"cause": string(cause), "revoke_at": Timestamp(g.ExpiresAt)})
		err = m.store.Apply(ctx, &Change{Grants: []GrantWrite{{Grant: &g}}, Events: []*audit.Event{ev}})
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return g, fmt.Errorf("end grant %s: %w", grantID, err)
		}
		m.opts.WakeAt(g.DueAt)
		return g, nil
	}
	return Grant{}, fmt.Errorf("end grant %s: changed concurrently too often: %w", grantID, ErrConflict)
}

// ExtendInput is what Extend needs. It is the decision the broker took about one extension:
// the grant, how much more time, the cap that decision carries and whether an approver
// decided to undo a scheduled early end.
type ExtendInput struct {
	GrantID string
	By      time.Duration // added to the current expiry; must be positive
	// NotAfter, when set, caps the new expiry (the end of the owner's on-call shift when the
	// policy caps grants to it). An extension the cap leaves no room for is refused.
	NotAfter time.Time
	// Override allows extending a grant whose end was brought forward (EndBy: incident
	// resolved, shift ended); the scheduled early end is then cancelled and the event says
	// so. Only an approver's decision may set it. Without it such a grant is refused.
	Override bool
	// Request, when set, is written in the same transaction (its Version must be current),
	// together with RequestEvents: the extension request and its decision.
	Request       *Request
	RequestEvents []*audit.Event
	Actor         audit.Actor
	Reason        string
	Evidence      map[string]string // the decision's evidence, recorded on grant.extended
}

// Extend moves an active grant's expiry later by in.By, capped at in.NotAfter. The new
// expiry may not pass CreatedAt plus the resource's maximum; the error then names the latest
// allowed end. A grant with a scheduled early end is refused unless in.Override is set.
// The grant.extended event names the extension request (evidence extension_request) and
// keeps the grant's own request as its RequestID. Refusals wrap ErrInvalid and change nothing; a concurrent change of the grant or the
// request wraps ErrConflict and changes nothing.
func (m *Manager) Extend(ctx context.Context, in ExtendInput) (Grant, error) {
	if in.By <= 0 {
		return Grant{}, fmt.Errorf("extension must be positive: %w", ErrInvalid)
	}
	if err := m.gate(); err != nil {
		return Grant{}, fmt.Errorf("extend grant %s: %w", in.GrantID, err)
	}
	g, err := m.store.GetGrant(ctx, in.GrantID)
	if err != nil {
		return Grant{}, fmt.Errorf("extend grant %s: %w", in.GrantID, err)
	}
	now := m.clock.Now().Truncate(time.Millisecond)
	if g.State != StateActive || !g.ExpiresAt.After(now) || g.ClaimedTo.After(now) {
		return g, fmt.Errorf("grant %s is %s and can no longer be extended: %w", g.ID, displayState(g, now), ErrInvalid)
	}
	res, ok := m.resources[g.Resource]
	if !ok {
		return g, fmt.Errorf("grant %s: resource %q is no longer configured: %w", g.ID, g.Resource, ErrInvalid)
	}
	scheduled := g.RevokeCause
	if scheduled != "" && !in.Override {
		return g, fmt.Errorf("grant %s is scheduled to end early at %s (%s); only an approver can extend it: %w",
			g.ID, Timestamp(g.ExpiresAt), scheduled, ErrInvalid)
	}
	newExp := g.ExpiresAt.Add(in.By)
	if !in.NotAfter.IsZero() && in.NotAfter.Before(newExp) {
		newExp = in.NotAfter.UTC().Truncate(time.Millisecond)
		if newExp.Sub(g.ExpiresAt) < MinDuration {
			return g, fmt.Errorf("grant %s already ends at %s and may not pass %s (the end of the on-call shift it is capped to): %w",
				g.ID, Timestamp(g.ExpiresAt), Timestamp(newExp), ErrInvalid)
		}
	}
	if latest := g.CreatedAt.Add(res.MaxDuration); res.MaxDuration > 0 && newExp.After(latest) {
		return g, fmt.Errorf("extending by %s would end at %s, past %s's maximum of %s (latest end %s): %w",
			in.By, Timestamp(newExp), res.Name, res.MaxDuration, Timestamp(latest), ErrInvalid)
	}
	old := g.ExpiresAt
	if err := g.Transition(StateActive); err != nil {
		return g, err
	}
	g.ExpiresAt, g.DueAt, g.RevokeCause = newExp, newExp, ""
	extra := map[string]string{"old_expires_at": Timestamp(old), "expires_at": Timestamp(newExp)}
	if !in.NotAfter.IsZero() {
		extra["not_after"] = Timestamp(in.NotAfter)
	}
	if in.Request != nil {
		extra["extension_request"] = in.Request.ID // the decision; the event's RequestID stays the grant's own
	}
	if scheduled != "" {
		extra["override"] = string(scheduled) // an approver cancelled the scheduled early end
	}
	ev := m.event(now, in.Actor, audit.ActionGrantExtended, &g, in.Reason, mergeEvidence(extra, in.Evidence))
	c := &Change{Grants: []GrantWrite{{Grant: &g}}}
	if in.Request != nil {
		c.Requests = []RequestWrite{{Request: in.Request}}
	}
	for _, e := range in.RequestEvents {
		m.stamp(now, e)
		c.Events = append(c.Events, e)
	}
	c.Events = append(c.Events, ev)
	if err := m.store.Apply(ctx, c); err != nil {
		if errors.Is(err, ErrConflict) {
			return g, fmt.Errorf("extend grant %s: %w", g.ID, err)
		}
		return g, fmt.Errorf("extend grant %s, so nothing was extended: %w: %w", g.ID, ErrAudit, err)
	}
	if ext, ok := m.providers[g.Resource].(Extender); ok {
		if err := ext.Extend(ctx, RevokeRequest{GrantID: g.ID, Resource: g.Resource, Person: g.Person, Handle: g.Handle}, newExp); err != nil {
			// Safe direction: the upstream expiry stays earlier than ours.
			m.log.WarnContext(ctx, "provider did not move its own expiry", "grant_id", g.ID, "error", scrub(err.Error(), m.opts.Secrets))
		}
	}
	m.opts.WakeAt(g.DueAt)
	return g, nil
}

// Record appends audit-only events (a rejected request, an ignored webhook). Events without
// an id or time get them.
func (m *Manager) Record(ctx context.Context, events ...*audit.Event) error {
	now := m.clock.Now().Truncate(time.Millisecond)
	for _, e := range events {
		m.stamp(now, e)
	}
	if err := m.store.Apply(ctx, &Change{Events: events}); err != nil {
		return fmt.Errorf("record audit event: %w: %w", ErrAudit, err)
	}
	return nil
}

// ReconcileOnStart revokes grants that a dead process left in issuing. With exclusive true
// (a single-process store such as SQLite) every issuing grant not claimed by this instance
// is orphaned; otherwise only those whose claim lease has lapsed. It returns how many grants
// it queued. Overdue active grants need nothing here: the revoker claims them oldest first.
func (m *Manager) ReconcileOnStart(ctx context.Context, exclusive bool) (int, error) {
	left, err := m.store.ListGrants(ctx, GrantFilter{States: []State{StateIssuing}})
	if err != nil {
		return 0, fmt.Errorf("reconcile: list issuing grants: %w", err)
	}
	now := m.clock.Now().Truncate(time.Millisecond)
	n := 0
	for i := range left {
		g := &left[i]
		if g.ClaimedBy == m.opts.Instance || (!exclusive && g.ClaimedTo.After(now)) {
			continue
		}
		if err := g.Transition(StateRevoking); err != nil {
			return n, err
		}
		g.RevokeCause, g.DueAt, g.ClaimedBy, g.ClaimedTo = CauseIssueInterrupted, now, "", time.Time{}
		ev := m.event(now, systemActor, audit.ActionGrantRevokeQueued, g,
			"left in issuing by an interrupted process; revoking whatever the provider may have created",
			map[string]string{"cause": string(CauseIssueInterrupted)})
		err := m.store.Apply(ctx, &Change{Grants: []GrantWrite{{Grant: g}}, Events: []*audit.Event{ev}})
		if errors.Is(err, ErrConflict) {
			continue // someone else got to it
		}
		if err != nil {
			return n, fmt.Errorf("reconcile grant %s: %w", g.ID, err)
		}
		n++
	}
	if n > 0 {
		m.log.InfoContext(ctx, "reconciled interrupted grants", "count", n)
		m.opts.WakeAt(now)
	}
	return n, nil
}

// recordTimeout bounds writing an outcome after a provider call.
const recordTimeout = 30 * time.Second

var systemActor = audit.Actor{Kind: audit.ActorSystem, ID: "accessbroker"}

// SystemActor is accessbroker itself, for events no person caused.
func SystemActor() audit.Actor { return systemActor }

func (m *Manager) event(now time.Time, actor audit.Actor, action audit.Action, g *Grant, reason string, ev map[string]string) *audit.Event {
	return NewGrantEvent(now, actor, action, g, reason, ev)
}

// NewGrantEvent builds the audit event for a change to g.
func NewGrantEvent(now time.Time, actor audit.Actor, action audit.Action, g *Grant, reason string, evidence map[string]string) *audit.Event {
	return &audit.Event{
		ID: NewOrderedID("e", now), Time: now.UTC().Truncate(time.Millisecond), Actor: actor, Action: action,
		RequestID: g.RequestID, GrantID: g.ID, Resource: g.Resource, Reason: reason,
		Evidence: mergeEvidence(evidence, map[string]string{"person": g.Person.Label()}),
	}
}

func (m *Manager) stamp(now time.Time, e *audit.Event) {
	if e.ID == "" {
		e.ID = NewOrderedID("e", now)
	}
	if e.Time.IsZero() {
		e.Time = now
	}
	e.Time = e.Time.UTC().Truncate(time.Millisecond)
}

func mergeEvidence(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	for k, v := range b {
		if v != "" {
			out[k] = v
		}
	}
	for k, v := range a {
		if v != "" {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func displayState(g Grant, now time.Time) string {
	if g.State == StateActive && !g.ExpiresAt.After(now) {
		return "expired"
	}
	if g.State == StateActive && g.ClaimedTo.After(now) {
		return "being revoked"
	}
	return string(g.State)
}

// scrub removes the given secret values from an error text and caps its length.
func scrub(msg string, secrets []string) string {
	msg = ScrubText(msg, secrets)
	if len(msg) > 1000 {
		msg = msg[:1000] + "…"
	}
	return msg
}

func (m *Manager) gate() error {
	if m.opts.Gate == nil {
		return nil
	}
	return m.opts.Gate.IssueAllowed()
}
