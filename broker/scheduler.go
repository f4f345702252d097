package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// schedState remembers which reminders were sent (per grant and expiry, so an extended grant
// is reminded again). It is in memory: after a restart a reminder may be sent twice, which
// is harmless, and never zero times for a grant still five minutes from its end.
type schedState struct {
	mu       sync.Mutex
	reminded map[string]time.Time
}

func newSchedState() *schedState { return &schedState{reminded: map[string]time.Time{}} }

func (s *schedState) wasReminded(id string, exp time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.reminded[id]
	return ok && at.Equal(exp)
}

func (s *schedState) markReminded(id string, exp time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reminded[id] = exp
}

func (s *schedState) forgetReminder(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.reminded, id)
}

func (s *schedState) keepOnly(live map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.reminded {
		if !live[id] {
			delete(s.reminded, id)
		}
	}
}

// Run is the broker's scheduler: it expires pending requests whose time is up (approval
// messages updated, requester told) and reminds grant owners Options.RemindBefore before
// expiry with the extension the policy would allow (ExtendOffer). It sleeps on the injected
// clock until the next deadline, at most Options.IdleWait, or until Wake. It returns nil when
// ctx ends; store errors are logged and retried, never fatal.
func (b *Broker) Run(ctx context.Context) error {
	a := &b.armed
	defer func() {
		a.mu.Lock()
		a.ticking, a.early, a.until = false, time.Time{}, time.Time{}
		a.mu.Unlock()
	}()
	for {
		a.mu.Lock()
		a.ticking, a.early, a.until = true, time.Time{}, time.Time{}
		a.mu.Unlock()
		next, err := b.Tick(ctx)
		if ctx.Err() != nil {
			return nil
		}
		now := b.clock.Now()
		wait := b.opts.IdleWait
		if err != nil {
			b.log.ErrorContext(ctx, "scheduler tick failed; retrying", "error", err)
		} else if !next.IsZero() {
			wait = min(max(next.Sub(now), 0), b.opts.IdleWait)
		}
		a.mu.Lock()
		if !a.early.IsZero() {
			wait = min(wait, max(a.early.Sub(now), 0)) // given during the Tick
		}
		a.ticking, a.until = false, now.Add(wait)
		a.mu.Unlock()
		t := b.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		case <-b.wake:
			t.Stop()
		}
	}
}

// Tick does what is due now and returns when the next thing is due (zero: nothing known).
func (b *Broker) Tick(ctx context.Context) (time.Time, error) {
	now := b.clock.Now()
	var next time.Time
	soonest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	pending, err := b.store.ListRequests(ctx, grants.RequestFilter{States: []grants.RequestState{grants.RequestPending}})
	if err != nil {
		return time.Time{}, fmt.Errorf("scheduler: list pending requests: %w", err)
	}
	var errs []error
	for _, r := range pending {
		if r.ExpiresAt.IsZero() {
			continue
		}
		if r.ExpiresAt.After(now) {
			soonest(r.ExpiresAt)
			continue
		}
		if err := b.expire(ctx, r); err != nil {
			errs = append(errs, err)
		}
	}
	active, err := b.store.ListGrants(ctx, grants.GrantFilter{States: []grants.State{grants.StateActive}})
	if err != nil {
		return time.Time{}, fmt.Errorf("scheduler: list active grants: %w", err)
	}
	live := make(map[string]bool, len(active))
	for _, g := range active {
		live[g.ID] = true
		remindAt := g.ExpiresAt.Add(-b.opts.RemindBefore)
		switch {
		case !g.ExpiresAt.After(now) || b.sched.wasReminded(g.ID, g.ExpiresAt):
		case remindAt.After(now):
			soonest(remindAt)
		case !b.firstToRemind(ctx, g):
			b.sched.markReminded(g.ID, g.ExpiresAt) // another replica (or an earlier run) sent it
		default:
			if err := b.notify.Remind(ctx, g, b.ExtendOffer(ctx, g)); err != nil {
				b.log.WarnContext(ctx, "expiry reminder failed", "grant_id", g.ID, "error", err)
			}
			b.sched.markReminded(g.ID, g.ExpiresAt) // one attempt per expiry: a reminder is a courtesy
		}
	}
	b.sched.keepOnly(live)
	return next, errors.Join(errs...)
}

// expire ends a pending request whose time is up.
func (b *Broker) expire(ctx context.Context, r grants.Request) error {
	if err := r.Transition(grants.RequestExpired); err != nil {
		return err
	}
	r.DecidedAt = b.now()
	if err := r.Advance(grants.StageDecided); err != nil {
		return err
	}
	ev := b.requestEvent(audit.ActionRequestExpired, audit.Actor{Kind: audit.ActorSystem, ID: "accessbroker"}, &r,
		"no decision before "+grants.Timestamp(r.ExpiresAt), map[string]string{"approvals": fmt.Sprint(countApproved(r))})
	err := b.store.Apply(ctx, &grants.Change{Requests: []grants.RequestWrite{{Request: &r}}, Events: []*audit.Event{ev}})
	if errors.Is(err, grants.ErrConflict) {
		return nil // decided meanwhile
	}
	if err != nil {
		return fmt.Errorf("expire request %s: %w", r.ID, err)
	}
	var by []string
	for _, a := range r.Approvals {
		if a.Approved {
			by = append(by, a.By)
		}
	}
	b.updateApproval(ctx, r, ApprovalOutcome{State: grants.RequestExpired, By: by})
	text := fmt.Sprintf("Your request %s for %s expired at %s without enough approvals. No access was granted; ask again if you still need it.",
		r.ID, r.Resource, stamp(r.ExpiresAt))
	if grantID, ok := ExtensionOf(r); ok {
		text = fmt.Sprintf("Your request %s to extend grant %s (%s) expired at %s without enough approvals. The grant was not extended; ask again if you still need more time.",
			r.ID, grantID, r.Resource, stamp(r.ExpiresAt))
	}
	b.tell(ctx, b.requesterRecipient(r), text)
	b.auditLine(ctx, fmt.Sprintf("Request %s by %s for %s expired without a decision.", r.ID, r.Requester.Label(), r.Resource))
	return nil
}

// firstToRemind reports whether this process should send the reminder for g's current
// expiry. When the dedupe store fails it answers true: a reminder sent twice is better than
// none.
func (b *Broker) firstToRemind(ctx context.Context, g grants.Grant) bool {
	first, err := b.once.Seen(ctx, "remind:"+g.ID+":"+grants.Timestamp(g.ExpiresAt))
	if err != nil {
		b.log.WarnContext(ctx, "reminder dedupe failed; reminding anyway", "grant_id", g.ID, "error", err)
		return true
	}
	return first
}
