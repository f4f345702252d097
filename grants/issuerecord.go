package grants

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/accessbroker/accessbroker/audit"
)

// Recording an issued grant (issue #15.6, approved but not issued).
//
// When the provider has created the access but the grant.issued record fails, the grant is
// still issuing, claimed by this process until its issue lease (created + IssueTimeout) ends;
// after that the revoker removes the access and the requester would have to ask again. Most
// such failures are brief (a busy or restarting database, a lost connection), so the record is
// retried in place, within the lease: immediately, then after 1 s, 2 s, 4 s … on the injected
// clock, stopping issueRecordMargin before the lease ends so that the last attempt cannot
// race the revoker's claim. A retry that finds the grant changed (ErrConflict) reads it
// back: when an earlier attempt did commit (its answer was lost), the grant is active with
// this issue's time and the record counts as done; anything else (the revoker claimed it)
// is a failure. The grant's version check makes a late write after a claim impossible.
//
// Why retry in place rather than issue again later: the credential exists and has not been
// delivered, the approval is for now (an approver did not agree to access starting whenever
// the database comes back), and a second provider call would make a second credential. Past
// the lease the requester is told to ask again (broker's withheld message).

// issueRecordMargin is how long before the issue lease ends the last record attempt starts.
const issueRecordMargin = 5 * time.Second

// recordIssued writes the grant.issued change for g (state active), retrying a failed write
// until it succeeds or lease-issueRecordMargin passes. It returns nil once the grant is
// recorded active (by this attempt or an earlier one whose answer was lost).
func (m *Manager) recordIssued(ctx context.Context, g *Grant, ev *audit.Event, lease time.Time) error {
	want := *g
	err := m.store.Apply(ctx, &Change{Grants: []GrantWrite{{Grant: g}}, Events: []*audit.Event{ev}})
	wait := time.Duration(0)
	for attempt := 2; err != nil; attempt++ {
		if errors.Is(err, ErrConflict) {
			got, gerr := m.store.GetGrant(ctx, g.ID)
			if gerr == nil && got.State == StateActive && got.IssuedAt.Equal(want.IssuedAt) && got.Handle.Key == want.Handle.Key {
				*g = got
				return nil // an earlier attempt committed
			}
			return err
		}
		if !m.clock.Now().Add(wait).Before(lease.Add(-issueRecordMargin)) {
			return fmt.Errorf("gave up after %d attempts, before the issue lease ends at %s: %w", attempt-1, Timestamp(lease), err)
		}
		m.log.WarnContext(ctx, "record issued grant failed; retrying while the issue lease holds", "grant_id", g.ID,
			"attempt", attempt-1, "retry_in", wait.String(), "lease_ends", Timestamp(lease), "error", err)
		if wait > 0 {
			t := m.clock.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("record issued grant %s: %w (last error: %w)", g.ID, ctx.Err(), err)
			case <-t.C():
			}
		}
		wait = max(2*wait, time.Second)
		*g = want
		err = m.store.Apply(ctx, &Change{Grants: []GrantWrite{{Grant: g}}, Events: []*audit.Event{ev}})
	}
	return nil
}
