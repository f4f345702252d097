package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/audit"
)

const eventCols = `seq, id, time_ms, actor_kind, actor_id, actor_email, action, request_id, grant_id, resource, reason, evidence, prev_hash, hash`

func scanEvent(sc scanner) (audit.Event, error) {
	var e audit.Event
	var t int64
	var kind, action, evidence, prev, hash string
	if err := sc.Scan(&e.Seq, &e.ID, &t, &kind, &e.Actor.ID, &e.Actor.Email, &action, &e.RequestID, &e.GrantID,
		&e.Resource, &e.Reason, &evidence, &prev, &hash); err != nil {
		return e, err
	}
	e.Time, e.Actor.Kind, e.Action = fromMS(t), audit.ActorKind(kind), audit.Action(action)
	if evidence != "" {
		var err error
		if e.Evidence, err = decodeEvidence(evidence); err != nil {
			return e, fmt.Errorf("audit event %d evidence: %w", e.Seq, err)
		}
	}
	var err error
	if e.PrevHash, err = audit.ParseHash(prev); err != nil {
		return e, fmt.Errorf("audit event %d prev_hash: %w", e.Seq, err)
	}
	if e.Hash, err = audit.ParseHash(hash); err != nil {
		return e, fmt.Errorf("audit event %d hash: %w", e.Seq, err)
	}
	return e, nil
}

// ReadEvents implements audit.Reader: up to limit events after seq, in stored seq order.
func (s *Store) ReadEvents(ctx context.Context, after int64, limit int) ([]audit.Event, error) {
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT `+s.packedEventCols()+` FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?`), after, limit)
	if err != nil {
		return nil, fmt.Errorf("read audit events: %w", err)
	}
	out, err := s.scanPackedEvents(ctx, rows, min(limit, 10000))
	if err != nil {
		return nil, fmt.Errorf("read audit events: %w", err)
	}
	return out, nil
}

// ReadCheckpoints implements audit.Reader.
func (s *Store) ReadCheckpoints(ctx context.Context) ([]audit.Checkpoint, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT seq, hash, time_ms, key_id, signature FROM audit_checkpoints ORDER BY seq, time_ms`)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	defer rows.Close()
	var out []audit.Checkpoint
	for rows.Next() {
		var c audit.Checkpoint
		var h string
		var t int64
		if err := rows.Scan(&c.Seq, &h, &t, &c.KeyID, &c.Signature); err != nil {
			return nil, err
		}
		if c.Hash, err = audit.ParseHash(h); err != nil {
			return nil, fmt.Errorf("checkpoint %d: %w", c.Seq, err)
		}
		c.Time = fromMS(t)
		out = append(out, c)
	}
	return out, rows.Err()
}

// Head returns the last event's seq, hash and time (0, Genesis, zero when the log is empty).
func (s *Store) Head(ctx context.Context) (int64, audit.Hash, time.Time, error) {
	var seq, t int64
	var h string
	err := s.r.QueryRowContext(ctx, `SELECT seq, hash, time_ms FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&seq, &h, &t)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, audit.Genesis, time.Time{}, nil
	}
	if err != nil {
		return 0, audit.Hash{}, time.Time{}, fmt.Errorf("read audit head: %w", err)
	}
	hash, err := audit.ParseHash(h)
	return seq, hash, fromMS(t), err
}

// AppendCheckpoint stores a signed checkpoint.
func (s *Store) AppendCheckpoint(ctx context.Context, c audit.Checkpoint) error {
	_, err := s.w.ExecContext(ctx, s.q(`INSERT INTO audit_checkpoints(seq, hash, time_ms, key_id, signature) VALUES (?, ?, ?, ?, ?)`),
		c.Seq, c.Hash.String(), ms(c.Time), c.KeyID, c.Signature)
	if err != nil {
		return fmt.Errorf("append checkpoint at seq %d: %w", c.Seq, err)
	}
	return nil
}

// LastCheckpoint returns the newest checkpoint, ok=false when there is none.
func (s *Store) LastCheckpoint(ctx context.Context) (audit.Checkpoint, bool, error) {
	var c audit.Checkpoint
	var h string
	var t int64
	err := s.r.QueryRowContext(ctx, `SELECT seq, hash, time_ms, key_id, signature FROM audit_checkpoints ORDER BY time_ms DESC, seq DESC LIMIT 1`).
		Scan(&c.Seq, &h, &t, &c.KeyID, &c.Signature)
	if errors.Is(err, sql.ErrNoRows) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("read last checkpoint: %w", err)
	}
	c.Time = fromMS(t)
	c.Hash, err = audit.ParseHash(h)
	return c, err == nil, err
}

// Search returns events matching q in seq order (descending when q.Descending), using the
// audit table's indexes. Pagination: pass the last seq seen as q.AfterSeq (for descending
// order, events with a lower seq follow).
func (s *Store) Search(ctx context.Context, q audit.Query) ([]audit.Event, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	var where []string
	var args []any
	if q.Actor != "" {
		where = append(where, "(actor_id = ? OR actor_email = ?)")
		args = append(args, q.Actor, q.Actor)
	}
	for col, v := range map[string]string{"resource": q.Resource, "action": string(q.Action), "grant_id": q.GrantID, "request_id": q.RequestID} {
		if v != "" {
			where = append(where, col+" = ?")
			args = append(args, v)
		}
	}
	// Times are non-decreasing along the chain (see appendEvents), so a time range is a seq
	// range: found through the time index, it lets the equality indexes (col, seq) do the rest.
	if !q.Since.IsZero() {
		lo, ok, err := s.seqAtOrAfter(ctx, q.Since)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, nil
		}
		// The unary + keeps the planner off the time index: the seq bound already narrows.
		where = append(where, "seq >= ?", "+time_ms >= ?")
		args = append(args, lo, ms(q.Since))
	}
	if !q.Until.IsZero() {
		hi, ok, err := s.seqAtOrAfter(ctx, q.Until)
		if err != nil {
			return nil, err
		}
		if ok {
			where = append(where, "seq < ?")
			args = append(args, hi)
		}
		where = append(where, "+time_ms < ?")
		args = append(args, ms(q.Until))
	}
	order := "ASC"
	if q.Descending {
		order = "DESC"
		if q.AfterSeq > 0 {
			where = append(where, "seq < ?")
			args = append(args, q.AfterSeq)
		}
	} else if q.AfterSeq > 0 {
		where = append(where, "seq > ?")
		args = append(args, q.AfterSeq)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	tail := " ORDER BY seq " + order + " LIMIT " + itoa(int64(limit))
	sqlq := `SELECT ` + s.packedEventCols() + ` FROM audit_events`
	if q.Actor != "" {
		// "actor_id = ? OR actor_email = ?" is read through both actor indexes and sorted
		// whole (or, worse, by walking seq until enough rows match): every event of the
		// actor, for one page. Each side below reads only its own page from its index
		// (actor, seq), and the union keeps the page of the two.
		rest, restArgs := where[1:], args[2:]
		side := func(col string) string {
			return `SELECT ` + s.packedEventCols() + ` FROM audit_events WHERE ` + strings.Join(append([]string{col + " = ?"}, rest...), " AND ") + tail
		}
		sqlq = `SELECT * FROM (` + side("actor_id") + `) AS by_id UNION SELECT * FROM (` + side("actor_email") + `) AS by_email` + tail
		args = append(append(append([]any{q.Actor}, restArgs...), q.Actor), restArgs...)
	} else {
		if len(where) > 0 {
			sqlq += " WHERE " + strings.Join(where, " AND ")
		}
		sqlq += tail
	}
	rows, err := s.r.QueryContext(ctx, s.q(sqlq), args...)
	if err != nil {
		return nil, fmt.Errorf("search audit: %w", err)
	}
	out, err := s.scanPackedEvents(ctx, rows, 0)
	if err != nil {
		return nil, fmt.Errorf("search audit: %w", err)
	}
	return out, nil
}

// seqAtOrAfter returns the first seq whose time is at or after t (ok=false if none).
func (s *Store) seqAtOrAfter(ctx context.Context, t time.Time) (int64, bool, error) {
	var seq int64
	err := s.r.QueryRowContext(ctx, s.q(`SELECT seq FROM audit_events WHERE time_ms >= ? ORDER BY time_ms, seq LIMIT 1`), ms(t)).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("search audit: find time bound: %w", err)
	}
	return seq, true, nil
}

var _ audit.ParallelReader = (*Store)(nil)

// ParallelReads implements audit.ParallelReader: ReadEvents is safe to call from several
// goroutines (each call takes a connection of the read pool), and returns fewer events than
// asked only at the end of the log. It is the read pool's size (4 for SQLite).
func (s *Store) ParallelReads() int {
	if n := s.r.Stats().MaxOpenConnections; n > 0 {
		return n
	}
	return 4
}
