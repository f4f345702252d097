package main

// `accessbroker demo`: the whole product on one machine, with no network and no accounts.
//
// The demo starts the real broker (newServer + Run, the code `serve` runs) on the embedded
// SQLite, wired to the fake Slack, PagerDuty, AWS and GitHub servers of fixtures/ on loopback
// through the same SDK clients production uses, and to the local PostgreSQL when one answers
// (otherwise prod-db uses the webhook provider against fixtures/webhookfake, and the
// transcript says so). Its configuration is rendered from testdata/demo and loaded with
// LoadConfig, so it passes the same validation as any other.
//
// It then plays a story as Slack and PagerDuty would: signed slash commands and button
// clicks, signed v3 webhooks. It never calls the broker's internals to make something happen;
// it reads outcomes from what the fake Slack received and from the store, and moves a fake
// clock instead of waiting. Secrets are masked in the transcript.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/config"
	"github.com/accessbroker/accessbroker/fixtures/awsfake"
	"github.com/accessbroker/accessbroker/fixtures/githubfake"
	"github.com/accessbroker/accessbroker/fixtures/pdfake"
	"github.com/accessbroker/accessbroker/fixtures/slackfake"
	"github.com/accessbroker/accessbroker/fixtures/webhookfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	awsprov "github.com/accessbroker/accessbroker/integrations/aws"
)

//go:embed testdata/demo/config.yaml testdata/demo/prod-db-postgres.yaml testdata/demo/prod-db-webhook.yaml
var demoTemplates embed.FS

// Seams for demo_test.go: the interactive mode's input, and a look at the demo's fakes after
// the story and before they are torn down.
var (
	demoStdin   io.Reader = os.Stdin
	demoInspect func(d *demo)
)

// demoRun and demoHasCommand reach the command table; they are set in init because the table
// itself names runDemo (a direct reference would be an initialization cycle).
var (
	demoRun        func(ctx context.Context, args []string, stdout, stderr io.Writer) int
	demoHasCommand func(name string) bool
)

func init() {
	demoRun = run
	demoHasCommand = func(name string) bool { _, ok := commands[name]; return ok }
}

const (
	// demoPostgresEnv names the PostgreSQL the demo uses for prod-db; "none" forces the
	// webhook provider.
	demoPostgresEnv        = "ACCESSBROKER_DEMO_POSTGRES_DSN"
	demoDefaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

	demoTeam             = "T0DEMO"
	demoApprovals        = "C0APPROVALS"
	demoAuditChannel     = "C0AUDIT"
	demoOpsChannel       = "C0OPS"
	demoEscalationPolicy = "PDEMOEP"
	demoSchedule         = "PDEMOSCH"
	demoService          = "PSVC123"
	demoRoleName         = "oncall-admin"
	demoGitHubOrg        = "acme"
	demoGitHubTeam       = "infra-admins"
	demoMask             = "••••"

	// demoWait bounds each wait for an outcome, in real time. It only guards against a hang:
	// the whole demo takes a few seconds.
	demoWait = 30 * time.Second
)

// demoPerson is one of the story's people, the same person in every fake.
type demoPerson struct {
	Name, Slack, PagerDuty, Email, GitHub string
}

var demoPeople = []demoPerson{
	{Name: "alice", Slack: "U0ALICE", PagerDuty: "PALICE", Email: "alice@example.com", GitHub: "alice"},
	{Name: "bob", Slack: "U0BOB", PagerDuty: "PBOB", Email: "bob@example.com", GitHub: "bob"},
	{Name: "carol", Slack: "U0CAROL", PagerDuty: "PCAROL", Email: "carol@example.com", GitHub: "carol"},
}

var (
	demoAlice = demoPeople[0]
	demoBob   = demoPeople[1]
	demoCarol = demoPeople[2]
)

// realClock measures the demo's own wall time and paces its polling; the broker never sees it.
var realClock grants.Clock = grants.RealClock{}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	interactive := fs.Bool("interactive", false, "after the story, keep serving and read commands from standard input (help lists them)")
	keep := fs.String("keep", "", "put the demo's files (config, SQLite database, audit key, broker log) in this new or empty directory and keep them")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: accessbroker demo [--interactive] [--keep DIR]")
		fmt.Fprintln(stderr, "\nRuns the broker with simulated Slack, PagerDuty, AWS and GitHub (and the local PostgreSQL when one answers;")
		fmt.Fprintf(stderr, "%s=DSN picks another, =none forces the webhook stand-in) and narrates what happens.\n\n", demoPostgresEnv)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "accessbroker demo: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	began := realClock.Now()
	d, err := startDemo(ctx, stdout, *keep)
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker demo: %v\n", err)
		return exitFailure
	}
	code := exitOK
	if err := d.story(ctx); err != nil {
		d.plain("")
		d.say("✗ the demo stopped: %v", err)
		fmt.Fprintf(stderr, "accessbroker demo: %s\n", d.mask(err.Error()))
		code = exitFailure
	} else if *interactive {
		d.interactive(ctx, demoStdin)
	}
	if demoInspect != nil {
		demoInspect(d)
	}
	if err := d.close(ctx); err != nil {
		fmt.Fprintf(stderr, "accessbroker demo: cleanup: %s\n", d.mask(err.Error()))
		code = exitFailure
	}
	fmt.Fprintf(stdout, "\nThe demo took %.1f s of real time for %s of simulated time.\n",
		realClock.Now().Sub(began).Seconds(), config.FormatDuration(d.clock.Now().Sub(d.start)))
	return code
}

// demo is one run: the fakes, the broker, and what the narrator has shown so far.
type demo struct {
	out   io.Writer
	clock *clocktest.Fake
	start time.Time
	dir   string
	keep  bool
	http  *http.Client

	slack *slackfake.Server
	pd    *pdfake.Server
	aws   *awsfake.Server
	gh    *githubfake.Server
	wh    *webhookfake.Server // set when prod-db uses the webhook provider
	pg    *demoPG             // set when prod-db is on PostgreSQL
	noPG  string              // why PostgreSQL is not used

	configPath string
	logPath    string
	logFile    *os.File
	srv        *server
	base       string
	stop       context.CancelFunc
	done       chan error

	signingSecret string
	webhookSecret string
	awsKeyID      string

	mu        sync.Mutex
	secrets   []string          // masked wherever they would appear
	responses map[string]string // response_url → the Slack user it was handed to
	shown     map[int]int       // message seq → the number of updates already shown
	sessions  map[string]string // grant id → AWS access key id delivered for it
	blank     bool              // the last transcript line was empty
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}

// startDemo starts the fakes and the broker and prints the setup.
func startDemo(ctx context.Context, out io.Writer, keep string) (d *demo, err error) {
	d = &demo{out: out, responses: map[string]string{}, shown: map[int]int{}, sessions: map[string]string{},
		http: &http.Client{Timeout: demoWait}}
	defer func() {
		if err != nil {
			_ = d.close(ctx)
		}
	}()
	if keep != "" {
		if err := os.MkdirAll(keep, 0o700); err != nil {
			return d, fmt.Errorf("--keep %s: %w", keep, err)
		}
		if ents, err := os.ReadDir(keep); err != nil {
			return d, fmt.Errorf("--keep %s: %w", keep, err)
		} else if len(ents) > 0 {
			return d, fmt.Errorf("--keep %s: the directory is not empty; give a new or empty directory", keep)
		}
		if d.dir, err = filepath.Abs(keep); err != nil {
			return d, fmt.Errorf("--keep %s: %w", keep, err)
		}
		d.keep = true
	} else if d.dir, err = os.MkdirTemp("", "accessbroker-demo-"); err != nil {
		return d, fmt.Errorf("create a working directory: %w", err)
	}
	d.start = realClock.Now().UTC().Truncate(time.Second)
	d.clock = clocktest.New(d.start)

	// Secrets: random per run, delivered to the broker as files (file:secrets/NAME).
	sec := map[string]string{
		"API_TOKEN":             randomHex(24),
		"SLACK_BOT_TOKEN":       "xoxb-demo-" + randomHex(16),
		"SLACK_SIGNING_SECRET":  randomHex(16),
		"PAGERDUTY_TOKEN":       "pd-demo-" + randomHex(12),
		"PAGERDUTY_WEBHOOK_SEC": randomHex(16),
		"GITHUB_TOKEN":          "ghp_demo" + randomHex(16),
	}
	awsSecret := randomHex(20)
	d.awsKeyID = "AKIADEMO" + strings.ToUpper(randomHex(6))
	d.signingSecret, d.webhookSecret = sec["SLACK_SIGNING_SECRET"], sec["PAGERDUTY_WEBHOOK_SEC"]
	for _, v := range sec {
		d.addSecret(v)
	}
	d.addSecret(awsSecret)

	// The fakes, all on the simulated clock.
	d.slack = slackfake.New(slackfake.Options{Token: sec["SLACK_BOT_TOKEN"], TeamID: demoTeam, Now: d.clock.Now})
	var everyone []string
	for _, p := range demoPeople {
		d.slack.AddUser(slackfake.User{ID: p.Slack, Name: p.Name, RealName: strings.ToUpper(p.Name[:1]) + p.Name[1:], Email: p.Email})
		everyone = append(everyone, p.Slack)
	}
	d.slack.AddChannel(demoApprovals, demoCarol.Slack, demoBob.Slack)
	d.slack.AddChannel(demoAuditChannel, demoCarol.Slack)
	d.slack.AddChannel(demoOpsChannel, everyone...)

	d.pd = pdfake.New(pdfake.Options{Token: sec["PAGERDUTY_TOKEN"], Now: d.clock.Now})
	for _, p := range demoPeople {
		d.pd.AddUser(pdfake.User{ID: p.PagerDuty, Name: p.Name, Email: p.Email})
	}
	d.pd.SetOnCalls(pdfake.OnCall{UserID: demoAlice.PagerDuty, EscalationPolicyID: demoEscalationPolicy, EscalationPolicyName: "prod-db primary",
		ScheduleID: demoSchedule, ScheduleName: "prod-db weekly rotation", Level: 1,
		Start: d.start.Add(-2 * time.Hour), End: d.start.Add(6 * time.Hour)})

	d.aws = awsfake.New(awsfake.Options{AccessKeyID: d.awsKeyID, SecretAccessKey: awsSecret, Region: "us-east-1", Now: d.clock.Now})
	role := d.aws.AddRole(demoRoleName, 4*time.Hour)

	d.gh = githubfake.New(sec["GITHUB_TOKEN"])
	d.gh.AddTeam(demoGitHubOrg, demoGitHubTeam)
	for _, p := range demoPeople {
		d.gh.AddOrgMember(demoGitHubOrg, p.GitHub)
	}

	vars := map[string]string{
		"SQLITE_DSN":        "file:" + filepath.Join(d.dir, "accessbroker.db"),
		"SLACK_API_URL":     d.slack.APIURL(),
		"PAGERDUTY_API_URL": d.pd.URL,
		"AWS_ENDPOINT_URL":  d.aws.URL(),
		"GITHUB_API_URL":    d.gh.URL(),
	}
	for _, k := range []string{"API_TOKEN", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "PAGERDUTY_TOKEN", "GITHUB_TOKEN"} {
		vars[k] = sec[k]
	}
	vars["PAGERDUTY_WEBHOOK_SECRET"] = sec["PAGERDUTY_WEBHOOK_SEC"]
	secretVars := map[string]bool{"API_TOKEN": true, "SLACK_BOT_TOKEN": true, "SLACK_SIGNING_SECRET": true, "PAGERDUTY_TOKEN": true,
		"PAGERDUTY_WEBHOOK_SECRET": true, "GITHUB_TOKEN": true, "PROD_DB_ADMIN_DSN": true, "PROD_DB_WEBHOOK_TOKEN": true}

	// prod-db: the local PostgreSQL when one answers, else the webhook stand-in.
	prodDB := "testdata/demo/prod-db-webhook.yaml"
	d.pg, d.noPG = setupDemoPostgres(ctx, randomHex(4))
	if d.pg != nil {
		prodDB = "testdata/demo/prod-db-postgres.yaml"
		vars["PROD_DB_ADMIN_DSN"] = d.pg.adminDSN
		vars["PROD_DB_ROLE"] = d.pg.role
		d.addSecret(d.pg.password)
	} else {
		token := "wh-demo-" + randomHex(16)
		d.addSecret(token)
		d.wh = webhookfake.New(token)
		vars["PROD_DB_WEBHOOK_URL"] = d.wh.URL()
		vars["PROD_DB_WEBHOOK_TOKEN"] = token
	}

	// The configuration: rendered, written, and loaded like any other.
	if d.configPath, err = d.writeConfig(prodDB, vars, secretVars); err != nil {
		return d, err
	}
	key, err := audit.GenerateKey(rand.Reader)
	if err != nil {
		return d, fmt.Errorf("audit key: %w", err)
	}
	pemKey, err := audit.MarshalPrivateKey(key)
	if err != nil {
		return d, fmt.Errorf("audit key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, "audit.key"), pemKey, 0o600); err != nil {
		return d, fmt.Errorf("write the audit key: %w", err)
	}
	cfg, err := config.LoadConfig(d.configPath, os.LookupEnv)
	if err != nil {
		return d, fmt.Errorf("the demo's configuration %s is invalid (a bug in the demo): %w", d.configPath, err)
	}
	d.logPath = filepath.Join(d.dir, "broker.log")
	if d.logFile, err = os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		return d, fmt.Errorf("open the broker log: %w", err)
	}

	// The real server: the same constructor and Run as `serve`, on the simulated clock.
	d.srv, err = newServer(ctx, cfg, appOptions{clock: d.clock, logOut: d.logFile, withProviders: true, aws: awsOptions{
		config: []awsprov.ConfigOption{awsprov.WithStaticCredentials(d.awsKeyID, awsSecret), awsprov.WithoutSharedConfigFiles()},
		sts:    []awsprov.STSOption{awsprov.WithFederationURL(d.aws.FederationURL())},
	}})
	if err != nil {
		return d, fmt.Errorf("start the broker: %w", err)
	}
	// The broker lives until close, even after an interrupt, so that close can still revoke
	// what is live through it.
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	d.stop, d.done = stop, make(chan error, 1)
	addr := make(chan string, 1)
	go func() { d.done <- d.srv.Run(runCtx, addr) }()
	select {
	case a := <-addr:
		d.base = "http://" + a
	case err := <-d.done:
		d.done <- err
		return d, fmt.Errorf("the broker stopped at start: %w", err)
	}
	d.intro(role.ARN)
	return d, nil
}

// demoPlaceholder is a ${NAME} in the templates.
var demoPlaceholder = regexp.MustCompile(`\$\{([A-Z0-9_]+)\}`)

// writeConfig renders testdata/demo/config.yaml with the prod-db block and the values, and
// writes it (and the secrets, as files it references) to the demo's directory.
func (d *demo) writeConfig(prodDB string, vars map[string]string, secret map[string]bool) (string, error) {
	tmpl, err := demoTemplates.ReadFile("testdata/demo/config.yaml")
	if err != nil {
		return "", err
	}
	block, err := demoTemplates.ReadFile(prodDB)
	if err != nil {
		return "", err
	}
	text := strings.Replace(string(tmpl), "${PROD_DB_RESOURCE}\n", string(block), 1)
	if err := os.MkdirAll(filepath.Join(d.dir, "secrets"), 0o700); err != nil {
		return "", fmt.Errorf("create the secrets directory: %w", err)
	}
	var missing []string
	expand := func(m string) string {
		name := demoPlaceholder.FindStringSubmatch(m)[1]
		v, ok := vars[name]
		if !ok {
			missing = append(missing, name)
			return m
		}
		if secret[name] {
			file := strings.ToLower(name)
			if err := os.WriteFile(filepath.Join(d.dir, "secrets", file), []byte(v+"\n"), 0o600); err != nil {
				missing = append(missing, name+" (write: "+err.Error()+")")
			}
			v = "file:secrets/" + file
		}
		// A JSON string is a YAML double-quoted scalar; $$ keeps LoadConfig from expanding.
		q, _ := json.Marshal(strings.ReplaceAll(v, "$", "$$"))
		return string(q)
	}
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") { // comments may name placeholders
			lines[i] = demoPlaceholder.ReplaceAllStringFunc(l, expand)
		}
	}
	text = strings.Join(lines, "\n")
	if len(missing) > 0 {
		return "", fmt.Errorf("render the demo configuration: no value for %s", strings.Join(missing, ", "))
	}
	path := filepath.Join(d.dir, "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return "", fmt.Errorf("write the demo configuration: %w", err)
	}
	return path, nil
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

// demoPG is the throwaway database and group role the demo made on a local PostgreSQL.
type demoPG struct {
	baseDSN  string // where the database was created (dropped from there)
	adminDSN string // the throwaway database, for the postgres provider
	password string // of adminDSN, masked in the transcript
	db, role string
	where    string // host:port, for the transcript
	version  string
}

// setupDemoPostgres connects to the demo's PostgreSQL (1 s timeout) and creates a throwaway
// database with a table and a read-only group role. It returns nil and the reason when there
// is no usable PostgreSQL.
func setupDemoPostgres(ctx context.Context, suffix string) (*demoPG, string) {
	dsn, from := os.Getenv(demoPostgresEnv), demoPostgresEnv
	if dsn == "" {
		dsn, from = demoDefaultPostgresDSN, "the default "+demoDefaultPostgresDSN
	}
	if strings.EqualFold(dsn, "none") {
		return nil, demoPostgresEnv + "=none"
	}
	pc, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Sprintf("%s is not a PostgreSQL connection string (%s)", demoPostgresEnv, firstLine(err.Error(), 120))
	}
	where := fmt.Sprintf("%s:%d", pc.Host, pc.Port)
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	conn, err := pgx.Connect(cctx, dsn)
	cancel()
	if err != nil {
		return nil, fmt.Sprintf("no PostgreSQL answered at %s (from %s) within 1 s: %s", where, from, firstLine(scrubPassword(err.Error(), pc.Password), 160))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	p := &demoPG{baseDSN: dsn, db: "accessbroker_demo_" + suffix, role: "demo_readonly_" + suffix, where: where, password: pc.Password}
	_ = conn.QueryRow(ctx, "SHOW server_version").Scan(&p.version)
	fail := func(what string, err error) (*demoPG, string) {
		p.drop(context.WithoutCancel(ctx))
		return nil, fmt.Sprintf("the PostgreSQL at %s (from %s) answered, but %s failed: %s", where, from, what, firstLine(scrubPassword(err.Error(), pc.Password), 160))
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{p.db}.Sanitize()); err != nil {
		return fail("CREATE DATABASE", err)
	}
	if _, err := conn.Exec(ctx, "CREATE ROLE "+pgx.Identifier{p.role}.Sanitize()+" NOLOGIN"); err != nil {
		return fail("CREATE ROLE", err)
	}
	p.adminDSN = withDatabase(dsn, p.db)
	dbc, err := pgx.Connect(ctx, p.adminDSN)
	if err != nil {
		return fail("connecting to the new database", err)
	}
	defer dbc.Close(context.WithoutCancel(ctx))
	role, db := pgx.Identifier{p.role}.Sanitize(), pgx.Identifier{p.db}.Sanitize()
	for _, stmt := range []string{
		"CREATE TABLE replication_status (replica text PRIMARY KEY, lag_seconds numeric NOT NULL)",
		"INSERT INTO replication_status VALUES ('replica-1', 0.4), ('replica-2', 37.2)",
		"GRANT CONNECT ON DATABASE " + db + " TO " + role,
		"GRANT USAGE ON SCHEMA public TO " + role,
		"GRANT SELECT ON ALL TABLES IN SCHEMA public TO " + role,
	} {
		if _, err := dbc.Exec(ctx, stmt); err != nil {
			return fail("setting up the demo table", err)
		}
	}
	return p, ""
}

// withDatabase returns dsn pointing at database db.
func withDatabase(dsn, db string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			u.Path, u.RawPath = "/"+db, ""
			return u.String()
		}
	}
	return dsn + " dbname=" + db // key=value: a later key wins
}

func scrubPassword(s, password string) string {
	if password == "" {
		return s
	}
	return strings.ReplaceAll(s, password, demoMask)
}

// drop removes the database, any login role the provider left behind (none, normally: every
// grant is revoked before the demo ends) and the group role. It returns the leftovers dropped.
func (p *demoPG) drop(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.baseDSN)
	if err != nil {
		return nil, fmt.Errorf("connect to drop %s: %s", p.db, scrubPassword(err.Error(), p.password))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var leftovers []string
	rows, err := conn.Query(ctx, `SELECT m.rolname FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member
		JOIN pg_roles g ON g.oid = a.roleid WHERE g.rolname = $1 AND m.rolname LIKE 'ab\_%'`, p.role)
	if err == nil {
		leftovers, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	var errs []error
	if err != nil {
		errs = append(errs, fmt.Errorf("list login roles left in %s: %w", p.role, err))
	}
	var num int
	_ = conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&num)
	db := pgx.Identifier{p.db}.Sanitize()
	if num >= 130000 {
		_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)")
	} else {
		_, _ = conn.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", p.db)
		_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("drop database %s: %w", p.db, err))
	}
	for _, r := range append(leftovers, p.role) {
		if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize()); err != nil {
			errs = append(errs, fmt.Errorf("drop role %s: %w", r, err))
		}
	}
	return leftovers, errors.Join(errs...)
}

// ---------------------------------------------------------------------------------------
// The transcript

func (d *demo) addSecret(v string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(v) < 6 {
		return
	}
	for _, s := range d.secrets {
		if s == v {
			return
		}
	}
	d.secrets = append(d.secrets, v)
	if u, err := url.PathUnescape(v); err == nil && u != v {
		d.secrets = append(d.secrets, u)
	}
}

// mask replaces every known secret value.
func (d *demo) mask(s string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, v := range d.secrets {
		s = strings.ReplaceAll(s, v, demoMask)
	}
	return s
}

// demoSecretREs find the secret parts of delivered credentials (group 1), in Slack mrkdwn.
var demoSecretREs = []*regexp.Regexp{
	regexp.MustCompile(`postgres(?:ql)?://[^:/@\s]+:([^@\s]+)@`),
	regexp.MustCompile(`AWS_SECRET_ACCESS_KEY=([^\s` + "`" + `]+)`),
	regexp.MustCompile(`AWS_SESSION_TOKEN=([^\s` + "`" + `]+)`),
	regexp.MustCompile(`SigninToken=([^&\s|>]+)`),
	regexp.MustCompile(`(?i)\*(?:secret|password|token|secret_access_key|session_token)\*: ` + "`([^`]+)`"),
}

// learn remembers the secrets in a delivered message so that they are masked everywhere.
func (d *demo) learn(raw string) {
	for _, re := range demoSecretREs {
		for _, m := range re.FindAllStringSubmatch(raw, -1) {
			d.addSecret(m[1])
		}
	}
}

func (d *demo) stamp() string { return grants.Timestamp(d.clock.Now()) }

// say prints a transcript line at the simulated time; continuation lines are indented.
func (d *demo) say(format string, args ...any) {
	d.emit(d.stamp()+"  ", fmt.Sprintf(format, args...))
}

func (d *demo) emit(prefix, text string) {
	pad := strings.Repeat(" ", len(prefix))
	lines := strings.Split(d.mask(text), "\n")
	d.blank = strings.TrimSpace(prefix+lines[len(lines)-1]) == ""
	for i, l := range lines {
		if i == 0 {
			fmt.Fprintln(d.out, strings.TrimRight(prefix+l, " "))
		} else {
			fmt.Fprintln(d.out, strings.TrimRight(pad+l, " "))
		}
	}
}

// plain prints without a time.
func (d *demo) plain(format string, args ...any) {
	d.emit("", fmt.Sprintf(format, args...))
}

func (d *demo) section(title string) {
	d.plain("\n%s\n%s", title, strings.Repeat("─", len([]rune(title))))
	d.blank = true // the rule separates enough
}

func (d *demo) outcome(format string, args ...any) {
	d.say("✔ "+format, args...)
}

func quoteLines(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "    │ " + l
	}
	return strings.Join(lines, "\n")
}

func (d *demo) intro(roleARN string) {
	d.plain("accessbroker demo: the whole product on this machine, with no network and no accounts.")
	d.plain("The real broker (the code `serve` runs) talks to fake Slack, PagerDuty, AWS and GitHub servers on")
	d.plain("loopback through the same SDK clients it uses in production. Slack commands, button clicks and")
	d.plain("PagerDuty webhooks are signed exactly as Slack and PagerDuty sign them.")
	d.plain("Time is SIMULATED: the broker runs on a fake clock that started at the real time and that this")
	d.plain("narrator moves forward (\"15 minutes later…\") instead of waiting. Times are UTC, RFC 3339.")
	d.plain("Secrets are masked (%s) here; each credential is delivered to its owner only.", demoMask)
	d.section("Setup")
	kept := "removed at exit; --keep DIR keeps them"
	if d.keep {
		kept = "kept"
	}
	d.plain("  files      %s\n             (config.yaml, accessbroker.db, audit.key, broker.log: %s)", d.dir, kept)
	d.plain("  Slack      fake workspace %s at %s:\n             alice %s, bob %s, carol %s; #approvals %s, #audit %s",
		demoTeam, d.slack.URL(), demoAlice.Slack, demoBob.Slack, demoCarol.Slack, demoApprovals, demoAuditChannel)
	d.plain("  PagerDuty  fake REST API at %s: alice is on call (escalation policy %s, level 1) until %s",
		d.pd.URL, demoEscalationPolicy, grants.Timestamp(d.start.Add(6*time.Hour)))
	d.plain("  AWS        fake STS and IAM at %s: role %s", d.aws.URL(), roleARN)
	d.plain("  GitHub     fake REST API at %s: organization %s, team %s", d.gh.URL(), demoGitHubOrg, demoGitHubTeam)
	if d.pg != nil {
		d.plain("  prod-db    PostgreSQL %s at %s:\n             throwaway database %s and group role %s (dropped at exit);",
			d.pg.version, d.pg.where, d.pg.db, d.pg.role)
		d.plain("             each grant is a real login role with VALID UNTIL, dropped on revocation")
	} else {
		d.plain("  prod-db    NO PostgreSQL: %s.", d.noPG)
		d.plain("             prod-db therefore uses the webhook provider against a fake service (fixtures/webhookfake):")
		d.plain("             its credential is a made-up account and secret, not a database login. Set")
		d.plain("             %s to a PostgreSQL URL (a superuser, or CREATEDB and CREATEROLE) to use a real one.", demoPostgresEnv)
	}
	d.plain("  policies   prod-db, prod-aws: at once when on call (PagerDuty %s), otherwise carol approves", demoEscalationPolicy)
	d.plain("             infra-admins (GitHub team): carol or bob approves, never their own request")
	d.plain("             auto_grant: acknowledging a page on PagerDuty service %s grants prod-db for 1h; resolving it revokes", demoService)
	d.plain("  broker     %s (newServer + Run, as `serve`)\n             configuration %s\n             log %s", d.base, d.configPath, d.logPath)
}

// Slack messages as people see them.

var (
	demoMentionRE = regexp.MustCompile(`<@([UW][A-Z0-9]+)>`)
	demoLinkRE    = regexp.MustCompile(`<(https?://[^|>]+)\|([^>]+)>`)
	demoSubteamRE = regexp.MustCompile(`<!subteam\^([A-Z0-9]+)>`)
	demoEmojiRE   = regexp.MustCompile(`:[a-z][a-z0-9_+-]*: ?`)
)

func (d *demo) nameOf(slackID string) string {
	for _, p := range demoPeople {
		if p.Slack == slackID {
			return p.Name
		}
	}
	return slackID
}

func (d *demo) person(name string) (demoPerson, bool) {
	for _, p := range demoPeople {
		if strings.EqualFold(p.Name, name) || strings.EqualFold(p.Slack, name) {
			return p, true
		}
	}
	return demoPerson{}, false
}

// recipient is the Slack user who sees m ("" for a channel message).
func (d *demo) recipient(m slackfake.Message) string {
	switch {
	case m.Via == slackfake.ResponseURLMethod:
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.responses[m.ResponseURL]
	case m.Ephemeral:
		return m.User
	case strings.HasPrefix(m.Channel, "D"):
		for _, p := range demoPeople {
			if d.slack.DMChannel(p.Slack) == m.Channel {
				return p.Slack
			}
		}
	}
	return ""
}

func (d *demo) audience(m slackfake.Message) string {
	who := d.nameOf(d.recipient(m))
	switch {
	case m.Via == slackfake.ResponseURLMethod, m.Ephemeral:
		return fmt.Sprintf("Slack → %s, ephemeral (only %s sees it)", who, who)
	case strings.HasPrefix(m.Channel, "D"):
		return "Slack → " + who + ", direct message"
	case m.Channel == demoApprovals:
		return "Slack #approvals"
	case m.Channel == demoAuditChannel:
		return "Slack #audit"
	}
	return "Slack " + m.Channel
}

// readable turns mrkdwn into plain text, unmasked: for the narrator's own use.
func (d *demo) readable(s string) string {
	s = demoMentionRE.ReplaceAllStringFunc(s, func(m string) string {
		return "@" + d.nameOf(demoMentionRE.FindStringSubmatch(m)[1])
	})
	s = demoLinkRE.ReplaceAllString(s, "$2 <$1>")
	s = demoSubteamRE.ReplaceAllString(s, "@group-$1")
	s = demoEmojiRE.ReplaceAllString(s, "")
	s = strings.NewReplacer("```", "", "`", "", "*", "").Replace(s)
	s = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s)
	return strings.TrimSpace(s)
}

// slackText is what the recipient of m reads, with secrets masked.
func (d *demo) slackText(m slackfake.Message) string {
	raw := m.Mrkdwn()
	d.learn(raw)
	return d.mask(d.readable(raw))
}

// showSlack prints every message (or update) the fake Slack received since the last call.
func (d *demo) showSlack() {
	for _, m := range d.slack.Messages() {
		d.mu.Lock()
		n, seen := d.shown[m.Seq]
		d.shown[m.Seq] = m.Updates
		d.mu.Unlock()
		switch {
		case !seen:
			d.say("%s:\n%s", d.audience(m), quoteLines(d.slackText(m)))
		case m.Updates > n:
			d.say("%s, the message above is updated:\n%s", d.audience(m), quoteLines(d.slackText(m)))
		}
	}
}

// ---------------------------------------------------------------------------------------
// Acting as Slack and PagerDuty

// postSlack sends body to the broker as Slack would, signed at the simulated time.
func (d *demo) postSlack(ctx context.Context, path string, body []byte) (int, []byte, error) {
	req, err := slackfake.SignedRequest(ctx, d.base+path, d.signingSecret, d.clock.Now(), body)
	if err != nil {
		return 0, nil, err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

func (d *demo) responseURL(user string) string {
	u := d.slack.NewResponseURL()
	d.mu.Lock()
	d.responses[u] = user
	d.mu.Unlock()
	return u
}

// command types "/access text" as who, with the documented slash-command form
// (fixtures/slack/slash-command.txt), and returns the immediate ephemeral answer.
func (d *demo) command(ctx context.Context, who demoPerson, text string) (string, error) {
	form, err := slackfake.CommandForm(slackfake.Command{TeamID: demoTeam, TeamDomain: "demo", ChannelID: demoOpsChannel, ChannelName: "ops",
		UserID: who.Slack, UserName: who.Name, Command: "/access", Text: text, APIAppID: "A0DEMO", ResponseURL: d.responseURL(who.Slack)})
	if err != nil {
		return "", err
	}
	status, body, err := d.postSlack(ctx, "/slack/commands", []byte(form.Encode()))
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("the broker answered the slash command with HTTP %d: %s", status, firstLine(string(body), 200))
	}
	var ans struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return "", fmt.Errorf("the broker's answer to the slash command is not Slack JSON: %w", err)
	}
	return d.readable(ans.Text), nil
}

// approvalMessage finds the approval request for requestID in #approvals.
func (d *demo) approvalMessage(requestID string) (slackfake.Message, bool) {
	for _, m := range d.slack.Messages() {
		if m.Channel == demoApprovals && strings.Contains(string(m.Blocks), requestID) {
			return m, true
		}
	}
	return slackfake.Message{}, false
}

// click presses Approve or Deny on requestID's approval message as who, with the documented
// block_actions payload (fixtures/slack/block-actions.json). It returns the click's
// response_url, where the broker answers the clicker privately.
func (d *demo) click(ctx context.Context, who demoPerson, action, requestID string) (string, error) {
	msg, _ := d.approvalMessage(requestID)
	rurl := d.responseURL(who.Slack)
	body, err := slackfake.BlockActions(slackfake.Click{TeamID: demoTeam, TeamDomain: "demo", UserID: who.Slack, UserName: who.Name,
		APIAppID: "A0DEMO", ChannelID: demoApprovals, ChannelName: "approvals", Message: msg, BotID: "B0BOT",
		ActionID: action, BlockID: "decide", Value: requestID, Label: map[string]string{"approve": "Approve", "deny": "Deny"}[action],
		ResponseURL: rurl, At: d.clock.Now()})
	if err != nil {
		return "", err
	}
	status, body, err := d.postSlack(ctx, "/slack/interactions", body)
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("the broker answered the click with HTTP %d: %s", status, firstLine(string(body), 200))
	}
	return rurl, nil
}

// pagerDutyEvent delivers a v3 incident webhook as PagerDuty would: the body built from the
// fake's incident, signed with the subscription's secret, occurred_at the simulated now.
func (d *demo) pagerDutyEvent(ctx context.Context, eventType, incidentID, agent string) (int, string, error) {
	del, err := d.pd.IncidentDelivery(eventType, incidentID, agent, d.clock.Now(), d.webhookSecret)
	if err != nil {
		return 0, "", err
	}
	req, err := del.Request(ctx, d.base+"/pagerduty/webhook")
	if err != nil {
		return 0, "", err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("POST /pagerduty/webhook: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// advance moves the simulated clock and lets the broker's timers see it: due timers fire, and
// the revoker and scheduler are woken so that a loop which read the clock just before the move
// looks again (with a real clock, time would simply keep passing).
func (d *demo) advance(by time.Duration, narration string) {
	d.clock.Advance(by)
	d.srv.revoker.Wake()
	if b := d.srv.front.broker; b != nil {
		b.Wake()
	}
	if !d.blank {
		d.plain("")
	}
	d.say("⏩ %s (simulated: the clock moved %s)", narration, config.FormatDuration(by))
}

// ---------------------------------------------------------------------------------------
// Waiting for outcomes (the deadline guards against a hang; it asserts nothing about speed)

func (d *demo) waitMessage(ctx context.Context, what string, pred func(slackfake.Message) bool) (slackfake.Message, error) {
	wctx, cancel := context.WithTimeout(ctx, demoWait)
	defer cancel()
	var found slackfake.Message
	_, err := d.slack.WaitFor(wctx, func(ms []slackfake.Message) bool {
		for _, m := range ms {
			if pred(m) {
				found = m
				return true
			}
		}
		return false
	})
	if err != nil {
		return found, fmt.Errorf("%s never arrived in Slack (see %s)", what, d.logPath)
	}
	return found, nil
}

func (d *demo) poll(ctx context.Context, what string, cond func() (bool, error)) error {
	wctx, cancel := context.WithTimeout(ctx, demoWait)
	defer cancel()
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return nil
		}
		t := realClock.NewTimer(20 * time.Millisecond)
		select {
		case <-wctx.Done():
			t.Stop()
			return fmt.Errorf("gave up waiting for %s (see %s)", what, d.logPath)
		case <-t.C():
		}
	}
}

func (d *demo) waitGrant(ctx context.Context, what string, pred func(grants.Grant) bool) (grants.Grant, error) {
	var found grants.Grant
	err := d.poll(ctx, what, func() (bool, error) {
		gs, err := d.srv.store.ListGrants(ctx, grants.GrantFilter{})
		if err != nil {
			return false, err
		}
		for _, g := range gs {
			if pred(g) {
				found = g
				return true, nil
			}
		}
		return false, nil
	})
	return found, err
}

func (d *demo) waitEvent(ctx context.Context, what string, q audit.Query, pred func(audit.Event) bool) (audit.Event, error) {
	var found audit.Event
	err := d.poll(ctx, what, func() (bool, error) {
		evs, err := d.srv.store.Search(ctx, q)
		if err != nil {
			return false, err
		}
		for _, e := range evs {
			if pred(e) {
				found = e
				return true, nil
			}
		}
		return false, nil
	})
	return found, err
}

// settle waits until the fake Slack has been quiet for a moment (interactive mode, where the
// narrator does not know what to expect).
func (d *demo) settle(ctx context.Context) {
	last, quiet := -1, 0
	_ = d.poll(ctx, "Slack to settle", func() (bool, error) {
		n := len(d.slack.Calls(""))
		if n == last {
			quiet++
		} else {
			last, quiet = n, 0
		}
		return quiet >= 15, nil // 300 ms without a Slack call
	})
}

func (d *demo) showEvents(ctx context.Context, grantID string, actions ...audit.Action) {
	evs, err := d.srv.store.Search(ctx, audit.Query{GrantID: grantID, Limit: 100})
	if err != nil {
		d.say("(audit search failed: %v)", err)
		return
	}
	for _, e := range evs {
		for _, a := range actions {
			if e.Action != a {
				continue
			}
			who := e.Actor.ID
			if n := d.nameOf(who); n != who {
				who = n
			}
			line := fmt.Sprintf("audit log #%d %s: %s by %s:%s", e.Seq, grants.Timestamp(e.Time), e.Action, e.Actor.Kind, who)
			if c := e.Evidence["cause"]; c != "" {
				line += ", cause " + c
			}
			if e.Reason != "" {
				line += ": " + e.Reason
			}
			d.say("%s", line)
		}
	}
}

var demoRequestIDRE = regexp.MustCompile(`\br_[a-z2-7]{16}\b`)

// request types /access as who and returns the request id from the immediate answer.
func (d *demo) request(ctx context.Context, who demoPerson, text string) (string, error) {
	d.say("%s types in #ops:  /access %s", who.Name, text)
	ack, err := d.command(ctx, who, text)
	if err != nil {
		return "", err
	}
	d.say("Slack → %s, ephemeral (the command's immediate answer):\n%s", who.Name, quoteLines(ack))
	id := demoRequestIDRE.FindString(ack)
	if !grants.ValidID("r", id) {
		return "", fmt.Errorf("the broker did not accept %q: %s", text, ack)
	}
	return id, nil
}

// isCredential reports whether m is a credential delivery (its blocks carry the credential).
func isCredential(m slackfake.Message) bool {
	return strings.Contains(string(m.Blocks), `"block_id":"credential"`)
}

// delivered waits until grant g's credential reached owner privately and returns the
// message, unmasked, for the narrator's own use.
func (d *demo) delivered(ctx context.Context, g grants.Grant, owner demoPerson, how string) (string, error) {
	m, err := d.waitMessage(ctx, fmt.Sprintf("the credential of grant %s for %s", g.ID, owner.Name), func(m slackfake.Message) bool {
		return d.recipient(m) == owner.Slack && strings.Contains(m.Mrkdwn(), g.ID) && isCredential(m)
	})
	if err != nil {
		return "", err
	}
	switch how {
	case "ephemeral":
		if m.Via != slackfake.ResponseURLMethod && !m.Ephemeral {
			return "", fmt.Errorf("grant %s: the credential was not delivered ephemerally", g.ID)
		}
	case "dm":
		if !strings.HasPrefix(m.Channel, "D") {
			return "", fmt.Errorf("grant %s: the credential was not delivered by direct message", g.ID)
		}
	}
	if _, err := d.waitMessage(ctx, "the #audit note of grant "+g.ID, func(m slackfake.Message) bool {
		return m.Channel == demoAuditChannel && strings.Contains(m.Text, g.ID)
	}); err != nil {
		return "", err
	}
	raw := m.Mrkdwn()
	d.learn(raw)
	return d.readable(raw), nil
}

// ---------------------------------------------------------------------------------------
// The story

func (d *demo) story(ctx context.Context) error {
	first, err := d.stepOnCall(ctx)
	if err != nil {
		return fmt.Errorf("1 (an on-call request): %w", err)
	}
	if err := d.stepApproval(ctx); err != nil {
		return fmt.Errorf("2 (an approval): %w", err)
	}
	if err := d.stepSelfApproval(ctx); err != nil {
		return fmt.Errorf("3 (a self-approval): %w", err)
	}
	if err := d.stepPage(ctx); err != nil {
		return fmt.Errorf("4 (a page): %w", err)
	}
	if err := d.stepExpiry(ctx, first); err != nil {
		return fmt.Errorf("5 (an expiry): %w", err)
	}
	if err := d.stepVerify(ctx); err != nil {
		return fmt.Errorf("6 (audit verify): %w", err)
	}
	if err := d.stepReport(ctx); err != nil {
		return fmt.Errorf("7 (the weekly report): %w", err)
	}
	d.summary(ctx)
	return nil
}

func (d *demo) stepOnCall(ctx context.Context) (grants.Grant, error) {
	d.section("1. alice is on call and asks for the production database")
	d.say("alice is on call in PagerDuty (escalation policy %s, level 1). prod-db lets on-call engineers in at once.", demoEscalationPolicy)
	reqID, err := d.request(ctx, demoAlice, "prod-db 15m checking replication lag")
	if err != nil {
		return grants.Grant{}, err
	}
	g, err := d.waitGrant(ctx, "alice's prod-db grant", func(g grants.Grant) bool { return g.RequestID == reqID && g.State == grants.StateActive })
	if err != nil {
		return g, err
	}
	text, err := d.delivered(ctx, g, demoAlice, "ephemeral")
	if err != nil {
		return g, err
	}
	d.showSlack()
	d.outcome("alice holds grant %s on prod-db until %s: auto-approved because she is on call.\n"+
		"  The credential went to her alone, as an ephemeral reply to her own command; it is stored nowhere (masked here).",
		g.ID, grants.Timestamp(g.ExpiresAt))
	if d.pg != nil {
		if err := d.useDatabase(ctx, text, true); err != nil {
			return g, err
		}
	}
	return g, nil
}

var demoConnRE = regexp.MustCompile(`postgres(?:ql)?://\S+`)

// useDatabase connects with the connection string alice received, as she would. Before the
// revocation a refusal is reported but not fatal (the local server's pg_hba.conf may not allow
// password logins from 127.0.0.1); after it, a login that still works is a failure, and the
// role's absence is checked in the catalogue.
func (d *demo) useDatabase(ctx context.Context, delivered string, beforeRevocation bool) error {
	cs := demoConnRE.FindString(delivered)
	pc, err := pgconn.ParseConfig(cs)
	if cs == "" || err != nil {
		return errors.New("no connection string in the delivered message")
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, cs)
	if err == nil {
		defer conn.Close(context.WithoutCancel(ctx))
		var user string
		var lag float64
		qerr := conn.QueryRow(cctx, "SELECT current_user, max(lag_seconds)::float8 FROM replication_status").Scan(&user, &lag)
		switch {
		case !beforeRevocation:
			d.say("alice's old connection string still logs in as %s", pc.User)
			return fmt.Errorf("the revoked PostgreSQL login %s still works", pc.User)
		case qerr != nil:
			d.say("alice logs in as %s, but the query fails: %s", user, firstLine(qerr.Error(), 200))
		default:
			d.say("alice connects with it: logged in to %s as %s;\n  SELECT max(lag_seconds) FROM replication_status → %.1f s", d.pg.db, user, lag)
		}
		return nil
	}
	if beforeRevocation {
		d.say("alice tries the connection string, but PostgreSQL refuses it (does pg_hba.conf allow password logins from %s?):\n    %s",
			pc.Host, pgMessage(err))
		return nil
	}
	d.say("alice tries the same connection string again: PostgreSQL refuses it:\n    %s", pgMessage(err))
	admin, err := pgx.Connect(cctx, d.pg.baseDSN)
	if err != nil {
		return fmt.Errorf("connect to check that %s is gone: %s", pc.User, scrubPassword(err.Error(), d.pg.password))
	}
	defer admin.Close(context.WithoutCancel(ctx))
	var n int
	if err := admin.QueryRow(cctx, "SELECT count(*) FROM pg_roles WHERE rolname = $1", pc.User).Scan(&n); err != nil {
		return fmt.Errorf("check that %s is gone: %w", pc.User, err)
	}
	if n != 0 {
		return fmt.Errorf("the login role %s still exists after its grant was revoked", pc.User)
	}
	d.outcome("the login role %s no longer exists in PostgreSQL", pc.User)
	return nil
}

// pgMessage is the server's own words when there are some (they name no password).
func pgMessage(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s: %s (SQLSTATE %s)", pe.Severity, pe.Message, pe.Code)
	}
	return firstLine(err.Error(), 200)
}

var demoAWSKeyRE = regexp.MustCompile(`AWS_ACCESS_KEY_ID=(\S+)`)

// requestApproval sends a command that needs approval and waits until the approval request is
// in #approvals and the requester was told; it returns the request id.
func (d *demo) requestApproval(ctx context.Context, who demoPerson, text string) (string, error) {
	reqID, err := d.request(ctx, who, text)
	if err != nil {
		return "", err
	}
	if _, err := d.waitMessage(ctx, "the approval request in #approvals", func(m slackfake.Message) bool {
		return m.Channel == demoApprovals && strings.Contains(string(m.Blocks), reqID)
	}); err != nil {
		return "", err
	}
	if _, err := d.waitMessage(ctx, "the broker's answer to "+who.Name, func(m slackfake.Message) bool {
		return d.recipient(m) == who.Slack && strings.Contains(m.Mrkdwn(), reqID)
	}); err != nil {
		return "", err
	}
	return reqID, nil
}

func (d *demo) stepApproval(ctx context.Context) error {
	d.section("2. bob is not on call: an approver decides")
	d.advance(time.Minute, "A minute later")
	reqID, err := d.requestApproval(ctx, demoBob, "prod-aws 30m deploying hotfix 4821 needs the S3 bucket policy")
	if err != nil {
		return err
	}
	d.showSlack()
	d.advance(time.Minute, "A minute later")
	d.say("carol clicks Approve on bob's request in #approvals")
	if _, err := d.click(ctx, demoCarol, "approve", reqID); err != nil {
		return err
	}
	g, err := d.waitGrant(ctx, "bob's prod-aws grant", func(g grants.Grant) bool { return g.RequestID == reqID && g.State == grants.StateActive })
	if err != nil {
		return err
	}
	text, err := d.delivered(ctx, g, demoBob, "dm")
	if err != nil {
		return err
	}
	if _, err := d.waitMessage(ctx, "the updated approval message", func(m slackfake.Message) bool {
		return m.Channel == demoApprovals && strings.Contains(string(m.Blocks), reqID) && m.Updates > 0
	}); err != nil {
		return err
	}
	d.showSlack()
	d.outcome("bob holds grant %s on prod-aws until %s, approved by carol.\n"+
		"  His AWS session credentials went to him alone, by direct message (masked here).", g.ID, grants.Timestamp(g.ExpiresAt))
	if m := demoAWSKeyRE.FindStringSubmatch(text); m != nil {
		d.mu.Lock()
		d.sessions[g.ID] = m[1]
		d.mu.Unlock()
		if err := d.aws.CheckSession(m[1], "s3:GetBucketPolicy"); err == nil {
			d.say("AWS (the fake) accepts bob's session %s for s3:GetBucketPolicy", m[1])
		} else {
			return fmt.Errorf("bob's AWS session %s does not work: %v", m[1], err)
		}
	}
	return nil
}

func (d *demo) stepSelfApproval(ctx context.Context) error {
	d.section("3. bob tries to approve his own request")
	d.advance(time.Minute, "A minute later")
	reqID, err := d.requestApproval(ctx, demoBob, "infra-admins 1h rotating the deploy key of the payments service")
	if err != nil {
		return err
	}
	d.showSlack()
	d.say("bob is one of infra-admins' approvers, and clicks Approve on his own request")
	rurl, err := d.click(ctx, demoBob, "approve", reqID)
	if err != nil {
		return err
	}
	if _, err := d.waitMessage(ctx, "the answer to bob's click", func(m slackfake.Message) bool { return m.ResponseURL == rurl }); err != nil {
		return err
	}
	rej, err := d.waitEvent(ctx, "the refusal in the audit log", audit.Query{RequestID: reqID, Action: audit.ActionRequestRejected, Limit: 10},
		func(e audit.Event) bool { return e.Actor.ID == demoBob.Slack })
	if err != nil {
		return err
	}
	d.showSlack()
	r, err := d.srv.store.GetRequest(ctx, reqID)
	if err != nil {
		return err
	}
	if r.State != grants.RequestPending {
		return fmt.Errorf("request %s is %s after bob's self-approval, want pending", reqID, r.State)
	}
	if gs, err := d.srv.store.ListGrants(ctx, grants.GrantFilter{RequestID: reqID}); err != nil || len(gs) > 0 {
		return fmt.Errorf("a grant exists for request %s after bob's self-approval (%d, %v)", reqID, len(gs), err)
	}
	d.outcome("REFUSED: bob cannot approve his own request. Request %s is still %s and nothing was granted;\n"+
		"  the refusal is audit event #%d (%s by %s).", reqID, r.State, rej.Seq, rej.Action, demoBob.Name)

	d.advance(30*time.Second, "30 seconds later")
	d.say("carol approves it instead")
	if _, err := d.click(ctx, demoCarol, "approve", reqID); err != nil {
		return err
	}
	g, err := d.waitGrant(ctx, "bob's infra-admins grant", func(g grants.Grant) bool { return g.RequestID == reqID && g.State == grants.StateActive })
	if err != nil {
		return err
	}
	if _, err := d.waitMessage(ctx, "bob's direct message about infra-admins", func(m slackfake.Message) bool {
		return d.recipient(m) == demoBob.Slack && strings.HasPrefix(m.Channel, "D") && strings.Contains(m.Mrkdwn(), g.ID)
	}); err != nil {
		return err
	}
	if _, err := d.waitMessage(ctx, "the #audit note of grant "+g.ID, func(m slackfake.Message) bool {
		return m.Channel == demoAuditChannel && strings.Contains(m.Text, g.ID)
	}); err != nil {
		return err
	}
	d.showSlack()
	role, state, ok := d.gh.Membership(demoGitHubOrg, demoGitHubTeam, demoBob.GitHub)
	if !ok {
		return fmt.Errorf("GitHub has no %s/%s membership for bob after grant %s", demoGitHubOrg, demoGitHubTeam, g.ID)
	}
	d.outcome("bob holds grant %s: GitHub (the fake) shows him as %s of %s/%s (%s) until %s, approved by carol.",
		g.ID, role, demoGitHubOrg, demoGitHubTeam, state, grants.Timestamp(g.ExpiresAt))
	return nil
}

func (d *demo) stepPage(ctx context.Context) error {
	d.section("4. A page: acknowledging it grants access, resolving it takes it away")
	d.advance(90*time.Second, "A minute and a half later")
	now := d.clock.Now()
	inc := pdfake.Incident{ID: "Q0DEMO1042", Number: 1042, Title: "Replication lag above 30 s on prod-db", Status: "triggered",
		ServiceID: demoService, ServiceName: "prod-db", EscalationPolicyID: demoEscalationPolicy, EscalationPolicyName: "prod-db primary",
		Assignees: []string{demoAlice.PagerDuty}, CreatedAt: now, UpdatedAt: now}
	d.pd.PutIncident(inc)
	d.say("PagerDuty pages alice: incident #%d %q on service %s", inc.Number, inc.Title, inc.ServiceID)
	d.advance(30*time.Second, "30 seconds later")
	inc.Status, inc.Acknowledgers, inc.UpdatedAt = "acknowledged", []string{demoAlice.PagerDuty}, d.clock.Now()
	d.pd.PutIncident(inc)
	d.say("alice acknowledges the page; PagerDuty sends a signed v3 webhook, incident.acknowledged, to the broker")
	status, body, err := d.pagerDutyEvent(ctx, "incident.acknowledged", inc.ID, demoAlice.PagerDuty)
	if err != nil {
		return err
	}
	d.say("the broker confirms the acknowledgement with the PagerDuty API and answers HTTP %d %q", status, body)
	if status != http.StatusOK {
		return fmt.Errorf("the webhook was answered with HTTP %d: %s", status, body)
	}
	g, err := d.waitGrant(ctx, "alice's grant for the incident", func(g grants.Grant) bool { return g.IncidentID == inc.ID && g.State == grants.StateActive })
	if err != nil {
		return err
	}
	if _, err := d.delivered(ctx, g, demoAlice, "dm"); err != nil {
		return err
	}
	d.showSlack()
	d.outcome("alice holds grant %s on prod-db until %s for incident #%d:\n"+
		"  granted by the auto_grant rule for %s without asking anyone, and delivered by direct message.",
		g.ID, grants.Timestamp(g.ExpiresAt), inc.Number, demoService)

	d.advance(3*time.Minute, "3 minutes later the lag is gone")
	inc.Status, inc.UpdatedAt = "resolved", d.clock.Now()
	d.pd.PutIncident(inc)
	d.say("alice resolves the incident; PagerDuty sends incident.resolved")
	status, body, err = d.pagerDutyEvent(ctx, "incident.resolved", inc.ID, demoAlice.PagerDuty)
	if err != nil {
		return err
	}
	d.say("the broker answers HTTP %d %q", status, body)
	if status != http.StatusOK {
		return fmt.Errorf("the webhook was answered with HTTP %d: %s", status, body)
	}
	g, err = d.waitGrant(ctx, "the incident grant's revocation", func(x grants.Grant) bool { return x.ID == g.ID && x.State == grants.StateRevoked })
	if err != nil {
		return err
	}
	if _, err := d.waitMessage(ctx, "alice's revocation notice", func(m slackfake.Message) bool {
		return d.recipient(m) == demoAlice.Slack && strings.HasPrefix(m.Channel, "D") && strings.Contains(m.Text, g.ID) && !isCredential(m)
	}); err != nil {
		return err
	}
	d.showSlack()
	d.showEvents(ctx, g.ID, audit.ActionGrantRevokeQueued, audit.ActionGrantRevoked)
	d.outcome("grant %s was revoked at %s, cause %s: the incident it was for is resolved.", g.ID, grants.Timestamp(g.RevokedAt), g.RevokeCause)
	return nil
}

func (d *demo) stepExpiry(ctx context.Context, first grants.Grant) error {
	d.section("5. alice's first grant runs out")
	remind := first.ExpiresAt.Add(-5 * time.Minute)
	if now := d.clock.Now(); now.Before(remind) {
		d.advance(remind.Sub(now), fmt.Sprintf("%s later, 5 minutes before alice's grant ends", config.FormatDuration(remind.Sub(now))))
	}
	rem, err := d.waitMessage(ctx, "alice's expiry reminder", func(m slackfake.Message) bool {
		return d.recipient(m) == demoAlice.Slack && strings.HasPrefix(m.Channel, "D") && strings.Contains(string(m.Blocks), first.ID) &&
			strings.Contains(string(m.Blocks), `"extend"`)
	})
	if err != nil {
		return err
	}
	d.showSlack()
	d.say("alice does not extend it")
	d.advance(first.ExpiresAt.Sub(d.clock.Now())+time.Second, "5 minutes later")
	g, err := d.waitGrant(ctx, "the revocation of "+first.ID, func(g grants.Grant) bool { return g.ID == first.ID && g.State == grants.StateRevoked })
	if err != nil {
		return err
	}
	if _, err := d.waitMessage(ctx, "alice's revocation notice", func(m slackfake.Message) bool {
		return d.recipient(m) == demoAlice.Slack && m.Seq > rem.Seq && strings.Contains(m.Text, g.ID)
	}); err != nil {
		return err
	}
	d.showSlack()
	d.showEvents(ctx, g.ID, audit.ActionGrantRevoked)
	d.outcome("the revoker revoked grant %s at %s, cause %s: its 15 minutes were up.", g.ID, grants.Timestamp(g.RevokedAt), g.RevokeCause)
	if d.pg != nil {
		// alice's delivered message is ephemeral; the narrator reads it back from the fake.
		for _, m := range d.slack.Messages() {
			if d.recipient(m) == demoAlice.Slack && strings.Contains(m.Mrkdwn(), first.ID) && isCredential(m) {
				if err := d.useDatabase(ctx, d.readable(m.Mrkdwn()), false); err != nil {
					return err
				}
				break
			}
		}
	}
	return nil
}

func (d *demo) runCommand(ctx context.Context, args ...string) (int, string) {
	var out, errb bytes.Buffer
	code := demoRun(ctx, args, &out, &errb)
	return code, strings.TrimRight(out.String()+errb.String(), "\n")
}

func (d *demo) stepVerify(ctx context.Context) error {
	d.section("6. The audit log verifies")
	d.say("$ accessbroker audit verify --config %s", d.configPath)
	code, out := d.runCommand(ctx, "audit", "verify", "--config", d.configPath)
	d.say("%s", quoteLines(out))
	if code != exitOK {
		return fmt.Errorf("audit verify exited %d: %s", code, out)
	}
	d.outcome("audit verify passed (exit 0): every event's hash chains to the one before, and the signed checkpoints match.")
	return nil
}

func (d *demo) stepReport(ctx context.Context) error {
	d.section("7. The weekly report")
	now := d.clock.Now()
	since, until := grants.Timestamp(now.Add(-168*time.Hour)), grants.Timestamp(now.Add(time.Second))
	if !demoHasCommand("report") {
		d.say("(this build has no `report` command; a summary from `audit search` instead)")
		code, out := d.runCommand(ctx, "audit", "search", "--config", d.configPath, "--since", since, "--until", until, "--limit", "1000")
		d.plain("%s", quoteLines(out))
		if code != exitOK {
			return fmt.Errorf("audit search exited %d", code)
		}
		return nil
	}
	d.say("$ accessbroker report --config %s --since %s --until %s", d.configPath, since, until)
	d.say("(the window ends at the simulated now; on a real broker `--since 168h` is enough)")
	code, out := d.runCommand(ctx, "report", "--config", d.configPath, "--since", since, "--until", until, "--format", "markdown")
	d.plain("%s", quoteLines(out))
	if code != exitOK {
		return fmt.Errorf("report exited %d", code)
	}
	return nil
}

func (d *demo) grantsTable(ctx context.Context) string {
	gs, err := d.srv.store.ListGrants(ctx, grants.GrantFilter{})
	if err != nil {
		return "(list grants: " + err.Error() + ")"
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GRANT\tRESOURCE\tWHO\tSTATE\tISSUED\tENDS/ENDED\tWHY IT ENDED")
	for i := len(gs) - 1; i >= 0; i-- {
		g := gs[i]
		end := grants.Timestamp(g.ExpiresAt)
		if !g.RevokedAt.IsZero() {
			end = grants.Timestamp(g.RevokedAt)
		}
		issued := "-"
		if !g.IssuedAt.IsZero() {
			issued = grants.Timestamp(g.IssuedAt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.ID, g.Resource, d.nameOf(g.Person.SlackUserID), g.State, issued, end, g.RevokeCause)
	}
	tw.Flush()
	return strings.TrimRight(b.String(), "\n")
}

func (d *demo) summary(ctx context.Context) {
	d.section("What happened")
	d.plain("%s", quoteLines(d.grantsTable(ctx)))
	d.plain("")
	d.plain("  • alice, on call, got prod-db at once; bob, off call, got prod-aws after carol approved;")
	d.plain("    bob could not approve his own infra-admins request; acknowledging a page granted prod-db,")
	d.plain("    resolving it revoked that grant; a grant that ran out was revoked by the revoker;")
	d.plain("    every step is in a hash-chained, signed audit log that verifies.")
	d.plain("  • Next: README.md (what it guarantees), docs/slack.md, docs/pagerduty.md, docs/aws.md,")
	d.plain("    docs/postgres.md to connect real systems, docs/configuration.md, docs/operations.md.")
	d.plain("  • Try it yourself: accessbroker demo --interactive")
}

// ---------------------------------------------------------------------------------------
// --interactive

const demoHelp = `Commands (Slack users: alice, bob, carol; alice is on call, carol approves everything):
  as <user> /access <text>          type a slash command as that user, e.g. as bob /access prod-db 30m checking the backlog
  approve <request-id> as <user>    click Approve on a request in #approvals
  deny <request-id> as <user>       click Deny
  advance <duration>                move the simulated clock, e.g. advance 10m (grants expire, reminders go out)
  grants                            list every grant
  help                              this text
  quit                              stop (end of input does too)`

func (d *demo) interactive(ctx context.Context, in io.Reader) {
	d.section("Your turn (--interactive): the broker keeps serving")
	d.plain("%s", demoHelp)
	// Lines are read in the background so that an interrupt ends the loop at once.
	lines, done := make(chan string), make(chan struct{})
	defer close(done)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-done:
				return
			}
		}
	}()
	for {
		fmt.Fprint(d.out, "\ndemo> ")
		var line string
		var ok bool
		select {
		case line, ok = <-lines:
		case <-ctx.Done():
		}
		if !ok {
			fmt.Fprintln(d.out)
			return
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		fmt.Fprintln(d.out)
		if f := strings.Fields(line); f[0] == "quit" || f[0] == "exit" {
			return
		}
		if err := d.do(ctx, line); err != nil {
			d.say("✗ %v", err)
		}
	}
}

func (d *demo) do(ctx context.Context, line string) error {
	f := strings.Fields(line)
	switch strings.ToLower(f[0]) {
	case "help", "?":
		d.plain("%s", demoHelp)
		return nil
	case "grants":
		d.plain("%s", quoteLines(d.grantsTable(ctx)))
		return nil
	case "advance":
		if len(f) != 2 {
			return errors.New("usage: advance <duration>, e.g. advance 10m")
		}
		by, err := time.ParseDuration(f[1])
		if err != nil || by <= 0 || by > 7*24*time.Hour {
			return fmt.Errorf("%q is not a duration between 1s and 168h (write it like 90s, 10m or 2h)", f[1])
		}
		d.advance(by, config.FormatDuration(by)+" later")
	case "as":
		if len(f) < 3 {
			return errors.New("usage: as <user> /access <text>")
		}
		who, ok := d.person(f[1])
		if !ok {
			return fmt.Errorf("no Slack user %q here: use alice, bob or carol", f[1])
		}
		text := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line[strings.Index(line, f[1])+len(f[1]):]), "/access"))
		d.say("%s types:  /access %s", who.Name, text)
		ack, err := d.command(ctx, who, text)
		if err != nil {
			return err
		}
		d.say("Slack → %s, ephemeral (the command's immediate answer):\n%s", who.Name, quoteLines(ack))
	case "approve", "deny":
		if len(f) != 4 || f[2] != "as" {
			return fmt.Errorf("usage: %s <request-id> as <user>", f[0])
		}
		if !grants.ValidID("r", f[1]) {
			return fmt.Errorf("%q is not a request id (they look like r_abcdefghijklmnop)", f[1])
		}
		who, ok := d.person(f[3])
		if !ok {
			return fmt.Errorf("no Slack user %q here: use alice, bob or carol", f[3])
		}
		d.say("%s clicks %s on request %s", who.Name, strings.ToUpper(f[0][:1])+f[0][1:], f[1])
		if _, err := d.click(ctx, who, strings.ToLower(f[0]), f[1]); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown command %q: type help", f[0])
	}
	d.settle(ctx)
	d.showSlack()
	return nil
}

// ---------------------------------------------------------------------------------------
// Teardown

// close revokes what is still live (nothing is left behind upstream), stops the broker and the
// fakes, drops the PostgreSQL objects, and removes the directory unless --keep.
func (d *demo) close(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx)
	var errs []error
	if d.srv != nil && d.done != nil && d.base != "" {
		errs = append(errs, d.revokeLeftovers(ctx))
	}
	if d.stop != nil {
		d.stop()
		if err := <-d.done; err != nil {
			errs = append(errs, fmt.Errorf("the broker: %w", err))
		}
	}
	if d.srv != nil {
		if err := d.srv.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close the store: %w", err))
		}
	}
	if d.logFile != nil {
		d.logFile.Close()
	}
	if d.slack != nil {
		d.slack.Close()
	}
	if d.pd != nil {
		d.pd.Close()
	}
	if d.gh != nil {
		d.gh.Close()
	}
	if d.wh != nil {
		d.wh.Close()
	}
	if d.aws != nil {
		d.aws.Close()
	}
	if d.pg != nil {
		leftovers, err := d.pg.drop(ctx)
		if err != nil {
			errs = append(errs, err)
		}
		if len(leftovers) > 0 {
			d.plain("Dropped PostgreSQL login roles that were still there: %s", strings.Join(leftovers, ", "))
		}
		if err == nil && d.out != nil {
			d.plain("Dropped the PostgreSQL database %s and role %s.", d.pg.db, d.pg.role)
		}
	}
	if d.dir != "" && !d.keep {
		if err := os.RemoveAll(d.dir); err != nil {
			errs = append(errs, err)
		}
	} else if d.keep && d.configPath != "" {
		d.plain("Kept %s: try  accessbroker audit verify --config %s", d.dir, d.configPath)
	}
	return errors.Join(errs...)
}

// revokeLeftovers revokes every live grant through the manager (audited, actor the demo) and
// waits for the revoker to finish them.
func (d *demo) revokeLeftovers(ctx context.Context) error {
	live, err := d.srv.store.ListGrants(ctx, grants.GrantFilter{States: []grants.State{grants.StateIssuing, grants.StateActive,
		grants.StateRevoking, grants.StateRevokeFailed}})
	if err != nil || len(live) == 0 {
		return err
	}
	d.section("Closing: revoking what is still live, so that nothing is left behind")
	actor := audit.Actor{Kind: audit.ActorOperator, ID: "accessbroker-demo"}
	for _, g := range live {
		if _, err := d.srv.manager.Revoke(ctx, g.ID, grants.CauseManual, actor, "the demo is ending"); err != nil {
			return fmt.Errorf("revoke %s: %w", g.ID, err)
		}
	}
	for _, g := range live {
		rg, err := d.waitGrant(ctx, "the revocation of "+g.ID, func(x grants.Grant) bool { return x.ID == g.ID && x.State == grants.StateRevoked })
		if err != nil {
			return err
		}
		d.say("revoked %s (%s's %s), cause %s", rg.ID, d.nameOf(rg.Person.SlackUserID), rg.Resource, rg.RevokeCause)
		d.mu.Lock()
		key := d.sessions[rg.ID]
		d.mu.Unlock()
		if key != "" {
			if err := d.aws.CheckSession(key, "s3:GetBucketPolicy"); err != nil {
				d.say("  AWS (the fake) now refuses bob's session %s: %v", key, err)
			} else {
				return fmt.Errorf("bob's AWS session %s still works after grant %s was revoked", key, rg.ID)
			}
		}
		if rg.Provider == "github-team" {
			if _, _, ok := d.gh.Membership(demoGitHubOrg, demoGitHubTeam, rg.Person.GitHubLogin); !ok {
				d.say("  GitHub (the fake) no longer lists %s in %s/%s", rg.Person.GitHubLogin, demoGitHubOrg, demoGitHubTeam)
			}
		}
	}
	d.showSlack()
	return nil
}
