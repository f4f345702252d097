package adminapi

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/accessbroker/accessbroker/grants"
)

// apiError is an answer for the caller that is not a fault of the broker: its status, and a
// message saying what was wrong and how to fix it.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// badRequest is a 400 whose message tells the caller what to send instead.
func badRequest(format string, args ...any) error {
	return &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// statusOfKind is the one table from the error kinds of grants to HTTP statuses. Their
// messages (such as "grant g_…: not found") are shown to the caller; any other error is a
// fault of the broker: 500, logged, and not shown.
var statusOfKind = []struct {
	kind   error
	status int
}{
	{grants.ErrNotFound, http.StatusNotFound},
	{grants.ErrInvalid, http.StatusBadRequest},
	{grants.ErrConflict, http.StatusConflict},
	{grants.ErrIllegalTransition, http.StatusConflict},
	{grants.ErrAudit, http.StatusServiceUnavailable}, // no audit, no action: try again later
}

// statusOf returns the status and the caller's message for err, and whether it is the broker's
// own fault.
func statusOf(err error) (status int, msg string, internal bool) {
	if ae, ok := errors.AsType[*apiError](err); ok {
		return ae.status, ae.msg, false
	}
	for _, k := range statusOfKind {
		if errors.Is(err, k.kind) {
			if k.status >= 500 {
				return k.status, k.kind.Error() + "; try again later", true
			}
			return k.status, err.Error(), false
		}
	}
	return http.StatusInternalServerError, "", true
}

// handle runs an API handler and answers its error with the status of statusOf.
func (a *API) handle(op string, h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		status, msg, internal := statusOf(err)
		if internal {
			a.cfg.Logger.ErrorContext(r.Context(), "admin API: "+op, "error", err, "status", status)
			if msg == "" {
				msg = op + " failed; see the broker's log"
			}
		}
		writeError(w, status, msg)
	}
}
