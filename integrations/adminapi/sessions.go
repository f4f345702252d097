package adminapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// SessionsPage is the body of GET /api/v1/sessions.
type SessionsPage struct {
	Sessions []audit.Session `json:"sessions"`
}

// listSessions is GET /api/v1/sessions[?grant=G][&active=true][&limit=N]: proxied database
// sessions from the audit log, newest first, without their statements.
func (a *API) listSessions(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := audit.SessionFilter{GrantID: q.Get("grant"), Limit: 100}
	if f.GrantID != "" && !grants.ValidID("g", f.GrantID) {
		return badRequest("grant %q is not a grant id (g_ followed by 16 characters)", f.GrantID)
	}
	switch q.Get("active") {
	case "", "false":
	case "true":
		f.ActiveOnly = true
	default:
		return badRequest("active must be true or false")
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return badRequest("limit must be a whole number from 1 to 1000")
		}
		f.Limit = n
	}
	list, err := audit.ListSessions(r.Context(), a.cfg.Searcher, f)
	if err != nil {
		return err
	}
	if list == nil {
		list = []audit.Session{}
	}
	writeJSON(w, http.StatusOK, SessionsPage{Sessions: list})
	return nil
}

// getSession is GET /api/v1/sessions/{id}: one session with its statements in order.
func (a *API) getSession(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !grants.ValidID("s", id) {
		return badRequest("%q is not a session id (s_ followed by 16 characters)", id)
	}
	s, err := audit.GetSession(r.Context(), a.cfg.Searcher, id)
	if errors.Is(err, audit.ErrNoSession) {
		return &apiError{status: http.StatusNotFound, msg: err.Error()}
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s)
	return nil
}
