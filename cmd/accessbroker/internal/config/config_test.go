package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/accessbroker/accessbroker/grants"
)

const testdataDir = "testdata/config"

// envMap is a fake getenv over a map.
func envMap(m map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(data)
}

// minimalBase is a valid 8-line config (one webhook resource) that tests append to.
func minimalBase(t *testing.T) string {
	t.Helper()
	return mustRead(t, filepath.Join(testdataDir, "minimal.yaml"))
}

// mustConfigError returns err as a *ConfigError or fails.
func mustConfigError(t *testing.T, err error) *ConfigError {
	t.Helper()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v (%T), want *ConfigError", err, err)
	}
	if len(ce.Problems) == 0 {
		t.Fatal("ConfigError without problems")
	}
	return ce
}

// validEnv is the environment valid.yaml refers to.
var validEnv = map[string]string{
	"API_TOKEN":            "api-token-0123456789abcdef0123456789",
	"DB_PASSWORD":          "db-pass",
	"SLACK_BOT_TOKEN":      "xoxb-test-token",
	"SLACK_SIGNING_SECRET": "slack-signing-secret",
	"PD_WEBHOOK_SECRET":    "whsec-two",
	"GITHUB_TOKEN":         "ghp-test-token",
}

var configCmpOpts = []cmp.Option{
	cmpopts.IgnoreUnexported(Config{}),
	cmp.Comparer(func(a, b Secret) bool { return a.value == b.value }),
	cmpopts.EquateEmpty(),
}

func TestLoadConfigValid(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig(filepath.Join(testdataDir, "valid.yaml"), envMap(validEnv))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	s := NewSecret
	want := &Config{
		InstanceName: "test-broker",
		LogLevel:     "debug",
		Listen:       "127.0.0.1:9090",
		API:          APIConfig{Token: s("api-token-0123456789abcdef0123456789")},
		Store:        StoreConfig{Driver: "postgres", DSN: s("postgres://broker:db-pass@db.internal:5433/accessbroker?sslmode=verify-full")},
		Audit:        AuditConfig{SigningKeyFile: "/etc/accessbroker/audit.key", CheckpointEvery: 500, CheckpointPeriod: 30 * time.Minute},
		Revoker: RevokerConfig{
			ConcurrencyPerProvider: 8, Batch: 100, BackoffBase: 2 * time.Second, BackoffMax: 10 * time.Minute,
			ClaimLease: 3 * time.Minute, IssueTimeout: 45 * time.Second, ShutdownGrace: 20 * time.Second,
		},
		Drift: DriftConfig{Interval: 30 * time.Minute, Action: "revoke"},
		Slack: &SlackConfig{
			APIURL: "http://127.0.0.1:8111/api/", TeamID: "T0TEAM",
			BotToken: s("xoxb-test-token"), SigningSecret: s("slack-signing-secret"),
			SigningSecrets: []Secret{s("old-signing-secret")},
			AuditChannel:   "C0AUDIT", ApprovalsChannel: "C0APPROVE",
			Summary:    SummaryConfig{Channel: "C0SUMMARY", Day: "friday", Time: "16:30"},
			RequestTTL: 2 * time.Hour, MinReasonLength: 0,
		},
		PagerDuty: &PagerDutyConfig{
			APIURL: "http://localhost:8112", Token: s("pd-token-from-file-0123"),
			WebhookSecrets: []Secret{s("whsec-one"), s("whsec-two")}, Freshness: 2 * time.Minute,
		},
		AWS:    &AWSConfig{Region: "eu-west-1", EndpointURL: "http://[::1]:8113"},
		GitHub: &GitHubConfig{APIURL: "https://github.example.com/api/v3/", Token: s("ghp-test-token")},
		Resources: []ResourceConfig{
			{
				Name: "prod-db", Provider: "postgres", DefaultDuration: 30 * time.Minute, MaxDuration: 2 * time.Hour,
				Postgres: &PostgresConfig{
					DSN:   s("host=10.0.0.5 port=6432 dbname=app user=admin password='p a$s' sslmode=disable"),
					Roles: []string{"readonly", "reporting"}, Host: "db.example.com", Port: 6432, Database: "app",
					ConnectionLimit: 7, SSLMode: "disable",
				},
				Policy: PolicyConfig{
					OnCall:              OnCallConfig{EscalationPolicies: []string{"PABC123"}, Schedules: []string{"PSCH123"}, Levels: []int{1, 2}},
					AutoApproveOnCall:   true,
					Approvers:           ApproversConfig{SlackUsers: []string{"U0LEAD", "W0OTHER"}},
					MinApprovals:        2,
					CapToShift:          true,
					MaxPendingPerPerson: 1,
				},
			},
			{
				Name: "prod-aws", Provider: "aws-sts", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour,
				AWSSTS: &AWSSTSConfig{
					RoleARN:            "arn:aws:iam::123456789012:role/team/oncall-admin",
					SessionPolicy:      `{"Version":"2012-10-17","Statement":[]}`,
					MaxSessionDuration: 2 * time.Hour,
				},
				Policy: PolicyConfig{Approvers: ApproversConfig{SlackUsergroup: "S0LEADS"}, MinApprovals: 1, MaxPendingPerPerson: 3},
			},
			{
				Name: "prod-sso", Provider: "aws-identity-center", DefaultDuration: 30 * time.Minute, MaxDuration: 30 * time.Minute,
				AWSIdentityCenter: &AWSIdentityCenterConfig{
					InstanceARN:      "arn:aws:sso:::instance/ssoins-1234567890abcdef",
					IdentityStoreID:  "d-1234567890",
					PermissionSetARN: "arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-abcdef1234567890",
					AccountID:        "123456789012",
				},
				Policy: PolicyConfig{BreakGlass: true, MaxPendingPerPerson: 1},
			},
			{
				Name: "infra-admins", Provider: "github-team", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour,
				GitHubTeam: &GitHubTeamConfig{Org: "acme", Team: "infra-admins", Role: "maintainer"},
				Policy:     PolicyConfig{Approvers: ApproversConfig{SlackUsers: []string{"U0LEAD"}}, MinApprovals: 1, MaxPendingPerPerson: 1},
			},
			{
				Name: "flags", Provider: "webhook", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour,
				Webhook: &WebhookConfig{URL: "https://hooks.example.com/access", Token: s("hook-token-123")},
				Policy:  PolicyConfig{MaxPendingPerPerson: 1},
			},
		},
		AutoGrant: []AutoGrantConfig{
			{PagerDutyServices: []string{"PSVC123", "PSVC456"}, Resources: []string{"prod-db", "prod-sso"}, Duration: 30 * time.Minute, RevokeOnResolve: true, GracePeriod: 10 * time.Minute},
			{PagerDutyServices: []string{"PSVC789"}, Resources: []string{"prod-aws"}, Duration: 90 * time.Minute},
		},
		Identities: []IdentityConfig{
			{Slack: "U0ALICE", SlackTeam: "T0TEAM", Email: "alice@example.com", GitHub: "alice", PagerDuty: "PALICE1"},
			{Slack: "U0BOB", SlackTeam: "T0OTHER", Email: "bob@example.com", GitHub: "bob-sre"},
		},
		Identity: IdentityRulesConfig{ResolveByEmail: true},
		Activity: ActivityConfig{PollInterval: 5 * time.Minute, AWS: ActivityAWSConfig{LookbackAfterEnd: 20 * time.Minute, CallsPerSecond: 2},
			GitHub: ActivityGitHubConfig{LookbackAfterEnd: 20 * time.Minute}},
	}
	if diff := cmp.Diff(want, cfg, configCmpOpts...); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if got, want := cfg.PagerDuty.Token.FromFile(), filepath.Join(testdataDir, "secrets/pagerduty_token"); got != want {
		t.Errorf("pagerduty.token FromFile = %q, want %q", got, want)
	}
	if got := cfg.SlogLevel(); got != slog.LevelDebug {
		t.Errorf("SlogLevel = %v, want debug", got)
	}
	if got := cfg.Slack.Summary.Weekday(); got != time.Friday {
		t.Errorf("Weekday = %v, want Friday", got)
	}
	if h, m := cfg.Slack.Summary.HourMinute(); h != 16 || m != 30 {
		t.Errorf("HourMinute = %d:%d, want 16:30", h, m)
	}
	if diff := cmp.Diff([]Secret{s("slack-signing-secret"), s("old-signing-secret")}, cfg.Slack.SigningSecretList(), configCmpOpts...); diff != "" {
		t.Errorf("SigningSecretList (-want +got):\n%s", diff)
	}
	wantOverrides := []string{"slack.api_url=http://127.0.0.1:8111/api/", "pagerduty.api_url=http://localhost:8112", "github.api_url=https://github.example.com/api/v3/", "aws.endpoint_url=http://[::1]:8113"}
	if diff := cmp.Diff(wantOverrides, cfg.URLOverrides()); diff != "" {
		t.Errorf("URLOverrides (-want +got):\n%s", diff)
	}
	if r, ok := cfg.Resource("infra-admins"); !ok || r.GitHubTeam.Team != "infra-admins" {
		t.Errorf("Resource(infra-admins) = %+v, %v", r, ok)
	}
	if _, ok := cfg.Resource("nope"); ok {
		t.Error("Resource(nope) found")
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig([]byte(minimalBase(t)+mustRead(t, filepath.Join(testdataDir, "defaults_extra.yaml"))), nil)
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	want := &Config{
		LogLevel: "info",
		Listen:   ":8080",
		Store:    StoreConfig{Driver: "sqlite", DSN: NewSecret("file:test.db")},
		Audit:    AuditConfig{SigningKeyFile: "audit.key", CheckpointEvery: 1000, CheckpointPeriod: time.Hour},
		Revoker: RevokerConfig{
			ConcurrencyPerProvider: 32, Batch: 256, BackoffBase: 5 * time.Second, BackoffMax: 5 * time.Minute,
			ClaimLease: 2 * time.Minute, IssueTimeout: time.Minute, ShutdownGrace: 10 * time.Second,
		},
		Drift: DriftConfig{Interval: 10 * time.Minute, Action: "flag"},
		Slack: &SlackConfig{
			APIURL: DefaultSlackAPIURL, TeamID: "T0TEAM", BotToken: NewSecret("xoxb-test"),
			SigningSecrets: []Secret{NewSecret("signing-test")},
			AuditChannel:   "C0AUDIT", ApprovalsChannel: "C0AUDIT",
			Summary:    SummaryConfig{Channel: "C0AUDIT", Day: "monday", Time: "09:00"},
			RequestTTL: time.Hour, MinReasonLength: 10,
		},
		PagerDuty: &PagerDutyConfig{APIURL: DefaultPagerDutyAPIURL, Token: NewSecret("pd-token"), WebhookSecrets: []Secret{NewSecret("whsec")}, Freshness: 5 * time.Minute},
		AWS:       &AWSConfig{Region: "us-east-1"},
		GitHub:    &GitHubConfig{APIURL: DefaultGitHubAPIURL, Token: NewSecret("gh-token")},
		Resources: []ResourceConfig{
			{
				Name: "app", Provider: "webhook", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour,
				Webhook: &WebhookConfig{URL: "https://hooks.example.com/access", Token: NewSecret("hook-token")},
				Policy:  PolicyConfig{BreakGlass: true, MaxPendingPerPerson: 1},
			},
			{
				Name: "db", Provider: "postgres", DefaultDuration: 30 * time.Minute, MaxDuration: 30 * time.Minute,
				Postgres: &PostgresConfig{
					DSN: NewSecret("postgres://admin@db.example.com/app"), Roles: []string{"readonly"},
					Host: "db.example.com", Port: 5432, Database: "app", ConnectionLimit: 5, SSLMode: "prefer",
				},
				Policy: PolicyConfig{Approvers: ApproversConfig{SlackUsers: []string{"U0LEAD"}}, MinApprovals: 1, MaxPendingPerPerson: 1},
			},
			{
				Name: "aws", Provider: "aws-sts", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour,
				AWSSTS: &AWSSTSConfig{RoleARN: "arn:aws:iam::123456789012:role/oncall"},
				Policy: PolicyConfig{MaxPendingPerPerson: 1},
			},
			{
				Name: "team", Provider: "github-team", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour,
				GitHubTeam: &GitHubTeamConfig{Org: "acme", Team: "infra", Role: "member"},
				Policy:     PolicyConfig{MaxPendingPerPerson: 1},
			},
		},
		AutoGrant: []AutoGrantConfig{
			{PagerDutyServices: []string{"PSVC123"}, Resources: []string{"app", "db"}, Duration: 30 * time.Minute},
		},
		Identities: []IdentityConfig{{Slack: "U0ALICE", SlackTeam: "T0TEAM"}},
		Identity:   IdentityRulesConfig{ResolveByEmail: true},
		Activity: ActivityConfig{PollInterval: 5 * time.Minute, AWS: ActivityAWSConfig{LookbackAfterEnd: 20 * time.Minute, CallsPerSecond: 2},
			GitHub: ActivityGitHubConfig{LookbackAfterEnd: 20 * time.Minute}},
	}
	if diff := cmp.Diff(want, cfg, configCmpOpts...); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if cfg.URLOverrides() != nil {
		t.Errorf("URLOverrides = %q, want none", cfg.URLOverrides())
	}
}

// TestIdentityResolveByEmail: identity.resolve_by_email defaults to true (TestConfigDefaults)
// and an explicit value is kept, either way.
func TestIdentityResolveByEmail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		yaml string
		want bool
	}{
		{"identity: {resolve_by_email: false}\n", false},
		{"identity: {resolve_by_email: true}\n", true},
		{"identity: {}\n", true},
	} {
		cfg, err := ParseConfig([]byte(minimalBase(t)+tc.yaml), nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if cfg.Identity.ResolveByEmail != tc.want {
			t.Errorf("%q: resolve_by_email = %v, want %v", tc.yaml, cfg.Identity.ResolveByEmail, tc.want)
		}
	}
}

func TestGrantResources(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig(filepath.Join(testdataDir, "valid.yaml"), envMap(validEnv))
	if err != nil {
		t.Fatal(err)
	}
	want := []grants.Resource{
		{
			Name: "prod-db", Provider: "postgres", DefaultDuration: 30 * time.Minute, MaxDuration: 2 * time.Hour,
			Policy: grants.Policy{
				OnCallEscalationPolicies: []string{"PABC123"}, OnCallSchedules: []string{"PSCH123"}, OnCallLevels: []int{1, 2},
				AutoApproveOnCall: true, ApproverSlackUsers: []string{"U0LEAD", "W0OTHER"}, MinApprovals: 2, CapToShift: true, MaxPendingPerPerson: 1,
			},
		},
		{Name: "prod-aws", Provider: "aws-sts", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour, Policy: grants.Policy{ApproverSlackUsergroup: "S0LEADS", MinApprovals: 1, MaxPendingPerPerson: 3}},
		{Name: "prod-sso", Provider: "aws-identity-center", DefaultDuration: 30 * time.Minute, MaxDuration: 30 * time.Minute, Policy: grants.Policy{BreakGlass: true, MaxPendingPerPerson: 1}},
		{Name: "infra-admins", Provider: "github-team", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour, Policy: grants.Policy{ApproverSlackUsers: []string{"U0LEAD"}, MinApprovals: 1, MaxPendingPerPerson: 1}},
		{Name: "flags", Provider: "webhook", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour, Policy: grants.Policy{MaxPendingPerPerson: 1}},
	}
	got := cfg.GrantResources()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GrantResources (-want +got):\n%s", diff)
	}
	// The result is a copy: changing it must not change the config.
	got[0].Policy.OnCallSchedules[0] = "CHANGED"
	if cfg.Resources[0].Policy.OnCall.Schedules[0] != "PSCH123" {
		t.Error("GrantResources shares slices with the config")
	}
	for _, r := range got {
		if err := r.CheckDuration(r.DefaultDuration); err != nil {
			t.Errorf("%s: default duration rejected by grants: %v", r.Name, err)
		}
	}
}

func TestParseConfigAnchors(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig(filepath.Join(testdataDir, "anchors.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	leads := PolicyConfig{Approvers: ApproversConfig{SlackUsers: []string{"U0LEAD", "U0SRE"}}, MinApprovals: 2, MaxPendingPerPerson: 1}
	want := []ResourceConfig{
		{Name: "app", Provider: "webhook", DefaultDuration: time.Hour, MaxDuration: 2 * time.Hour, Webhook: &WebhookConfig{URL: "https://hooks.example.com/access", Token: NewSecret("hook-token")}, Policy: leads},
		{Name: "app-two", Provider: "webhook", DefaultDuration: time.Hour, MaxDuration: 3 * time.Hour, Webhook: &WebhookConfig{URL: "https://hooks.example.com/access", Token: NewSecret("hook-token")}, Policy: leads},
		{Name: "app-three", Provider: "webhook", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour, Webhook: &WebhookConfig{URL: "http://127.0.0.1:9999/hook", Token: NewSecret("other-token")}, Policy: leads},
	}
	if diff := cmp.Diff(want, cfg.Resources, configCmpOpts...); diff != "" {
		t.Errorf("resources (-want +got):\n%s", diff)
	}
}

func TestParseConfigAliasExplosionIsBounded(t *testing.T) {
	t.Parallel()
	// 300 resources, each an alias of one resource whose roles are 300 aliases: 90,000
	// values from a 3 KB file, against a budget of 20,000 (production: maxDecodeSteps).
	var b strings.Builder
	b.WriteString("store: {driver: sqlite, dsn: x}\naudit: {signing_key_file: k}\nresources:\n")
	b.WriteString("  - &r\n    name: db\n    provider: postgres\n    postgres:\n      dsn: postgres://h/d\n      roles: [&role readonly")
	b.WriteString(strings.Repeat(", *role", 299))
	b.WriteString("]\n")
	b.WriteString(strings.Repeat("  - *r\n", 299))
	_, err := parseConfig([]byte(b.String()), loadOptions{maxSteps: 20_000})
	ce := mustConfigError(t, err)
	if !strings.Contains(ce.Error(), "the config is too large: more than 20000 values") {
		t.Errorf("error does not mention the size limit:\n%.2000s", ce.Error())
	}
}

func TestEnvExpansion(t *testing.T) {
	t.Parallel()
	base := minimalBase(t) // 8 lines; appended text starts on line 9
	longToken := strings.Repeat("t", 40)
	tests := []struct {
		name    string
		extra   string
		env     map[string]string
		check   func(t *testing.T, cfg *Config)
		wantErr []Problem // exact problems (when the parse must fail)
	}{
		{
			name:    "unset variable names the variable and line",
			extra:   "instance_name: broker-${REGION}\n",
			wantErr: []Problem{{Path: "instance_name", Line: 9, Msg: "environment variable REGION is not set (referenced as ${REGION}); set it, or use $$ for a literal $"}},
		},
		{
			name:    "unset variable inside a literal block names its own line",
			extra:   "api:\n  token: |\n    prefix\n    ${API_SUFFIX}\n",
			wantErr: []Problem{{Path: "api.token", Line: 12, Msg: "environment variable API_SUFFIX is not set (referenced as ${API_SUFFIX}); set it, or use $$ for a literal $"}},
		},
		{
			name:  "every unset variable is reported",
			extra: "instance_name: ${A}-${B}\n",
			wantErr: []Problem{
				{Path: "instance_name", Line: 9, Msg: "environment variable A is not set (referenced as ${A}); set it, or use $$ for a literal $"},
				{Path: "instance_name", Line: 9, Msg: "environment variable B is not set (referenced as ${B}); set it, or use $$ for a literal $"},
			},
		},
		{
			name:  "set variables and $$",
			extra: "instance_name: ${REGION}-$$1-a$b\n",
			env:   map[string]string{"REGION": "eu"},
			check: func(t *testing.T, cfg *Config) {
				if cfg.InstanceName != "eu-$1-a$b" {
					t.Errorf("instance_name = %q", cfg.InstanceName)
				}
			},
		},
		{
			name:  "empty but set variable is set",
			extra: "instance_name: x${EMPTY}\n",
			env:   map[string]string{"EMPTY": ""},
			check: func(t *testing.T, cfg *Config) {
				if cfg.InstanceName != "x" {
					t.Errorf("instance_name = %q", cfg.InstanceName)
				}
			},
		},
		{
			name:  "values are not expanded twice",
			extra: "instance_name: ${OUTER}\n",
			env:   map[string]string{"OUTER": "${INNER}$$"},
			check: func(t *testing.T, cfg *Config) {
				if cfg.InstanceName != "${INNER}$$" {
					t.Errorf("instance_name = %q", cfg.InstanceName)
				}
			},
		},
		{
			name:  "a value with a newline and a key stays one scalar",
			extra: "api:\n  token: ${INJECT}\n",
			env:   map[string]string{"INJECT": longToken + "\n  evil: true\nresources: []"},
			check: func(t *testing.T, cfg *Config) {
				if got := cfg.API.Token.Reveal(); got != longToken+"\n  evil: true\nresources: []" {
					t.Errorf("api.token = %q", got)
				}
				if len(cfg.Resources) != 1 {
					t.Errorf("resources changed: %d", len(cfg.Resources))
				}
			},
		},
		{
			name:    "a value cannot become a mapping",
			extra:   "pagerduty: ${PD}\n",
			env:     map[string]string{"PD": "{token: x}"},
			wantErr: []Problem{{Path: "pagerduty", Line: 9, Msg: "must be a mapping of keys to values, not a single value"}},
		},
		{
			name:    "a value cannot become a list",
			extra:   "pagerduty:\n  token: t\n  webhook_secrets: ${SECRETS}\n",
			env:     map[string]string{"SECRETS": "[a, b]"},
			wantErr: []Problem{{Path: "pagerduty.webhook_secrets", Line: 11, Msg: `must be a list, like [a, b] or one "- item" per line, not a single value`}},
		},
		{
			name:  "numbers and durations from the environment",
			extra: "revoker: {batch: ${BATCH}, backoff_max: ${BACKOFF}}\n",
			env:   map[string]string{"BATCH": "64", "BACKOFF": "90s"},
			check: func(t *testing.T, cfg *Config) {
				if cfg.Revoker.Batch != 64 || cfg.Revoker.BackoffMax != 90*time.Second {
					t.Errorf("revoker = %+v", cfg.Revoker)
				}
			},
		},
		{
			name:    "a bad value from the environment is not quoted back",
			extra:   "revoker: {batch: ${BATCH}}\n",
			env:     map[string]string{"BATCH": "lots"},
			wantErr: []Problem{{Path: "revoker.batch", Line: 9, Msg: "must be a whole number, not the value from the environment (not shown)"}},
		},
		{
			name:    "unterminated reference",
			extra:   "instance_name: ${REGION\n",
			wantErr: []Problem{{Path: "instance_name", Line: 9, Msg: "unterminated ${ (write ${NAME}, or $$ for a literal $)"}},
		},
		{
			name:    "invalid name",
			extra:   "instance_name: ${REGION:-eu}\n",
			wantErr: []Problem{{Path: "instance_name", Line: 9, Msg: `invalid variable reference "${REGION:-eu}": write ${NAME} with letters, digits and underscores, or $$ for a literal $`}},
		},
		{
			name:  "inside flow collections, as in the contract example",
			extra: "pagerduty: {token: ${PD_TOKEN}, webhook_secrets: [${PD_SECRET}, \"${PD_SECRET}x\"]}\n",
			env:   map[string]string{"PD_TOKEN": "tok}, evil: {", "PD_SECRET": "a, b]"},
			check: func(t *testing.T, cfg *Config) {
				if got := cfg.PagerDuty.Token.Reveal(); got != "tok}, evil: {" {
					t.Errorf("token = %q", got)
				}
				got := []string{}
				for _, s := range cfg.PagerDuty.WebhookSecrets {
					got = append(got, s.Reveal())
				}
				if diff := cmp.Diff([]string{"a, b]", "a, b]x"}, got); diff != "" {
					t.Errorf("webhook_secrets (-want +got):\n%s", diff)
				}
			},
		},
		{
			name:  "$${NAME} is a literal ${NAME}",
			extra: "instance_name: cost-$${REGION}\n",
			check: func(t *testing.T, cfg *Config) {
				if cfg.InstanceName != "cost-${REGION}" {
					t.Errorf("instance_name = %q", cfg.InstanceName)
				}
			},
		},
		{
			name:  "text that looks like a placeholder is kept",
			extra: "instance_name: ABENV0_0_-${REGION}-ABENV1_0_\n",
			env:   map[string]string{"REGION": "eu"},
			check: func(t *testing.T, cfg *Config) {
				if cfg.InstanceName != "ABENV0_0_-eu-ABENV1_0_" {
					t.Errorf("instance_name = %q", cfg.InstanceName)
				}
			},
		},
		{
			name:  "comments are not expanded",
			extra: "# token: ${NOT_SET_ANYWHERE}\n",
			check: func(t *testing.T, cfg *Config) {},
		},
		{
			name:    "keys are not expanded",
			extra:   "${KEY}: x\n",
			env:     map[string]string{"KEY": "instance_name"},
			wantErr: []Problem{{Line: 9, Msg: `unknown key "${KEY}" in config; known keys: activity, admin_listen, api, audit, auto_grant, aws, console, drift, github, identities, identity, instance_name, listen, log_level, pagerduty, postgres_proxy, resources, revoker, slack, store`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := ParseConfig([]byte(base+tt.extra), envMap(tt.env))
			if tt.wantErr != nil {
				ce := mustConfigError(t, err)
				if diff := cmp.Diff(tt.wantErr, ce.Problems); diff != "" {
					t.Errorf("problems (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			tt.check(t, cfg)
		})
	}
}

func TestSecretFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("token", "  from-file-token-0123456789abcdef0123456789 \n\n")
	write("empty", " \n")
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o700); err != nil {
		t.Fatal(err)
	}
	base := mustRead(t, filepath.Join(testdataDir, "minimal.yaml"))
	tests := []struct {
		name      string
		extra     string
		wantToken string
		wantMsg   string
	}{
		{"relative to the config file, trimmed", "api: {token: \"file:token\"}\n", "from-file-token-0123456789abcdef0123456789", ""},
		{"absolute path", "api: {token: \"file:" + filepath.Join(dir, "token") + "\"}\n", "from-file-token-0123456789abcdef0123456789", ""},
		{"empty file", "api: {token: \"file:empty\"}\n", "", "secret file " + filepath.Join(dir, "empty") + " is empty"},
		{"directory", "api: {token: \"file:adir\"}\n", "", "is not a regular file"},
		{"no path", "api: {token: \"file:\"}\n", "", `"file:" needs a path`},
		{"missing", "api: {token: \"file:nope\"}\n", "", "no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".yaml")
			if err := os.WriteFile(path, []byte(base+tt.extra), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadConfig(path, nil)
			if tt.wantMsg != "" {
				ce := mustConfigError(t, err)
				if len(ce.Problems) != 1 || ce.Problems[0].Path != "api.token" || ce.Problems[0].Line != 9 || !strings.Contains(ce.Problems[0].Msg, tt.wantMsg) {
					t.Errorf("problems = %+v, want one at api.token line 9 containing %q", ce.Problems, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.API.Token.Reveal(); got != tt.wantToken {
				t.Errorf("token = %q", got)
			}
			if got := cfg.Audit.SigningKeyFile; got != filepath.Join(dir, "audit.key") {
				t.Errorf("signing_key_file = %q, want it relative to the config file", got)
			}
		})
	}

	t.Run("sqlite file: DSN is not a secret file", func(t *testing.T) {
		t.Parallel()
		cfg, err := ParseConfig([]byte(base), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Store.DSN.Reveal(); got != "file:test.db" {
			t.Errorf("store.dsn = %q", got)
		}
	})
}

func TestExampleConfigLoads(t *testing.T) {
	t.Parallel()
	getenv := func(name string) (string, bool) {
		switch name {
		case "PROD_DB_ADMIN_DSN":
			return "postgres://accessbroker:secret@prod-db-admin.internal:5432/app?sslmode=require", true
		case "ACCESSBROKER_API_TOKEN":
			return strings.Repeat("a", 64), true
		case "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "PAGERDUTY_TOKEN", "PAGERDUTY_WEBHOOK_SECRET", "GITHUB_TOKEN", "FLAGS_WEBHOOK_TOKEN":
			return "fake-" + strings.ToLower(name), true
		}
		return "", false
	}
	path := filepath.Join("..", "..", "..", "..", "accessbroker.example.yaml")
	cfg, err := LoadConfig(path, getenv)
	if err != nil {
		t.Fatalf("the documented example does not load:\n%v", err)
	}
	if got := len(cfg.Resources); got != 5 {
		t.Errorf("resources = %d, want 5", got)
	}
	providers := map[string]bool{}
	for _, r := range cfg.Resources {
		providers[r.Provider] = true
	}
	if len(providers) != len(providerBlocks) {
		t.Errorf("the example uses providers %v; it should show every kind", providers)
	}
	// Without the environment, every ${NAME} is reported with its line.
	_, err = LoadConfig(path, nil)
	ce := mustConfigError(t, err)
	for _, name := range []string{"ACCESSBROKER_API_TOKEN", "SLACK_BOT_TOKEN", "PROD_DB_ADMIN_DSN", "FLAGS_WEBHOOK_TOKEN"} {
		if !strings.Contains(ce.Error(), "environment variable "+name+" is not set") {
			t.Errorf("missing %s not reported:\n%s", name, ce)
		}
	}
}

// TestDesignContractExample loads DESIGN.md's example verbatim: every key it uses decodes.
// The only problems are the "…" placeholders it leaves for the reader.
func TestDesignContractExample(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "PAGERDUTY_TOKEN": "p",
		"PAGERDUTY_WEBHOOK_SECRET": "w", "GITHUB_TOKEN": "g",
		"PROD_DB_ADMIN_DSN": "postgres://admin:pw@db.internal:5432/app",
	}
	_, err := LoadConfig(filepath.Join(testdataDir, "design_contract.yaml"), envMap(env))
	ce := mustConfigError(t, err)
	var got []string
	for _, p := range ce.Problems {
		got = append(got, fmt.Sprintf("%d %s", p.Line, p.Path))
	}
	want := []string{
		"36 resources[2].aws_identity_center.instance_arn",
		"36 resources[2].aws_identity_center.identity_store_id",
		"36 resources[2].aws_identity_center.permission_set_arn",
		"36 resources[2].aws_identity_center.account_id",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s\n%v", diff, ce)
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url     string
		wantMsg string // "" = accepted
	}{
		{"https://slack.com/api/", ""},
		{"https://slack.example.com:8443/", ""},
		{"http://127.0.0.1:8080/", ""},
		{"http://127.1.2.3/", ""},
		{"http://localhost:9000", ""},
		{"http://LOCALHOST:9000", ""},
		{"http://[::1]:9000/api", ""},
		{"http://slack.example.com/", "must use https"},
		{"http://10.0.0.1/", "must use https"},
		{"http://localhost.example.com/", "must use https"},
		{"http://[::2]/", "must use https"},
		{"ftp://127.0.0.1/", "must be an absolute https:// URL"},
		{"slack.com/api", "must be an absolute https:// URL"},
		{"https://", "must be an absolute https:// URL"},
		{"https://user:pass@slack.com/", "must not contain credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			t.Parallel()
			v := &validator{c: &Config{}}
			v.checkURL("x.api_url", tt.url)
			switch {
			case tt.wantMsg == "" && len(v.probs) != 0:
				t.Errorf("rejected: %v", v.probs)
			case tt.wantMsg != "" && (len(v.probs) != 1 || !strings.Contains(v.probs[0].Msg, tt.wantMsg)):
				t.Errorf("problems = %v, want one containing %q", v.probs, tt.wantMsg)
			}
		})
	}
}

func TestParsePostgresDSN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		dsn     string
		want    pgDSN
		wantErr string
	}{
		{dsn: "postgres://u:p@db.example.com:6432/app?sslmode=require", want: pgDSN{host: "db.example.com", port: "6432", database: "app", sslmode: "require", password: "p", rawPassword: "p"}},
		{dsn: "postgresql://db/app", want: pgDSN{host: "db", database: "app"}},
		{dsn: "postgres:///app?host=/var/run/postgresql", want: pgDSN{database: "app"}},
		{dsn: "postgres://[::1]:5432/app", want: pgDSN{host: "::1", port: "5432", database: "app"}},
		{dsn: "host=db port=5433 dbname=app user=admin password='a b\\'c' sslmode=disable", want: pgDSN{host: "db", port: "5433", database: "app", sslmode: "disable", password: "a b'c"}},
		{dsn: "postgres://u:p%40ss%2Fw@db/app", want: pgDSN{host: "db", database: "app", password: "p@ss/w", rawPassword: "p%40ss%2Fw"}},
		{dsn: "postgres://u@db/app?password=q%26r", want: pgDSN{host: "db", database: "app", password: "q&r"}},
		{dsn: "host = db dbname = app", want: pgDSN{host: "db", database: "app"}},
		{dsn: "postgres://db:x/app", wantErr: "is not a valid postgres:// URL"},
		{dsn: "postgres://db:70000/app", wantErr: "port that is not a number between 1 and 65535"},
		{dsn: "postgres://db/app?sslmode=maybe", wantErr: "unknown sslmode"},
		{dsn: "host=db password='open", wantErr: "the quoted value of password is not closed"},
		{dsn: "host=db junk", wantErr: "each setting must be key=value"},
		{dsn: "db.example.com", wantErr: "must be a postgres:// URL or a key=value connection string"},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			t.Parallel()
			got, err := parsePostgresDSN(tt.dsn)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(pgDSN{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestYAMLStructureProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data string
		want []Problem
	}{
		{"empty file", "", []Problem{
			{Path: "store.driver", Msg: "is required: sqlite or postgres"},
			{Path: "store.dsn", Msg: `is required: the database to open, e.g. "file:accessbroker.db" for sqlite`},
			{Path: "audit.signing_key_file", Msg: "is required: the ed25519 key file that signs checkpoints"},
			{Path: "resources", Msg: "at least one resource is required"},
		}},
		{"not a mapping", "- a\n- b\n", []Problem{{Line: 1, Msg: "must be a mapping of keys to values, not a list"}}},
		{"two documents", "listen: \":1\"\n---\nlisten: \":2\"\n", []Problem{{Line: 2, Msg: "the config must be a single YAML document; remove the second document (after ---)"}}},
		{"tab indentation", "store:\n\tdriver: sqlite\n", []Problem{{Line: 2, Msg: "invalid YAML: found character that cannot start any token"}}},
		{"unknown anchor", "resources: *nope\n", []Problem{{Msg: "invalid YAML: unknown anchor 'nope' referenced"}}},
		{"key that is a list", "[a]: 1\n", []Problem{
			{Path: "store.driver", Msg: "is required: sqlite or postgres"},
			{Path: "store.dsn", Msg: `is required: the database to open, e.g. "file:accessbroker.db" for sqlite`},
			{Path: "audit.signing_key_file", Msg: "is required: the ed25519 key file that signs checkpoints"},
			{Path: "resources", Msg: "at least one resource is required"},
			{Line: 1, Msg: "keys must be plain names, not a list"},
		}},
		{"bool that is not", "store: {driver: sqlite, dsn: x}\naudit: {signing_key_file: k}\nresources:\n  - {name: a, provider: webhook, webhook: {url: \"https://h/\", token: t}, policy: {break_glass: yes}}\n",
			[]Problem{{Path: "resources[0].policy.break_glass", Line: 4, Msg: `must be true or false, not "yes"`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseConfig([]byte(tt.data), nil)
			ce := mustConfigError(t, err)
			if diff := cmp.Diff(tt.want, ce.Problems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUnknownKeySuggestion(t *testing.T) {
	t.Parallel()
	known := []string{"listen", "store", "audit", "resources", "auto_grant", "identities"}
	tests := map[string]string{
		"resorces":   "resources",
		"Resources":  "resources",
		"autogrant":  "auto_grant",
		"identitys":  "identities",
		"lisen":      "listen",
		"completely": "",
		"x":          "",
	}
	for in, want := range tests {
		if got := closest(in, known); got != want {
			t.Errorf("closest(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join(testdataDir, "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, filepath.Join("..", "..", "..", "..", "accessbroker.example.yaml"))
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	getenv := func(name string) (string, bool) {
		if strings.HasPrefix(name, "UNSET") {
			return "", false
		}
		return "v-" + name + "-0123456789abcdef0123456789abcdef", true
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data, getenv)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error is %T, want *ConfigError: %v", err, err)
			}
			maxLine := bytes.Count(data, []byte("\n")) + 2
			for _, p := range ce.Problems {
				if p.Msg == "" || p.Line < 0 || p.Line > maxLine {
					t.Fatalf("bad problem %+v (file has %d lines)", p, maxLine)
				}
			}
			// Deterministic: the same input gives the same report.
			_, err2 := ParseConfig(data, getenv)
			if err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("non-deterministic errors:\n%v\n---\n%v", err, err2)
			}
			return
		}
		// A valid config maps onto valid domain resources.
		if len(cfg.Resources) == 0 {
			t.Fatal("valid config without resources")
		}
		for _, r := range cfg.GrantResources() {
			if err := r.CheckDuration(r.DefaultDuration); err != nil {
				t.Fatalf("resource %s: default duration rejected: %v", r.Name, err)
			}
			if err := r.CheckDuration(r.MaxDuration); err != nil {
				t.Fatalf("resource %s: max duration rejected: %v", r.Name, err)
			}
		}
	})
}

func BenchmarkParseConfig(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "accessbroker.example.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	getenv := func(name string) (string, bool) {
		if name == "PROD_DB_ADMIN_DSN" {
			return "postgres://admin:pw@db.internal:5432/app", true
		}
		return strings.Repeat("s", 40), true
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseConfig(data, getenv); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSecretValuesIncludeDSNPasswords(t *testing.T) {
	t.Parallel()
	cfg := &Config{
		Store: StoreConfig{Driver: "postgres", DSN: NewSecret("postgres://broker:st%2Fore@db/ab")},
		Resources: []ResourceConfig{
			{Name: "url", Postgres: &PostgresConfig{DSN: NewSecret("postgres://admin:p%40ss%20w@db/app")}},
			{Name: "kv", Postgres: &PostgresConfig{DSN: NewSecret("host=db dbname=app user=admin password='k v\\'pw'")}},
			{Name: "none", Postgres: &PostgresConfig{DSN: NewSecret("postgres://admin@db/app")}},
		},
	}
	got := cfg.SecretValues()
	for _, want := range []string{
		"postgres://broker:st%2Fore@db/ab", "st/ore", "st%2Fore", // the DSN, its password decoded and as written
		"p@ss w", "p%40ss+w", "p%40ss%20w",
		"k v'pw",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("SecretValues lacks %q", want)
		}
	}
	if slices.Contains(got, "") {
		t.Error("SecretValues has an empty value")
	}
}

func TestWitnessesConfig(t *testing.T) {
	t.Parallel()
	path := filepath.Join(testdataDir, "witnesses.yaml")
	cfg, err := LoadConfig(path, envMap(map[string]string{"WITNESS_TOKEN": "witness-bearer-token"}))
	if err != nil {
		t.Fatal(err)
	}
	want := []WitnessConfig{
		{Kind: WitnessFile, Path: filepath.Join(testdataDir, "witness/checkpoints.jsonl")},
		{Kind: WitnessHTTPS, URL: "https://witness.example.com/v1/checkpoints", BearerToken: NewSecret("witness-bearer-token")},
		{Kind: WitnessS3, Bucket: "acme-audit-witness", Prefix: "prod/audit/", Retention: 90 * 24 * time.Hour},
		{Kind: WitnessS3, Bucket: "acme-audit-dr", Region: "eu-west-1", Retention: 24 * time.Hour, Mode: "GOVERNANCE"},
	}
	if d := cmp.Diff(want, cfg.Audit.Witnesses, configCmpOpts...); d != "" {
		t.Fatalf("audit.witnesses (-want +got):\n%s", d)
	}
	if !slices.Contains(cfg.SecretValues(), "witness-bearer-token") {
		t.Error("the https witness's bearer token is not among the secrets scrubbed from errors")
	}
	// An s3 witness without a region takes aws.region.
	if got := cfg.Audit.Witnesses[2].S3WitnessConfig(cfg.AWS).Region; got != "us-east-1" {
		t.Errorf("s3 witness region = %q, want aws.region us-east-1", got)
	}
	if got := cfg.Audit.Witnesses[3].S3WitnessConfig(cfg.AWS).Region; got != "eu-west-1" {
		t.Errorf("s3 witness region = %q, want its own eu-west-1", got)
	}
}

// TestPostgresProxyConfig: postgres_proxy decodes, its certificate paths are relative to the
// configuration file, the delivered address defaults to listen, and proxy: true is per
// resource.
func TestPostgresProxyConfig(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig(filepath.Join(testdataDir, "postgres_proxy.yaml"), envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.PostgresProxy
	if p == nil {
		t.Fatal("postgres_proxy not decoded")
	}
	rel := filepath.Join(testdataDir, "certs/proxy.crt")
	if p.TLSCertFile != rel || p.TLSKeyFile != "/etc/accessbroker/proxy.key" {
		t.Errorf("tls files = %q, %q; want %q (next to the file) and the absolute key path as given", p.TLSCertFile, p.TLSKeyFile, rel)
	}
	if p.Address() != "10.0.0.5:6432" {
		t.Errorf("Address() = %q, want listen when public_address is unset", p.Address())
	}
	p.PublicAddress = "db-proxy.example.com:6432"
	if p.Address() != "db-proxy.example.com:6432" {
		t.Errorf("Address() = %q, want public_address", p.Address())
	}
	if !cfg.Resources[0].Postgres.Proxy || cfg.Resources[1].Postgres.Proxy {
		t.Errorf("proxy = %v, %v; want true, false", cfg.Resources[0].Postgres.Proxy, cfg.Resources[1].Postgres.Proxy)
	}
}
