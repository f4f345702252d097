package demo

// Setup: the working directory, the fakes, the configuration and the broker.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/config"
	"github.com/accessbroker/accessbroker/fixtures/awsfake"
	"github.com/accessbroker/accessbroker/fixtures/githubfake"
	"github.com/accessbroker/accessbroker/fixtures/pdfake"
	"github.com/accessbroker/accessbroker/fixtures/slackfake"
	"github.com/accessbroker/accessbroker/fixtures/webhookfake"
	awsprov "github.com/accessbroker/accessbroker/integrations/aws"
)

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}

// startDemo starts the fakes and the broker and prints the setup. Each step is one line of
// the transcript's Setup section.
func startDemo(ctx context.Context, w Wiring, out io.Writer, keep string) (d *demo, err error) {
	d = &demo{out: out, wiring: w, responses: map[string]string{}, shown: map[int]int{}, sessions: map[string]string{},
		http: &http.Client{Timeout: demoWait}}
	defer func() {
		if err != nil {
			_ = d.close(ctx)
		}
	}()
	if err := d.makeDir(keep); err != nil {
		return d, err
	}
	d.start = realClock.Now().UTC().Truncate(time.Second)
	d.clock = newSimClock(d.start)
	sec := d.newSecrets()
	roleARN := d.startFakes(sec)
	vars := map[string]string{
		"SQLITE_DSN":        "file:" + filepath.Join(d.dir, "accessbroker.db"),
		"SLACK_API_URL":     d.slack.APIURL(),
		"PAGERDUTY_API_URL": d.pd.URL,
		"AWS_ENDPOINT_URL":  d.aws.URL(),
		"GITHUB_API_URL":    d.gh.URL(),
	}
	for _, k := range []string{"API_TOKEN", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "PAGERDUTY_TOKEN", "GITHUB_TOKEN", "CONSOLE_CLIENT_SECRET"} {
		vars[k] = sec.byName[k]
	}
	vars["PAGERDUTY_WEBHOOK_SECRET"] = sec.byName["PAGERDUTY_WEBHOOK_SEC"]
	prodDB := d.setupProdDB(ctx, vars)
	cfg, err := d.configure(prodDB, vars)
	if err != nil {
		return d, err
	}
	if err := d.startBroker(ctx, cfg, sec.aws); err != nil {
		return d, err
	}
	d.intro(roleARN)
	return d, nil
}

// makeDir makes the demo's working directory: keep (new or empty), or a temporary one.
func (d *demo) makeDir(keep string) error {
	if keep == "" {
		var err error
		if d.dir, err = os.MkdirTemp("", "accessbroker-demo-"); err != nil {
			return fmt.Errorf("create a working directory: %w", err)
		}
		return nil
	}
	if err := os.MkdirAll(keep, 0o700); err != nil {
		return fmt.Errorf("--keep %s: %w", keep, err)
	}
	if ents, err := os.ReadDir(keep); err != nil {
		return fmt.Errorf("--keep %s: %w", keep, err)
	} else if len(ents) > 0 {
		return usageError{fmt.Errorf("--keep %s: the directory is not empty; give a new or empty directory", keep)}
	}
	dir, err := filepath.Abs(keep)
	if err != nil {
		return fmt.Errorf("--keep %s: %w", keep, err)
	}
	d.dir, d.keep = dir, true
	return nil
}

// demoSecrets are one run's credentials, random each time: the broker's (by placeholder name;
// it reads them from files, file:secrets/NAME) and the fake AWS's secret key.
type demoSecrets struct {
	byName map[string]string
	aws    string
}

// newSecrets makes the run's secrets and remembers them for masking.
func (d *demo) newSecrets() demoSecrets {
	sec := demoSecrets{byName: map[string]string{
		"API_TOKEN":             randomHex(24),
		"SLACK_BOT_TOKEN":       "xoxb-demo-" + randomHex(16),
		"SLACK_SIGNING_SECRET":  randomHex(16),
		"PAGERDUTY_TOKEN":       "pd-demo-" + randomHex(12),
		"PAGERDUTY_WEBHOOK_SEC": randomHex(16),
		"GITHUB_TOKEN":          "ghp_demo" + randomHex(16),
		"CONSOLE_CLIENT_SECRET": randomHex(16),
	}, aws: randomHex(20)}
	d.awsKeyID = "AKIADEMO" + strings.ToUpper(randomHex(6))
	d.signingSecret, d.webhookSecret = sec.byName["SLACK_SIGNING_SECRET"], sec.byName["PAGERDUTY_WEBHOOK_SEC"]
	for _, v := range sec.byName {
		d.addSecret(v)
	}
	d.addSecret(sec.aws)
	return sec
}

// startFakes starts the fake Slack, PagerDuty, AWS and GitHub, all on the simulated clock,
// with the story's people, channels, on-call shift, role and team. It returns the role's ARN.
func (d *demo) startFakes(sec demoSecrets) string {
	d.slack = slackfake.New(slackfake.Options{Token: sec.byName["SLACK_BOT_TOKEN"], TeamID: demoTeam, Now: d.clock.Now})
	var everyone []string
	for _, p := range demoPeople {
		d.slack.AddUser(slackfake.User{ID: p.Slack, Name: p.Name, RealName: strings.ToUpper(p.Name[:1]) + p.Name[1:], Email: p.Email})
		everyone = append(everyone, p.Slack)
	}
	d.slack.AddChannel(demoApprovals, demoCarol.Slack, demoBob.Slack)
	d.slack.AddChannel(demoAuditChannel, demoCarol.Slack)
	d.slack.AddChannel(demoOpsChannel, everyone...)

	d.pd = pdfake.New(pdfake.Options{Token: sec.byName["PAGERDUTY_TOKEN"], Now: d.clock.Now})
	for _, p := range demoPeople {
		d.pd.AddUser(pdfake.User{ID: p.PagerDuty, Name: p.Name, Email: p.Email})
	}
	d.pd.SetOnCalls(pdfake.OnCall{UserID: demoAlice.PagerDuty, EscalationPolicyID: demoEscalationPolicy, EscalationPolicyName: "prod-db primary",
		ScheduleID: demoSchedule, ScheduleName: "prod-db weekly rotation", Level: 1,
		Start: d.start.Add(-2 * time.Hour), End: d.start.Add(6 * time.Hour)})

	d.aws = awsfake.New(awsfake.Options{AccessKeyID: d.awsKeyID, SecretAccessKey: sec.aws, Region: "us-east-1", Now: d.clock.Now})
	role := d.aws.AddRole(demoRoleName, 4*time.Hour)

	d.gh = githubfake.New(sec.byName["GITHUB_TOKEN"])
	d.gh.AddTeam(demoGitHubOrg, demoGitHubTeam)
	for _, p := range demoPeople {
		d.gh.AddOrgMember(demoGitHubOrg, p.GitHub)
	}
	return role.ARN
}

// setupProdDB gives prod-db the local PostgreSQL when one answers, else the webhook stand-in,
// adds its values to vars, and returns the template of its resource block.
func (d *demo) setupProdDB(ctx context.Context, vars map[string]string) string {
	d.pg, d.noPG = setupDemoPostgres(ctx, randomHex(4))
	if d.pg != nil {
		addr, err := d.setupProxy()
		if err == nil {
			vars["PROD_DB_ADMIN_DSN"] = d.pg.adminDSN
			vars["PROD_DB_ROLE"] = d.pg.role
			vars["POSTGRES_PROXY_LISTEN"] = addr
			vars["POSTGRES_PROXY_CERT"], vars["POSTGRES_PROXY_KEY"] = demoProxyCert, demoProxyKey
			d.proxyAddr = addr
			d.addSecret(d.pg.password)
			return "templates/prod-db-postgres.yaml"
		}
		d.noPG = "the session proxy could not be set up: " + err.Error()
		_, _ = d.pg.drop(ctx)
		d.pg = nil
	}
	token := "wh-demo-" + randomHex(16)
	d.addSecret(token)
	d.wh = webhookfake.New(token)
	vars["PROD_DB_WEBHOOK_URL"] = d.wh.URL()
	vars["PROD_DB_WEBHOOK_TOKEN"] = token
	return "templates/prod-db-webhook.yaml"
}

// demoSecretVars are the placeholders whose values go to files rather than into the YAML.
var demoSecretVars = map[string]bool{"API_TOKEN": true, "SLACK_BOT_TOKEN": true, "SLACK_SIGNING_SECRET": true, "PAGERDUTY_TOKEN": true,
	"PAGERDUTY_WEBHOOK_SECRET": true, "GITHUB_TOKEN": true, "PROD_DB_ADMIN_DSN": true, "PROD_DB_WEBHOOK_TOKEN": true, "CONSOLE_CLIENT_SECRET": true}

// configure renders and writes the configuration and the audit signing key, and loads the
// configuration like any other, and opens the broker's log.
func (d *demo) configure(prodDB string, vars map[string]string) (*config.Config, error) {
	var err error
	if d.configPath, err = d.writeConfig(prodDB, vars, demoSecretVars); err != nil {
		return nil, err
	}
	key, err := audit.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("audit key: %w", err)
	}
	pemKey, err := audit.MarshalPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("audit key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, "audit.key"), pemKey, 0o600); err != nil {
		return nil, fmt.Errorf("write the audit key: %w", err)
	}
	cfg, err := config.LoadConfig(d.configPath, os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("the demo's configuration %s is invalid (a bug in the demo): %w", d.configPath, err)
	}
	d.logPath = filepath.Join(d.dir, "broker.log")
	if d.logFile, err = os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		return nil, fmt.Errorf("open the broker log: %w", err)
	}
	return cfg, nil
}

// startBroker starts the real server (the same constructor and Run as `serve`) on the
// simulated clock, with the fake AWS's credentials, and waits until it listens.
func (d *demo) startBroker(ctx context.Context, cfg *config.Config, awsSecret string) error {
	var err error
	var standIn []StandIn
	for _, p := range demoPeople {
		standIn = append(standIn, StandIn{Name: p.Name, TeamID: demoTeam, UserID: p.Slack, Role: demoRoles[p.Name]})
	}
	d.broker, err = d.wiring.Start(ctx, cfg, BrokerOptions{Clock: d.clock, LogOut: d.logFile, ConsoleStandIn: standIn,
		AWSConfig: []awsprov.ConfigOption{awsprov.WithStaticCredentials(d.awsKeyID, awsSecret), awsprov.WithoutSharedConfigFiles()},
		AWSSTS:    []awsprov.STSOption{awsprov.WithFederationURL(d.aws.FederationURL())},
	})
	if err != nil {
		return fmt.Errorf("start the broker: %w", err)
	}
	// The broker lives until close, even after an interrupt, so that close can still revoke
	// what is live through it.
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	d.stop, d.done = stop, make(chan error, 1)
	addr := make(chan string, 1)
	go func() { d.done <- d.broker.Run(runCtx, addr) }()
	select {
	case a := <-addr:
		d.base = "http://" + a
	case err := <-d.done:
		d.done <- err
		return fmt.Errorf("the broker stopped at start: %w", err)
	}
	return nil
}

// demoPlaceholder is a ${NAME} in the templates.
var demoPlaceholder = regexp.MustCompile(`\$\{([A-Z0-9_]+)\}`)

// writeConfig renders templates/config.yaml with the prod-db block and the values, and
// writes it (and the secrets, as files it references) to the demo's directory.
func (d *demo) writeConfig(prodDB string, vars map[string]string, secret map[string]bool) (string, error) {
	tmpl, err := demoTemplates.ReadFile("templates/config.yaml")
	if err != nil {
		return "", err
	}
	block, err := demoTemplates.ReadFile(prodDB)
	if err != nil {
		return "", err
	}
	text := strings.Replace(string(tmpl), "${PROD_DB_RESOURCE}\n", string(block), 1)
	proxy := ""
	if prodDB == "templates/prod-db-postgres.yaml" {
		b, err := demoTemplates.ReadFile("templates/postgres-proxy.yaml")
		if err != nil {
			return "", err
		}
		proxy = string(b)
	}
	text = strings.Replace(text, "${POSTGRES_PROXY}\n", proxy, 1)
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
