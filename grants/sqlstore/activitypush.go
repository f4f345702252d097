package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// ActivityGrants returns the grants of the provider kind whose activity may still be recorded
// at since: past issuing and not revoked before since (the same grants ClaimActivity makes
// cursors for), newest first. Push sources (webhooks) match a delivery against them.
func (s *Store) ActivityGrants(ctx context.Context, provider string, since time.Time) ([]grants.Grant, error) {
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT `+grantCols+` FROM grants
		WHERE provider = ? AND state <> 'issuing' AND (state <> 'revoked' OR revoked_at >= ?)
		ORDER BY created_at DESC, id`), provider, ms(since))
	if err != nil {
		return nil, fmt.Errorf("read %s grants for activity: %w", provider, err)
	}
	out, err := scanAll(rows, scanGrant)
	if err != nil {
		return nil, fmt.Errorf("read %s grants for activity: %w", provider, err)
	}
	return out, nil
}

// RecordActivity records pushed activity (a webhook delivery) on one grant: in one
// transaction, the items whose Key is new for the grant and source (table activity_seen, as
// SaveActivity does) are appended to the audit chain, and the grant's cursor of that source
// (created when missing, marked done: nothing polls a push source) counts them and notes
// now as its last success. It returns how many items were new; a repeated key records
// nothing.
func (s *Store) RecordActivity(ctx context.Context, grantID, source string, now time.Time, items []grants.ActivityItem) (int, error) {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return 0, fmt.Errorf("record activity: begin: %w", err)
	}
	defer tx.Rollback()
	var fresh []*audit.Event
	for _, it := range items {
		if it.Key == "" || it.Event == nil {
			return 0, fmt.Errorf("record activity of grant %s from %s: an item without a key or event: %w", grantID, source, grants.ErrInvalid)
		}
		res, err := tx.ExecContext(ctx, s.q(`INSERT INTO activity_seen (grant_id, source, key) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`),
			grantID, source, it.Key)
		if err != nil {
			return 0, fmt.Errorf("record activity of grant %s: record key: %w", grantID, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			fresh = append(fresh, it.Event)
		}
	}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO activity_cursors (grant_id, source, done, last_ok, events) VALUES (?, ?, 1, ?, ?)
		ON CONFLICT (grant_id, source) DO UPDATE SET last_ok = excluded.last_ok, events = activity_cursors.events + excluded.events,
		done = 1, failures = 0, last_error = ''`), grantID, source, ms(now), len(fresh)); err != nil {
		return 0, fmt.Errorf("record activity of grant %s: update cursor: %w", grantID, err)
	}
	if len(fresh) > 0 {
		if err := s.lockChain(ctx, tx); err != nil {
			return 0, err
		}
		st := &txStmts{s: s, tx: tx}
		defer st.close()
		if err := st.appendEvents(ctx, fresh); err != nil {
			return 0, err
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("record activity of grant %s: commit: %w", grantID, err)
	}
	return len(fresh), nil
}
