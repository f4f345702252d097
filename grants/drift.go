package grants

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/accessbroker/accessbroker/audit"
)

// AccessLister is an optional Provider ability: listing the access that exists upstream in
// the scope the provider manages (the roles named with the broker's prefix on a database,
// the members of a team, the assignments of a permission set on an account), so that the
// DriftReconciler can compare it with the live grants.
type AccessLister interface {
	// ListAccess returns every piece of access in the provider's scope, read from the
	// upstream now (all pages). An error means the listing is incomplete: the reconciler
	// then concludes nothing for this provider in this pass.
	ListAccess(ctx context.Context) ([]Access, error)
}

// AccessChecker is an optional Provider ability: reading back whether the access of one
// grant exists upstream. The revoker calls it after every successful Revoke and counts the
// revocation as done only when it answers false (read-back); the reconciler uses it to
// confirm access it did not find in a listing before marking a grant.
type AccessChecker interface {
	// HasAccess reports whether the access req names exists upstream now. It must not
	// answer false while it is unsure: an error is retried.
	HasAccess(ctx context.Context, req RevokeRequest) (bool, error)
}

// Access is one piece of access a provider found upstream. It holds nothing secret.
type Access struct {
	// Key is what Handle.Key of a grant giving this access would be (the role name, the
	// team membership, the assignment).
	Key string
	// GrantID is the grant the upstream names when the broker names its access after its
	// grants (PostgreSQL roles ab_<person>_<grant>); empty when the upstream cannot say
	// (a team membership). Access with a GrantID is the broker's by its name: with no live
	// grant it is drift even when the store never heard of the grant (restored from a
	// backup, or made by hand).
	GrantID string
	// Person is what the provider knows of whom the access is for (a GitHub login, an
	// Identity Center principal); used to revoke it and in the audit record.
	Person Person
	// Handle is what Revoke needs to remove this access without a grant.
	Handle Handle
	// Name says what it is, for people ("role ab_alice_k3x…", "member alice of acme/infra").
	Name string
}

// DriftAction is what the reconciler does with access no live grant gives.
type DriftAction string

// Drift actions (config drift.action).
const (
	// DriftFlag records drift.found, logs and counts it, and leaves the access in place
	// for an operator to judge.
	DriftFlag DriftAction = "flag"
	// DriftRevoke also removes it through the provider (drift.revoked, read back where the
	// provider can).
	DriftRevoke DriftAction = "revoke"
)

// DriftMetrics receives what each pass found. Optional.
type DriftMetrics interface {
	// DriftChecked is called once per resource per pass that listed its provider: how much
	// access no live grant gives (unmanaged) and how many live grants miss their access. err
	// is the listing's error (then the counts are zero and mean nothing).
	DriftChecked(resource string, unmanaged, missing int, err error)
	// DriftRevoked is called once per attempt to remove unmanaged access.
	DriftRevoked(resource string, ok bool)
}

// DriftOptions tunes a DriftReconciler. Zero values take the documented defaults.
type DriftOptions struct {
	// Instance names this process in the lease (default a random id).
	Instance string
	// Interval is the time between passes (default 10m). The first pass runs
	// min(Interval, FirstDelay) after Run starts.
	Interval time.Duration
	// FirstDelay bounds the wait before the first pass (default 1m), so that drift left by
	// a restore is found soon after the broker starts.
	FirstDelay time.Duration
	// Action is what to do with access no live grant gives (default DriftFlag).
	Action DriftAction
	// Lease, when set, makes one process at a time run passes (the lease "drift", held
	// for 1.5 intervals and renewed each pass). Nil: every pass runs here.
	Lease Leaser
	// CallTimeout bounds each provider call (default 1m).
	CallTimeout time.Duration
	Metrics     DriftMetrics
	// Secrets are scrubbed from provider errors before they are logged or audited.
	Secrets []string
}

// DriftLeaseName is the lease the reconcilers of every replica compete for.
const DriftLeaseName = "drift"

// DriftReconciler compares each provider's truth with the live grants, periodically:
// access no live grant gives is flagged or revoked (DriftOptions.Action); a live grant whose
// access is gone is marked (Grant.AccessMissingAt) and reported. Every finding is audited.
// Providers take part by implementing AccessLister (and AccessChecker, to confirm).
type DriftReconciler struct {
	store     Store
	providers map[string]Provider // by resource name
	clock     Clock
	log       *slog.Logger
	opts      DriftOptions

	mu       sync.Mutex
	reported map[string]bool // flagged access already recorded as drift.found by this process
}

// NewDriftReconciler returns a reconciler over the providers (keyed by resource name, as
// the revoker's); call Run, or Pass for one pass.
func NewDriftReconciler(store Store, providers map[string]Provider, clock Clock, logger *slog.Logger, opts DriftOptions) *DriftReconciler {
	if opts.Instance == "" {
		opts.Instance = NewID("i")
	}
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Minute
	}
	if opts.FirstDelay <= 0 {
		opts.FirstDelay = time.Minute
	}
	if opts.Action == "" {
		opts.Action = DriftFlag
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = time.Minute
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &DriftReconciler{store: store, providers: providers, clock: clock, log: logger, opts: opts, reported: map[string]bool{}}
}

// Run runs a pass every Interval (the first after min(Interval, FirstDelay)) until ctx
// ends, in the process that holds the lease. A failed pass is logged and the next one runs
// on time. Run returns nil on shutdown.
func (d *DriftReconciler) Run(ctx context.Context) error {
	wait := min(d.opts.Interval, d.opts.FirstDelay)
	for {
		t := d.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
		wait = d.opts.Interval
		if d.opts.Lease != nil {
			ok, err := d.opts.Lease.AcquireLease(ctx, DriftLeaseName, d.opts.Instance, d.opts.Interval+d.opts.Interval/2)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				d.log.WarnContext(ctx, "drift: could not take the drift lease; skipping this pass", "error", err)
				continue
			}
			if !ok {
				continue // another replica runs the passes
			}
		}
		if _, err := d.Pass(ctx); err != nil && ctx.Err() == nil {
			d.log.WarnContext(ctx, "drift pass incomplete", "error", err)
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// DriftReport is what one pass found.
type DriftReport struct {
	// Checked names the resources whose provider was listed.
	Checked []string
	// Unmanaged is the access no live grant gives.
	Unmanaged []DriftFinding
	// Missing lists the live grants whose access is gone (newly marked or still marked).
	Missing []string
	// Restored lists the grants whose missing mark this pass cleared.
	Restored []string
}

// DriftFinding is one piece of access no live grant gives.
type DriftFinding struct {
	Resource string
	Access   Access
	Why      string
	// Revoked is true when this pass removed it (DriftRevoke) and read back that it is gone.
	Revoked bool
}

// Pass compares every listable provider with the live grants once. It returns what it
// found, and an error joining the failures (a provider that could not be listed, an audit
// record that could not be written); the other providers are still checked.
func (d *DriftReconciler) Pass(ctx context.Context) (DriftReport, error) {
	names := make([]string, 0, len(d.providers))
	for name, p := range d.providers {
		if _, ok := p.(AccessLister); ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var rep DriftReport
	var errs []error
	seen := map[string]bool{} // access handled this pass: resources may share one upstream
	for _, name := range names {
		if err := d.passResource(ctx, name, seen, &rep); err != nil {
			errs = append(errs, fmt.Errorf("drift %s: %w", name, err))
		}
	}
	return rep, errors.Join(errs...)
}

func (d *DriftReconciler) passResource(ctx context.Context, res string, seen map[string]bool, rep *DriftReport) error {
	p := d.providers[res]
	// The grants whose access must be there, read before the listing: a grant issued after
	// this read is not expected yet, so it cannot be marked missing by mistake.
	live, err := d.store.ListGrants(ctx, GrantFilter{Resource: res, States: []State{StateActive}})
	if err != nil {
		return fmt.Errorf("list live grants: %w", err)
	}
	lctx, cancel := context.WithTimeout(ctx, d.opts.CallTimeout)
	items, err := p.(AccessLister).ListAccess(lctx)
	cancel()
	if err != nil {
		err = scrubError(err, d.opts.Secrets)
		d.log.WarnContext(ctx, "drift check failed: could not list the provider's access", "resource", res, "provider", p.Kind(), "error", err)
		if d.opts.Metrics != nil {
			d.opts.Metrics.DriftChecked(res, 0, 0, err)
		}
		return fmt.Errorf("list access: %w", err)
	}
	rep.Checked = append(rep.Checked, res)
	present := map[string]bool{}
	var errs []error
	unmanaged := 0
	for _, it := range items {
		if it.GrantID != "" {
			present["id:"+it.GrantID] = true
		}
		if it.Key != "" {
			present["key:"+it.Key] = true
		}
		dedupe := it.Key
		if dedupe == "" {
			dedupe = "id:" + it.GrantID
		}
		if seen[dedupe] {
			continue
		}
		seen[dedupe] = true
		// Decided from the store as it is after the listing: write-ahead commits a grant
		// before its provider creates anything, so access found above whose grant is live
		// is seen live here, however recent.
		why, err := d.unowned(ctx, res, it)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if why == "" {
			continue
		}
		unmanaged++
		f := DriftFinding{Resource: res, Access: it, Why: why}
		if err := d.handleUnmanaged(ctx, p, &f); err != nil {
			errs = append(errs, err)
		}
		rep.Unmanaged = append(rep.Unmanaged, f)
	}

	d.forgetGone(res, rep.Unmanaged)

	missing := 0
	for _, g := range live {
		has := present["id:"+g.ID] || (g.Handle.Key != "" && present["key:"+g.Handle.Key])
		gone, err := d.checkGrant(ctx, p, g, has, rep)
		if err != nil {
			errs = append(errs, err)
		}
		if gone {
			missing++
		}
	}
	if d.opts.Metrics != nil {
		d.opts.Metrics.DriftChecked(res, unmanaged, missing, nil)
	}
	return errors.Join(errs...)
}

// unowned returns why the access is drift, or "" when a live grant gives it (or it is not
// the broker's: no grant of ours ever gave it, or the person had it before our grant).
func (d *DriftReconciler) unowned(ctx context.Context, res string, it Access) (string, error) {
	if it.GrantID != "" {
		g, err := d.store.GetGrant(ctx, it.GrantID)
		switch {
		case errors.Is(err, ErrNotFound):
			return fmt.Sprintf("named for grant %s, which the store does not know (made out of band, or left after the store was restored from a backup)", it.GrantID), nil
		case err != nil:
			return "", fmt.Errorf("read grant %s: %w", it.GrantID, err)
		case g.Live():
			return "", nil
		default:
			return fmt.Sprintf("named for grant %s, revoked at %s", g.ID, Timestamp(g.RevokedAt)), nil
		}
	}
	if it.Key == "" {
		return "", nil
	}
	gs, err := d.store.ListGrants(ctx, GrantFilter{HandleKey: it.Key})
	if err != nil {
		return "", fmt.Errorf("read grants of %s: %w", it.Key, err)
	}
	for _, g := range gs {
		if g.Live() {
			return "", nil
		}
	}
	// A grant still issuing has no handle yet: it may be the one that made this access.
	issuing, err := d.store.ListGrants(ctx, GrantFilter{Resource: res, States: []State{StateIssuing}, Limit: 1})
	if err != nil {
		return "", fmt.Errorf("read issuing grants of %s: %w", res, err)
	}
	if len(issuing) > 0 || len(gs) == 0 || gs[0].Handle.Preexisting {
		return "", nil
	}
	last := gs[0] // newest first
	return fmt.Sprintf("given by grant %s, revoked at %s, and still (or again) there", last.ID, Timestamp(last.RevokedAt)), nil
}

// forgetGone drops the flagged access of res that this pass no longer found, so that it is
// recorded again should it come back.
func (d *DriftReconciler) forgetGone(res string, found []DriftFinding) {
	keep := map[string]bool{}
	for _, f := range found {
		if f.Resource == res {
			keep[reportKey(f)] = true
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for k := range d.reported {
		if strings.HasPrefix(k, res+"\x00") && !keep[k] {
			delete(d.reported, k)
		}
	}
}

func reportKey(f DriftFinding) string {
	return f.Resource + "\x00" + f.Access.Key + "\x00" + f.Access.GrantID
}

// handleUnmanaged records the finding and, with DriftRevoke, removes the access.
func (d *DriftReconciler) handleUnmanaged(ctx context.Context, p Provider, f *DriftFinding) error {
	it := f.Access
	d.log.WarnContext(ctx, "drift found", "resource", f.Resource, "provider", p.Kind(), "access", it.Name, "key", it.Key,
		"grant_id", it.GrantID, "why", f.Why, "drift_action", string(d.opts.Action))
	repKey := reportKey(*f)
	d.mu.Lock()
	already := d.reported[repKey]
	d.mu.Unlock()
	if d.opts.Action != DriftRevoke && already {
		return nil // flagged once by this process; the log line and the metric repeat each pass
	}
	now := d.clock.Now().Truncate(time.Millisecond)
	found := d.event(now, audit.ActionDriftFound, f, f.Why, nil)
	if err := d.store.Apply(ctx, &Change{Events: []*audit.Event{found}}); err != nil {
		// No audit, no action: nothing is removed that the log does not explain.
		return fmt.Errorf("record drift of %s: %w: %w", it.Name, ErrAudit, err)
	}
	d.mu.Lock()
	d.reported[repKey] = true
	d.mu.Unlock()
	if d.opts.Action != DriftRevoke {
		return nil
	}
	req := RevokeRequest{GrantID: it.GrantID, Resource: f.Resource, Person: it.Person, Handle: it.Handle}
	err := d.revoke(ctx, p, req)
	now = d.clock.Now().Truncate(time.Millisecond)
	if d.opts.Metrics != nil {
		d.opts.Metrics.DriftRevoked(f.Resource, err == nil)
	}
	if err != nil {
		msg := scrub(err.Error(), d.opts.Secrets)
		d.log.ErrorContext(ctx, "drift revoke failed; the next pass tries again", "resource", f.Resource, "access", it.Name, "error", msg)
		ev := d.event(now, audit.ActionDriftRevokeFailed, f, msg, nil)
		if rerr := d.store.Apply(ctx, &Change{Events: []*audit.Event{ev}}); rerr != nil {
			return errors.Join(fmt.Errorf("revoke drift %s: %s", it.Name, msg), fmt.Errorf("record it: %w: %w", ErrAudit, rerr))
		}
		return fmt.Errorf("revoke drift %s: %s", it.Name, msg)
	}
	f.Revoked = true
	d.mu.Lock()
	delete(d.reported, repKey)
	d.mu.Unlock()
	d.log.InfoContext(ctx, "drift revoked", "resource", f.Resource, "access", it.Name, "grant_id", it.GrantID)
	ev := d.event(now, audit.ActionDriftRevoked, f, "removed access no live grant gives", nil)
	if err := d.store.Apply(ctx, &Change{Events: []*audit.Event{ev}}); err != nil {
		return fmt.Errorf("record drift revocation of %s: %w: %w", it.Name, ErrAudit, err)
	}
	return nil
}

// revoke removes access through the provider and, where it can, reads back that it is gone.
func (d *DriftReconciler) revoke(ctx context.Context, p Provider, req RevokeRequest) error {
	cctx, cancel := context.WithTimeout(ctx, d.opts.CallTimeout)
	defer cancel()
	var err error
	if rr, ok := p.(RevokeReporter); ok {
		_, err = rr.RevokeWithResult(cctx, req)
	} else {
		err = p.Revoke(cctx, req)
	}
	if err != nil {
		return scrubError(err, d.opts.Secrets)
	}
	if c, ok := p.(AccessChecker); ok {
		has, err := c.HasAccess(cctx, req)
		if err != nil {
			return scrubError(fmt.Errorf("read back after revoke: %w", err), d.opts.Secrets)
		}
		if has {
			return errors.New("read back after revoke: the access is still there")
		}
	}
	return nil
}

// checkGrant marks a live grant whose access the listing did not find (confirmed with the
// provider's AccessChecker when it has one) and clears the mark of one whose access is
// back. It reports whether the grant's access is missing after the check.
func (d *DriftReconciler) checkGrant(ctx context.Context, p Provider, g Grant, listed bool, rep *DriftReport) (bool, error) {
	now := d.clock.Now().Truncate(time.Millisecond)
	if !g.ExpiresAt.After(now) || g.ClaimedTo.After(now) {
		return false, nil // due or being revoked: the revoker's business now
	}
	has := listed
	if !has {
		if c, ok := p.(AccessChecker); ok {
			cctx, cancel := context.WithTimeout(ctx, d.opts.CallTimeout)
			ok, err := c.HasAccess(cctx, RevokeRequest{GrantID: g.ID, Resource: g.Resource, Person: g.Person, Handle: g.Handle})
			cancel()
			if err != nil {
				return !g.AccessMissingAt.IsZero(), fmt.Errorf("read back grant %s: %w", g.ID, scrubError(err, d.opts.Secrets))
			}
			has = ok
		}
	}
	switch {
	case !has && !g.AccessMissingAt.IsZero():
		rep.Missing = append(rep.Missing, g.ID)
		d.log.WarnContext(ctx, "grant access missing", "grant_id", g.ID, "resource", g.Resource, "since", Timestamp(g.AccessMissingAt))
		return true, nil
	case !has:
		g.AccessMissingAt = now
		ev := NewGrantEvent(now, systemActor, audit.ActionGrantAccessMissing, &g,
			"the access this grant gives is gone upstream (removed out of band)", map[string]string{"handle_key": g.Handle.Key})
		err := d.store.Apply(ctx, &Change{Grants: []GrantWrite{{Grant: &g}}, Events: []*audit.Event{ev}})
		if errors.Is(err, ErrConflict) {
			return false, nil // changed meanwhile (claimed, extended): the next pass looks again
		}
		if err != nil {
			return false, fmt.Errorf("mark grant %s access missing: %w: %w", g.ID, ErrAudit, err)
		}
		rep.Missing = append(rep.Missing, g.ID)
		d.log.WarnContext(ctx, "grant access missing", "grant_id", g.ID, "resource", g.Resource, "since", Timestamp(now))
		return true, nil
	case !g.AccessMissingAt.IsZero():
		since := g.AccessMissingAt
		g.AccessMissingAt = time.Time{}
		ev := NewGrantEvent(now, systemActor, audit.ActionGrantAccessRestored, &g,
			"the access this grant gives is there again", map[string]string{"missing_since": Timestamp(since)})
		err := d.store.Apply(ctx, &Change{Grants: []GrantWrite{{Grant: &g}}, Events: []*audit.Event{ev}})
		if errors.Is(err, ErrConflict) {
			return false, nil
		}
		if err != nil {
			return true, fmt.Errorf("clear grant %s access missing: %w: %w", g.ID, ErrAudit, err)
		}
		rep.Restored = append(rep.Restored, g.ID)
		d.log.InfoContext(ctx, "grant access restored", "grant_id", g.ID, "resource", g.Resource)
	}
	return false, nil
}

func (d *DriftReconciler) event(now time.Time, action audit.Action, f *DriftFinding, reason string, extra map[string]string) *audit.Event {
	it := f.Access
	return &audit.Event{
		ID: NewOrderedID("e", now), Time: now, Actor: systemActor, Action: action, GrantID: it.GrantID, Resource: f.Resource, Reason: reason,
		Evidence: mergeEvidence(extra, map[string]string{
			"key": it.Key, "access": it.Name, "person": it.Person.Label(), "drift_action": string(d.opts.Action),
		}),
	}
}
