package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// Apply implements grants.Store: rows and audit events in one transaction.
//
// On PostgreSQL the rows are written first and the audit chain is locked last, just before
// the events are chained and the transaction commits, so that replicas hold the one global
// lock only for the append itself. Apply retries, on a fresh connection, a transaction that
// failed because its connection died before COMMIT was sent (nothing of it was applied).
//
// A change is committed together with the changes of other callers that arrive while a
// commit is in flight (group commit): every change must be durable before its caller goes
// on (a request before Slack is answered, a grant's write-ahead before the provider is
// called, its outcome before the credential is shown), and with one SQLite writer and a
// synced commit per transaction, concurrent callers would otherwise queue behind one fsync
// each; on PostgreSQL they would queue for the audit chain's lock. Each caller still gets
// its own answer: a batch that fails on a conflict (a stale version, a duplicate key) or a
// pending limit is retried one change at a time, in arrival order, so only the culprit
// fails. A commit runs to its end even if the caller's context is cancelled meanwhile.
func (s *Store) Apply(ctx context.Context, c *grants.Change) error {
	if len(c.Events) == 0 {
		return errors.New("apply change: no audit event; every change must explain itself")
	}
	// A change that cannot be written is refused before it joins a group, so that it
	// cannot fail the changes of other callers.
	if err := validateChange(c); err != nil {
		return err
	}
	return s.commits.submit(ctx, c)
}

// validateChange checks what writing needs of a change that the database would not check
// (or, on PostgreSQL, would check only as part of the whole group's transaction).
func validateChange(c *grants.Change) error {
	for _, rw := range c.Requests {
		if rw.Request == nil {
			return errors.New("write request: no request")
		}
		if rw.Create && rw.Request.ID == "" {
			return errors.New("create request: empty id")
		}
	}
	for _, gw := range c.Grants {
		if gw.Grant == nil {
			return errors.New("write grant: no grant")
		}
		if gw.Create && gw.Grant.ID == "" {
			return errors.New("create grant: empty id")
		}
	}
	return validateEvents(c.Events)
}

// applyTx applies c in one transaction (retried where that is safe). On PostgreSQL, late
// (if not nil) gives the events of waiting changes that join the transaction once it holds
// the chain lock (see groupCommit).
func (s *Store) applyTx(ctx context.Context, c *grants.Change, late func() []*audit.Event) error {
	now := s.clock.Now().Truncate(time.Millisecond)
	for attempt := 1; ; attempt++ {
		committing, err := s.applyOnce(ctx, c, now, late)
		if err == nil {
			break
		}
		if s.dialect == dialectPostgres && !committing && attempt < 3 && ctx.Err() == nil && isDeadlock(err) {
			// Two replicas' changes waited on each other (e.g. the same request keys in a
			// different order); PostgreSQL aborted this one and applied nothing of it.
			s.log.WarnContext(ctx, "database deadlock; retrying the change", "attempt", attempt, "error", err)
			continue
		}
		if s.dialect != dialectPostgres || committing || attempt == 3 || ctx.Err() != nil || !isConnError(err) {
			return err
		}
		// What ended one session (a restart, a failover) usually ended them all: drop every
		// pooled connection rather than discover each dead one with a failed write.
		s.pool.Reset()
		s.log.WarnContext(ctx, "database connection lost; retrying the change on a new one", "attempt", attempt, "error", err)
	}
	for _, rw := range c.Requests {
		rw.Request.Version++
		rw.Request.UpdatedAt = now
	}
	for _, gw := range c.Grants {
		gw.Grant.Version++
		gw.Grant.UpdatedAt = now
	}
	return nil
}

// applyOnce runs the change's transaction once. committing reports that the error came from
// COMMIT itself, whose outcome is then unknown.
func (s *Store) applyOnce(ctx context.Context, c *grants.Change, now time.Time, late func() []*audit.Event) (committing bool, err error) {
	if s.dialect == dialectPostgres {
		return s.applyOncePostgres(ctx, c, now, late)
	}
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return false, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()

	st := &txStmts{s: s, tx: tx}
	defer st.close()
	reqs := sortedRequests(c)
	if err := s.writeRequests(ctx, tx, reqs, now); err != nil {
		return false, err
	}
	if err := st.writeGrantsSQLite(ctx, c.Grants, now); err != nil {
		return false, err
	}
	// Pending caps are counted under the one writer:
	// every change that committed before this one is visible, and none can commit meanwhile.
	if err := s.checkPendingBatch(ctx, tx, reqs, now); err != nil {
		return false, err
	}
	if err := st.appendEvents(ctx, c.Events); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return true, fmt.Errorf("commit: %w", err)
	}
	return false, nil
}

// sortedRequests returns the change's request writes in the order they are written. Rows are
// written in id order, so that two changes touching the same rows lock them in the same order
// and cannot deadlock. Requests are ordered by their dedupe key first: two replicas inserting
// the same keys (a replayed command on each) then wait on the unique index in one order,
// never a cycle.
func sortedRequests(c *grants.Change) []grants.RequestWrite {
	reqs := slices.Clone(c.Requests)
	slices.SortStableFunc(reqs, func(a, b grants.RequestWrite) int {
		if c := strings.Compare(a.Request.ExternalKey, b.Request.ExternalKey); c != 0 {
			return c
		}
		return strings.Compare(a.Request.ID, b.Request.ID)
	})
	return reqs
}

// appendEvents chains events after the current head. The caller holds the chain lock
// (lockChain), so the head read here stays the head until this transaction ends.
func (st *txStmts) appendEvents(ctx context.Context, events []*audit.Event) error {
	tx := st.tx
	var h chainHead
	var prevHex string
	err := tx.QueryRowContext(ctx, `SELECT seq, hash, time_ms FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&h.seq, &prevHex, &h.timeMS)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		h.hash = audit.Genesis
	case err != nil:
		return fmt.Errorf("read audit head: %w", err)
	default:
		if h.hash, err = audit.ParseHash(prevHex); err != nil {
			return fmt.Errorf("audit head seq %d: %w", h.seq, err)
		}
	}
	rows, err := sealEvents(h, events)
	if err != nil {
		return err
	}
	if st.s.dialect == dialectPostgres {
		return st.insertEventsPostgres(ctx, rows)
	}
	// Full chunks go in one multi-row INSERT each (a statement costs more than a row); the
	// rest one by one through the prepared single-row statement.
	i := 0
	for ; i+eventChunk <= len(rows); i += eventChunk {
		// sealEvents' rows are consecutive in one array: the chunk's arguments are the
		// first row's slice of it, extended over the chunk.
		args := rows[i][:eventChunk*eventArgs]
		if _, err := st.exec(ctx, &st.eventChunk, insertEventChunkSQL, args...); err != nil {
			if isUnique(err) {
				return fmt.Errorf("append audit events %d..%d: %w", events[i].Seq, events[i+eventChunk-1].Seq, grants.ErrConflict)
			}
			return fmt.Errorf("append audit events %d..%d: %w", events[i].Seq, events[i+eventChunk-1].Seq, err)
		}
	}
	for ; i < len(rows); i++ {
		if _, err := st.exec(ctx, &st.event, insertEventSQL, rows[i]...); err != nil {
			if isUnique(err) {
				return fmt.Errorf("append audit event %s: %w", events[i].ID, grants.ErrConflict)
			}
			return fmt.Errorf("append audit event %d: %w", events[i].Seq, err)
		}
	}
	return nil
}

// chainHead is the last event of the chain: its seq, hash and time (0, Genesis, 0 when the
// log is empty).
type chainHead struct {
	seq    int64
	hash   audit.Hash
	timeMS int64
}

// validateEvents checks what sealing needs of each event, before any of it is written.
func validateEvents(events []*audit.Event) error {
	for i, e := range events {
		if e == nil {
			return fmt.Errorf("audit event %d of the change is missing", i)
		}
		if e.ID == "" || e.Time.IsZero() || e.Action == "" || e.Actor.Kind == "" {
			return fmt.Errorf("audit event %q (%s): id, time, action and actor are required", e.ID, e.Action)
		}
	}
	return nil
}

// sealEvents chains events after h: it sets each event's seq, time (never before the one
// ahead of it), prev hash and hash, and returns the rows to insert (insertEventSQL's
// arguments).
func sealEvents(h chainHead, events []*audit.Event) ([][]any, error) {
	if err := validateEvents(events); err != nil {
		return nil, err
	}
	seq, headMS, prev := h.seq, h.timeMS, h.hash
	prevHex := prev.String() // each row's prev_hash is the row before's hash, encoded once
	// The rows share one backing array, in order, so that SQLite's multi-row INSERT takes
	// a chunk of them as its arguments without a copy (see appendEvents).
	flat := make([]any, 0, len(events)*eventArgs)
	rows := make([][]any, 0, len(events))
	for _, e := range events {
		e.Time = e.Time.UTC().Truncate(time.Millisecond)
		// Event times never go backwards along the chain: an event stamped a moment before a
		// concurrent one that committed first (or on a replica whose clock lags) takes the
		// head's time. This keeps "time ≥ t" equivalent to "seq ≥ s", which search relies on.
		if head := fromMS(headMS); headMS != 0 && e.Time.Before(head) {
			e.Time = head
		}
		headMS = ms(e.Time)
		seq++
		e.Seq = seq
		ev, err := sealEvidence(prev, e)
		if err != nil {
			return nil, fmt.Errorf("seal audit event %d: %w", seq, err)
		}
		hashHex := e.Hash.String()
		at := len(flat)
		flat = append(flat, e.Seq, e.ID, ms(e.Time), string(e.Actor.Kind), e.Actor.ID, e.Actor.Email,
			string(e.Action), e.RequestID, e.GrantID, e.Resource, e.Reason, ev, prevHex, hashHex)
		rows = append(rows, flat[at:]) // its capacity runs on over the rows after it
		prev, prevHex = e.Hash, hashHex
	}
	return rows, nil
}

// eventChunk is how many events one multi-row INSERT carries on SQLite (eventArgs parameters
// each, well under SQLite's limit of 32766).
const eventChunk = 32

// eventArgs is the number of insertEventSQL's arguments: the columns of an audit event.
const eventArgs = 14

var insertEventChunkSQL = insertEventSQL + strings.Repeat(", (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", eventChunk-1)

// OR FAIL: a constraint error aborts the statement without undoing its earlier rows, so
// SQLite keeps no statement journal for it (a sixth of an append's cost); every error here
// rolls the whole transaction back anyway.
const insertEventSQL = `INSERT OR FAIL INTO audit_events
	(seq, id, time_ms, actor_kind, actor_id, actor_email, action, request_id, grant_id, resource, reason, evidence, prev_hash, hash)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// insertRequestSQL and updateRequestSQL write a request; their arguments come from
// requestArgs.
const insertRequestSQL = `INSERT INTO requests (id, requester, slack_user, resource, duration_ms, reason, source, state, stage,
	approvals, incident_id, evidence, external_key, notify, created_at, decided_at, expires_at, version, updated_at)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

const updateRequestSQL = `UPDATE requests SET requester = ?, slack_user = ?, resource = ?, duration_ms = ?, reason = ?,
	source = ?, state = ?, stage = ?, approvals = ?, incident_id = ?, evidence = ?, external_key = ?, notify = ?, created_at = ?,
	decided_at = ?, expires_at = ?, version = version + 1, updated_at = ?
	WHERE id = ? AND version = ?`

// requestArgs returns the statement (insertRequestSQL or updateRequestSQL) and arguments
// that write rw.
func requestArgs(rw grants.RequestWrite, now time.Time) (string, []any, error) {
	r := rw.Request
	requester, _ := json.Marshal(r.Requester)
	approvals, _ := json.Marshal(nonNil(r.Approvals))
	evidence, _ := json.Marshal(nonNilMap(r.Evidence))
	var ext any
	if r.ExternalKey != "" {
		ext = r.ExternalKey
	}
	if rw.Create {
		if r.ID == "" {
			return "", nil, errors.New("create request: empty id")
		}
		return insertRequestSQL, []any{r.ID, string(requester), r.Requester.SlackUserID, r.Resource, r.Duration.Milliseconds(), r.Reason,
			string(r.Source), string(r.State), string(r.Stage), string(approvals), r.IncidentID, string(evidence), ext, r.Notify,
			ms(r.CreatedAt), ms(r.DecidedAt), ms(r.ExpiresAt), r.Version + 1, ms(now)}, nil
	}
	return updateRequestSQL, []any{string(requester), r.Requester.SlackUserID, r.Resource, r.Duration.Milliseconds(), r.Reason,
		string(r.Source), string(r.State), string(r.Stage), string(approvals), r.IncidentID, string(evidence), ext, r.Notify,
		ms(r.CreatedAt), ms(r.DecidedAt), ms(r.ExpiresAt), ms(now), r.ID, r.Version}, nil
}

// requestWritten turns the outcome of requestArgs' statement into the change's answer: a
// duplicate id or dedupe key, or an update that found the request at another version, is
// grants.ErrConflict.
func requestWritten(rw grants.RequestWrite, affected int64, err error) error {
	r := rw.Request
	if rw.Create {
		if isUnique(err) {
			return fmt.Errorf("create request %s: already exists: %w", r.ID, grants.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("create request %s: %w", r.ID, err)
		}
		return nil
	}
	if err != nil {
		if isUnique(err) {
			return fmt.Errorf("update request %s: %w", r.ID, grants.ErrConflict)
		}
		return fmt.Errorf("update request %s: %w", r.ID, err)
	}
	if affected != 1 {
		return fmt.Errorf("update request %s at version %d: %w", r.ID, r.Version, grants.ErrConflict)
	}
	return nil
}

// writeRequests writes reqs in order; on SQLite the created ones go in full chunks of
// requestChunk, one multi-row INSERT each (a group commit of 200 acknowledged commands would
// otherwise run 200 statements), and the rest one by one.
func (s *Store) writeRequests(ctx context.Context, tx *sql.Tx, reqs []grants.RequestWrite, now time.Time) error {
	var creates []grants.RequestWrite
	for _, rw := range reqs {
		if rw.Create && s.dialect == dialectSQLite {
			creates = append(creates, rw)
			continue
		}
		if err := s.writeRequest(ctx, tx, rw, now); err != nil {
			return err
		}
	}
	i := 0
	for ; i+requestChunk <= len(creates); i += requestChunk {
		chunk := creates[i : i+requestChunk]
		args := make([]any, 0, requestChunk*requestInsertCols)
		for _, rw := range chunk {
			args = append(args, requestInsertArgs(rw, now)...)
		}
		first, last := chunk[0].Request.ID, chunk[len(chunk)-1].Request.ID
		if _, err := tx.ExecContext(ctx, insertRequestChunkSQL, args...); err != nil {
			if isUnique(err) {
				return fmt.Errorf("create requests %s..%s: one already exists: %w", first, last, grants.ErrConflict)
			}
			return fmt.Errorf("create requests %s..%s: %w", first, last, err)
		}
	}
	for _, rw := range creates[i:] {
		if err := s.writeRequest(ctx, tx, rw, now); err != nil {
			return err
		}
	}
	return nil
}

// requestChunk is how many created requests one multi-row INSERT carries on SQLite
// (requestInsertCols parameters each).
const (
	requestChunk      = 16
	requestInsertCols = 19
)

var insertRequestChunkSQL = insertRequestSQL + strings.Repeat(", (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", requestChunk-1)

// requestInsertArgs are the values of insertRequestSQL for a created request (its id is
// checked by validateChange before the change joins a group).
func requestInsertArgs(rw grants.RequestWrite, now time.Time) []any {
	_, args, _ := requestArgs(rw, now)
	return args
}

func (s *Store) writeRequest(ctx context.Context, tx *sql.Tx, rw grants.RequestWrite, now time.Time) error {
	q, args, err := requestArgs(rw, now)
	if err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, s.q(q), args...)
	var n int64
	if err == nil {
		n, _ = res.RowsAffected()
	}
	return requestWritten(rw, n, err)
}

// checkPendingBatch enforces, on SQLite, the MaxPending of every created request in reqs (see
// grants.RequestWrite), which are already written in tx: for each, the others pending for the
// same requester and resource, not expired, must number fewer than its cap. The first request
// over its cap, in the order of reqs, is refused. One query reads the pending requests of
// every capped requester at once (a group commit of 200 requests would otherwise run 200).
func (s *Store) checkPendingBatch(ctx context.Context, tx *sql.Tx, reqs []grants.RequestWrite, now time.Time) error {
	var capped []grants.RequestWrite
	users := map[string]bool{}
	for _, rw := range reqs {
		if rw.Create && rw.MaxPending > 0 {
			capped = append(capped, rw)
			users[rw.Request.Requester.SlackUserID] = true
		}
	}
	if len(capped) == 0 {
		return nil
	}
	var list []string
	for u := range users {
		list = append(list, u)
	}
	sort.Strings(list)
	arg, _ := json.Marshal(list)
	first := capped[0].Request
	fail := func(err error) error {
		return fmt.Errorf("count pending requests of %s for %s: %w", first.Requester.SlackUserID, first.Resource, err)
	}
	rows, err := tx.QueryContext(ctx, pendingOfUsersSQL, string(arg), string(grants.RequestPending), ms(now))
	if err != nil {
		return fail(err)
	}
	defer rows.Close()
	type pendingOf struct{ user, resource string }
	type pendingRow struct {
		id, team  string
		teamKnown bool // false: the requester column did not parse, and the row counts in every workspace
	}
	pending := map[pendingOf][]pendingRow{} // oldest first
	for rows.Next() {
		var id, requester, user, resource string
		if err := rows.Scan(&id, &requester, &user, &resource); err != nil {
			return fail(err)
		}
		var p grants.Person
		known := json.Unmarshal([]byte(requester), &p) == nil
		k := pendingOf{user, resource}
		pending[k] = append(pending[k], pendingRow{id: id, team: p.SlackTeamID, teamKnown: known})
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	for _, rw := range capped {
		r := rw.Request
		var others []string
		for _, p := range pending[pendingOf{r.Requester.SlackUserID, r.Resource}] {
			if p.id == r.ID || (p.teamKnown && p.team != r.Requester.SlackTeamID) {
				continue // the same user id in another Slack workspace is another person
			}
			others = append(others, p.id)
		}
		if len(others) >= rw.MaxPending {
			return &grants.PendingLimitError{Resource: r.Resource, Max: rw.MaxPending, Pending: others}
		}
	}
	return nil
}

// pendingOfUsersSQL reads the pending requests, not expired, of the Slack user ids in a JSON
// array (one statement text whatever their number, so it is prepared once). The index on
// (slack_user, state) finds them, named since SQLite otherwise prefers the state index for
// its order (every pending request of everybody); the user index would read every request
// the person ever made (#16.7).
const pendingOfUsersSQL = `SELECT id, requester, slack_user, resource FROM requests INDEXED BY requests_user_state
	WHERE slack_user IN (SELECT value FROM json_each(?)) AND state = ? AND expires_at > ?
	ORDER BY created_at, id`

// pendingSQL lists the other requests pending for a created request's requester and
// resource (arguments: pendingArgs).
const pendingSQL = `SELECT id, requester FROM requests
		WHERE slack_user = ? AND resource = ? AND state = ? AND expires_at > ? AND id <> ?
		ORDER BY created_at, id`

func pendingArgs(rw grants.RequestWrite, now time.Time) []any {
	r := rw.Request
	return []any{r.Requester.SlackUserID, r.Resource, string(grants.RequestPending), ms(now), r.ID}
}

func pendingFailed(rw grants.RequestWrite, err error) error {
	return fmt.Errorf("count pending requests of %s for %s: %w", rw.Request.Requester.SlackUserID, rw.Request.Resource, err)
}

// rowReader is what pendingChecked needs of database/sql's and pgx's rows.
type rowReader interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// pendingChecked reads pendingSQL's rows and refuses the request with a
// *grants.PendingLimitError when the requester already has rw.MaxPending pending.
func pendingChecked(rw grants.RequestWrite, rows rowReader) error {
	r := rw.Request
	var pending []string
	for rows.Next() {
		var id, requester string
		if err := rows.Scan(&id, &requester); err != nil {
			return pendingFailed(rw, err)
		}
		var p grants.Person
		if json.Unmarshal([]byte(requester), &p) == nil && p.SlackTeamID != r.Requester.SlackTeamID {
			continue // the same user id in another Slack workspace is another person
		}
		pending = append(pending, id)
	}
	if err := rows.Err(); err != nil {
		return pendingFailed(rw, err)
	}
	if len(pending) >= rw.MaxPending {
		return &grants.PendingLimitError{Resource: r.Resource, Max: rw.MaxPending, Pending: pending}
	}
	return nil
}

// writeGrantsSQLite updates full chunks of existing grants with one statement each and
// writes the rest (and every new grant) one by one.
func (t *txStmts) writeGrantsSQLite(ctx context.Context, gws []grants.GrantWrite, now time.Time) error {
	var updates []*grants.Grant
	for _, gw := range gws {
		if gw.Create {
			if err := t.writeGrant(ctx, gw, now); err != nil {
				return err
			}
			continue
		}
		updates = append(updates, gw.Grant)
	}
	i := 0
	for ; i+grantChunk <= len(updates); i += grantChunk {
		if err := t.updateGrantChunk(ctx, updates[i:i+grantChunk], now); err != nil {
			return err
		}
	}
	for _, g := range updates[i:] {
		if err := t.writeGrant(ctx, grants.GrantWrite{Grant: g}, now); err != nil {
			return err
		}
	}
	return nil
}

// grantChunk is how many grant updates one statement carries on SQLite.
const grantChunk = 32

const grantChunkCols = `id, version, state, issued_at, expires_at, revoked_at, revoke_cause, handle, handle_key, attempts,
	due_at, last_error, claimed_by, claimed_to, access_missing_at`

var updateGrantChunkSQL = `WITH u(` + grantChunkCols + `) AS (VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)` +
	strings.Repeat(", (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", grantChunk-1) + `)
	UPDATE grants SET state = u.state, issued_at = u.issued_at, expires_at = u.expires_at, revoked_at = u.revoked_at,
		revoke_cause = u.revoke_cause, handle = u.handle, handle_key = u.handle_key, attempts = u.attempts, due_at = u.due_at,
		last_error = u.last_error, claimed_by = u.claimed_by, claimed_to = u.claimed_to, access_missing_at = u.access_missing_at,
		version = grants.version + 1, updated_at = ?
	FROM u WHERE grants.id = u.id AND grants.version = u.version
	RETURNING grants.id`

func (t *txStmts) updateGrantChunk(ctx context.Context, gs []*grants.Grant, now time.Time) error {
	if t.chunk == nil {
		st, err := t.tx.PrepareContext(ctx, updateGrantChunkSQL)
		if err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		t.chunk = st
	}
	args := make([]any, 0, len(gs)*15+1)
	for _, g := range gs {
		handle, _ := json.Marshal(g.Handle)
		args = append(args, g.ID, g.Version, string(g.State), ms(g.IssuedAt), ms(g.ExpiresAt), ms(g.RevokedAt), string(g.RevokeCause),
			string(handle), g.Handle.Key, g.Attempts, ms(g.DueAt), g.LastError, g.ClaimedBy, ms(g.ClaimedTo), ms(g.AccessMissingAt))
	}
	args = append(args, ms(now))
	rows, err := t.chunk.QueryContext(ctx, args...)
	if err != nil {
		return fmt.Errorf("update %d grants: %w", len(gs), err)
	}
	defer rows.Close()
	done := make(map[string]bool, len(gs))
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return fmt.Errorf("update grants: %w", err)
		}
		done[id] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("update %d grants: %w", len(gs), err)
	}
	for _, g := range gs {
		if !done[g.ID] {
			return fmt.Errorf("update grant %s at version %d: %w", g.ID, g.Version, grants.ErrConflict)
		}
	}
	return nil
}

// txStmts prepares each repeated statement once per transaction: parsing a 23-column UPDATE
// costs more than executing it, and the revoker writes hundreds per transaction. On
// PostgreSQL pgx already prepares and caches every statement per connection, so the
// statements run directly (an explicit prepare would cost two more round trips).
type txStmts struct {
	s                                        *Store
	tx                                       *sql.Tx
	insert, update, event, eventChunk, chunk *sql.Stmt
}

// exec runs q (written with "?" placeholders) in the transaction.
func (t *txStmts) exec(ctx context.Context, slot **sql.Stmt, q string, args ...any) (sql.Result, error) {
	if t.s.dialect == dialectPostgres {
		return t.tx.ExecContext(ctx, t.s.q(q), args...)
	}
	if *slot == nil {
		st, err := t.tx.PrepareContext(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("prepare: %w", err)
		}
		*slot = st
	}
	return (*slot).ExecContext(ctx, args...)
}

func (t *txStmts) close() {
	for _, st := range []*sql.Stmt{t.insert, t.update, t.event, t.eventChunk, t.chunk} {
		if st != nil {
			st.Close()
		}
	}
}

const insertGrantSQL = `INSERT INTO grants (request_id, resource, provider, person, slack_user, state, reason, incident_id,
	created_at, issued_at, expires_at, revoked_at, revoke_cause, handle, handle_key, attempts, due_at, last_error,
	claimed_by, claimed_to, access_missing_at, id, version, updated_at)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// updateGrantSQL writes the columns that change over a grant's life. The identity columns
// (request, resource, provider, person, reason, incident, created_at) are fixed at creation,
// and leaving them out spares SQLite from rewriting the indexes built on them.
const updateGrantSQL = `UPDATE grants SET state = ?, issued_at = ?, expires_at = ?, revoked_at = ?, revoke_cause = ?,
	handle = ?, handle_key = ?, attempts = ?, due_at = ?, last_error = ?, claimed_by = ?, claimed_to = ?, access_missing_at = ?,
	version = version + 1, updated_at = ?
	WHERE id = ? AND version = ?`

func (t *txStmts) writeGrant(ctx context.Context, gw grants.GrantWrite, now time.Time) error {
	g := gw.Grant
	person, _ := json.Marshal(g.Person)
	handle, _ := json.Marshal(g.Handle)
	args := []any{g.RequestID, g.Resource, g.Provider, string(person), g.Person.SlackUserID, string(g.State), g.Reason, g.IncidentID,
		ms(g.CreatedAt), ms(g.IssuedAt), ms(g.ExpiresAt), ms(g.RevokedAt), string(g.RevokeCause), string(handle), g.Handle.Key,
		g.Attempts, ms(g.DueAt), g.LastError, g.ClaimedBy, ms(g.ClaimedTo), ms(g.AccessMissingAt)}
	if gw.Create {
		if g.ID == "" {
			return errors.New("create grant: empty id")
		}
		_, err := t.exec(ctx, &t.insert, insertGrantSQL, append(args, g.ID, g.Version+1, ms(now))...)
		if isUnique(err) {
			return fmt.Errorf("create grant %s: already exists: %w", g.ID, grants.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("create grant %s: %w", g.ID, err)
		}
		return nil
	}
	res, err := t.exec(ctx, &t.update, updateGrantSQL, string(g.State), ms(g.IssuedAt), ms(g.ExpiresAt), ms(g.RevokedAt),
		string(g.RevokeCause), string(handle), g.Handle.Key, g.Attempts, ms(g.DueAt), g.LastError, g.ClaimedBy, ms(g.ClaimedTo),
		ms(g.AccessMissingAt), ms(now), g.ID, g.Version)
	if err != nil {
		return fmt.Errorf("update grant %s: %w", g.ID, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("update grant %s at version %d: %w", g.ID, g.Version, grants.ErrConflict)
	}
	return nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
