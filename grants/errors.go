package grants

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
)

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
	// ErrAuditSuspect: the audit log failed verification, so no new grant is issued or
	// extended until an operator clears the state (revocations go on). The error is an
	// *AuditSuspectError.
	ErrAuditSuspect = errors.New("audit log suspect")
	// ErrPendingLimit: the requester already has as many pending requests for the resource
	// as its policy allows; nothing was written. The error is a *PendingLimitError.
	ErrPendingLimit = errors.New("too many pending requests")
)

// errorKinds are the kinds a scrubbed error keeps for errors.Is.
var errorKinds = []error{ErrNotFound, ErrConflict, ErrIllegalTransition, ErrInvalid, ErrGone, ErrNeedsOperator, ErrAudit,
	context.Canceled, context.DeadlineExceeded}

// scrubError returns err with every secret (values of 4 bytes or more) replaced by
// [REDACTED] in its text. If the text held none, err is returned as is. Otherwise the result
// is a new error that keeps only err's kinds for errors.Is: the secret-bearing chain is
// dropped, so no caller can reach the secret through errors.As or Unwrap either.
func scrubError(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := ScrubText(msg, secrets)
	if clean == msg {
		return err
	}
	se := &scrubbedError{msg: clean}
	for _, k := range errorKinds {
		if errors.Is(err, k) {
			se.kinds = append(se.kinds, k)
		}
	}
	return se
}

// ScrubText replaces every secret (values of 4 bytes or more) in msg by [REDACTED], longest
// first, so that a secret containing another is removed whole.
func ScrubText(msg string, secrets []string) string {
	if len(secrets) == 0 {
		return msg
	}
	sorted := make([]string, 0, len(secrets))
	for _, s := range secrets {
		if len(s) >= 4 {
			sorted = append(sorted, s)
		}
	}
	slices.SortFunc(sorted, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	for _, s := range sorted {
		msg = strings.ReplaceAll(msg, s, redacted)
	}
	return msg
}

// scrubbedError is an error whose text had secrets removed; it unwraps to its kinds only.
type scrubbedError struct {
	msg   string
	kinds []error
}

func (e *scrubbedError) Error() string   { return e.msg }
func (e *scrubbedError) Unwrap() []error { return e.kinds }
