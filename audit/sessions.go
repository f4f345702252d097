package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Actions of the PostgreSQL session proxy (integrations/pgproxy). Each names its grant.
const (
	ActionSessionStarted     Action = "session.started"
	ActionSessionStatement   Action = "session.statement"
	ActionSessionEnded       Action = "session.ended"
	ActionSessionLoginFailed Action = "session.login_failed"
)

// Session is one proxied database session as the audit log tells it: its session.started,
// session.statement and session.ended events.
type Session struct {
	ID              string      `json:"id"`
	GrantID         string      `json:"grant_id"`
	Resource        string      `json:"resource"`
	Person          string      `json:"person,omitempty"`
	Role            string      `json:"role,omitempty"`
	Database        string      `json:"database,omitempty"`
	ClientAddr      string      `json:"client_addr,omitempty"`
	ApplicationName string      `json:"application_name,omitempty"`
	Started         time.Time   `json:"started"`
	Ended           *time.Time  `json:"ended,omitempty"` // nil while active (or if the end was never recorded)
	EndReason       string      `json:"end_reason,omitempty"`
	Duration        string      `json:"duration,omitempty"`
	BytesIn         int64       `json:"bytes_in,omitempty"`  // client → database
	BytesOut        int64       `json:"bytes_out,omitempty"` // database → client
	StatementCount  int         `json:"statement_count"`
	Statements      []Statement `json:"statements,omitempty"` // only in a single session's view
}

// Active reports whether no session.ended was recorded.
func (s Session) Active() bool { return s.Ended == nil }

// Statement is one session.statement event.
type Statement struct {
	Order     int       `json:"order"`
	Time      time.Time `json:"time"`
	Protocol  string    `json:"protocol"`
	Text      string    `json:"text"`
	Truncated bool      `json:"text_truncated,omitempty"`
	SHA256    string    `json:"text_sha256"`
	Params    int       `json:"params"`
	Tag       string    `json:"tag,omitempty"`
	Rows      int64     `json:"rows,omitempty"`
	SQLState  string    `json:"sqlstate,omitempty"`
	// Interrupted: the session ended before the database answered.
	Interrupted bool   `json:"interrupted,omitempty"`
	Duration    string `json:"duration"`
	// ParamValues are the bound values (a JSON array), only on a resource that records
	// them (postgres.record_parameters).
	ParamValues json.RawMessage `json:"param_values,omitempty"`
	// ParamValuesCut: a value was cut at the proxy's bound.
	ParamValuesCut bool `json:"param_values_truncated,omitempty"`
}

// SessionFilter selects sessions.
type SessionFilter struct {
	GrantID    string // only this grant's sessions
	ActiveOnly bool   // only sessions with no session.ended
	Limit      int    // at most this many, newest first; 0 means 100
}

// ListSessions returns sessions newest first, without their statements. It reads
// session.started events newest first only until it has Limit sessions, and the
// session.ended events from the oldest of those on.
func ListSessions(ctx context.Context, s Searcher, f SessionFilter) ([]Session, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	var out []Session
	q := Query{Action: ActionSessionStarted, GrantID: f.GrantID, Descending: true, Limit: min(MaxQueryLimit, max(f.Limit, 100))}
	// A session ends after it starts: the ends of a page's sessions are from its oldest
	// start on. Each page reads only the ends before those already read.
	ends := map[string]Event{}
	var endsFrom time.Time
	for {
		page, err := s.Search(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("search %s events: %w", q.Action, err)
		}
		if len(page) == 0 {
			return out, nil
		}
		oldest := page[len(page)-1].Time
		ended, err := searchAll(ctx, s, Query{Action: ActionSessionEnded, GrantID: f.GrantID, Since: oldest, Until: endsFrom})
		if err != nil {
			return nil, err
		}
		for _, e := range ended {
			ends[e.Evidence["session_id"]] = e
		}
		endsFrom = oldest
		for _, e := range page {
			ss := sessionOf(e)
			if end, ok := ends[ss.ID]; ok {
				ss.end(end)
			}
			if f.ActiveOnly && !ss.Active() {
				continue
			}
			out = append(out, ss)
			if len(out) == f.Limit {
				return out, nil
			}
		}
		if len(page) < q.Limit {
			return out, nil
		}
		q.AfterSeq = page[len(page)-1].Seq
	}
}

// ErrNoSession: no session.started event has that session id.
var ErrNoSession = fmt.Errorf("no such session")

// GetSession returns one session with its statements in order. An unknown id is
// ErrNoSession.
func GetSession(ctx context.Context, s Searcher, id string) (Session, error) {
	// Newest first, stopping at the session: the sessions people look up are recent ones.
	var start *Event
	q := Query{Action: ActionSessionStarted, Descending: true, Limit: MaxQueryLimit}
	for start == nil {
		page, err := s.Search(ctx, q)
		if err != nil {
			return Session{}, fmt.Errorf("search %s events: %w", q.Action, err)
		}
		if i := slices.IndexFunc(page, func(e Event) bool { return e.Evidence["session_id"] == id }); i >= 0 {
			start = &page[i]
			break
		}
		if len(page) < q.Limit {
			return Session{}, fmt.Errorf("session %q: %w", id, ErrNoSession)
		}
		q.AfterSeq = page[len(page)-1].Seq
	}
	ss := sessionOf(*start)
	events, err := searchAll(ctx, s, Query{GrantID: ss.GrantID, Since: ss.Started})
	if err != nil {
		return Session{}, err
	}
	ss.Statements = []Statement{}
	for _, e := range events {
		if e.Evidence["session_id"] != id {
			continue
		}
		switch e.Action {
		case ActionSessionStatement:
			ss.Statements = append(ss.Statements, statementOf(e))
		case ActionSessionEnded:
			ss.end(e)
		}
	}
	slices.SortStableFunc(ss.Statements, func(a, b Statement) int { return a.Order - b.Order })
	if ss.Active() {
		ss.StatementCount = len(ss.Statements)
	}
	return ss, nil
}

// searchAll pages through every event q matches, in its order.
func searchAll(ctx context.Context, s Searcher, q Query) ([]Event, error) {
	q.Limit = MaxQueryLimit
	var out []Event
	for {
		page, err := s.Search(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("search %s events: %w", q.Action, err)
		}
		out = append(out, page...)
		if len(page) < q.Limit {
			return out, nil
		}
		q.AfterSeq = page[len(page)-1].Seq
	}
}

func sessionOf(e Event) Session {
	ev := e.Evidence
	return Session{ID: ev["session_id"], GrantID: e.GrantID, Resource: e.Resource, Person: ev["person"], Role: ev["role"],
		Database: ev["database"], ClientAddr: ev["client_addr"], ApplicationName: ev["application_name"], Started: e.Time}
}

func (s *Session) end(e Event) {
	t := e.Time
	s.Ended = &t
	s.EndReason = e.Evidence["reason"]
	s.Duration = e.Evidence["duration"]
	s.BytesIn, _ = strconv.ParseInt(e.Evidence["bytes_in"], 10, 64)
	s.BytesOut, _ = strconv.ParseInt(e.Evidence["bytes_out"], 10, 64)
	s.StatementCount, _ = strconv.Atoi(e.Evidence["statements"])
}

func statementOf(e Event) Statement {
	ev := e.Evidence
	st := Statement{Time: e.Time, Protocol: ev["protocol"], Text: ev["text"], Truncated: ev["text_truncated"] == "true",
		SHA256: ev["text_sha256"], Tag: ev["tag"], SQLState: ev["sqlstate"], Interrupted: ev["interrupted"] == "true", Duration: ev["duration"]}
	st.Order, _ = strconv.Atoi(ev["order"])
	st.Params, _ = strconv.Atoi(ev["params"])
	st.Rows, _ = strconv.ParseInt(ev["rows"], 10, 64)
	if v := ev["param_values"]; v != "" && json.Valid([]byte(v)) {
		st.ParamValues = json.RawMessage(v)
		st.ParamValuesCut = ev["param_values_truncated"] == "true"
	}
	return st
}
