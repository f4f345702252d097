package grants

// BatchQueued is how many revocations of resource wait in its batcher for a provider call
// (for tests that gate a BatchRevoker until a batch has gathered).
func (r *Revoker) BatchQueued(resource string) int {
	r.semMu.Lock()
	b := r.batchers[resource]
	r.semMu.Unlock()
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}
