// Package adminapi serves accessbroker's admin HTTP API under /api/v1: grants (list, revoke),
// the audit trail (search, paginated), reports and proxied database sessions. Every request needs the configured bearer
// token; anything else is answered 401, acted on in no way, and recorded (rate-limited) as a
// request.rejected audit event.
package adminapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// Grants is what the API needs to read and end grants.
type Grants interface {
	ListGrants(ctx context.Context, f grants.GrantFilter) ([]grants.Grant, error)
	GetGrant(ctx context.Context, id string) (grants.Grant, error)
}

// Revoker ends a grant on an operator's behalf (grants.Manager implements it).
type Revoker interface {
	Revoke(ctx context.Context, grantID string, cause grants.RevokeCause, actor audit.Actor, reason string) (grants.Grant, error)
}

// Searcher searches the audit trail.
type Searcher interface {
	Search(ctx context.Context, q audit.Query) ([]audit.Event, error)
}

// Recorder appends audit-only events (grants.Manager implements it).
type Recorder interface {
	Record(ctx context.Context, events ...*audit.Event) error
}

// Reporter renders a report for [since, until) in a format (markdown, json or csv). Optional.
type Reporter interface {
	Report(ctx context.Context, since, until time.Time, format string) (contentType string, body []byte, err error)
}

// Config wires the API.
type Config struct {
	Token    string // bearer token; empty disables the API (every request 401)
	Grants   Grants
	Revoker  Revoker
	Searcher Searcher
	Recorder Recorder
	Reporter Reporter // nil: /api/v1/report answers 501
	Clock    grants.Clock
	Logger   *slog.Logger
}

// API is the http.Handler for /api/v1/.
type API struct {
	cfg      Config
	tokenSum [32]byte
	mux      *http.ServeMux
	limiter  rejectLimiter
}

// New returns the API handler. Mount it at /api/v1/.
func New(cfg Config) *API {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &API{cfg: cfg, tokenSum: sha256.Sum256([]byte(cfg.Token)), mux: http.NewServeMux()}
	for _, rt := range a.routes() {
		a.mux.HandleFunc(rt.method+" "+Prefix+rt.path, a.handle(rt.op, rt.h))
	}
	return a
}

// Prefix is where the API is mounted.
const Prefix = "/api/v1"

// route is one operation of the API; openapi.json describes each (TestOpenAPIDescribesEveryRoute).
type route struct {
	method, path, op string
	h                func(http.ResponseWriter, *http.Request) error
}

func (a *API) routes() []route {
	return []route{
		{"GET", "/grants", "list grants", a.listGrants},
		{"GET", "/grants/{id}", "get grant", a.getGrant},
		{"POST", "/grants/{id}/revoke", "revoke grant", a.revokeGrant},
		{"GET", "/audit", "search audit", a.searchAudit},
		{"GET", "/report", "report", a.report},
		{"GET", "/sessions", "list sessions", a.listSessions},
		{"GET", "/sessions/{id}", "get session", a.getSession},
	}
}

//go:embed openapi.json
var openAPI []byte

// ServeHTTP authenticates, then routes. The OpenAPI description (GET /api/v1/openapi.json)
// needs no token: it holds nothing secret.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == Prefix+"/openapi.json" {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPI)
		return
	}
	if !a.authorized(r) {
		a.reject(r)
		w.Header().Set("WWW-Authenticate", `Bearer realm="accessbroker"`)
		writeError(w, http.StatusUnauthorized, "a valid bearer token is required (Authorization: Bearer <api.token>)")
		return
	}
	a.mux.ServeHTTP(w, r)
}

func (a *API) authorized(r *http.Request) bool {
	if a.cfg.Token == "" {
		return false
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(sum[:], a.tokenSum[:]) == 1
}

// Rejection limits: at most one request.rejected event per source host per rejectEvery, and
// at most rejectBurst events per rejectEvery from all sources together, so that a flood of
// unauthenticated calls (from one host's many ports or from many hosts) cannot flood the
// audit log. Every call beyond them is still answered 401.
const (
	rejectEvery = time.Minute
	rejectBurst = 30
)

// reject records an unauthenticated call, within the rejection limits.
func (a *API) reject(r *http.Request) {
	src := remoteHost(r)
	now := a.cfg.Clock.Now()
	allowed, firstDrop := a.limiter.allow(src, now)
	if firstDrop {
		a.cfg.Logger.WarnContext(r.Context(), "admin API: too many unauthenticated calls; further ones in this window are answered 401 without an audit event",
			"limit", rejectBurst, "window", rejectEvery.String())
	}
	if !allowed || a.cfg.Recorder == nil {
		return
	}
	ev := &audit.Event{Actor: audit.Actor{Kind: audit.ActorUnknown, ID: src}, Action: audit.ActionRequestRejected,
		Reason: "admin API: missing or wrong bearer token", Evidence: map[string]string{"path": r.URL.Path, "method": r.Method}}
	if err := a.cfg.Recorder.Record(context.WithoutCancel(r.Context()), ev); err != nil {
		a.cfg.Logger.Error("record rejected admin API call", "error", err)
	}
}

// remoteHost is the caller's host without its port ("::1" for "[::1]:50123"), or the whole
// RemoteAddr when it has no port.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// rejectLimiter applies the rejection limits.
type rejectLimiter struct {
	mu          sync.Mutex
	last        map[string]time.Time
	windowStart time.Time
	inWindow    int
	dropLogged  bool
}

// allow reports whether a rejection event from src may be written now, and whether this is
// the first call in the current window turned away by the global cap (to be logged once).
func (l *rejectLimiter) allow(src string, now time.Time) (allowed, firstDrop bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	if now.Sub(l.windowStart) >= rejectEvery {
		l.windowStart, l.inWindow, l.dropLogged = now, 0, false
		for k, t := range l.last { // forget sources quiet for a whole window
			if now.Sub(t) >= rejectEvery {
				delete(l.last, k)
			}
		}
	}
	if t, ok := l.last[src]; ok && now.Sub(t) < rejectEvery {
		return false, false
	}
	if l.inWindow >= rejectBurst {
		firstDrop = !l.dropLogged
		l.dropLogged = true
		return false, firstDrop
	}
	l.last[src] = now
	l.inWindow++
	return true, false
}

// GrantJSON is a grant as the API shows it (never a secret: grants hold none).
type GrantJSON struct {
	ID          string            `json:"id"`
	RequestID   string            `json:"request_id,omitempty"`
	Resource    string            `json:"resource"`
	Provider    string            `json:"provider"`
	Person      grants.Person     `json:"person"`
	State       grants.State      `json:"state"`
	Reason      string            `json:"reason"`
	IncidentID  string            `json:"incident_id,omitempty"`
	CreatedAt   string            `json:"created_at"`
	IssuedAt    string            `json:"issued_at,omitempty"`
	ExpiresAt   string            `json:"expires_at"`
	RevokedAt   string            `json:"revoked_at,omitempty"`
	RevokeCause string            `json:"revoke_cause,omitempty"`
	Attempts    int               `json:"attempts"`
	NextAttempt string            `json:"next_attempt_at,omitempty"`
	LastError   string            `json:"last_error,omitempty"`
	Handle      map[string]string `json:"handle,omitempty"`
	// AccessMissingAt is when the drift reconciler found the grant's access gone upstream
	// (grant.access_missing); absent while it is there.
	AccessMissingAt string `json:"access_missing_at,omitempty"`
}

func grantJSON(g grants.Grant) GrantJSON {
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return grants.Timestamp(t)
	}
	v := GrantJSON{ID: g.ID, RequestID: g.RequestID, Resource: g.Resource, Provider: g.Provider, Person: g.Person, State: g.State,
		Reason: g.Reason, IncidentID: g.IncidentID, CreatedAt: ts(g.CreatedAt), IssuedAt: ts(g.IssuedAt), ExpiresAt: ts(g.ExpiresAt),
		RevokedAt: ts(g.RevokedAt), RevokeCause: string(g.RevokeCause), Attempts: g.Attempts, LastError: g.LastError, Handle: g.Handle.Data,
		AccessMissingAt: ts(g.AccessMissingAt)}
	if g.State == grants.StateRevoking || g.State == grants.StateRevokeFailed {
		v.NextAttempt = ts(g.DueAt)
	}
	return v
}

func (a *API) listGrants(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := grants.GrantFilter{Resource: q.Get("resource"), SlackUser: q.Get("slack_user"), IncidentID: q.Get("incident"), Limit: 100}
	if s := q.Get("state"); s != "" {
		st, err := grants.ParseState(s)
		if err != nil {
			return badRequest("state: %v", err)
		}
		f.States = []grants.State{st}
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return badRequest("limit must be a whole number from 1 to 1000")
		}
		f.Limit = n
	}
	list, err := a.cfg.Grants.ListGrants(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]GrantJSON, 0, len(list))
	for _, g := range list {
		out = append(out, grantJSON(g))
	}
	writeJSON(w, http.StatusOK, map[string]any{"grants": out})
	return nil
}

func (a *API) getGrant(w http.ResponseWriter, r *http.Request) error {
	id, err := grantID(r)
	if err != nil {
		return err
	}
	g, err := a.cfg.Grants.GetGrant(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, grantJSON(g))
	return nil
}

func grantID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !grants.ValidID("g", id) {
		return "", badRequest("%q is not a grant id (g_ followed by 16 characters)", id)
	}
	return id, nil
}

// RevokeBody is the JSON body of POST /api/v1/grants/{id}/revoke.
type RevokeBody struct {
	Reason   string `json:"reason"`
	Operator string `json:"operator"`
}

func (a *API) revokeGrant(w http.ResponseWriter, r *http.Request) error {
	id, err := grantID(r)
	if err != nil {
		return err
	}
	var body RevokeBody
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return badRequest(`body must be JSON {"reason": "...", "operator": "..."}: %v`, err)
	}
	body.Reason, body.Operator = strings.TrimSpace(body.Reason), strings.TrimSpace(body.Operator)
	if body.Reason == "" || body.Operator == "" || len(body.Reason) > 1000 || len(body.Operator) > 200 {
		return badRequest("reason (up to 1000 characters) and operator (who is revoking) are both required")
	}
	g, err := a.cfg.Revoker.Revoke(r.Context(), id, grants.CauseManual, audit.Actor{Kind: audit.ActorOperator, ID: "api:" + body.Operator}, body.Reason)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, grantJSON(g))
	return nil
}

// AuditPage is one page of GET /api/v1/audit. Next is the cursor for the following page
// (pass it as after=), empty on the last page.
type AuditPage struct {
	Events []audit.Event `json:"events"`
	Next   string        `json:"next,omitempty"`
}

func (a *API) searchAudit(w http.ResponseWriter, r *http.Request) error {
	q, err := parseAuditQuery(r)
	if err != nil {
		return badRequest("%v", err)
	}
	evs, err := a.cfg.Searcher.Search(r.Context(), q)
	if err != nil {
		return err
	}
	page := AuditPage{Events: evs}
	if page.Events == nil {
		page.Events = []audit.Event{}
	}
	if len(evs) == q.Limit {
		page.Next = strconv.FormatInt(evs[len(evs)-1].Seq, 10)
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// parseAuditQuery reads the same filters as `accessbroker audit search`: actor, resource,
// action, grant, request, since, until (RFC 3339), limit (1..1000, default 100), after (the
// page cursor) and order (asc, the default, or desc).
func parseAuditQuery(r *http.Request) (audit.Query, error) {
	v := r.URL.Query()
	q := audit.Query{Actor: v.Get("actor"), Resource: v.Get("resource"), Action: audit.Action(v.Get("action")),
		GrantID: v.Get("grant"), RequestID: v.Get("request"), Limit: 100}
	for name, dst := range map[string]*time.Time{"since": &q.Since, "until": &q.Until} {
		if s := v.Get(name); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return q, fmt.Errorf("%s must be an RFC 3339 time such as 2026-11-22T09:00:00Z", name)
			}
			*dst = t.UTC()
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return q, errors.New("limit must be a whole number from 1 to 1000")
		}
		q.Limit = n
	}
	if s := v.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return q, errors.New("after must be the next cursor of a previous page")
		}
		q.AfterSeq = n
	}
	switch v.Get("order") {
	case "", "asc":
	case "desc":
		q.Descending = true
	default:
		return q, errors.New("order must be asc or desc")
	}
	return q, q.Validate()
}

func (a *API) report(w http.ResponseWriter, r *http.Request) error {
	if a.cfg.Reporter == nil {
		return &apiError{status: http.StatusNotImplemented, msg: "reports are not available in this build"}
	}
	v := r.URL.Query()
	now := a.cfg.Clock.Now()
	since, until := now.Add(-168*time.Hour), now
	if s := v.Get("since"); s != "" {
		if d, err := time.ParseDuration(s); err == nil && d > 0 {
			since = now.Add(-d)
		} else if t, err := time.Parse(time.RFC3339, s); err == nil {
			since = t.UTC()
		} else {
			return badRequest("since must be a duration such as 168h or an RFC 3339 time")
		}
	}
	if s := v.Get("until"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return badRequest("until must be an RFC 3339 time")
		}
		until = t.UTC()
	}
	if !since.Before(until) {
		return badRequest("since must be before until")
	}
	format := v.Get("format")
	if format == "" {
		format = "json"
	}
	if format != "json" && format != "markdown" && format != "csv" {
		return badRequest("format must be json, markdown or csv")
	}
	ct, body, err := a.cfg.Reporter.Report(r.Context(), since, until, format)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", ct)
	w.Write(body)
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
