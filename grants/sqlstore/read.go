package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/grants"
)

const grantCols = `id, request_id, resource, provider, person, state, reason, incident_id, created_at, issued_at, expires_at,
	revoked_at, revoke_cause, handle, attempts, due_at, last_error, claimed_by, claimed_to, version, updated_at, access_missing_at`

type scanner interface{ Scan(...any) error }

func scanGrant(sc scanner) (grants.Grant, error) {
	var g grants.Grant
	var person, handle, state, cause string
	var created, issued, expires, revoked, due, claimedTo, updated, missing int64
	if err := sc.Scan(&g.ID, &g.RequestID, &g.Resource, &g.Provider, &person, &state, &g.Reason, &g.IncidentID,
		&created, &issued, &expires, &revoked, &cause, &handle, &g.Attempts, &due, &g.LastError, &g.ClaimedBy, &claimedTo,
		&g.Version, &updated, &missing); err != nil {
		return g, err
	}
	if err := json.Unmarshal([]byte(person), &g.Person); err != nil {
		return g, fmt.Errorf("grant %s person: %w", g.ID, err)
	}
	if err := json.Unmarshal([]byte(handle), &g.Handle); err != nil {
		return g, fmt.Errorf("grant %s handle: %w", g.ID, err)
	}
	g.State, g.RevokeCause = grants.State(state), grants.RevokeCause(cause)
	g.CreatedAt, g.IssuedAt, g.ExpiresAt, g.RevokedAt = fromMS(created), fromMS(issued), fromMS(expires), fromMS(revoked)
	g.DueAt, g.ClaimedTo, g.UpdatedAt, g.AccessMissingAt = fromMS(due), fromMS(claimedTo), fromMS(updated), fromMS(missing)
	return g, nil
}

// GetGrant implements grants.Store.
func (s *Store) GetGrant(ctx context.Context, id string) (grants.Grant, error) {
	g, err := scanGrant(s.r.QueryRowContext(ctx, s.q(`SELECT `+grantCols+` FROM grants WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return g, fmt.Errorf("grant %s: %w", id, grants.ErrNotFound)
	}
	return g, err
}

// ListGrants implements grants.Store.
func (s *Store) ListGrants(ctx context.Context, f grants.GrantFilter) ([]grants.Grant, error) {
	return list(ctx, s, "grants", grantCols, grantsWhere(f), f.Limit, scanGrant)
}

// grantsWhere is ListGrants' filter.
func grantsWhere(f grants.GrantFilter) filter {
	var w filter
	in(&w, "state", f.States)
	w.eq("resource", f.Resource)
	w.eq("slack_user", f.SlackUser)
	w.eq("request_id", f.RequestID)
	w.eq("incident_id", f.IncidentID)
	w.eq("handle_key", f.HandleKey)
	if f.HandleKey != "" && len(f.States) > 0 && !slices.Contains(f.States, grants.StateRevoked) {
		// The live grants of one handle (the overlap check of every issue and revocation):
		// spelled as the partial index grants_handle_key is defined, so that SQLite can use
		// it, and does not read every live grant of the given states (grants_state) instead.
		w.where = append(w.where, "handle_key <> ''", "state <> 'revoked'")
	}
	return w
}

// filter collects the conditions and arguments of a list query.
type filter struct {
	where []string
	args  []any
}

func (f *filter) eq(col, v string) {
	if v != "" {
		f.where = append(f.where, col+" = ?")
		f.args = append(f.args, v)
	}
}

// in adds "col IN (…)" for the given values, if any.
func in[T ~string](f *filter, col string, vs []T) {
	if len(vs) == 0 {
		return
	}
	f.where = append(f.where, col+" IN ("+placeholders(len(vs))+")")
	for _, v := range vs {
		f.args = append(f.args, string(v))
	}
}

// listQuery is list's SQL ("?" placeholders).
func listQuery(table, cols string, f filter, limit int) string {
	q := `SELECT ` + cols + ` FROM ` + table
	if len(f.where) > 0 {
		q += " WHERE " + strings.Join(f.where, " AND ")
	}
	q += " ORDER BY created_at DESC, id DESC"
	if limit > 0 {
		q += " LIMIT " + itoa(int64(limit))
	}
	return q
}

// list runs a filtered query over table, newest first, and scans each row.
func list[T any](ctx context.Context, s *Store, table, cols string, f filter, limit int, scan func(scanner) (T, error)) ([]T, error) {
	rows, err := s.r.QueryContext(ctx, s.q(listQuery(table, cols, f, limit)), f.args...)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", table, err)
	}
	return scanAll(rows, scan)
}

// scanAll reads every row of rows with scan and closes them. Its error is scan's or
// rows.Err(), unwrapped; what was read before rows.Err() failed is returned with it.
func scanAll[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// ClaimDue implements grants.Store.
func (s *Store) ClaimDue(ctx context.Context, owner string, now time.Time, limit int, lease time.Duration) ([]grants.Grant, error) {
	if limit <= 0 {
		return nil, nil
	}
	nowMS := ms(now)
	until := now.Add(lease).Truncate(time.Millisecond)
	if s.dialect == dialectPostgres {
		rows, err := s.w.QueryContext(ctx, claimPostgresSQL, nowMS, nowMS, limit, owner, ms(until))
		if err != nil {
			return nil, fmt.Errorf("claim due grants: %w", err)
		}
		return scanClaimed(rows)
	}
	return s.claimSQLite(ctx, owner, ms(until), nowMS, limit)
}

// claimSQLite claims due grants in one statement (SQLite runs one writer at a time, so the
// inner select and the update cannot interleave with another claimer) and commits it without
// waiting for the disk: a claim is a lease, not a state change, and losing it in a crash
// leaves the grant claimable again, which is what a crash before its outcome is recorded does
// anyway (the revocation is then made again, idempotently). In WAL mode the claim is written
// to the log in order and becomes durable with the next synced commit, at the latest the
// grant's own outcome, so a recorded outcome is never followed, after a crash, by a lost
// claim of the same grant. Every other write on the connection stays synchronous=FULL: the
// setting is put back before the connection returns to the pool, and a connection on which
// that fails is discarded. With deadlines spread out this halves the fsyncs per revocation
// (one claim and one record each) on the one writer (#16.3).
func (s *Store) claimSQLite(ctx context.Context, owner string, until, nowMS int64, limit int) ([]grants.Grant, error) {
	var out []grants.Grant
	err := withSynchronousNormal(ctx, s.w, "claim due grants", func(conn *sql.Conn) error {
		rows, err := conn.QueryContext(ctx, claimSQLiteSQL, owner, until, nowMS, nowMS, limit)
		if err != nil {
			return fmt.Errorf("claim due grants: %w", err)
		}
		out, err = scanClaimed(rows)
		return err
	})
	return out, err // what was claimed, with the error if FULL could not be set again
}

// withSynchronousNormal runs f on a connection of db set to synchronous=NORMAL (its commits
// do not wait for the disk) and sets synchronous=FULL again before the connection goes back
// to the pool; a connection on which that fails is discarded, never reused. what names the
// operation in its errors; f's errors are returned as they are.
func withSynchronousNormal(ctx context.Context, db *sql.DB, what string, f func(*sql.Conn) error) (err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA synchronous = NORMAL`); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer func() {
		if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA synchronous = FULL`); rerr != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn }) // never reused
			err = errors.Join(err, fmt.Errorf("%s: restore synchronous=FULL: %w", what, rerr))
		}
	}()
	return f(conn)
}

// scanClaimed reads and closes a claim's rows, oldest due first.
func scanClaimed(rows *sql.Rows) ([]grants.Grant, error) {
	out, err := scanAll(rows, scanGrant)
	if err != nil {
		return nil, fmt.Errorf("claim due grants: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].DueAt.Equal(out[j].DueAt) {
			return out[i].DueAt.Before(out[j].DueAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// claimSQLiteSQL claims due grants on SQLite, oldest due first and, among grants due at the
// same moment, in the order they were written (rowid). That order is grants_due's own
// (due_at, rowid), so SQLite walks the index and stops after limit claimable rows; ordered by
// (due_at, id) it read and sorted every grant due by now on each claim, so a burst of 10,000
// grants due in one second cost each claim of 256 all 10,000 rows (#16.3).
// Arguments: owner, claimed_to, now, now, limit.
const claimSQLiteSQL = `UPDATE grants SET claimed_by = ?, claimed_to = ?, version = version + 1
	WHERE rowid IN (SELECT rowid FROM grants WHERE state <> 'revoked' AND due_at <= ? AND claimed_to <= ?
	                ORDER BY due_at, rowid LIMIT ?)
	RETURNING ` + grantCols

// RenewClaims implements grants.Store.
func (s *Store) RenewClaims(ctx context.Context, owner string, ids []string, now, until time.Time) (int, error) {
	total := 0
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), 500)]
		ids = ids[len(chunk):]
		args := []any{ms(until), owner, ms(now)}
		marks := make([]string, len(chunk))
		for i, id := range chunk {
			marks[i] = "?"
			args = append(args, id)
		}
		res, err := s.w.ExecContext(ctx, s.q(`UPDATE grants SET claimed_to = ?
			WHERE claimed_by = ? AND claimed_to > ? AND state <> 'revoked' AND id IN (`+strings.Join(marks, ", ")+`)`), args...)
		if err != nil {
			return total, fmt.Errorf("renew %d claims: %w", len(chunk), err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("renew %d claims: %w", len(chunk), err)
		}
		total += int(n)
	}
	return total, nil
}

// NextDue implements grants.Store: the earliest moment a live grant becomes claimable, the
// later of its due time and its claim's end. It is read from two indexes (grants_due and
// grants_claimed), not by scanning every live grant: the earliest due time among grants whose
// claim ends no later than their due time, and the earliest claim end among the others.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var due, claimed sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT
		(SELECT due_at FROM grants WHERE state <> 'revoked' AND claimed_to <= due_at ORDER BY due_at LIMIT 1),
		(SELECT claimed_to FROM grants WHERE state <> 'revoked' AND claimed_to > due_at ORDER BY claimed_to LIMIT 1)`).Scan(&due, &claimed)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next due: %w", err)
	}
	switch {
	case due.Valid && claimed.Valid:
		return fromMS(min(due.Int64, claimed.Int64)), true, nil
	case due.Valid:
		return fromMS(due.Int64), true, nil
	case claimed.Valid:
		return fromMS(claimed.Int64), true, nil
	}
	return time.Time{}, false, nil
}

const requestCols = `id, requester, resource, duration_ms, reason, source, state, stage, approvals, incident_id, evidence,
	COALESCE(external_key, ''), notify, created_at, decided_at, expires_at, version, updated_at`

func scanRequest(sc scanner) (grants.Request, error) {
	var r grants.Request
	var requester, source, state, stage, approvals, evidence string
	var dur, created, decided, expires, updated int64
	if err := sc.Scan(&r.ID, &requester, &r.Resource, &dur, &r.Reason, &source, &state, &stage, &approvals, &r.IncidentID, &evidence,
		&r.ExternalKey, &r.Notify, &created, &decided, &expires, &r.Version, &updated); err != nil {
		return r, err
	}
	if err := json.Unmarshal([]byte(requester), &r.Requester); err != nil {
		return r, fmt.Errorf("request %s requester: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(approvals), &r.Approvals); err != nil {
		return r, fmt.Errorf("request %s approvals: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(evidence), &r.Evidence); err != nil {
		return r, fmt.Errorf("request %s evidence: %w", r.ID, err)
	}
	if len(r.Approvals) == 0 {
		r.Approvals = nil
	}
	if len(r.Evidence) == 0 {
		r.Evidence = nil
	}
	r.Duration = time.Duration(dur) * time.Millisecond
	r.Source, r.State, r.Stage = grants.Source(source), grants.RequestState(state), grants.RequestStage(stage)
	r.CreatedAt, r.DecidedAt, r.ExpiresAt, r.UpdatedAt = fromMS(created), fromMS(decided), fromMS(expires), fromMS(updated)
	return r, nil
}

// GetRequest implements grants.Store.
func (s *Store) GetRequest(ctx context.Context, id string) (grants.Request, error) {
	r, err := scanRequest(s.r.QueryRowContext(ctx, s.q(`SELECT `+requestCols+` FROM requests WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("request %s: %w", id, grants.ErrNotFound)
	}
	return r, err
}

// ListRequests implements grants.Store.
func (s *Store) ListRequests(ctx context.Context, f grants.RequestFilter) ([]grants.Request, error) {
	var w filter
	in(&w, "state", f.States)
	w.eq("resource", f.Resource)
	w.eq("slack_user", f.SlackUser)
	return list(ctx, s, "requests", requestCols, w, f.Limit, scanRequest)
}

// Seen records key as acted on and reports whether this is the first time (dedupe of
// webhook deliveries and replayed requests, durable across restarts).
func (s *Store) Seen(ctx context.Context, key string) (first bool, err error) {
	res, err := s.w.ExecContext(ctx, s.q(`INSERT INTO seen_keys(key, seen_at) VALUES (?, ?) ON CONFLICT(key) DO NOTHING`), key, ms(s.clock.Now()))
	if err != nil {
		return false, fmt.Errorf("record seen key: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// AcquireLease takes or renews the named lease for holder until now+ttl, and reports whether
// holder has it. Only one holder has a lease at a time.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	now := s.clock.Now()
	res, err := s.w.ExecContext(ctx, s.q(`INSERT INTO leases(name, holder, until_ms) VALUES (?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
		WHERE leases.holder = excluded.holder OR leases.until_ms <= ?`), name, holder, ms(now.Add(ttl)), ms(now))
	if err != nil {
		return false, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// CountByState returns how many grants are in each state.
func (s *Store) CountByState(ctx context.Context) (map[grants.State]int, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT state, COUNT(*) FROM grants GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("count grants: %w", err)
	}
	defer rows.Close()
	out := map[grants.State]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, err
		}
		out[grants.State(st)] = n
	}
	return out, rows.Err()
}
