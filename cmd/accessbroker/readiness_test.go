package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/accessbroker/accessbroker/fixtures/awsfake"
	"github.com/accessbroker/accessbroker/fixtures/githubfake"
	"github.com/accessbroker/accessbroker/fixtures/pdfake"
	"github.com/accessbroker/accessbroker/fixtures/slackfake"
	"github.com/accessbroker/accessbroker/fixtures/tcpproxy"
	"github.com/accessbroker/accessbroker/fixtures/webhookfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
)

// depsEnv is testdata/e2e/dependencies.yaml wired to a fake of every upstream and to a real
// PostgreSQL database (its own, dropped at the end) behind a TCP proxy the test can close.
type depsEnv struct {
	t      *testing.T
	dir    string
	config string
	slack  *slackfake.Server
	pd     *pdfake.Server
	aws    *awsfake.Server
	gh     *githubfake.Server
	web    *webhookfake.Server
	pg     *tcpproxy.Proxy
	dbDSN  string // superuser, in the test's database, not through the proxy
	pgRole string // the role prod-db grants
}

const (
	depsSlackToken = "xoxb-deps-0123456789-abcdef"
	depsPDToken    = "u+deps-pd-token-0123"
	depsGHToken    = "ghp_depsTokenForTests0123456789"
	depsAWSSecret  = "depsSecretAccessKey0123456789abcdefEXAMPLE"
	depsPGPassword = "deps-admin-pw-4fj29"
)

func randHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func newDepsEnv(t *testing.T) *depsEnv {
	t.Helper()
	base := os.Getenv(pgTestEnv)
	if base == "" {
		t.Skipf("dependency checks test skipped: it needs PostgreSQL for the postgres provider; set %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable (.ci/run sets it)", pgTestEnv)
	}
	ctx := context.Background()
	e := &depsEnv{t: t, dir: t.TempDir(), config: filepath.Join("testdata", "e2e", "dependencies.yaml")}

	// The database: its own, with the granted role and an admin role with a password (so
	// that the tests can look for it in every output).
	r := randHex(t)
	db, admin := "abdeps_"+r, "abdeps_admin_"+r
	e.pgRole = "abdeps_ro_" + r
	root, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to %s: %v", pgTestEnv, err)
	}
	defer root.Close(ctx)
	for _, sql := range []string{
		"CREATE DATABASE " + db,
		"CREATE ROLE " + e.pgRole + " NOLOGIN",
		"CREATE ROLE " + admin + " LOGIN SUPERUSER PASSWORD '" + depsPGPassword + "'",
	} {
		if _, err := root.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	t.Cleanup(func() {
		root, err := pgx.Connect(context.Background(), base)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer root.Close(context.Background())
		if _, err := root.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)"); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		rows, _ := root.Query(context.Background(), `SELECT r.rolname FROM pg_roles r JOIN pg_auth_members m ON m.member = r.oid
			JOIN pg_roles g ON g.oid = m.roleid WHERE g.rolname = $1`, e.pgRole)
		left, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, role := range append(left, e.pgRole, "abdeps_orphans_"+r, admin) {
			if _, err := root.Exec(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize()); err != nil {
				t.Errorf("cleanup: drop role %s: %v", role, err)
			}
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + db
	e.dbDSN = u.String()
	target := u.Host
	if u.Port() == "" {
		target += ":5432"
	}
	if e.pg, err = tcpproxy.New(target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.pg.Close)
	if err := e.pg.Up(); err != nil {
		t.Fatal(err)
	}
	admURL := *u
	admURL.Host = e.pg.Addr()
	admURL.User = url.UserPassword(admin, depsPGPassword)

	e.slack = slackfake.New(slackfake.Options{Token: depsSlackToken, TeamID: "T0DEPS"})
	t.Cleanup(e.slack.Close)
	e.pd = pdfake.New(pdfake.Options{Token: depsPDToken})
	t.Cleanup(e.pd.Close)
	e.aws = awsfake.New(awsfake.Options{AccessKeyID: "AKIDDEPS", SecretAccessKey: depsAWSSecret, Region: "us-east-1"})
	t.Cleanup(e.aws.Close)
	role := e.aws.AddRole("oncall-admin", 0)
	e.gh = githubfake.New(depsGHToken)
	t.Cleanup(e.gh.Close)
	e.gh.AddTeam("acme", "infra-admins")
	e.web = webhookfake.New(e2eToken)
	t.Cleanup(e.web.Close)

	for k, v := range map[string]string{
		"AB_DB": filepath.Join(e.dir, "ab.db"), "AB_KEY": filepath.Join(e.dir, "audit.key"),
		"AB_SLACK_API_URL": e.slack.APIURL(), "AB_SLACK_TEAM": "T0DEPS", "AB_SLACK_BOT_TOKEN": depsSlackToken,
		"AB_SLACK_SIGNING_SECRET": "deps-signing-secret-0123456789",
		"AB_PD_API_URL":           e.pd.URL, "AB_PD_TOKEN": depsPDToken,
		"AB_AWS_ENDPOINT": e.aws.URL(), "AB_ROLE_ARN": role.ARN,
		"AB_GITHUB_API_URL": e.gh.URL(), "AB_GITHUB_TOKEN": depsGHToken, "AB_GITHUB_TEAM": "infra-admins",
		"AB_PG_ADMIN_DSN": admURL.String() + "&application_name=abdeps", "AB_PG_ROLE": e.pgRole,
		"AB_WEBHOOK_URL": e.web.URL(), "AB_WEBHOOK_TOKEN": e2eToken,
	} {
		t.Setenv(k, v)
	}
	useFakeAWSCredentials(t, e.dir, "AKIDDEPS", depsAWSSecret)
	if code := run(context.Background(), []string{"audit", "keygen", "--out", filepath.Join(e.dir, "audit.key")}, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatalf("keygen exit %d", code)
	}
	return e
}

// unsetenv removes key for the rest of the test (restored after it).
func unsetenv(t *testing.T, key string) {
	t.Helper()
	t.Setenv(key, "")
	os.Unsetenv(key)
}

// depsNames are the dependencies of dependencies.yaml, in the order they are checked.
var depsNames = []string{"slack", "pagerduty", "aws", "postgres:prod-db", "aws-sts:prod-aws", "github-team:infra-admins"}

// breaks is every way a dependency fails that the tests try, in turn: what to break, which
// dependencies then fail (the first is the one broken), and what its line must say.
var breaks = []struct {
	name    string
	brk     func(t *testing.T, e *depsEnv)
	failing []string
	says    string
}{
	{name: "slack token refused", brk: func(t *testing.T, e *depsEnv) { t.Setenv("AB_SLACK_BOT_TOKEN", "xoxb-not-the-bot-token-000") },
		failing: []string{"slack"}, says: "invalid_auth"},
	{name: "slack token of another workspace", brk: func(t *testing.T, e *depsEnv) { t.Setenv("AB_SLACK_TEAM", "T0OTHER") },
		failing: []string{"slack"}, says: "belongs to workspace T0DEPS, but slack.team_id is T0OTHER"},
	{name: "slack answers 500", brk: func(t *testing.T, e *depsEnv) {
		e.slack.FailNext("auth.test", slackfake.Fault{Status: 500}, slackfake.Fault{Status: 500})
	}, failing: []string{"slack"}, says: "500"},
	{name: "pagerduty key refused", brk: func(t *testing.T, e *depsEnv) { t.Setenv("AB_PD_TOKEN", "u+not-the-pd-token-00") },
		failing: []string{"pagerduty"}, says: "refuses pagerduty.token (HTTP 401)"},
	{name: "pagerduty answers 503", brk: func(t *testing.T, e *depsEnv) { e.pd.InjectFault(pdfake.Fault{Status: 503}) },
		failing: []string{"pagerduty"}, says: "503"},
	{name: "no aws credentials", brk: func(t *testing.T, e *depsEnv) {
		unsetenv(t, "AWS_ACCESS_KEY_ID")
		unsetenv(t, "AWS_SECRET_ACCESS_KEY")
	}, failing: []string{"aws", "aws-sts:prod-aws"}, says: "sts:GetCallerIdentity"},
	{name: "aws role missing", brk: func(t *testing.T, e *depsEnv) {
		t.Setenv("AB_ROLE_ARN", "arn:aws:iam::123456789012:role/no-such-role")
	}, failing: []string{"aws-sts:prod-aws"}, says: "no-such-role"},
	{name: "github team missing", brk: func(t *testing.T, e *depsEnv) { t.Setenv("AB_GITHUB_TEAM", "no-such-team") },
		failing: []string{"github-team:infra-admins"}, says: "acme/no-such-team does not exist or the token cannot see it"},
	{name: "github token may not manage the team", brk: func(t *testing.T, e *depsEnv) { e.gh.SetOrgRole("acme", "octocat", "member") },
		failing: []string{"github-team:infra-admins"}, says: "neither an owner of acme nor a maintainer"},
	{name: "github unreachable", brk: func(t *testing.T, e *depsEnv) { t.Setenv("AB_GITHUB_API_URL", "http://127.0.0.1:1/") },
		failing: []string{"github-team:infra-admins"}, says: "connection refused"},
	// Port 1, not the proxy taken down: a port given back to the system can be bound by
	// another test's listener meanwhile, which then answers ("unexpected EOF", seen in a run
	// under load) where nothing should.
	{name: "postgres unreachable", brk: func(t *testing.T, e *depsEnv) { t.Setenv("AB_PG_ADMIN_DSN", unreachableDSN(t)) },
		failing: []string{"postgres:prod-db"}, says: "connection refused"},
	{name: "postgres role missing", brk: func(t *testing.T, e *depsEnv) { t.Setenv("AB_PG_ROLE", "abdeps_no_such_role") },
		failing: []string{"postgres:prod-db"}, says: `roles ["abdeps_no_such_role"] do not exist`},
}

// unreachableDSN is AB_PG_ADMIN_DSN pointed at 127.0.0.1:1, where nothing listens.
func unreachableDSN(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(os.Getenv("AB_PG_ADMIN_DSN"))
	if err != nil || u.Host == "" {
		t.Fatalf("AB_PG_ADMIN_DSN %v: not a URL with a host", err)
	}
	u.Host = "127.0.0.1:1"
	return u.String()
}

// secretsOf are the values no output may contain.
func secretsOf() []string {
	return []string{depsSlackToken, depsPDToken, depsGHToken, depsAWSSecret, depsPGPassword}
}

// TestConfigCheckOnline runs `config check --online` against the fakes with every
// dependency healthy, then with each broken in turn: exit 1, the broken one's line says why,
// every other line is ok, and no secret is printed.
func TestConfigCheckOnline(t *testing.T) {
	t.Run("all pass", func(t *testing.T) {
		e := newDepsEnv(t)
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), []string{"config", "check", "--config", e.config, "--online"}, &stdout, &stderr)
		if code != exitOK {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, &stdout, &stderr)
		}
		for _, n := range depsNames {
			if !strings.Contains(stdout.String(), "\n"+n+": ok\n") {
				t.Errorf("no %q line:\n%s", n+": ok", &stdout)
			}
		}
	})
	for _, b := range breaks {
		t.Run(b.name, func(t *testing.T) {
			e := newDepsEnv(t)
			b.brk(t, e)
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), []string{"config", "check", "--config", e.config, "--online"}, &stdout, &stderr)
			t.Logf("config check --online:\n%s%s", &stdout, &stderr)
			if code != exitFailure {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, exitFailure, &stdout, &stderr)
			}
			lines := map[string]string{}
			for _, l := range strings.Split(stdout.String(), "\n") {
				if name, rest, ok := strings.Cut(l, ": "); ok {
					lines[name] = rest
				}
			}
			for _, n := range depsNames {
				want := "ok"
				if slices.Contains(b.failing, n) {
					want = "failing"
				}
				if !strings.HasPrefix(lines[n], want) {
					t.Errorf("%s: %q, want %s\n%s", n, lines[n], want, &stdout)
				}
			}
			if got := lines[b.failing[0]]; !strings.Contains(got, b.says) {
				t.Errorf("%s: %q, want it to say %q", b.failing[0], got, b.says)
			}
			if !strings.Contains(stderr.String(), "failing") {
				t.Errorf("stderr does not sum up: %s", &stderr)
			}
			for _, s := range secretsOf() {
				if strings.Contains(stdout.String()+stderr.String(), s) {
					t.Errorf("output contains the secret %q:\n%s%s", s, &stdout, &stderr)
				}
			}
		})
	}
}

// serveDeps runs serve in this process on e's configuration and clock until the test ends.
func serveDeps(t *testing.T, e *depsEnv, clock grants.Clock) (*server, string, *syncBuffer) {
	t.Helper()
	cfg, ok := loadConfigFlag(e.config, io.Discard)
	if !ok {
		t.Fatal("config")
	}
	logs := &syncBuffer{}
	s, err := newServer(context.Background(), cfg, appOptions{logOut: logs, withProviders: true, clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, addr) }()
	select {
	case a := <-addr:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
			s.Close()
		})
		return s, "http://" + a, logs
	case err := <-done:
		s.Close()
		cancel()
		t.Fatalf("serve stopped at start: %v\n%s", err, logs)
	}
	return nil, "", nil
}

type readyzJSON struct {
	Status string `json:"status"`
	Checks []struct {
		Name      string `json:"name"`
		OK        bool   `json:"ok"`
		Error     string `json:"error"`
		CheckedAt string `json:"checked_at"`
	} `json:"checks"`
}

func verboseReadyz(t *testing.T, base string) (int, readyzJSON) {
	t.Helper()
	code, body := get(t, base+"/readyz?verbose")
	var r readyzJSON
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("/readyz?verbose: %v: %s", err, body)
	}
	return code, r
}

// TestServeReadyzNamesEachBrokenDependency: serve starts whatever one dependency does, and
// /readyz is 200 only when all pass; broken in turn, it answers 503 naming the dependency and
// why (?verbose in JSON), the metric says 0 for it, and no secret shows. A configuration the
// target contradicts (a granted role that does not exist) is refused at start instead.
func TestServeReadyzNamesEachBrokenDependency(t *testing.T) {
	t.Run("all pass", func(t *testing.T) {
		e := newDepsEnv(t)
		_, base, _ := serveDeps(t, e, nil)
		if code, body := get(t, base+"/readyz"); code != 200 || body != "ready\n" {
			t.Errorf("/readyz = %d %q", code, body)
		}
		code, r := verboseReadyz(t, base)
		if code != 200 || r.Status != "ok" || len(r.Checks) != len(depsNames)+1 {
			t.Errorf("/readyz?verbose = %d %+v", code, r)
		}
		_, metrics := get(t, base+"/metrics")
		for _, n := range depsNames {
			if want := `accessbroker_dependency_up{dependency="` + n + `"} 1`; !strings.Contains(metrics, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})
	for _, b := range breaks {
		t.Run(b.name, func(t *testing.T) {
			e := newDepsEnv(t)
			b.brk(t, e)
			if b.name == "postgres role missing" {
				cfg, ok := loadConfigFlag(e.config, io.Discard)
				if !ok {
					t.Fatal("config")
				}
				s, err := newServer(t.Context(), cfg, appOptions{logOut: io.Discard, withProviders: true})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				err = s.Run(t.Context(), nil)
				if err == nil || !strings.Contains(err.Error(), "postgres:prod-db") || !strings.Contains(err.Error(), b.says) {
					t.Errorf("serve with a missing role = %v, want a refusal naming postgres:prod-db and saying %q", err, b.says)
				}
				return
			}
			_, base, logs := serveDeps(t, e, nil)
			code, body := get(t, base+"/readyz")
			if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "not ready: ") || !strings.Contains(body, b.failing[0]+": ") || !strings.Contains(body, b.says) {
				t.Errorf("/readyz = %d %q, want 503 naming %s and saying %q", code, body, b.failing[0], b.says)
			}
			code, r := verboseReadyz(t, base)
			if code != http.StatusServiceUnavailable || r.Status != "failing" {
				t.Errorf("/readyz?verbose = %d %s", code, r.Status)
			}
			for _, c := range r.Checks {
				if want := !slices.Contains(b.failing, c.Name); c.OK != want || (!c.OK && c.Error == "") || c.CheckedAt == "" {
					t.Errorf("check %+v, want ok=%v", c, want)
				}
			}
			_, metrics := get(t, base+"/metrics")
			if want := `accessbroker_dependency_up{dependency="` + b.failing[0] + `"} 0`; !strings.Contains(metrics, want) {
				t.Errorf("/metrics lacks %s", want)
			}
			if !strings.Contains(logs.String(), `"msg":"dependency unavailable at start`) {
				t.Errorf("no log line names the unavailable dependency:\n%s", logs)
			}
			for _, s := range secretsOf() {
				if strings.Contains(body+logs.String(), s) {
					t.Errorf("/readyz or the log contains the secret %q", s)
				}
			}
		})
	}
}

// TestServeStartsDuringDatabaseOutage: serve restarts while prod-db's database is down. It
// starts, /readyz names postgres:prod-db, the other providers' grants are revoked on time,
// prod-db's revocation is retried with backoff, and once the database answers it completes
// (the role is gone) and /readyz turns green.
func TestServeStartsDuringDatabaseOutage(t *testing.T) {
	e := newDepsEnv(t)
	ctx := t.Context()
	issue := func(resource string) string {
		t.Helper()
		var o, er bytes.Buffer
		if code := run(ctx, []string{"grants", "issue", "--config", e.config, "--resource", resource, "--slack-user", "U0ALICE",
			"--duration", "15m", "--reason", "outage test " + resource, "--operator", "tester"}, &o, &er); code != 0 {
			t.Fatalf("issue %s: exit %d: %s %s", resource, code, &o, &er)
		}
		return strings.Fields(o.String())[1][:len("g_")+16]
	}
	dbGrant, webGrant := issue("prod-db"), issue("prod-web")
	super, err := pgx.Connect(ctx, e.dbDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer super.Close(context.Background())
	roleExists := func() bool {
		t.Helper()
		var n int
		suffix := "%" + dbGrant[len(dbGrant)-16:]
		if err := super.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname LIKE $1", suffix).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
	if !roleExists() {
		t.Fatal("prod-db's grant made no role")
	}

	e.pg.Down()
	clock := clocktest.New(time.Now()) // the grants were issued on the wall clock
	s, base, logs := serveDeps(t, e, clock)
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "postgres:prod-db: ") {
		t.Errorf("/readyz during the outage = %d %q, want 503 naming postgres:prod-db", code, body)
	}
	if !strings.Contains(logs.String(), `"dependency":"postgres:prod-db"`) {
		t.Errorf("no log line names postgres:prod-db:\n%s", logs)
	}

	grant := func(id string) grants.Grant {
		t.Helper()
		g, err := s.store.GetGrant(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	clock.Advance(16 * time.Minute) // both grants are due
	within(t, 30*time.Second, "prod-web's revocation while prod-db's database is down", func() bool {
		return grant(webGrant).State == grants.StateRevoked
	})
	within(t, 30*time.Second, "a failed attempt at prod-db's revocation", func() bool {
		g := grant(dbGrant)
		return g.State == grants.StateRevokeFailed && g.Attempts > 0
	})
	if active, _ := e.web.Access(webGrant); active {
		t.Error("prod-web's access is still there upstream")
	}
	if !roleExists() {
		t.Fatal("the role went while the database was unreachable")
	}

	if err := e.pg.Up(); err != nil {
		t.Fatal(err)
	}
	within(t, 60*time.Second, "prod-db's revocation once the database answers", func() bool {
		clock.Advance(10 * time.Second) // revoker.backoff_max
		return grant(dbGrant).State == grants.StateRevoked
	})
	if roleExists() {
		t.Error("prod-db's role still exists after its revocation")
	}
	within(t, 60*time.Second, "/readyz green again", func() bool {
		clock.Advance(30 * time.Second) // the readiness interval
		code, _ := get(t, base+"/readyz")
		return code == http.StatusOK
	})
	if _, metrics := get(t, base+"/metrics"); !strings.Contains(metrics, `accessbroker_dependency_up{dependency="postgres:prod-db"} 1`) {
		t.Error("the metric does not say postgres:prod-db is up again")
	}
}
