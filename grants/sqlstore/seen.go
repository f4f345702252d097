package sqlstore

import (
	"context"
	"fmt"
)

// Forget removes a key recorded by Seen, so that a redelivery is acted on again (after
// processing failed in a way a retry may fix).
func (s *Store) Forget(ctx context.Context, key string) error {
	if _, err := s.w.ExecContext(ctx, s.q(`DELETE FROM seen_keys WHERE key = ?`), key); err != nil {
		return fmt.Errorf("forget seen key: %w", err)
	}
	return nil
}
