package pgproxy_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/pgproxy"
)

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// stmtSummary is what a test checks of a session.statement event.
type stmtSummary struct {
	Order, Protocol, Text, Params, Tag, Rows, SQLState string
}

func summarize(t *testing.T, evs []audit.Event, grantID string) (started, ended *audit.Event, stmts []stmtSummary) {
	t.Helper()
	for i, e := range evs {
		if e.GrantID != grantID || e.Resource != resource {
			t.Errorf("event %s names grant %q resource %q, want %s %s", e.Action, e.GrantID, e.Resource, grantID, resource)
		}
		switch e.Action {
		case pgproxy.ActionSessionStarted:
			started = &evs[i]
		case pgproxy.ActionSessionEnded:
			ended = &evs[i]
		case pgproxy.ActionSessionStatement:
			ev := e.Evidence
			sum := sha256.Sum256([]byte(ev["text"]))
			if ev["text_truncated"] == "" && ev["text_sha256"] != hex.EncodeToString(sum[:]) {
				t.Errorf("statement %s: text_sha256 %s is not the SHA-256 of its text", ev["order"], ev["text_sha256"])
			}
			stmts = append(stmts, stmtSummary{ev["order"], ev["protocol"], ev["text"], ev["params"], ev["tag"], ev["rows"], ev["sqlstate"]})
		}
	}
	return started, ended, stmts
}

func verifyChain(t *testing.T, e *env) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := audit.Verify(context.Background(), e.store, pub, audit.VerifyOptions{})
	if err != nil || !res.OK {
		t.Fatalf("audit verify: ok=%v err=%v result=%+v", res.OK, err, res)
	}
}

// TestPgxSessionIsRecorded: a pgx client through the proxy with the simple and the extended
// protocol, COPY in both directions and an error; every statement is a session.statement
// event with the grant id, in order, and the chain verifies.
func TestPgxSessionIsRecorded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	g, cred := e.issue(t, time.Hour)
	if cred["host"] != "127.0.0.1" || cred["sslmode"] != "require" || !strings.Contains(cred["connection_string"], e.addr) {
		t.Fatalf("delivered credential points at %s:%s sslmode=%s, want the proxy %s with sslmode=require", cred["host"], cred["port"], cred["sslmode"], e.addr)
	}
	c := connect(t, cred["connection_string"])

	if _, err := c.Exec(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("simple SELECT: %v", err)
	}
	var name string
	if err := c.QueryRow(ctx, "SELECT name FROM items WHERE id = $1", 2).Scan(&name); err != nil || name != "two" {
		t.Fatalf("extended SELECT: %q %v", name, err)
	}
	n, err := c.CopyFrom(ctx, pgx.Identifier{"items"}, []string{"id", "name"}, pgx.CopyFromRows([][]any{{3, "three"}, {4, "four"}}))
	if err != nil || n != 2 {
		t.Fatalf("COPY FROM: %d %v", n, err)
	}
	var out strings.Builder
	tag, err := c.PgConn().CopyTo(ctx, &out, "COPY (SELECT id FROM items ORDER BY id) TO STDOUT")
	if err != nil || tag.RowsAffected() != 4 || out.String() != "1\n2\n3\n4\n" {
		t.Fatalf("COPY TO: %q %v %v", out.String(), tag, err)
	}
	if _, err := c.Exec(ctx, "SELECT 1/0"); pgCode(err) != "22012" {
		t.Fatalf("division by zero: %v, want 22012", err)
	}
	var one int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("the session is usable after an error: %v", err)
	}
	// A backend notices a dead proxy within a second, even mid-query.
	var interval string
	if err := c.QueryRow(ctx, "SHOW client_connection_check_interval", pgx.QueryExecModeSimpleProtocol).Scan(&interval); err != nil || interval != "1s" {
		t.Errorf("client_connection_check_interval = %q, %v; want 1s", interval, err)
	}
	c.Close(ctx)

	ended := e.events.waitFor(t, "session.ended", func(ev audit.Event) bool { return ev.Action == pgproxy.ActionSessionEnded })
	if ended.Evidence["reason"] != pgproxy.EndClientQuit {
		t.Errorf("session ended with reason %q, want client_quit", ended.Evidence["reason"])
	}
	started, _, stmts := summarize(t, e.events.session(ended.Evidence["session_id"]), g.ID)
	if started == nil || started.Evidence["role"] != g.Handle.Key || started.Evidence["database"] != e.db || started.Evidence["client_addr"] == "" {
		t.Fatalf("session.started = %+v", started)
	}
	// pgx prepares each extended statement (Parse, Describe, Sync) before it runs it; only
	// the runs are statements.
	want := []stmtSummary{
		{"1", "simple", "SELECT 1", "0", "SELECT 1", "1", ""},
		{"2", "extended", "SELECT name FROM items WHERE id = $1", "1", "SELECT 1", "1", ""},
		{"3", "simple", `copy "items" ( "id", "name" ) from stdin binary;`, "0", "COPY 2", "2", ""},
		{"4", "simple", "COPY (SELECT id FROM items ORDER BY id) TO STDOUT", "0", "COPY 4", "4", ""},
		{"5", "simple", "SELECT 1/0", "0", "", "", "22012"},
		{"6", "extended", "SELECT 1", "0", "SELECT 1", "1", ""},
		{"7", "simple", "SHOW client_connection_check_interval", "0", "SHOW", "0", ""},
	}
	if diff := cmp.Diff(want, stmts); diff != "" {
		t.Errorf("session.statement events (-want +got):\n%s", diff)
	}
	if ended.Evidence["statements"] != "7" || ended.Evidence["bytes_in"] == "0" || ended.Evidence["bytes_out"] == "0" {
		t.Errorf("session.ended evidence = %v", ended.Evidence)
	}
	verifyChain(t, e)
}

// TestPsqlThroughProxy: psql (libpq) with sslmode=require, several statements, an error and
// a COPY from stdin.
func TestPsqlThroughProxy(t *testing.T) {
	t.Parallel()
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Skip("psql is not installed")
	}
	e := newEnv(t)
	g, cred := e.issue(t, time.Hour)
	cmd := exec.CommandContext(t.Context(), psql, "-X", "-v", "ON_ERROR_STOP=0", "-At",
		"-c", "SELECT count(*) FROM items",
		"-c", "SELECT 1/0",
		"-c", "COPY items FROM STDIN",
		"-c", "SELECT count(*) FROM items",
		cred["connection_string"])
	cmd.Stdin = strings.NewReader("7\tseven\n8\teight\n")
	cmd.Env = append(os.Environ(), "PGAPPNAME=psql-test", "PGCONNECT_TIMEOUT=10")
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	if err != nil && !strings.Contains(out, "division by zero") {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if !strings.Contains(out, "2\n") || !strings.Contains(out, "4\n") || !strings.Contains(out, "division by zero") {
		t.Fatalf("psql output:\n%s", out)
	}
	ended := e.events.waitFor(t, "session.ended", func(ev audit.Event) bool { return ev.Action == pgproxy.ActionSessionEnded })
	started, _, stmts := summarize(t, e.events.session(ended.Evidence["session_id"]), g.ID)
	if started == nil || started.Evidence["application_name"] != "psql-test" {
		t.Errorf("session.started = %+v, want application_name psql-test", started)
	}
	want := []stmtSummary{
		{"1", "simple", "SELECT count(*) FROM items", "0", "SELECT 1", "1", ""},
		{"2", "simple", "SELECT 1/0", "0", "", "", "22012"},
		{"3", "simple", "COPY items FROM STDIN", "0", "COPY 2", "2", ""},
		{"4", "simple", "SELECT count(*) FROM items", "0", "SELECT 1", "1", ""},
	}
	if diff := cmp.Diff(want, stmts); diff != "" {
		t.Errorf("session.statement events (-want +got):\n%s", diff)
	}
	if ended.Evidence["reason"] != pgproxy.EndClientQuit {
		t.Errorf("reason %q, want client_quit", ended.Evidence["reason"])
	}
	verifyChain(t, e)
}

// TestPlaintextIsRefused: a startup without SSLRequest gets a clear error and a
// session.login_failed event.
func TestPlaintextIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, cred := e.issue(t, time.Hour)
	cs := strings.Replace(cred["connection_string"], "sslmode=require", "sslmode=disable", 1)
	_, err := pgx.Connect(t.Context(), cs)
	if pgCode(err) != "28000" || !strings.Contains(err.Error(), "only TLS") {
		t.Fatalf("plaintext connect: %v, want 28000 saying TLS is required", err)
	}
	ev := e.events.waitFor(t, "session.login_failed", func(ev audit.Event) bool { return ev.Action == pgproxy.ActionSessionLoginFailed })
	if ev.Evidence["reason"] != pgproxy.LoginTLSRequired {
		t.Errorf("login_failed reason %q, want tls_required", ev.Evidence["reason"])
	}
}

// TestLoginRefusals: wrong password, unknown role, expired and revoked grants get a clear
// error and a session.login_failed event naming the reason; no password appears in it.
func TestLoginRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name     string
		prepare  func(t *testing.T, g grants.Grant, cred map[string]string) string
		code     string
		says     string
		reason   string
		hasGrant bool
	}{
		{"wrong password", func(t *testing.T, g grants.Grant, cred map[string]string) string {
			return strings.Replace(cred["connection_string"], cred["password"], "not-the-password", 1)
		}, "28P01", "password authentication failed", pgproxy.LoginWrongPassword, true},
		{"the upstream password", func(t *testing.T, g grants.Grant, cred map[string]string) string {
			return strings.Replace(cred["connection_string"], cred["password"], upstreamPassword(t, e, g), 1)
		}, "28P01", "password authentication failed", pgproxy.LoginWrongPassword, true},
		{"unknown role", func(t *testing.T, g grants.Grant, cred map[string]string) string {
			return strings.Replace(cred["connection_string"], cred["user"], "ab_mallory_aaaaaaaaaaaaaaaa", 1)
		}, "28000", "no access grant", pgproxy.LoginUnknownRole, false},
		{"revoked grant", func(t *testing.T, g grants.Grant, cred map[string]string) string {
			if _, err := e.manager.Revoke(t.Context(), g.ID, grants.CauseManual, grants.SystemActor(), "test"); err != nil {
				t.Fatal(err)
			}
			return cred["connection_string"]
		}, "28000", "no longer active", pgproxy.LoginGrantNotActive, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, cred := e.issue(t, time.Hour)
			cs := tc.prepare(t, g, cred)
			_, err := pgx.Connect(t.Context(), cs)
			if pgCode(err) != tc.code || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("connect: %v, want %s saying %q", err, tc.code, tc.says)
			}
			ev := e.events.waitFor(t, "session.login_failed "+tc.reason, func(ev audit.Event) bool {
				return ev.Action == pgproxy.ActionSessionLoginFailed && ev.Evidence["reason"] == tc.reason && (ev.GrantID == g.ID) == tc.hasGrant
			})
			for _, v := range ev.Evidence {
				if strings.Contains(v, cred["password"]) || strings.Contains(v, upstreamPassword(t, e, g)) {
					t.Errorf("login_failed evidence holds a password: %v", ev.Evidence)
				}
			}
			if ev.Evidence["client_addr"] == "" || ev.Evidence["role"] == "" {
				t.Errorf("login_failed evidence = %v, want client_addr and role", ev.Evidence)
			}
		})
	}
}

// TestExpiredGrantCannotLogIn: once the clock passes the expiry, even before the revoker
// acts, the proxy refuses the login.
func TestExpiredGrantCannotLogIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g, cred := e.issue(t, time.Hour)
	e.clock.Advance(time.Hour)
	_, err := pgx.Connect(t.Context(), cred["connection_string"])
	if pgCode(err) != "28000" || !strings.Contains(err.Error(), "grant_expired") {
		t.Fatalf("connect with an expired grant: %v, want 28000 naming grant_expired", err)
	}
	e.events.waitFor(t, "login_failed grant_not_active", func(ev audit.Event) bool {
		return ev.Action == pgproxy.ActionSessionLoginFailed && ev.GrantID == g.ID && ev.Evidence["reason"] == pgproxy.LoginGrantNotActive
	})
}

// upstreamPassword is the role's password on the server, as the proxy derives it.
func upstreamPassword(t *testing.T, e *env, g grants.Grant) string {
	t.Helper()
	pw := mustPasswords(t, e.key)
	return pw.Upstream(g.ID, g.Handle.Key)
}

// TestDeliveredPasswordIsNotTheRolesPassword: the server's SCRAM verifier for the role
// matches the upstream password and not the delivered one, so the delivered credential
// cannot log in to PostgreSQL directly. (The test server trusts 127.0.0.1 in pg_hba.conf,
// so a login attempt would prove nothing; the verifier is what password authentication
// checks.)
func TestDeliveredPasswordIsNotTheRolesPassword(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g, cred := e.issue(t, time.Hour)
	var verifier string
	if err := e.super.QueryRow(t.Context(), `SELECT rolpassword FROM pg_authid WHERE rolname = $1`, g.Handle.Key).Scan(&verifier); err != nil {
		t.Fatal(err)
	}
	if scramMatches(t, cred["password"], verifier) {
		t.Fatal("the delivered password is the role's password on the server: it bypasses the proxy")
	}
	if !scramMatches(t, upstreamPassword(t, e, g), verifier) {
		t.Fatal("the role's verifier does not match the upstream password the proxy logs in with")
	}
	if strings.Contains(cred["connection_string"], upstreamPassword(t, e, g)) {
		t.Fatal("the delivered connection string holds the upstream password")
	}
}

// TestRevokeEndsRunningSession: an open SELECT pg_sleep(600) ends as soon as the grant is
// revoked, with FATAL 57P01 "access grant revoked", and its backend is gone.
func TestRevokeEndsRunningSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g, cred := e.issue(t, time.Hour)
	c := connect(t, cred["connection_string"])
	pid := upstreamPID(t, e, g)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Exec(context.Background(), "SELECT pg_sleep(600)")
		errc <- err
	}()
	waitRunning(t, e, pid, "pg_sleep(600)")

	if _, err := e.manager.Revoke(t.Context(), g.ID, grants.CauseManual, grants.SystemActor(), "test"); err != nil {
		t.Fatal(err)
	}
	e.proxy.Wake()
	select {
	case err := <-errc:
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "57P01" || pgErr.Message != "access grant revoked" || pgErr.Severity != "FATAL" {
			t.Fatalf("the running query ended with %v, want FATAL 57P01 access grant revoked", err)
		}
	case <-t.Context().Done():
		t.Fatal("the running query did not end after revocation")
	}
	ended := e.events.waitFor(t, "session.ended", func(ev audit.Event) bool { return ev.Action == pgproxy.ActionSessionEnded })
	if ended.Evidence["reason"] != pgproxy.EndGrantRevoked {
		t.Errorf("session.ended reason %q, want grant_revoked", ended.Evidence["reason"])
	}
	_, _, stmts := summarize(t, e.events.session(ended.Evidence["session_id"]), g.ID)
	if want := []stmtSummary{{"1", "simple", "SELECT pg_sleep(600)", "0", "", "", "57P01"}}; !cmp.Equal(want, stmts) {
		t.Errorf("statements = %+v, want the interrupted pg_sleep with 57P01", stmts)
	}
	if st := e.events.session(ended.Evidence["session_id"]); len(st) < 2 || st[1].Evidence["interrupted"] != "true" {
		t.Errorf("the statement the revocation cut is not marked interrupted: %+v", st)
	}
	waitGone(t, e, pid)
}

// TestExpiryEndsSession: when the clock passes the grant's expiry, the watcher ends the
// session on its next check (the revoker has not run).
func TestExpiryEndsSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g, cred := e.issue(t, time.Hour)
	c := connect(t, cred["connection_string"])
	if _, err := c.Exec(t.Context(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour) // past the expiry; fires the watcher's timer
	ended := e.events.waitFor(t, "session.ended", func(ev audit.Event) bool { return ev.Action == pgproxy.ActionSessionEnded })
	if ended.Evidence["reason"] != pgproxy.EndGrantExpired || ended.GrantID != g.ID {
		t.Errorf("session.ended = %v, want reason grant_expired for %s", ended.Evidence, g.ID)
	}
	_, err := c.Exec(t.Context(), "SELECT 1")
	if pgCode(err) != "57P01" && !c.IsClosed() {
		t.Errorf("the session still runs statements after expiry: %v", err)
	}
}

// TestCancelCancelsOnlyThatQuery: two sessions of one grant each run pg_sleep(600); a cancel
// from the first (pgx sends CancelRequest when its context ends) cancels its query only.
func TestCancelCancelsOnlyThatQuery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g, cred := e.issue(t, time.Hour)
	a := connectCancelable(t, cred["connection_string"])
	pidA := upstreamPID(t, e, g)
	b := connect(t, cred["connection_string"])
	var pidB uint32
	if err := b.QueryRow(t.Context(), "SELECT pg_backend_pid()").Scan(&pidB); err != nil {
		t.Fatal(err)
	}
	errB := make(chan error, 1)
	go func() {
		_, err := b.Exec(context.Background(), "SELECT pg_sleep(600)")
		errB <- err
	}()
	waitRunning(t, e, pidB, "pg_sleep(600)")

	actx, cancel := context.WithCancel(t.Context())
	errA := make(chan error, 1)
	go func() {
		_, err := a.Exec(actx, "SELECT pg_sleep(600)")
		errA <- err
	}()
	waitRunning(t, e, pidA, "pg_sleep(600)")
	cancel()
	if err := <-errA; err == nil {
		t.Fatal("the cancelled query succeeded")
	}
	waitIdle(t, e, pidA)
	if state := backendState(t, e, pidB); state != "active" {
		t.Fatalf("the other session's query is %q after the cancel, want still active", state)
	}
	ev := e.events.waitFor(t, "the cancelled statement", func(ev audit.Event) bool {
		return ev.Action == pgproxy.ActionSessionStatement && ev.Evidence["sqlstate"] == "57014"
	})
	if ev.GrantID != g.ID || ev.Evidence["text"] != "SELECT pg_sleep(600)" {
		t.Errorf("cancelled statement event = %+v", ev)
	}
	// End b's query too, through the proxy's own route.
	if _, err := e.manager.Revoke(t.Context(), g.ID, grants.CauseManual, grants.SystemActor(), "test"); err != nil {
		t.Fatal(err)
	}
	e.proxy.Wake()
	if err := <-errB; pgCode(err) != "57P01" {
		t.Fatalf("b ended with %v, want 57P01", err)
	}
}

// TestUpstreamLoss: the server ending the backend (grant still active) ends the client's
// session with a clear error and reason upstream_lost.
func TestUpstreamLoss(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g, cred := e.issue(t, time.Hour)
	c := connect(t, cred["connection_string"])
	pid := upstreamPID(t, e, g)
	if _, err := e.super.Exec(t.Context(), "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	ended := e.events.waitFor(t, "session.ended", func(ev audit.Event) bool { return ev.Action == pgproxy.ActionSessionEnded })
	if ended.Evidence["reason"] != pgproxy.EndUpstreamLost {
		t.Errorf("reason %q, want upstream_lost", ended.Evidence["reason"])
	}
	if _, err := c.Exec(t.Context(), "SELECT 1"); err == nil {
		t.Error("a statement succeeded after the upstream was lost")
	}
}

// TestAuditFailureEndsSession: when statements cannot be recorded, the session ends (fail
// closed) with an error saying why.
func TestAuditFailureEndsSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, cred := e.issue(t, time.Hour)
	c := connect(t, cred["connection_string"])
	e.events.setFail(func(ev *audit.Event) bool { return ev.Action == pgproxy.ActionSessionStatement })
	if _, err := c.Exec(t.Context(), "SELECT 1"); err != nil {
		t.Fatalf("the statement before the audit write: %v", err)
	}
	// The write fails for AuditTimeout (2s), then every session ends.
	var err error
	for err == nil {
		_, err = c.Exec(t.Context(), "SELECT 2")
		if t.Context().Err() != nil {
			t.Fatal("the session outlived the audit log")
		}
	}
	if pgCode(err) != "57P01" && !c.IsClosed() {
		t.Fatalf("statement after the audit failed: %v", err)
	}
	e.events.setFail(nil)
	ended := e.events.waitFor(t, "session.ended", func(ev audit.Event) bool { return ev.Action == pgproxy.ActionSessionEnded })
	if ended.Evidence["reason"] != pgproxy.EndAuditUnavailable {
		t.Errorf("reason %q, want audit_unavailable", ended.Evidence["reason"])
	}
}

// TestCancelRequestWithWrongKeyIsIgnored: a CancelRequest needs the secret the proxy handed
// out, not just the process id.
func TestCancelRequestWithWrongKeyIsIgnored(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g, cred := e.issue(t, time.Hour)
	c := connect(t, cred["connection_string"])
	pid := upstreamPID(t, e, g)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Exec(context.Background(), "SELECT pg_sleep(600)")
		errc <- err
	}()
	waitRunning(t, e, pid, "pg_sleep(600)")
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.CancelRequest{ProcessID: c.PgConn().PID(), SecretKey: []byte{0, 0, 0, 0}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Read(make([]byte, 1)) // the proxy closes it
	conn.Close()
	if state := backendState(t, e, pid); state != "active" {
		t.Fatalf("query state %q after a forged cancel, want active", state)
	}
	if err := c.PgConn().CancelRequest(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; pgCode(err) != "57014" {
		t.Fatalf("after a real cancel: %v, want 57014", err)
	}
}

// connectCancelable is connect with pgx sending a CancelRequest (as psql's Ctrl-C does)
// when a query's context ends, instead of breaking the connection.
func connectCancelable(t *testing.T, connString string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		t.Fatal(err)
	}
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: time.Minute}
	}
	c, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func upstreamPID(t *testing.T, e *env, g grants.Grant) uint32 {
	t.Helper()
	var pid uint32
	err := e.super.QueryRow(t.Context(), "SELECT pid FROM pg_stat_activity WHERE usename = $1 ORDER BY backend_start DESC LIMIT 1", g.Handle.Key).Scan(&pid)
	if err != nil {
		t.Fatalf("find the role's backend: %v", err)
	}
	return pid
}

func backendState(t *testing.T, e *env, pid uint32) string {
	t.Helper()
	var state string
	err := e.super.QueryRow(t.Context(), "SELECT coalesce(state, '') || ':' || query FROM pg_stat_activity WHERE pid = $1", pid).Scan(&state)
	if errors.Is(err, pgx.ErrNoRows) {
		return "gone"
	}
	if err != nil {
		t.Fatal(err)
	}
	s, _, _ := strings.Cut(state, ":")
	return s
}

// poll waits until cond holds, checking every few milliseconds, for at most 20s. It waits
// for the server to reach a state, never for time to pass.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("%s: not within 20s", what)
		}
	}
}

func waitRunning(t *testing.T, e *env, pid uint32, query string) {
	t.Helper()
	poll(t, "backend "+strconv.Itoa(int(pid))+" running "+query, func() bool {
		var q, state string
		err := e.super.QueryRow(t.Context(), "SELECT coalesce(state, ''), query FROM pg_stat_activity WHERE pid = $1", pid).Scan(&state, &q)
		return err == nil && state == "active" && strings.Contains(q, query)
	})
}

func waitIdle(t *testing.T, e *env, pid uint32) {
	t.Helper()
	poll(t, "backend idle", func() bool { return backendState(t, e, pid) == "idle" })
}

func waitGone(t *testing.T, e *env, pid uint32) {
	t.Helper()
	poll(t, "backend gone", func() bool { return backendState(t, e, pid) == "gone" })
}

// TestClientLossCancelsItsQuery: a client that drops its connection mid-query (pgx's default
// on a cancelled context) leaves no query running upstream.
func TestClientLossCancelsItsQuery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g, cred := e.issue(t, time.Hour)
	c := connect(t, cred["connection_string"])
	pid := upstreamPID(t, e, g)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, "SELECT pg_sleep(600)")
		errc <- err
	}()
	waitRunning(t, e, pid, "pg_sleep(600)")
	cancel()
	<-errc
	poll(t, "the dropped session's query to stop", func() bool { return backendState(t, e, pid) != "active" })
	ended := e.events.waitFor(t, "session.ended", func(ev audit.Event) bool { return ev.Action == pgproxy.ActionSessionEnded })
	// pgx sends Terminate as it drops the connection, or the connection just breaks.
	if r := ended.Evidence["reason"]; r != pgproxy.EndClientLost && r != pgproxy.EndClientQuit {
		t.Errorf("reason %q, want client_lost or client_quit", r)
	}
}

// TestLoginIsSCRAM: the proxy asks for SCRAM-SHA-256, never for a cleartext password, and
// refuses a client-first message it cannot honour (channel binding) with a clear error and
// a session.login_failed event.
func TestLoginIsSCRAM(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g, _ := e.issue(t, time.Hour)
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.SSLRequest{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	answer := make([]byte, 1)
	if _, err := conn.Read(answer); err != nil || answer[0] != 'S' {
		t.Fatalf("SSLRequest answered %q, %v; want S", answer, err)
	}
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true}) // the test's self-signed certificate
	fe = pgproto3.NewFrontend(tc, tc)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": g.Handle.Key, "database": e.db}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	msg, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	sasl, ok := msg.(*pgproto3.AuthenticationSASL)
	if !ok || !cmp.Equal(sasl.AuthMechanisms, []string{"SCRAM-SHA-256"}) {
		t.Fatalf("the proxy asked for %#v, want SCRAM-SHA-256 only", msg)
	}
	fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("p=tls-server-end-point,,n=,r=abcdef")})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	msg, err = fe.Receive()
	if er, ok := msg.(*pgproto3.ErrorResponse); err != nil || !ok || er.Code != "28000" || !strings.Contains(er.Message, "channel binding") {
		t.Fatalf("channel binding request answered %#v, %v; want 28000 naming channel binding", msg, err)
	}
	e.events.waitFor(t, "login_failed protocol_error", func(ev audit.Event) bool {
		return ev.Action == pgproxy.ActionSessionLoginFailed && ev.GrantID == g.ID && ev.Evidence["reason"] == pgproxy.LoginProtocol
	})
}

// TestBindValuesRecordedOnlyWhenAsked: by default a statement's record holds the number of
// bind parameters and never their values; a resource with record_parameters records them
// (text as it is, binary as \x hex, NULL as null, long values cut), through pgx's extended
// protocol on the real server.
func TestBindValuesRecordedOnlyWhenAsked(t *testing.T) {
	long := strings.Repeat("é", pgproxy.ValueLimit) // 2 bytes a character: cut at ValueLimit bytes
	tests := []struct {
		name       string
		opts       []envOption
		wantValues string
		wantCut    string
	}{
		{"default", nil, "", ""},
		{"record_parameters", []envOption{recordingParameters},
			`["s3cr3t-literal",null,"\\x0000002a","` + long[:pgproxy.ValueLimit] + `"]`, "true"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.opts...)
			g, cred := e.issue(t, time.Hour)
			c := connect(t, cred["connection_string"])
			ctx := context.Background()
			var n int
			// The int4 goes in binary format (pgx's choice for a Go int32), the strings in text.
			err := c.QueryRow(ctx, "SELECT length($1::text) + coalesce(length($2::text), 0) + $3::int4 + length($4::text)",
				"s3cr3t-literal", nil, int32(42), long).Scan(&n)
			if err != nil || n != len("s3cr3t-literal")+42+pgproxy.ValueLimit {
				t.Fatalf("query through the proxy: %d %v", n, err)
			}
			c.Close(ctx)
			ended := e.events.waitFor(t, "session.ended", func(ev audit.Event) bool { return ev.Action == pgproxy.ActionSessionEnded })
			var got *audit.Event
			for _, ev := range e.events.session(ended.Evidence["session_id"]) {
				if ev.Action == pgproxy.ActionSessionStatement && ev.Evidence["params"] == "4" {
					got = &ev
				}
			}
			if got == nil {
				t.Fatalf("no session.statement with 4 parameters for grant %s", g.ID)
			}
			if v := got.Evidence["param_values"]; v != tc.wantValues {
				t.Errorf("param_values = %s, want %s", v, tc.wantValues)
			}
			if v := got.Evidence["param_values_truncated"]; v != tc.wantCut {
				t.Errorf("param_values_truncated = %q, want %q", v, tc.wantCut)
			}
			verifyChain(t, e)
		})
	}
}
