package pgproxy

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5/pgproto3"
)

// step is one message in a conversation: from the client (c) or the server (s).
type step struct {
	c pgproto3.FrontendMessage
	s pgproto3.BackendMessage
}

func c(m pgproto3.FrontendMessage) step { return step{c: m} }
func s(m pgproto3.BackendMessage) step  { return step{s: m} }

func cc(tag string) step { return s(&pgproto3.CommandComplete{CommandTag: []byte(tag)}) }

var rfq = s(&pgproto3.ReadyForQuery{TxStatus: 'I'})

func TestTrackerPairsAnswersWithStatements(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		steps []step
		want  []Statement
	}{
		{"simple query with several commands", []step{
			c(&pgproto3.Query{String: "INSERT INTO t VALUES (1); INSERT INTO t VALUES (2), (3)"}),
			cc("INSERT 0 1"), cc("INSERT 0 2"), rfq,
		}, []Statement{{Seq: 1, Protocol: "simple", Text: "INSERT INTO t VALUES (1); INSERT INTO t VALUES (2), (3)", Tag: "INSERT 0 2", Commands: 2, Rows: 3}}},
		{"simple query error", []step{
			c(&pgproto3.Query{String: "SELECT 1/0"}),
			s(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "22012"}), rfq,
		}, []Statement{{Seq: 1, Protocol: "simple", Text: "SELECT 1/0", SQLState: "22012"}}},
		{"extended pipeline: an error skips the rest up to Sync", []step{
			c(&pgproto3.Parse{Name: "a", Query: "SELECT $1::int"}),
			c(&pgproto3.Bind{PreparedStatement: "a", Parameters: [][]byte{[]byte("1")}}),
			c(&pgproto3.Execute{}),
			c(&pgproto3.Parse{Query: "SELECT 1/$1"}),
			c(&pgproto3.Bind{Parameters: [][]byte{[]byte("0")}}),
			c(&pgproto3.Execute{}),
			c(&pgproto3.Parse{Query: "SELECT 'never'"}),
			c(&pgproto3.Bind{}),
			c(&pgproto3.Execute{}),
			c(&pgproto3.Sync{}),
			s(&pgproto3.ParseComplete{}), s(&pgproto3.BindComplete{}), cc("SELECT 1"),
			s(&pgproto3.ParseComplete{}), s(&pgproto3.BindComplete{}),
			s(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "22012"}),
			rfq,
			c(&pgproto3.Bind{PreparedStatement: "a", Parameters: [][]byte{[]byte("2")}}),
			c(&pgproto3.Execute{}),
			c(&pgproto3.Sync{}),
			s(&pgproto3.BindComplete{}), cc("SELECT 1"), rfq,
		}, []Statement{
			{Seq: 1, Protocol: "extended", Text: "SELECT $1::int", Params: 1, Tag: "SELECT 1", Commands: 1, Rows: 1},
			{Seq: 2, Protocol: "extended", Text: "SELECT 1/$1", Params: 1, SQLState: "22012"},
			{Seq: 3, Protocol: "extended", Text: "SELECT $1::int", Params: 1, Tag: "SELECT 1", Commands: 1, Rows: 1},
		}},
		{"a statement that fails to parse", []step{
			c(&pgproto3.Parse{Name: "bad", Query: "SELEC 1"}),
			c(&pgproto3.Describe{ObjectType: 'S', Name: "bad"}),
			c(&pgproto3.Sync{}),
			s(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "42601"}), rfq,
		}, []Statement{{Seq: 1, Protocol: "extended", Text: "SELEC 1", SQLState: "42601"}}},
		{"prepare, then run twice", []step{
			c(&pgproto3.Parse{Name: "p", Query: "SELECT 1"}),
			c(&pgproto3.Describe{ObjectType: 'S', Name: "p"}),
			c(&pgproto3.Sync{}),
			s(&pgproto3.ParseComplete{}), s(&pgproto3.ParameterDescription{}), s(&pgproto3.NoData{}), rfq,
			c(&pgproto3.Bind{PreparedStatement: "p"}), c(&pgproto3.Execute{}), c(&pgproto3.Sync{}),
			s(&pgproto3.BindComplete{}), cc("SELECT 1"), rfq,
			c(&pgproto3.Bind{PreparedStatement: "p"}), c(&pgproto3.Execute{}), c(&pgproto3.Sync{}),
			s(&pgproto3.BindComplete{}), s(&pgproto3.EmptyQueryResponse{}), rfq,
		}, []Statement{
			{Seq: 1, Protocol: "extended", Text: "SELECT 1", Tag: "SELECT 1", Commands: 1, Rows: 1},
			{Seq: 2, Protocol: "extended", Text: "SELECT 1"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []Statement
			tr := newTracker(func() time.Time { return time.Time{} }, func(st Statement) { got = append(got, st) }, false)
			for _, st := range tc.steps {
				if st.c != nil {
					tr.clientMessage(st.c)
				} else {
					tr.serverMessage(st.s)
				}
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.IgnoreFields(Statement{}, "Start", "End")); diff != "" {
				t.Errorf("statements (-want +got):\n%s", diff)
			}
			if tr.busy() {
				t.Error("the tracker still waits for answers after the last ReadyForQuery")
			}
		})
	}
}

func TestTruncateTextKeepsUTF8(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in    string
		limit int
		want  string
		cut   bool
	}{
		{"SELECT 1", 100, "SELECT 1", false},
		{"SELECT 'été'", 9, "SELECT '", true},
		{"SELECT 'été'", 10, "SELECT 'é", true},
		{"ééé", 1, "", true},
	} {
		got, cut := truncateText(tc.in, tc.limit)
		if got != tc.want || cut != tc.cut {
			t.Errorf("truncateText(%q, %d) = %q, %v; want %q, %v", tc.in, tc.limit, got, cut, tc.want, tc.cut)
		}
	}
}

// clientStream is a client's side of a session on the wire, as the proxy's decoder reads it.
func clientStream(t testing.TB, msgs ...pgproto3.FrontendMessage) []byte {
	t.Helper()
	var buf []byte
	var err error
	for _, m := range msgs {
		if buf, err = m.Encode(buf); err != nil {
			t.Fatal(err)
		}
	}
	return buf
}

// FuzzClientMessages runs the proxy's client-side decoding (startup, then messages, each
// handed to the tracker, the way a session does) over arbitrary bytes: it must never panic
// and never wait for an answer the stream cannot produce.
func FuzzClientMessages(f *testing.F) {
	f.Add(clientStream(f, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "ab_alice_x", "database": "app"}},
		&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abc")}, &pgproto3.SASLResponse{Data: []byte("c=biws,r=abcdef,p=AAAA")},
		&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Terminate{}))
	f.Add(clientStream(f, &pgproto3.SSLRequest{}))
	f.Add(clientStream(f, &pgproto3.CancelRequest{ProcessID: 7, SecretKey: []byte{1, 2, 3, 4}}))
	f.Add(clientStream(f, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "u"}},
		&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abc")}, &pgproto3.SASLResponse{Data: []byte("c=biws,r=abcdef,p=AAAA")},
		&pgproto3.Parse{Name: "s", Query: "SELECT $1"}, &pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("1")}},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{},
		&pgproto3.Query{String: "COPY t FROM STDIN"}, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{},
		&pgproto3.CopyFail{Message: "no"}, &pgproto3.FunctionCall{Function: 1}, &pgproto3.Flush{}))
	f.Add([]byte("n,,n=,r=fyko+d2lbbFgONRv9qkxdawL"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// The SCRAM client-first parser sees the client's bytes too.
		if gs2, bare, nonce, err := parseClientFirst(string(data)); err == nil && (gs2+bare != string(data) || nonce == "") {
			t.Fatalf("parseClientFirst(%q) = %q, %q, %q", data, gs2, bare, nonce)
		}
		be := pgproto3.NewBackend(bytes.NewReader(data), &bytes.Buffer{})
		be.SetMaxBodyLen(maxMessageBody)
		if _, err := be.ReceiveStartupMessage(); err != nil {
			return
		}
		// The two SASL messages of the login, then the session.
		auth := []uint32{pgproto3.AuthTypeSASL, pgproto3.AuthTypeSASLContinue, pgproto3.AuthTypeOk}
		n := 0
		tr := newTracker(func() time.Time { return time.Time{} }, func(Statement) { n++ }, false)
		for i := 0; ; i++ {
			if err := be.SetAuthType(auth[min(i, len(auth)-1)]); err != nil {
				t.Fatal(err)
			}
			msg, err := be.Receive()
			if err != nil {
				break
			}
			tr.clientMessage(msg)
			_ = flushAfter(msg)
		}
		// A server that fails everything and then is ready answers every pending message.
		tr.serverMessage(&pgproto3.ErrorResponse{Code: "XX000"})
		for tr.busy() {
			before := len(tr.queue)
			tr.serverMessage(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			if len(tr.queue) >= before {
				t.Fatalf("ReadyForQuery did not drain the queue (%d pending)", before)
			}
		}
		if n > tr.statements() {
			t.Fatalf("%d statements reported, %d counted", n, tr.statements())
		}
	})
}

// TestTrackerAbortReportsUnansweredStatements: a session that ends mid-statement still
// records what was running, marked interrupted with the code the client was given.
func TestTrackerAbortReportsUnansweredStatements(t *testing.T) {
	t.Parallel()
	var got []Statement
	tr := newTracker(func() time.Time { return time.Time{} }, func(st Statement) { got = append(got, st) }, false)
	tr.clientMessage(&pgproto3.Query{String: "SELECT 1"})
	tr.serverMessage(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
	tr.serverMessage(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	tr.clientMessage(&pgproto3.Parse{Query: "SELECT pg_sleep(600)"})
	tr.clientMessage(&pgproto3.Bind{})
	tr.clientMessage(&pgproto3.Execute{})
	tr.clientMessage(&pgproto3.Sync{})
	tr.serverMessage(&pgproto3.ParseComplete{})
	tr.abort("57P01")
	want := []Statement{
		{Seq: 1, Protocol: "simple", Text: "SELECT 1", Tag: "SELECT 1", Commands: 1, Rows: 1},
		{Seq: 2, Protocol: "extended", Text: "SELECT pg_sleep(600)", SQLState: "57P01", Interrupted: true},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Statement{}, "Start", "End")); diff != "" {
		t.Errorf("statements (-want +got):\n%s", diff)
	}
	if tr.busy() {
		t.Error("still busy after abort")
	}
}

// TestRefusalLimiter: at most refusalsPerHost audited refusals per host and
// refusalsPerMinute in all per minute; a new minute starts afresh.
func TestRefusalLimiter(t *testing.T) {
	t.Parallel()
	var l refusalLimiter
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	n := 0
	for range 2 * refusalsPerHost {
		if l.allow("10.0.0.1", t0) {
			n++
		}
	}
	if n != refusalsPerHost {
		t.Errorf("one host: %d audited, want %d", n, refusalsPerHost)
	}
	n = 0
	for i := range 2 * refusalsPerMinute {
		if l.allow("10.1.0."+strconv.Itoa(i), t0.Add(time.Second)) {
			n++
		}
	}
	if n != refusalsPerMinute-refusalsPerHost {
		t.Errorf("many hosts: %d audited, want the rest of the minute's %d", n, refusalsPerMinute)
	}
	if !l.allow("10.0.0.1", t0.Add(time.Minute)) {
		t.Error("a new minute did not start afresh")
	}
}

func TestBindValues(t *testing.T) {
	str := func(s string) *string { return &s }
	cutText := strings.Repeat("a", ValueLimit-1) + "é" // the é straddles the limit
	tests := []struct {
		name    string
		bind    pgproto3.Bind
		want    []*string
		wantCut bool
	}{
		{"no parameters", pgproto3.Bind{}, []*string{}, false},
		{"text by default, NULL as nil", pgproto3.Bind{Parameters: [][]byte{[]byte("x"), nil}}, []*string{str("x"), nil}, false},
		{"one code for all", pgproto3.Bind{ParameterFormatCodes: []int16{1}, Parameters: [][]byte{{0, 1}, []byte("ab")}},
			[]*string{str(`\x0001`), str(`\x6162`)}, false},
		{"a code each", pgproto3.Bind{ParameterFormatCodes: []int16{0, 1}, Parameters: [][]byte{[]byte("ab"), {0xff}}},
			[]*string{str("ab"), str(`\xff`)}, false},
		{"invalid UTF-8 text as hex", pgproto3.Bind{Parameters: [][]byte{{0xc3, 0x28}}}, []*string{str(`\xc328`)}, false},
		{"long text cut on a character", pgproto3.Bind{Parameters: [][]byte{[]byte(cutText)}},
			[]*string{str(strings.Repeat("a", ValueLimit-1))}, true},
		{"long binary cut", pgproto3.Bind{ParameterFormatCodes: []int16{1}, Parameters: [][]byte{make([]byte, ValueLimit+1)}},
			[]*string{str(`\x` + strings.Repeat("00", ValueLimit))}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, cut := bindValues(&tc.bind)
			if diff := cmp.Diff(tc.want, got); diff != "" || cut != tc.wantCut {
				t.Errorf("bindValues cut=%v (want %v) (-want +got):\n%s", cut, tc.wantCut, diff)
			}
		})
	}
}

// TestTrackerRecordsValuesOnlyWhenAsked: a portal's values reach its statement only with
// values on.
func TestTrackerRecordsValuesOnlyWhenAsked(t *testing.T) {
	for _, values := range []bool{false, true} {
		var got []Statement
		tr := newTracker(func() time.Time { return time.Time{} }, func(st Statement) { got = append(got, st) }, values)
		tr.clientMessage(&pgproto3.Parse{Query: "SELECT $1"})
		tr.clientMessage(&pgproto3.Bind{Parameters: [][]byte{[]byte("v")}})
		tr.clientMessage(&pgproto3.Execute{})
		tr.clientMessage(&pgproto3.Sync{})
		tr.serverMessage(&pgproto3.ParseComplete{})
		tr.serverMessage(&pgproto3.BindComplete{})
		tr.serverMessage(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
		tr.serverMessage(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		if len(got) != 1 || got[0].Params != 1 || (got[0].Values != nil) != values {
			t.Errorf("values=%v: statements %+v", values, got)
		}
	}
}

// TestStatementReportedOutsideTheLock: recording a finished statement (hashing it, waiting
// for room in the audit queue) does not hold up the client's direction of the relay.
func TestStatementReportedOutsideTheLock(t *testing.T) {
	var tr *tracker
	relayed := make(chan struct{})
	tr = newTracker(func() time.Time { return time.Time{} }, func(Statement) {
		go func() { tr.clientMessage(&pgproto3.Query{String: "SELECT 2"}); close(relayed) }()
		select {
		case <-relayed:
		case <-time.After(30 * time.Second):
			t.Error("the client's next message waited for the statement to be recorded")
		}
	}, false)
	tr.clientMessage(&pgproto3.Query{String: "SELECT 1"})
	tr.serverMessage(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
	tr.serverMessage(&pgproto3.ReadyForQuery{TxStatus: 'I'})
}
