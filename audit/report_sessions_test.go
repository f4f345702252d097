package audit

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// sessionCase adds grants and proxied sessions to a reportCase.
type sessionCase struct {
	*reportCase
	n int
}

func newSessionCase() *sessionCase { return &sessionCase{reportCase: newCase()} }

// grantOn adds an on-call grant of res to who, issued at since+at for d, revoked revokeAfter
// past its expiry (negative: never).
func (c *sessionCase) grantOn(id, res, who string, at, d, revokeAfter time.Duration, evidence ...string) {
	t0 := fxSince.Add(at)
	exp := t0.Add(d)
	owner := Actor{Kind: ActorUser, ID: "U_" + who, Email: who}
	ev := append(append(onCallEvidence(fxSince.Add(200*time.Hour)), "path", "auto_approve", "expires_at", FormatTime(exp), "person", who), evidence...)
	c.h.add(t0, owner, ActionGrantIssuing, "", id, res, "why", ev...)
	c.h.add(t0.Add(time.Second), owner, ActionGrantIssued, "", id, res, "why", "expires_at", FormatTime(exp), "person", who)
	if revokeAfter >= 0 {
		c.h.add(exp.Add(revokeAfter), sysActor, ActionGrantRevoked, "", id, res, "", "cause", "expired", "person", who)
	}
}

// stmt is one recorded statement: its command tag, text and SQLSTATE.
type stmt struct{ tag, text, sqlstate string }

// session adds a session of grant g on res from since+at lasting d (negative: not ended by
// until), its statements one second apart from the start.
func (c *sessionCase) session(g, res string, at, d time.Duration, stmts ...stmt) {
	c.n++
	id := fmt.Sprintf("s_%03d", c.n)
	t0 := fxSince.Add(at)
	who := Actor{Kind: ActorUser, ID: "U_" + g}
	c.h.add(t0, who, ActionSessionStarted, "", g, res, "", "session_id", id, "role", "ab_"+g, "database", "app")
	for i, s := range stmts {
		c.h.add(t0.Add(time.Duration(i+1)*time.Second), who, ActionSessionStatement, "", g, res, "",
			"session_id", id, "order", fmt.Sprint(i+1), "protocol", "simple", "text", s.text, "tag", s.tag, "sqlstate", s.sqlstate)
	}
	if d >= 0 {
		c.h.add(t0.Add(d), who, ActionSessionEnded, "", g, res, "", "session_id", id, "reason", "client_quit", "statements", fmt.Sprint(len(stmts)))
	}
}

// loginFailed adds a refused proxy login for role at since+at; grant is the grant the role
// belongs to ("" for an unknown role). A wrong password names no person as actor.
func (c *sessionCase) loginFailed(role, grant, res string, at time.Duration) {
	c.h.add(fxSince.Add(at), Actor{Kind: ActorUnknown, ID: "10.0.0.7:5000"}, ActionSessionLoginFailed, "", grant, res, "wrong password",
		"role", role, "client_addr", "10.0.0.7:5000", "reason", "wrong_password")
}

// sessionWeek is the history of the session golden files and figures: on orders-db, alice's
// grant is used in two sessions (40m connected) with every statement class and a denial;
// bob's page grant ends when the incident is resolved and a statement follows; carol's
// grant ends unused; dave's is still running; erin's grant on prod-aws (no sessions there)
// ends unused and is not flagged. Alice's role sees 3 wrong passwords in 10 minutes; an
// unknown role sees 3 spread over 2 hours.
func sessionWeek(t *testing.T) []Event {
	t.Helper()
	c := newSessionCase()
	c.grantOn("g_alice", "orders-db", "alice@example.com", 10*time.Hour, 2*time.Hour, time.Second)
	c.session("g_alice", "orders-db", 10*time.Hour+time.Minute, 30*time.Minute,
		stmt{"SELECT 1", "SELECT 1", ""},
		stmt{"INSERT 0 2", "INSERT INTO t VALUES (1), (2)", ""},
		stmt{"CREATE TABLE", "CREATE TABLE t2 (a int)", ""},
		stmt{"COPY 3", "copy t (a) from stdin", ""},
		stmt{"COPY 5", "COPY (SELECT * FROM t) TO STDOUT", ""},
		stmt{"", "SELECT * FROM payroll", "42501"},
		stmt{"", "INSERT INTO t VALUES (1)", "23505"})
	c.session("g_alice", "orders-db", 11*time.Hour, 10*time.Minute, stmt{"UPDATE 4", "UPDATE t SET a = 0", ""})
	for _, m := range []time.Duration{0, 4, 10} {
		c.loginFailed("ab_g_alice", "g_alice", "orders-db", 9*time.Hour+m*time.Minute)
	}
	for _, h := range []time.Duration{1, 2, 3} {
		c.loginFailed("ab_nobody", "", "", h*time.Hour)
	}

	c.grantOn("g_bob", "orders-db", "bob@example.com", 20*time.Hour, 4*time.Hour, -1, "incident", "PINC42")
	c.session("g_bob", "orders-db", 20*time.Hour+time.Minute, 20*time.Minute, stmt{"SELECT 3", "SELECT * FROM jobs", ""})
	resolved := fxSince.Add(20*time.Hour + 10*time.Minute)
	c.h.add(resolved, pdActor, ActionGrantRevokeQueued, "", "g_bob", "orders-db", "incident resolved", "cause", "incident_resolved", "person", "bob@example.com")
	c.h.add(resolved.Add(5*time.Minute), Actor{Kind: ActorUser, ID: "U_g_bob"}, ActionSessionStatement, "", "g_bob", "orders-db", "",
		"session_id", "s_003", "order", "2", "protocol", "simple", "text", "DELETE FROM jobs", "tag", "DELETE 9")
	c.h.add(resolved.Add(11*time.Minute), sysActor, ActionGrantRevoked, "", "g_bob", "orders-db", "", "cause", "incident_resolved", "person", "bob@example.com")

	c.grantOn("g_carol", "orders-db", "carol@example.com", 30*time.Hour, time.Hour, time.Second)
	c.grantOn("g_dave", "orders-db", "dave@example.com", 167*time.Hour, 4*time.Hour, -1)
	c.grantOn("g_erin", "prod-aws", "erin@example.com", 40*time.Hour, time.Hour, time.Second)
	return c.h.seal(t, true)
}

func TestReportSessionFigures(t *testing.T) {
	r := BuildReport(sessionWeek(t), fxSince, fxUntil, ReportOptions{})
	use := map[string]SessionUse{}
	for _, row := range r.Rows {
		use[row.GrantID] = row.Use
	}
	want := map[string]SessionUse{
		// 30m + 10m; INSERT, COPY … FROM, UPDATE write; CREATE is DDL; COPY (query) TO reads.
		"g_alice": {Sessions: 2, Statements: 8, Connected: 40 * time.Minute, Writes: 3, DDL: 1, Failed: 2, PermissionDenied: 1},
		"g_bob":   {Sessions: 1, Statements: 2, Connected: 20 * time.Minute, Writes: 1},
		"g_carol": {}, "g_dave": {}, "g_erin": {},
	}
	if diff := cmp.Diff(want, use); diff != "" {
		t.Errorf("per-grant use (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(SessionUse{Sessions: 3, Statements: 10, Connected: time.Hour, Writes: 4, DDL: 1, Failed: 2, PermissionDenied: 1}, r.Sessions); diff != "" {
		t.Errorf("totals (-want +got):\n%s", diff)
	}
	if r.LoginFailures != 6 {
		t.Errorf("LoginFailures = %d, want 6", r.LoginFailures)
	}
	type finding struct {
		Kind                AnomalyKind
		Grant, Person, Role string
		Count               int
	}
	var got []finding
	for _, a := range r.Anomalies {
		if a.Kind == AnomalyNotOnCall {
			continue
		}
		got = append(got, finding{a.Kind, a.GrantID, a.Person, a.Role, a.Count})
	}
	wantF := []finding{
		{AnomalyLoginFailures, "", "alice@example.com", "", 3},
		{AnomalyLoginFailures, "g_alice", "alice@example.com", "ab_g_alice", 3},
		{AnomalyAfterIncidentResolved, "g_bob", "bob@example.com", "", 1},
		{AnomalyPermissionDenied, "g_alice", "alice@example.com", "", 1},
		{AnomalyNeverUsed, "g_carol", "carol@example.com", "", 0},
	}
	if diff := cmp.Diff(wantF, got); diff != "" {
		t.Errorf("anomalies (-want +got):\n%s\nall: %+v", diff, r.Anomalies)
	}
	for ext, render := range map[string]func(*bytes.Buffer, Report) error{
		"md":   func(b *bytes.Buffer, r Report) error { return WriteReportMarkdown(b, r) },
		"json": func(b *bytes.Buffer, r Report) error { return WriteReportJSON(b, r) },
		"csv":  func(b *bytes.Buffer, r Report) error { return WriteReportCSV(b, r) },
	} {
		var buf bytes.Buffer
		if err := render(&buf, r); err != nil {
			t.Fatal(err)
		}
		checkReportGolden(t, "sessions."+ext, buf.Bytes())
	}
}

// TestReportSessionAnomalyRules gives each session rule a case that triggers it and one that
// does not.
func TestReportSessionAnomalyRules(t *testing.T) {
	sel := stmt{"SELECT 1", "SELECT 1", ""}
	queue := func(c *sessionCase, g string, at time.Duration, cause string) {
		c.h.add(fxSince.Add(at), sysActor, ActionGrantRevokeQueued, "", g, "orders-db", "", "cause", cause)
	}
	late := func(c *sessionCase, g string, at time.Duration) {
		c.h.add(fxSince.Add(at), Actor{Kind: ActorUser, ID: "U_" + g}, ActionSessionStatement, "", g, "orders-db", "",
			"session_id", "s_001", "order", "9", "text", "SELECT 2", "tag", "SELECT 1")
	}
	cases := []struct {
		name  string
		kind  AnomalyKind
		opts  ReportOptions
		build func(c *sessionCase)
		want  []string
	}{
		{"3 wrong passwords in 1h, per person and per role", AnomalyLoginFailures, ReportOptions{}, func(c *sessionCase) {
			c.grantOn("g_a", "orders-db", "alice@example.com", time.Hour, 3*time.Hour, 0)
			for _, m := range []time.Duration{0, 30, 60} {
				c.loginFailed("ab_g_a", "g_a", "orders-db", 2*time.Hour+m*time.Minute)
			}
		}, []string{"alice@example.com", "g_a"}},
		{"3 wrong passwords in 61m", AnomalyLoginFailures, ReportOptions{}, func(c *sessionCase) {
			c.grantOn("g_a", "orders-db", "alice@example.com", time.Hour, 3*time.Hour, 0)
			for _, m := range []time.Duration{0, 30, 61} {
				c.loginFailed("ab_g_a", "g_a", "orders-db", 2*time.Hour+m*time.Minute)
			}
		}, nil},
		{"a burst of 2 with RejectionBurst 2, unknown role", AnomalyLoginFailures, ReportOptions{RejectionBurst: 2}, func(c *sessionCase) {
			c.loginFailed("ab_zz", "", "", 2*time.Hour)
			c.loginFailed("ab_zz", "", "", 2*time.Hour+time.Minute)
		}, []string{""}},
		{"failures for 3 roles", AnomalyLoginFailures, ReportOptions{}, func(c *sessionCase) {
			for i, r := range []string{"ab_x", "ab_y", "ab_z"} {
				c.loginFailed(r, "", "", 2*time.Hour+time.Duration(i)*time.Minute)
			}
		}, nil},
		{"statement after the incident resolved", AnomalyAfterIncidentResolved, ReportOptions{}, func(c *sessionCase) {
			c.grantOn("g_a", "orders-db", "alice@example.com", time.Hour, 3*time.Hour, -1)
			c.session("g_a", "orders-db", time.Hour+time.Minute, -1, sel)
			queue(c, "g_a", 2*time.Hour, "incident_resolved")
			late(c, "g_a", 2*time.Hour+time.Second)
		}, []string{"g_a"}},
		{"statement after a manual revoke", AnomalyAfterIncidentResolved, ReportOptions{}, func(c *sessionCase) {
			c.grantOn("g_a", "orders-db", "alice@example.com", time.Hour, 3*time.Hour, -1)
			c.session("g_a", "orders-db", time.Hour+time.Minute, -1, sel)
			queue(c, "g_a", 2*time.Hour, "manual")
			late(c, "g_a", 2*time.Hour+time.Second)
		}, nil},
		{"statements before the incident resolved", AnomalyAfterIncidentResolved, ReportOptions{}, func(c *sessionCase) {
			c.grantOn("g_a", "orders-db", "alice@example.com", time.Hour, 3*time.Hour, -1)
			c.session("g_a", "orders-db", time.Hour+time.Minute, time.Minute, sel, sel)
			queue(c, "g_a", 2*time.Hour, "incident_resolved")
		}, nil},
		{"permission denied", AnomalyPermissionDenied, ReportOptions{}, func(c *sessionCase) {
			c.grantOn("g_a", "orders-db", "alice@example.com", time.Hour, 3*time.Hour, 0)
			c.session("g_a", "orders-db", time.Hour+time.Minute, time.Minute, stmt{"", "DROP TABLE t", "42501"})
		}, []string{"g_a"}},
		{"another error is not permission denied", AnomalyPermissionDenied, ReportOptions{}, func(c *sessionCase) {
			c.grantOn("g_a", "orders-db", "alice@example.com", time.Hour, 3*time.Hour, 0)
			c.session("g_a", "orders-db", time.Hour+time.Minute, time.Minute, stmt{"", "SELECT x", "42703"})
		}, nil},
		{"unused grant on a resource with sessions", AnomalyNeverUsed, ReportOptions{}, func(c *sessionCase) {
			c.grantOn("g_a", "orders-db", "alice@example.com", time.Hour, time.Hour, 0)
			c.grantOn("g_b", "orders-db", "bob@example.com", time.Hour, time.Hour, 0)
			c.session("g_b", "orders-db", time.Hour+time.Minute, time.Minute, sel)
		}, []string{"g_a"}},
		{"unused grant on a resource without sessions", AnomalyNeverUsed, ReportOptions{}, func(c *sessionCase) {
			c.grantOn("g_a", "prod-aws", "alice@example.com", time.Hour, time.Hour, 0)
			c.grantOn("g_b", "orders-db", "bob@example.com", time.Hour, time.Hour, 0)
			c.session("g_b", "orders-db", time.Hour+time.Minute, time.Minute, sel)
		}, nil},
		{"unused grant still running at until", AnomalyNeverUsed, ReportOptions{}, func(c *sessionCase) {
			c.grantOn("g_a", "orders-db", "alice@example.com", 167*time.Hour, 4*time.Hour, -1)
			c.grantOn("g_b", "orders-db", "bob@example.com", time.Hour, time.Hour, 0)
			c.session("g_b", "orders-db", time.Hour+time.Minute, time.Minute, sel)
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newSessionCase()
			tc.build(c)
			r := c.report(t, tc.opts)
			if diff := cmp.Diff(tc.want, findings(r, tc.kind)); diff != "" {
				t.Errorf("%s findings (-want +got):\n%s\nall anomalies: %+v", tc.kind, diff, r.Anomalies)
			}
		})
	}
}

func TestStatementClass(t *testing.T) {
	cases := []struct{ tag, text, want string }{
		{"SELECT 3", "SELECT 1", StatementRead},
		{"INSERT 0 5", "INSERT INTO t …", StatementWrite},
		{"UPDATE 2", "", StatementWrite},
		{"DELETE 0", "", StatementWrite},
		{"MERGE 1", "", StatementWrite},
		{"COPY 3", "COPY t (a, b) FROM STDIN", StatementWrite},
		{"COPY 3", "  copy t from '/tmp/x'", StatementWrite},
		{"COPY 3", "COPY t TO STDOUT", StatementRead},
		{"COPY 3", "COPY (SELECT a FROM t) TO STDOUT", StatementRead},
		{"CREATE TABLE", "", StatementDDL},
		{"ALTER ROLE", "", StatementDDL},
		{"DROP INDEX", "", StatementDDL},
		{"TRUNCATE TABLE", "", StatementDDL},
		{"GRANT", "", StatementDDL},
		{"REVOKE", "", StatementDDL},
		{"SET", "SET search_path = x", StatementRead},
		{"", "", StatementRead},
	}
	for _, tc := range cases {
		if got := StatementClass(tc.tag, tc.text); got != tc.want {
			t.Errorf("StatementClass(%q, %q) = %s, want %s", tc.tag, tc.text, got, tc.want)
		}
	}
}
