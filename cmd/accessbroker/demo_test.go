package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/demo"
	"github.com/accessbroker/accessbroker/fixtures/slackfake"
)

// demoResult is one in-process run of `accessbroker demo --keep DIR`, with what the test saw
// of the demo's fakes before they were torn down.
type demoResult struct {
	transcript, stderr string
	dir, config        string
	usedPG             bool
	pgBaseDSN          string
	pgDB, pgRole       string
	delivered          []string // secret values delivered to people (passwords, keys, tokens)
	channelPosts       []string // everything posted to Slack channels (not DMs, not ephemeral)
}

// Secret parts of delivered credentials, found independently of the demo's own masking code.
var demoTestSecretREs = []*regexp.Regexp{
	regexp.MustCompile(`postgres(?:ql)?://[^:/@\s]+:([^@\s` + "`" + `]+)@`),
	regexp.MustCompile(`SigninToken=([^&\s|>` + "`" + `]+)`),
	regexp.MustCompile(`(wh-secret-g_[a-z2-7]{16})`),
}

// jsonStrings collects every string in a JSON document.
func jsonStrings(raw []byte) []string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return nil
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			out = append(out, x)
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

func deliveredSecrets(msgs []slackfake.Message) []string {
	var out []string
	for _, m := range msgs {
		texts := append(jsonStrings(m.Blocks), m.Text)
		for _, s := range texts {
			s = strings.ReplaceAll(s, "&amp;", "&")
			for _, re := range demoTestSecretREs {
				for _, sm := range re.FindAllStringSubmatch(s, -1) {
					out = append(out, sm[1])
				}
			}
		}
	}
	return out
}

// runDemoTest runs the demo in this process through run(), as `accessbroker demo` would.
func runDemoTest(t *testing.T, args ...string) demoResult {
	t.Helper()
	dir := t.TempDir()
	r := demoResult{dir: dir, config: filepath.Join(dir, "config.yaml")}
	demoInspect = func(d demo.Inspection) {
		msgs := d.Slack.Messages()
		r.delivered = deliveredSecrets(msgs)
		for _, m := range msgs {
			if strings.HasPrefix(m.Channel, "C") && !m.Ephemeral {
				r.channelPosts = append(r.channelPosts, m.Text+string(m.Blocks))
			}
		}
		for _, s := range d.AWS.Sessions() {
			r.delivered = append(r.delivered, s.SecretAccessKey, s.SessionToken)
		}
		if pg := d.PostgreSQL; pg != nil {
			r.usedPG, r.pgBaseDSN, r.pgDB, r.pgRole = true, pg.BaseDSN, pg.Database, pg.Role
		}
	}
	t.Cleanup(func() { demoInspect = nil })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // a hang guard only
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, append([]string{"demo", "--keep", dir}, args...), &out, &errb)
	r.transcript, r.stderr = out.String(), errb.String()
	if code != exitOK {
		t.Fatalf("demo exit %d\nstderr:\n%s\ntranscript:\n%s", code, r.stderr, r.transcript)
	}
	return r
}

func mustRunJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(context.Background(), args, &out, &errb); code != exitOK {
		t.Fatalf("%v: exit %d: %s", args, code, errb.String())
	}
	if err := json.Unmarshal(out.Bytes(), v); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out.String())
	}
}

// checkDemoOutcomes reads the demo's kept database and checks who got what, what was refused
// and what was revoked, that the transcript reports it, and that the audit log verifies.
func checkDemoOutcomes(t *testing.T, r demoResult) {
	t.Helper()
	var gs []grantView
	mustRunJSON(t, &gs, "grants", "list", "--config", r.config, "--format", "json")
	var evs []audit.Event
	mustRunJSON(t, &evs, "audit", "search", "--config", r.config, "--format", "json", "--limit", "1000")

	requestOf := map[string]string{} // grant id → request id
	for _, e := range evs {
		if e.Action == audit.ActionGrantIssued {
			requestOf[e.GrantID] = e.RequestID
		}
	}
	hasEvent := func(action audit.Action, requestID, actorID string) bool {
		for _, e := range evs {
			if e.Action == action && e.RequestID == requestID && e.Actor.ID == actorID {
				return true
			}
		}
		return false
	}
	type key struct{ who, resource, incident string }
	byKey := map[key]grantView{}
	for _, g := range gs {
		byKey[key{g.SlackUser, g.Resource, g.IncidentID}] = g
	}
	if len(gs) != 4 {
		t.Errorf("the demo made %d grants, want 4: %+v", len(gs), gs)
	}
	for _, tc := range []struct {
		name       string
		k          key
		cause      string
		approvedBy string // actor of request.approved
		refusedBy  string // actor of a request.rejected on the same request
	}{
		{"alice on call: auto-approved, then expired", key{"U0ALICE", "prod-db", ""}, "expired", "accessbroker", ""},
		{"bob off call: approved by carol", key{"U0BOB", "prod-aws", ""}, "manual", "U0CAROL", ""},
		{"bob's self-approval refused, carol approved", key{"U0BOB", "infra-admins", ""}, "manual", "U0CAROL", "U0BOB"},
		{"page acknowledged: granted, revoked on resolve", key{"U0ALICE", "prod-db", "Q0DEMO1042"}, "incident_resolved", "accessbroker", ""},
	} {
		g, ok := byKey[tc.k]
		if !ok {
			t.Errorf("%s: no grant %+v", tc.name, tc.k)
			continue
		}
		if g.State != "revoked" || g.RevokeCause != tc.cause {
			t.Errorf("%s: grant %s is %s (cause %q), want revoked (cause %q)", tc.name, g.ID, g.State, g.RevokeCause, tc.cause)
		}
		req := requestOf[g.ID]
		if req == "" {
			t.Errorf("%s: no grant.issued event for %s", tc.name, g.ID)
		}
		if !hasEvent(audit.ActionRequestApproved, req, tc.approvedBy) {
			t.Errorf("%s: request %s was not approved by %s", tc.name, req, tc.approvedBy)
		}
		if tc.refusedBy != "" && !hasEvent(audit.ActionRequestRejected, req, tc.refusedBy) {
			t.Errorf("%s: no refusal of %s's click on request %s in the audit log", tc.name, tc.refusedBy, req)
		}
		if !strings.Contains(r.transcript, g.ID) {
			t.Errorf("%s: the transcript never names grant %s", tc.name, g.ID)
		}
		// The transcript reports the revocations the story is about, with their cause.
		if tc.cause != "manual" && !transcriptLine(r.transcript, "✔", g.ID, tc.cause) {
			t.Errorf("%s: no outcome line reports grant %s revoked (%s)", tc.name, g.ID, tc.cause)
		}
		if tc.refusedBy != "" && !transcriptLine(r.transcript, "✔", req, "pending") {
			t.Errorf("%s: no outcome line reports request %s refused and still pending", tc.name, req)
		}
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"audit", "verify", "--config", r.config}, &out, &errb); code != exitOK {
		t.Errorf("audit verify after the demo: exit %d: %s %s", code, out.String(), errb.String())
	}
	if !strings.Contains(r.transcript, "audit log intact") {
		t.Error("the transcript does not show audit verify passing")
	}
	if !strings.Contains(r.transcript, "# Access report") && !strings.Contains(r.transcript, "audit search") {
		t.Error("the transcript shows no weekly report")
	}
	checkKeptReport(t, r)
}

// checkKeptReport: the transcript names the simulated end of the demo's clock, and the
// kept folder's report up to it shows every grant revoked, none still active.
func checkKeptReport(t *testing.T, r demoResult) {
	t.Helper()
	m := regexp.MustCompile(`accessbroker report --config \S+ --until (\S+)`).FindStringSubmatch(r.transcript)
	if m == nil {
		t.Fatalf("the transcript does not say which --until the kept folder's report needs:\n%s", r.transcript)
	}
	var rep struct {
		Rows []struct {
			GrantID string `json:"grant_id"`
			State   string `json:"state"`
		} `json:"rows"`
	}
	mustRunJSON(t, &rep, "report", "--config", r.config, "--until", m[1], "--format", "json")
	if len(rep.Rows) != 4 {
		t.Errorf("the kept report up to %s has %d grants, want the demo's 4: %+v", m[1], len(rep.Rows), rep.Rows)
	}
	for _, g := range rep.Rows {
		if g.State != "revoked" {
			t.Errorf("the kept report up to %s shows grant %s %s, want revoked (the demo revoked everything)", m[1], g.GrantID, g.State)
		}
	}
}

// transcriptLine reports whether one line of the transcript holds every part.
func transcriptLine(transcript string, parts ...string) bool {
	for _, l := range strings.Split(transcript, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			return true
		}
	}
	return false
}

// checkNoSecrets looks for every delivered secret and every configured secret in the
// transcript, the error output and the broker's log.
func checkNoSecrets(t *testing.T, r demoResult) {
	t.Helper()
	if len(r.delivered) < 3 {
		t.Fatalf("found only %d delivered secrets in the fake Slack and AWS; the leak check would prove nothing", len(r.delivered))
	}
	secrets := append([]string(nil), r.delivered...)
	files, err := os.ReadDir(filepath.Join(r.dir, "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(r.dir, "secrets", f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, strings.TrimSpace(string(b)))
	}
	log, err := os.ReadFile(filepath.Join(r.dir, "broker.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.channelPosts) == 0 {
		t.Fatal("no channel posts seen: the approval requests and audit notes are missing")
	}
	for name, text := range map[string]string{"transcript": r.transcript, "stderr": r.stderr, "broker.log": string(log),
		"Slack channels": strings.Join(r.channelPosts, "\n")} {
		for _, s := range secrets {
			if s != "" && strings.Contains(text, s) {
				t.Errorf("%s contains a secret unmasked:\n%s", name, excerpt(text, s))
			}
		}
	}
	if !strings.Contains(r.transcript, demo.Mask) {
		t.Error("the transcript shows no masked credential: the deliveries were not shown at all")
	}
}

func TestDemo(t *testing.T) {
	t.Run("local PostgreSQL when reachable", func(t *testing.T) {
		wantPG := false
		if dsn := os.Getenv("ACCESSBROKER_TEST_POSTGRES_DSN"); dsn != "" {
			t.Setenv(demo.PostgresEnv, dsn)
			wantPG = true
		} else {
			t.Setenv(demo.PostgresEnv, "")
			t.Log("ACCESSBROKER_TEST_POSTGRES_DSN is unset: the demo uses the default local PostgreSQL if it answers, else the webhook stand-in")
		}
		r := runDemoTest(t)
		if wantPG && !r.usedPG {
			t.Fatalf("ACCESSBROKER_TEST_POSTGRES_DSN is set but the demo did not use PostgreSQL:\n%s", r.transcript)
		}
		checkDemoOutcomes(t, r)
		checkNoSecrets(t, r)
		if r.usedPG {
			if !strings.Contains(r.transcript, r.pgDB) {
				t.Error("the transcript does not say which PostgreSQL database prod-db used")
			}
			checkPostgresCleanedUp(t, r)
			checkProxiedSession(t, r)
			checkTranscript(t, "transcript-postgres.golden", r)
		}
	})
	t.Run("webhook stand-in without PostgreSQL", func(t *testing.T) {
		t.Setenv(demo.PostgresEnv, "none")
		r := runDemoTest(t)
		if r.usedPG {
			t.Fatal("the demo used PostgreSQL although it was told not to")
		}
		if !strings.Contains(r.transcript, "NO PostgreSQL") || !strings.Contains(r.transcript, "webhook provider") {
			t.Errorf("the transcript does not say plainly that prod-db is not a real database:\n%s", r.transcript)
		}
		checkDemoOutcomes(t, r)
		checkNoSecrets(t, r)
		checkTranscript(t, "transcript-webhook.golden", r)
	})
	t.Run("interactive", func(t *testing.T) {
		t.Setenv(demo.PostgresEnv, "none")
		demoStdin = strings.NewReader(strings.Join([]string{
			"help",
			"as carol /access prod-aws 30m checking the interactive mode",
			"as dave /access prod-db 1h nobody by that name",
			"approve r_notarequest as carol",
			"advance 10m",
			"grants",
			"quit",
			"as alice /access prod-db 1h never read after quit",
		}, "\n"))
		t.Cleanup(func() { demoStdin = os.Stdin })
		r := runDemoTest(t, "--interactive")
		var evs []audit.Event
		mustRunJSON(t, &evs, "audit", "search", "--config", r.config, "--format", "json", "--limit", "1000", "--actor", "U0CAROL", "--action", "request.created")
		if len(evs) != 1 || evs[0].Resource != "prod-aws" {
			t.Fatalf("carol's typed request was not recorded once for prod-aws: %+v", evs)
		}
		for _, want := range []string{"demo> ", `no Slack user "dave"`, `"r_notarequest" is not a request id`, "10m later", "Web console: http://127.0.0.1:", "/ui/ (open it in a browser; sign in as alice, bob or carol"} {
			if !strings.Contains(r.transcript, want) {
				t.Errorf("the interactive transcript lacks %q", want)
			}
		}
		if strings.Contains(r.transcript, "never read after quit") {
			t.Error("a line after quit was acted on")
		}
		if strings.Contains(r.transcript, "Try it yourself") {
			t.Error("the interactive demo suggests running the interactive demo")
		}
		// carol may not approve her own prod-aws request: it stays pending, visible to her.
		if !strings.Contains(r.transcript, evs[0].RequestID) {
			t.Errorf("the transcript never shows carol's request %s", evs[0].RequestID)
		}
	})
}

// checkProxiedSession: alice's query went through the session proxy, is in the audit log
// with her grant, and her open session was cut at expiry.
func checkProxiedSession(t *testing.T, r demoResult) {
	t.Helper()
	var evs []audit.Event
	mustRunJSON(t, &evs, "audit", "search", "--config", r.config, "--format", "json", "--limit", "1000", "--action", "session.statement")
	if len(evs) != 1 || evs[0].GrantID == "" || !strings.Contains(evs[0].Evidence["text"], "FROM replication_status") {
		t.Fatalf("want alice's one query as a session.statement of her grant, got %+v", evs)
	}
	var ended []audit.Event
	mustRunJSON(t, &ended, "audit", "search", "--config", r.config, "--format", "json", "--limit", "1000", "--action", "session.ended")
	if len(ended) != 1 || ended[0].GrantID != evs[0].GrantID || ended[0].Evidence["reason"] != "grant_expired" {
		t.Fatalf("want alice's session ended at her grant's expiry, got %+v", ended)
	}
	for _, want := range [][]string{
		{"session.statement by user:alice", "FROM replication_status"},
		{"FATAL: access grant revoked (SQLSTATE 57P01)"},
	} {
		if !transcriptLine(r.transcript, want...) {
			t.Errorf("the transcript has no line with %q", want)
		}
	}
}

// checkPostgresCleanedUp: the demo dropped its database and roles.
func checkPostgresCleanedUp(t *testing.T, r demoResult) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, r.pgBaseDSN)
	if err != nil {
		t.Fatalf("connect to check the cleanup: %v", err)
	}
	defer conn.Close(ctx)
	var gs []grantView
	mustRunJSON(t, &gs, "grants", "list", "--config", r.config, "--format", "json", "--resource", "prod-db")
	var suffixes []string
	for _, g := range gs {
		suffixes = append(suffixes, strings.TrimPrefix(g.ID, "g_"))
	}
	if len(suffixes) == 0 {
		t.Fatal("no prod-db grants to look for")
	}
	var dbs, roles int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", r.pgDB).Scan(&dbs); err != nil {
		t.Fatal(err)
	}
	// The group role, and the login roles the provider named after the demo's grants.
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE rolname = $1 OR (rolname LIKE 'ab\_%' AND right(rolname, 16) = ANY($2))`,
		r.pgRole, suffixes).Scan(&roles); err != nil {
		t.Fatal(err)
	}
	if dbs != 0 || roles != 0 {
		t.Errorf("the demo left PostgreSQL objects behind: %d database(s) %s, %d role(s)", dbs, r.pgDB, roles)
	}
}
