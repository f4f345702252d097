package broker

import (
	"errors"
	"strings"

	"github.com/accessbroker/accessbroker/grants"
)

// ErrDuplicate: the same delivery (same ExternalKey) was already recorded; nothing new was
// done.
var ErrDuplicate = errors.New("duplicate delivery")

// ErrBusy: another process is doing the same work right now (two deliveries of one page on
// two replicas); nothing was done here and a retry will find the other's result. Callers log
// it as routine, not as a failure.
var ErrBusy = errors.New("busy elsewhere; retry later")

// ErrRefused marks a Refusal, for errors.Is.
var ErrRefused = errors.New("refused")

// Refusal is a request the broker turned down on purpose (bad input, not allowed). Message is
// plain text for the person who asked; it was also recorded as a request.rejected audit event
// unless the refusal is about a request that never existed.
type Refusal struct {
	Message string
	Err     error // the underlying cause, if any
}

// Error returns the message for the person.
func (r *Refusal) Error() string { return r.Message }

// Unwrap returns ErrRefused and the cause.
func (r *Refusal) Unwrap() []error {
	if r.Err == nil {
		return []error{ErrRefused}
	}
	return []error{ErrRefused, r.Err}
}

// UserMessage returns the words to show a person for err: a Refusal's message, or a generic
// sentence for internal failures (whose details belong in the logs, not in Slack).
func UserMessage(err error) string {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Message
	}
	if errors.Is(err, grants.ErrAuditSuspect) {
		return "Access is paused: accessbroker found its audit log damaged and issues or extends no grant until the operators have investigated (they have been alerted). Nothing was granted."
	}
	if errors.Is(err, grants.ErrAudit) {
		return "The audit log is unavailable, so nothing was done (no audit, no access). Please try again shortly."
	}
	return "Something went wrong on accessbroker's side and nothing was done. Please try again; if it keeps failing, tell the operators."
}

// plain strips the error-kind suffixes that grants appends (": invalid input"), leaving the
// sentence the grants package wrote for people.
func plain(err error) string {
	s := err.Error()
	for _, kind := range []error{grants.ErrInvalid, grants.ErrNotFound, grants.ErrConflict} {
		s = strings.TrimSuffix(s, ": "+kind.Error())
	}
	return s
}
