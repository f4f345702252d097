package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/accessbroker/accessbroker/grants"
)

var _ grants.SinkStore = (*Store)(nil)

// SinkCursor implements grants.SinkStore: the seq of the last event delivered to the named
// audit sink, 0 when it has none yet.
func (s *Store) SinkCursor(ctx context.Context, sink string) (int64, error) {
	var seq int64
	err := s.r.QueryRowContext(ctx, s.q(`SELECT seq FROM sink_cursors WHERE name = ?`), sink).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the cursor of audit sink %s: %w", sink, err)
	}
	return seq, nil
}

// AdvanceSinkCursor implements grants.SinkStore: the cursor moves to seq unless it is
// already there or past it (a replica that lost its lease mid-delivery cannot move it back).
func (s *Store) AdvanceSinkCursor(ctx context.Context, sink string, seq int64) error {
	_, err := s.w.ExecContext(ctx, s.q(`INSERT INTO sink_cursors(name, seq, updated_ms) VALUES (?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET seq = excluded.seq, updated_ms = excluded.updated_ms
		WHERE sink_cursors.seq < excluded.seq`), sink, seq, ms(s.clock.Now()))
	if err != nil {
		return fmt.Errorf("advance the cursor of audit sink %s to seq %d: %w", sink, seq, err)
	}
	return nil
}
