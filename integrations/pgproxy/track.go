package pgproxy

import (
	"encoding/hex"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Statement is one statement a session ran, as the proxy saw it on the wire: what the client
// sent and how the server answered. It never holds result rows, nor bind parameter values
// unless its resource records them.
type Statement struct {
	Seq      int    // order in the session, from 1
	Protocol string // "simple" (Query) or "extended" (Parse/Bind/Execute)
	Text     string // the whole statement text (truncated only when recorded)
	Params   int    // bind parameters (extended protocol)
	// Values are the bound values, when the resource records them (RecordParameters): a
	// nil entry is NULL; see formatValue.
	Values []*string
	// ValuesCut: a value was longer than ValueLimit and is recorded cut.
	ValuesCut bool
	Tag       string // command tag of the last command, e.g. "SELECT 1", "COPY 3"
	Commands  int    // commands completed (a simple Query may hold several)
	Rows      int64  // rows affected or returned, summed over the commands' tags
	SQLState  string // SQLSTATE of the error, if the statement failed
	// Interrupted: the session ended before the server answered (SQLState then says why).
	Interrupted bool
	Start       time.Time
	End         time.Time
}

type pendingKind byte

const (
	pendQuery   pendingKind = 'Q' // a simple Query, finished by ReadyForQuery
	pendParse   pendingKind = 'P' // a Parse, recorded only if it fails
	pendExecute pendingKind = 'E' // an Execute, finished by CommandComplete and friends
	pendSync    pendingKind = 'S' // a Sync, finished by ReadyForQuery
)

type pending struct {
	kind pendingKind
	st   Statement
}

type portal struct {
	text   string
	params int
	values []*string
	cut    bool
}

// tracker follows one session's conversation: the client side (clientMessage) queues what
// the server owes an answer to, the server side (serverMessage) pairs answers with them, in
// protocol order, and hands each finished statement to done. Both sides may run on
// different goroutines.
type tracker struct {
	now    func() time.Time
	done   func(Statement)
	values bool // record bind values

	mu       sync.Mutex
	seq      int
	prepared map[string]string // statement name → text
	portals  map[string]portal
	queue    []*pending
	finished []Statement // finished under mu, handed to done after it is released
}

func newTracker(now func() time.Time, done func(Statement), values bool) *tracker {
	return &tracker{now: now, done: done, values: values, prepared: map[string]string{}, portals: map[string]portal{}}
}

// clientMessage notes a message the client sent, before it is forwarded upstream.
func (t *tracker) clientMessage(msg pgproto3.FrontendMessage) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch m := msg.(type) {
	case *pgproto3.Query:
		t.push(pendQuery, Statement{Protocol: "simple", Text: m.String})
	case *pgproto3.Parse:
		t.prepared[m.Name] = m.Query
		t.push(pendParse, Statement{Protocol: "extended", Text: m.Query, Params: len(m.ParameterOIDs)})
	case *pgproto3.Bind:
		pt := portal{text: t.prepared[m.PreparedStatement], params: len(m.Parameters)}
		if t.values {
			pt.values, pt.cut = bindValues(m)
		}
		t.portals[m.DestinationPortal] = pt
	case *pgproto3.Execute:
		p := t.portals[m.Portal]
		t.push(pendExecute, Statement{Protocol: "extended", Text: p.text, Params: p.params, Values: p.values, ValuesCut: p.cut})
	case *pgproto3.Close:
		if m.ObjectType == 'S' {
			delete(t.prepared, m.Name)
		} else {
			delete(t.portals, m.Name)
		}
	case *pgproto3.Sync:
		t.push(pendSync, Statement{})
	case *pgproto3.FunctionCall:
		t.push(pendQuery, Statement{Protocol: "function_call", Text: "function call", Params: len(m.Arguments)})
	}
}

func (t *tracker) push(k pendingKind, st Statement) {
	st.Start = t.now()
	t.queue = append(t.queue, &pending{kind: k, st: st})
}

func (t *tracker) head() *pending {
	if len(t.queue) == 0 {
		return nil
	}
	return t.queue[0]
}

func (t *tracker) pop() { t.queue[0] = nil; t.queue = t.queue[1:] }

// finish pops the head and keeps it as a finished statement for report.
func (t *tracker) finish() {
	p := t.head()
	t.pop()
	t.seq++
	p.st.Seq = t.seq
	p.st.End = t.now()
	t.finished = append(t.finished, p.st)
}

// unlockAndReport releases mu, then hands the statements finished under it to done: hashing
// and queueing a statement for the audit log must not hold up the other direction's relay.
func (t *tracker) unlockAndReport() {
	out := t.finished
	t.finished = nil
	t.mu.Unlock()
	for _, st := range out {
		t.done(st)
	}
}

// serverMessage notes a message the server sent, before it is forwarded to the client.
func (t *tracker) serverMessage(msg pgproto3.BackendMessage) {
	t.mu.Lock()
	defer t.unlockAndReport()
	h := t.head()
	switch m := msg.(type) {
	case *pgproto3.ParseComplete:
		if h != nil && h.kind == pendParse {
			t.pop()
		}
	case *pgproto3.CommandComplete:
		if h == nil {
			return
		}
		tag := pgconn.NewCommandTag(string(m.CommandTag))
		switch h.kind {
		case pendQuery:
			h.st.Tag, h.st.Commands, h.st.Rows = tag.String(), h.st.Commands+1, h.st.Rows+tag.RowsAffected()
		case pendExecute:
			h.st.Tag, h.st.Commands, h.st.Rows = tag.String(), 1, tag.RowsAffected()
			t.finish()
		}
	case *pgproto3.EmptyQueryResponse, *pgproto3.PortalSuspended:
		if h != nil && h.kind == pendExecute {
			if _, ok := m.(*pgproto3.PortalSuspended); ok {
				h.st.Tag = "PORTAL SUSPENDED"
			}
			t.finish()
		}
	case *pgproto3.ErrorResponse:
		if h == nil {
			return
		}
		h.st.SQLState = m.Code
		switch h.kind {
		case pendParse, pendExecute:
			t.finish()
			// The server skips everything up to the next Sync.
			for h := t.head(); h != nil && h.kind != pendSync; h = t.head() {
				t.pop()
			}
		}
	case *pgproto3.ReadyForQuery:
		for h := t.head(); h != nil; h = t.head() {
			switch h.kind {
			case pendQuery:
				t.finish()
				return
			case pendSync:
				t.pop()
				return
			default: // skipped after an error, or never answered
				t.pop()
			}
		}
	}
}

// statements returns how many statements finished so far.
func (t *tracker) statements() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seq
}

// busy reports whether the server still owes an answer (a statement may be running).
func (t *tracker) busy() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.queue) > 0
}

// abort reports every statement still waiting for its answer as interrupted with code: the
// session is ending and the server will not answer.
func (t *tracker) abort(code string) {
	t.mu.Lock()
	defer t.unlockAndReport()
	for h := t.head(); h != nil; h = t.head() {
		if h.kind != pendQuery && h.kind != pendExecute {
			t.pop()
			continue
		}
		h.st.Interrupted = true
		if h.st.SQLState == "" {
			h.st.SQLState = code
		}
		t.finish()
	}
}

// ValueLimit is the most bytes of one bind value kept in a statement's record.
const ValueLimit = 256

// bindValues formats a Bind's parameter values for the record: NULL stays nil, a text-format
// value that is valid UTF-8 is kept as it is, anything else (binary format, invalid text) as
// "\\x" and hex, PostgreSQL's bytea notation. Each value is cut at ValueLimit bytes (on a
// character boundary for text); cut says whether any was.
func bindValues(m *pgproto3.Bind) (values []*string, cut bool) {
	values = make([]*string, len(m.Parameters))
	for i, v := range m.Parameters {
		if v == nil {
			continue
		}
		var s string
		var c bool
		if paramFormat(m.ParameterFormatCodes, i) == 0 && utf8.Valid(v) {
			s, c = truncateText(string(v), ValueLimit)
		} else {
			c = len(v) > ValueLimit
			s = "\\x" + hex.EncodeToString(v[:min(len(v), ValueLimit)])
		}
		cut = cut || c
		values[i] = &s
	}
	return values, cut
}

// paramFormat is parameter i's format code: none given means text for all, one means that
// one for all (the protocol's rule for Bind).
func paramFormat(codes []int16, i int) int16 {
	switch len(codes) {
	case 0:
		return 0
	case 1:
		return codes[0]
	}
	if i < len(codes) {
		return codes[i]
	}
	return 0
}
