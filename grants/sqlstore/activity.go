package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

var _ grants.ActivityStore = (*Store)(nil)

const activityCols = `grant_id, source, cursor_pos, next_at, done, failures, last_error, last_ok, events, claimed_by, claimed_to`

func scanCursor(sc scanner) (grants.ActivityCursor, error) {
	var c grants.ActivityCursor
	var next, lastOK, claimedTo, done int64
	if err := sc.Scan(&c.GrantID, &c.Source, &c.Cursor, &next, &done, &c.Failures, &c.LastError, &lastOK, &c.Events, &c.ClaimedBy, &claimedTo); err != nil {
		return c, fmt.Errorf("scan activity cursor: %w", err)
	}
	c.NextAt, c.LastOK, c.ClaimedTo, c.Done = fromMS(next), fromMS(lastOK), fromMS(claimedTo), done != 0
	return c, nil
}

// ClaimActivity implements grants.ActivityStore. Creating the missing cursors and leasing
// the due ones run in one transaction; on PostgreSQL the lease takes rows with FOR UPDATE
// SKIP LOCKED, so replicas share the work without waiting on each other.
func (s *Store) ClaimActivity(ctx context.Context, c grants.ActivityClaim) ([]grants.ActivityCursor, error) {
	if c.Limit <= 0 || len(c.Providers) == 0 || c.Source == "" || c.Owner == "" {
		return nil, nil
	}
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return nil, fmt.Errorf("claim activity: begin: %w", err)
	}
	defer tx.Rollback()
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(c.Providers)), ", ")
	args := []any{c.Source}
	for _, p := range c.Providers {
		args = append(args, p)
	}
	args = append(args, ms(c.Since))
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO activity_cursors (grant_id, source)
		SELECT id, ? FROM grants
		WHERE provider IN (`+marks+`) AND state <> 'issuing' AND (state <> 'revoked' OR revoked_at >= ?)
		ON CONFLICT (grant_id, source) DO NOTHING`), args...); err != nil {
		return nil, fmt.Errorf("claim activity: create cursors: %w", err)
	}
	nowMS := ms(c.Now)
	until := ms(c.Now.Add(c.Lease))
	var rows *sql.Rows
	if s.dialect == dialectPostgres {
		rows, err = tx.QueryContext(ctx, rebind(`WITH due AS (
				SELECT grant_id, source FROM activity_cursors
				WHERE source = ? AND done = 0 AND next_at <= ? AND claimed_to <= ?
				ORDER BY next_at, grant_id LIMIT ?
				FOR UPDATE SKIP LOCKED)
			UPDATE activity_cursors AS a SET claimed_by = ?, claimed_to = ?
			FROM due WHERE a.grant_id = due.grant_id AND a.source = due.source
			RETURNING `+qualify(activityCols, "a.")), c.Source, nowMS, nowMS, c.Limit, c.Owner, until)
	} else {
		rows, err = tx.QueryContext(ctx, `UPDATE activity_cursors SET claimed_by = ?, claimed_to = ?
			WHERE source = ? AND grant_id IN (SELECT grant_id FROM activity_cursors
				WHERE source = ? AND done = 0 AND next_at <= ? AND claimed_to <= ?
				ORDER BY next_at, grant_id LIMIT ?)
			RETURNING `+activityCols, c.Owner, until, c.Source, c.Source, nowMS, nowMS, c.Limit)
	}
	if err != nil {
		return nil, fmt.Errorf("claim activity: lease cursors: %w", err)
	}
	var out []grants.ActivityCursor
	for rows.Next() {
		cur, err := scanCursor(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, cur)
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return nil, fmt.Errorf("claim activity: %w", err)
	}
	rows.Close()
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("claim activity: commit: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].NextAt.Equal(out[j].NextAt) {
			return out[i].NextAt.Before(out[j].NextAt)
		}
		return out[i].GrantID < out[j].GrantID
	})
	return out, nil
}

// SaveActivity implements grants.ActivityStore: the new items' keys, their audit events and
// the cursor in one transaction, so a crash between them records neither twice nor never.
func (s *Store) SaveActivity(ctx context.Context, owner string, cur grants.ActivityCursor, items []grants.ActivityItem) (int, error) {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return 0, fmt.Errorf("save activity: begin: %w", err)
	}
	defer tx.Rollback()
	lock := ""
	if s.dialect == dialectPostgres {
		lock = " FOR UPDATE"
	}
	var by string
	var to int64
	err = tx.QueryRowContext(ctx, s.q(`SELECT claimed_by, claimed_to FROM activity_cursors WHERE grant_id = ? AND source = ?`+lock),
		cur.GrantID, cur.Source).Scan(&by, &to)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("save activity of grant %s from %s: no cursor: %w", cur.GrantID, cur.Source, grants.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("save activity of grant %s from %s: %w", cur.GrantID, cur.Source, err)
	}
	if by != owner || to <= ms(s.clock.Now()) {
		return 0, fmt.Errorf("save activity of grant %s from %s: the lease is no longer %s's: %w", cur.GrantID, cur.Source, owner, grants.ErrConflict)
	}
	st := &txStmts{s: s, tx: tx}
	defer st.close()
	var seen *sql.Stmt
	if s.dialect != dialectPostgres {
		if seen, err = tx.PrepareContext(ctx, `INSERT INTO activity_seen (grant_id, source, key) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`); err != nil {
			return 0, fmt.Errorf("save activity: prepare: %w", err)
		}
		defer seen.Close()
	}
	var fresh []grants.ActivityItem
	for _, it := range items {
		if it.Key == "" || it.Event == nil {
			return 0, fmt.Errorf("save activity of grant %s from %s: an item without a key or event", cur.GrantID, cur.Source)
		}
		var res sql.Result
		if seen != nil {
			res, err = seen.ExecContext(ctx, cur.GrantID, cur.Source, it.Key)
		} else {
			res, err = tx.ExecContext(ctx, `INSERT INTO activity_seen (grant_id, source, key) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, cur.GrantID, cur.Source, it.Key)
		}
		if err != nil {
			return 0, fmt.Errorf("save activity of grant %s: record key: %w", cur.GrantID, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			fresh = append(fresh, it)
		}
	}
	done := 0
	if cur.Done {
		done = 1
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE activity_cursors SET cursor_pos = ?, next_at = ?, done = ?, failures = ?, last_error = ?,
		last_ok = ?, events = events + ?, claimed_by = '', claimed_to = 0 WHERE grant_id = ? AND source = ?`),
		cur.Cursor, ms(cur.NextAt), done, cur.Failures, cur.LastError, ms(cur.LastOK), len(fresh), cur.GrantID, cur.Source); err != nil {
		return 0, fmt.Errorf("save activity of grant %s: update cursor: %w", cur.GrantID, err)
	}
	if len(fresh) > 0 {
		if err := s.lockChain(ctx, tx); err != nil {
			return 0, err
		}
		evs := make([]*audit.Event, len(fresh))
		for i, it := range fresh {
			evs[i] = it.Event
		}
		if err := st.appendEvents(ctx, evs); err != nil {
			return 0, err
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("save activity of grant %s: commit: %w", cur.GrantID, err)
	}
	return len(fresh), nil
}

// ActivityCursors implements grants.ActivityStore.
func (s *Store) ActivityCursors(ctx context.Context, grantIDs []string) ([]grants.ActivityCursor, error) {
	var out []grants.ActivityCursor
	for len(grantIDs) > 0 {
		chunk := grantIDs[:min(len(grantIDs), 500)]
		grantIDs = grantIDs[len(chunk):]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := s.r.QueryContext(ctx, s.q(`SELECT `+activityCols+` FROM activity_cursors WHERE grant_id IN (`+
			strings.TrimSuffix(strings.Repeat("?, ", len(chunk)), ", ")+`) ORDER BY grant_id, source`), args...)
		if err != nil {
			return nil, fmt.Errorf("read activity cursors: %w", err)
		}
		for rows.Next() {
			c, err := scanCursor(rows)
			if err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, c)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("read activity cursors: %w", err)
		}
	}
	return out, nil
}
