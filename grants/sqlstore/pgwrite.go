package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/accessbroker/accessbroker/grants"
)

// PostgreSQL writes a change's grants and events with a few set-based statements over arrays
// (unnest) instead of one statement per row: the revoker records hundreds of outcomes per
// change, and every round trip inside the transaction is time other replicas may be waiting
// for. The statements do not depend on the number of rows, so pgx prepares each once per
// connection.

// grantArrays holds a batch of grants column by column, in the order of pgGrantCols.
type grantArrays struct {
	id, requestID, resource, provider, person, slackUser, state, reason, incidentID []string
	created, issued, expires, revoked                                               []int64
	revokeCause, handle, handleKey                                                  []string
	attempts                                                                        []int32
	due                                                                             []int64
	lastError, claimedBy                                                            []string
	claimedTo, version                                                              []int64
	accessMissing                                                                   []int64
}

// pgGrantCols are the grant columns carried by grantArrays, in order; version is the row's
// new version for an insert and its expected current version for an update.
const pgGrantCols = `id, request_id, resource, provider, person, slack_user, state, reason, incident_id,
	created_at, issued_at, expires_at, revoked_at, revoke_cause, handle, handle_key, attempts, due_at, last_error,
	claimed_by, claimed_to, version, access_missing_at`

const pgGrantUnnest = `unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
	$9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::text[], $15::text[], $16::text[], $17::int[],
	$18::bigint[], $19::text[], $20::text[], $21::bigint[], $22::bigint[], $24::bigint[])`

const pgInsertGrantsSQL = `INSERT INTO grants (` + pgGrantCols + `, updated_at)
	SELECT u.*, $23::bigint FROM ` + pgGrantUnnest + ` AS u`

const pgLockGrantsSQL = `SELECT 1 FROM grants WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE`

const pgUpdateGrantsSQL = `UPDATE grants AS g SET request_id = u.request_id, resource = u.resource, provider = u.provider,
	person = u.person, slack_user = u.slack_user, state = u.state, reason = u.reason, incident_id = u.incident_id,
	created_at = u.created_at, issued_at = u.issued_at, expires_at = u.expires_at, revoked_at = u.revoked_at,
	revoke_cause = u.revoke_cause, handle = u.handle, handle_key = u.handle_key, attempts = u.attempts, due_at = u.due_at,
	last_error = u.last_error, claimed_by = u.claimed_by, claimed_to = u.claimed_to, access_missing_at = u.access_missing_at,
	version = g.version + 1, updated_at = $23::bigint
	FROM ` + pgGrantUnnest + ` AS u(` + pgGrantCols + `)
	WHERE g.id = u.id AND g.version = u.version
	RETURNING g.id`

const pgInsertEventsSQL = `INSERT INTO audit_events
	(seq, id, time_ms, actor_kind, actor_id, actor_email, action, request_id, grant_id, resource, reason, evidence, prev_hash, hash)
	SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
		$9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[])`

func (a *grantArrays) add(g *grants.Grant, version int64) {
	person, _ := json.Marshal(g.Person)
	handle, _ := json.Marshal(g.Handle)
	a.id = append(a.id, g.ID)
	a.requestID = append(a.requestID, g.RequestID)
	a.resource = append(a.resource, g.Resource)
	a.provider = append(a.provider, g.Provider)
	a.person = append(a.person, string(person))
	a.slackUser = append(a.slackUser, g.Person.SlackUserID)
	a.state = append(a.state, string(g.State))
	a.reason = append(a.reason, g.Reason)
	a.incidentID = append(a.incidentID, g.IncidentID)
	a.created = append(a.created, ms(g.CreatedAt))
	a.issued = append(a.issued, ms(g.IssuedAt))
	a.expires = append(a.expires, ms(g.ExpiresAt))
	a.revoked = append(a.revoked, ms(g.RevokedAt))
	a.revokeCause = append(a.revokeCause, string(g.RevokeCause))
	a.handle = append(a.handle, string(handle))
	a.handleKey = append(a.handleKey, g.Handle.Key)
	a.attempts = append(a.attempts, int32(g.Attempts))
	a.due = append(a.due, ms(g.DueAt))
	a.lastError = append(a.lastError, g.LastError)
	a.claimedBy = append(a.claimedBy, g.ClaimedBy)
	a.claimedTo = append(a.claimedTo, ms(g.ClaimedTo))
	a.version = append(a.version, version)
	a.accessMissing = append(a.accessMissing, ms(g.AccessMissingAt))
}

func (a *grantArrays) args(now time.Time) []any {
	return []any{a.id, a.requestID, a.resource, a.provider, a.person, a.slackUser, a.state, a.reason, a.incidentID,
		a.created, a.issued, a.expires, a.revoked, a.revokeCause, a.handle, a.handleKey, a.attempts, a.due, a.lastError,
		a.claimedBy, a.claimedTo, a.version, ms(now), a.accessMissing}
}

// queueGrantsPostgres queues the change's grant writes on p: new grants in one insert,
// the others in one update (after a statement that locks them in id order when there are
// several). An update whose version no longer matches, or an insert whose id exists, makes
// the whole change fail with grants.ErrConflict.
func queueGrantsPostgres(p *pgPipeline, gws []grants.GrantWrite, now time.Time) error {
	var ins, upd grantArrays
	var updates []*grants.Grant
	for _, gw := range gws {
		g := gw.Grant
		if gw.Create {
			if g.ID == "" {
				return errors.New("create grant: empty id")
			}
			ins.add(g, g.Version+1)
		} else {
			upd.add(g, g.Version)
			updates = append(updates, g)
		}
	}
	if len(ins.id) > 0 {
		p.exec(func(_ pgconn.CommandTag, err error) error {
			if isUnique(err) {
				return fmt.Errorf("create grant %s: already exists: %w", conflictingKey(err, ins.id), grants.ErrConflict)
			}
			if err != nil {
				return fmt.Errorf("create grants %s: %w", idList(ins.id), err)
			}
			return nil
		}, pgInsertGrantsSQL, ins.args(now)...)
	}
	if len(updates) == 0 {
		return nil
	}
	if len(updates) > 1 {
		p.exec(func(_ pgconn.CommandTag, err error) error {
			if err != nil {
				return fmt.Errorf("lock grants %s: %w", idList(upd.id), err)
			}
			return nil
		}, pgLockGrantsSQL, upd.id)
	}
	p.query(func(rows pgx.Rows) error {
		done := make(map[string]bool, len(updates))
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return fmt.Errorf("update grants: %w", err)
			}
			done[id] = true
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("update grants %s: %w", idList(upd.id), err)
		}
		for _, g := range updates {
			if !done[g.ID] {
				return fmt.Errorf("update grant %s at version %d: %w", g.ID, g.Version, grants.ErrConflict)
			}
		}
		if len(done) != len(updates) { // the same grant twice in one change
			return fmt.Errorf("update grants %s: a grant appears twice in one change: %w", idList(upd.id), grants.ErrConflict)
		}
		return nil
	}, func(err error) error {
		return fmt.Errorf("update grants %s: %w", idList(upd.id), err)
	}, pgUpdateGrantsSQL, upd.args(now)...)
	return nil
}

// eventColumns turns sealed event rows (insertEventSQL's arguments) into pgInsertEventsSQL's
// column arrays.
func eventColumns(rows [][]any) []any {
	cols := make([]any, 14)
	for c := range cols {
		switch c {
		case 0, 2: // seq, time_ms
			v := make([]int64, len(rows))
			for i, r := range rows {
				v[i] = r[c].(int64)
			}
			cols[c] = v
		default:
			v := make([]string, len(rows))
			for i, r := range rows {
				v[i] = r[c].(string)
			}
			cols[c] = v
		}
	}
	return cols
}

// eventsInserted names what went wrong with pgInsertEventsSQL: an id that exists is
// grants.ErrConflict.
func eventsInserted(cols []any, err error) error {
	if err == nil {
		return nil
	}
	ids := cols[1].([]string)
	if isUnique(err) {
		return fmt.Errorf("append audit event %s: %w", conflictingKey(err, ids), grants.ErrConflict)
	}
	return fmt.Errorf("append audit events %s: %w", idList(ids), err)
}

// insertEventsPostgres inserts sealed events (rows of insertEventSQL's arguments) in one
// statement.
func (t *txStmts) insertEventsPostgres(ctx context.Context, rows [][]any) error {
	cols := eventColumns(rows)
	_, err := t.tx.ExecContext(ctx, pgInsertEventsSQL, cols...)
	return eventsInserted(cols, err)
}

// conflictingKey names the key a unique violation is about when PostgreSQL says which one of
// ours it is, else the batch.
func conflictingKey(err error, ids []string) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		for _, id := range ids {
			if strings.Contains(pe.Detail, "("+id+")") {
				return id
			}
		}
	}
	return idList(ids)
}

// idList shortens a list of ids for an error message.
func idList(ids []string) string {
	if len(ids) <= 3 {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(slices.Clone(ids[:3]), ", "), len(ids)-3)
}
