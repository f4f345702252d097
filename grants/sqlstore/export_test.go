package sqlstore

// ChainLockKey is the advisory lock key that serialises s's audit appends (PostgreSQL).
func ChainLockKey(s *Store) int64 { return s.chainKey }

// QueuedChanges is how many changes wait in s's group commit for the next transaction.
func QueuedChanges(s *Store) int {
	s.commits.mu.Lock()
	defer s.commits.mu.Unlock()
	return len(s.commits.queue)
}
