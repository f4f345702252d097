package grants

import "errors"

// Error kinds. Callers compare with errors.Is; edges turn them into status codes and words.
var (
	// ErrNotFound: no such grant or request. From a Provider's Revoke it is never returned:
	// "already gone" is success.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the row changed since it was read (optimistic concurrency) or a unique key
	// already exists.
	ErrConflict = errors.New("conflict")
	// ErrIllegalTransition: the state machine forbids the change.
	ErrIllegalTransition = errors.New("illegal state transition")
	// ErrInvalid: the input is malformed or out of bounds.
	ErrInvalid = errors.New("invalid input")
	// ErrGone is what a Provider may wrap when the thing to revoke no longer exists; the
	// revoker treats it as a completed revocation.
	ErrGone = errors.New("already gone")
	// ErrNeedsOperator marks a provider error that retrying alone will not fix (missing
	// permission, bad configuration). The revoker still retries, and alerts every time.
	ErrNeedsOperator = errors.New("needs an operator")
	// ErrAudit: the audit event could not be written, so nothing was done (fail closed).
	ErrAudit = errors.New("audit log unavailable")
)
