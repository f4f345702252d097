package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// On PostgreSQL a change (usually a group of callers' changes, see groupCommit) is written in
// two round trips instead of one per statement:
//
//  1. BEGIN, the request and grant writes, the chain lock, the pending-cap counts and the
//     read of the chain's head, pipelined: the server runs them in that order, each statement
//     with its own snapshot (READ COMMITTED), so the head is read after the lock is held.
//  2. Once the events are sealed after that head: the events' INSERT and COMMIT, pipelined.
//
// The chain lock is held from its statement in the first trip to the end of the second: one
// round trip, the sealing and the commit's flush, where it used to span four round trips
// (lock, head, insert, commit). That time, not the rows, bounds how many appends replicas
// together make per second. Between the two trips, changes of other callers that carry only
// events join the transaction (see groupCommit.commit): while it waited for the lock (held by
// another replica, say), they queued behind it.

// pgPipeline is a batch of statements sent in one round trip (pgx pipelines them with one
// Sync at the end). The server runs them in order and, after an error, skips the rest: the
// transaction they are in is then aborted. Each statement's handler reads its result, in
// order, once the batch is sent.
type pgPipeline struct {
	b        pgx.Batch
	handlers []func(pgx.BatchResults) error
}

// exec queues a statement whose command tag (or error) h judges.
func (p *pgPipeline) exec(h func(pgconn.CommandTag, error) error, sql string, args ...any) {
	p.b.Queue(sql, args...)
	p.handlers = append(p.handlers, func(br pgx.BatchResults) error {
		ct, err := br.Exec()
		return h(ct, err)
	})
}

// query queues a statement whose rows read consumes; fail words an error of the statement.
func (p *pgPipeline) query(read func(pgx.Rows) error, fail func(error) error, sql string, args ...any) {
	p.b.Queue(sql, args...)
	p.handlers = append(p.handlers, func(br pgx.BatchResults) error {
		rows, err := br.Query()
		if err != nil {
			return fail(err)
		}
		defer rows.Close()
		if err := read(rows); err != nil {
			return err
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fail(err)
		}
		return nil
	})
}

// run sends the batch and hands each result to its handler, in order. It returns the first
// error, and which statement (index in the batch) it came from (-1 if none did).
func (p *pgPipeline) run(ctx context.Context, conn *pgx.Conn) (int, error) {
	br := conn.SendBatch(ctx, &p.b)
	for i, h := range p.handlers {
		if err := h(br); err != nil {
			br.Close()
			return i, err
		}
	}
	if err := br.Close(); err != nil {
		return len(p.handlers), err
	}
	return -1, nil
}

// The request statements with PostgreSQL's placeholders.
var (
	pgRequestSQL = map[string]string{insertRequestSQL: rebind(insertRequestSQL), updateRequestSQL: rebind(updateRequestSQL)}
	pgPendingSQL = rebind(pendingSQL)
)

func noErr(what string) func(pgconn.CommandTag, error) error {
	return func(_ pgconn.CommandTag, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
}

// applyOncePostgres is applyOnce on PostgreSQL (see the top of this file); once the chain
// lock is held, the events late returns (if late is not nil) are appended after c's. committing reports that COMMIT may have been
// run, so the outcome is unknown and the change must not be retried.
func (s *Store) applyOncePostgres(ctx context.Context, c *grants.Change, now time.Time, late func() []*audit.Event) (committing bool, err error) {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("begin: %w", err)
	}
	// A connection left inside a transaction (an error, a lost answer) is not put back in the
	// pool: pgxpool closes a released connection that is not idle.
	defer pc.Release()
	conn := pc.Conn()
	defer func() {
		if err != nil && !conn.IsClosed() && conn.PgConn().TxStatus() != 'I' {
			if _, rerr := conn.Exec(context.WithoutCancel(ctx), "ROLLBACK"); rerr != nil {
				conn.Close(context.WithoutCancel(ctx))
			}
		}
	}()

	var p pgPipeline
	p.exec(noErr("begin"), "BEGIN ISOLATION LEVEL READ COMMITTED")
	reqs := sortedRequests(c)
	for _, rw := range reqs {
		q, args, err := requestArgs(rw, now)
		q = pgRequestSQL[q]
		if err != nil {
			return false, err
		}
		p.exec(func(ct pgconn.CommandTag, err error) error {
			return requestWritten(rw, ct.RowsAffected(), err)
		}, q, args...)
	}
	if err := queueGrantsPostgres(&p, c.Grants, now); err != nil {
		return false, err
	}
	// The chain lock comes after every row write (see lockChain): its holder never waits
	// for a row lock.
	p.exec(noErr("lock the audit chain"), `SELECT pg_advisory_xact_lock($1)`, s.chainKey)
	// Pending caps are counted under the chain lock: every change that committed before
	// this one is visible, and none can commit meanwhile.
	for _, rw := range reqs {
		if !rw.Create || rw.MaxPending <= 0 {
			continue
		}
		p.query(func(rows pgx.Rows) error { return pendingChecked(rw, rows) },
			func(err error) error { return pendingFailed(rw, err) },
			pgPendingSQL, pendingArgs(rw, now)...)
	}
	head := chainHead{hash: audit.Genesis}
	p.query(func(rows pgx.Rows) error {
		if !rows.Next() {
			return nil // an empty log
		}
		var h string
		if err := rows.Scan(&head.seq, &h, &head.timeMS); err != nil {
			return fmt.Errorf("read audit head: %w", err)
		}
		var err error
		if head.hash, err = audit.ParseHash(h); err != nil {
			return fmt.Errorf("audit head seq %d: %w", head.seq, err)
		}
		return nil
	}, func(err error) error { return fmt.Errorf("read audit head: %w", err) },
		`SELECT seq, hash, time_ms FROM audit_events ORDER BY seq DESC LIMIT 1`)
	if _, err := p.run(ctx, conn); err != nil {
		return false, err
	}

	events := c.Events
	if late != nil {
		// The chain lock is held: waiting changes with nothing but events join here.
		events = append(slices.Clip(events), late()...)
	}
	rows, err := sealEvents(head, events)
	if err != nil {
		return false, err
	}
	cols := eventColumns(rows)
	var fin pgPipeline
	fin.exec(func(_ pgconn.CommandTag, err error) error { return eventsInserted(cols, err) }, pgInsertEventsSQL, cols...)
	fin.exec(func(ct pgconn.CommandTag, err error) error {
		if err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		if ct.String() != "COMMIT" { // PostgreSQL answers ROLLBACK to the COMMIT of an aborted transaction
			return fmt.Errorf("commit: the transaction was rolled back (%s)", ct)
		}
		return nil
	}, "COMMIT")
	at, err := fin.run(ctx, conn)
	switch {
	case err == nil:
		return false, nil
	case at == 0 && (pgconn.SafeToRetry(err) || isServerError(err)):
		// The server refused the insert (or never got it) and skipped the COMMIT queued
		// behind it: nothing of the change is applied.
		return false, err
	default:
		return true, err
	}
}

// isServerError reports that err is PostgreSQL's answer to a statement (so the statements
// queued behind it in a pipeline were skipped).
func isServerError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe)
}
