package main

import (
	"bytes"
	"encoding/json"
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

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "accessbroker.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
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

func TestConfigCheckBadFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		line int
		path string // "" for problems about the whole file
		msg  string
	}{
		{"bad_unknown_key.yaml", 9, "", `unknown key "resorces" in config (did you mean "resources"?)`},
		{"bad_unknown_nested_key.yaml", 8, "resources[0].policy", `unknown key "aproovers" (did you mean "approvers"?)`},
		{"bad_duplicate_key.yaml", 2, "listen", `duplicate key "listen" (first set on line 1)`},
		{"bad_yaml_syntax.yaml", 8, "", "invalid YAML: did not find expected ',' or '}'"},
		{"bad_int_type.yaml", 5, "audit.checkpoint_every", `must be a whole number, not "lots"`},
		{"bad_not_a_list.yaml", 11, "pagerduty.webhook_secrets", "must be a list"},
		{"bad_duration_syntax.yaml", 8, "resources[0].max_duration", `must be a duration such as 90m, 1h30m or 4h (Go syntax), not "4hours"`},
		{"bad_duration_zero.yaml", 8, "resources[0].default_duration", "must be positive"},
		{"bad_default_over_max.yaml", 8, "resources[0].default_duration", "(3h) must not exceed max_duration (2h)"},
		{"bad_max_over_week.yaml", 8, "resources[0].max_duration", "must be at most 168h, not 200h"},
		{"bad_unknown_provider.yaml", 6, "resources[0].provider", `unknown provider "ldap"`},
		{"bad_missing_provider_block.yaml", 5, "resources[0].github_team", "is required: provider github-team takes its settings from the github_team block"},
		{"bad_mismatched_block.yaml", 8, "resources[0].aws_sts", "does not belong to provider webhook"},
		{"bad_role_arn.yaml", 7, "resources[0].aws_sts.role_arn", "is not an IAM role ARN"},
		{"bad_postgres_dsn.yaml", 8, "resources[0].postgres.dsn", "is not a valid postgres:// URL"},
		{"bad_sslmode.yaml", 10, "resources[0].postgres.sslmode", `not "strict"`},
		{"bad_orphan_owner_prefix.yaml", 10, "resources[0].postgres.orphan_owner", "must not start with ab_"},
		{"bad_orphan_owner_granted.yaml", 10, "resources[0].postgres.orphan_owner", "must not be one of roles"},
		{"bad_orphan_owner_name.yaml", 10, "resources[0].postgres.orphan_owner", "a plain PostgreSQL role name"},
		{"bad_identity_center_incomplete.yaml", 7, "resources[0].aws_identity_center.permission_set_arn", "is required"},
		{"bad_github_team_missing_team.yaml", 7, "resources[0].github_team.team", "is required"},
		{"bad_github_role.yaml", 7, "resources[0].github_team.role", `must be member or maintainer, not "owner"`},
		{"bad_webhook_missing_url.yaml", 7, "resources[0].webhook.url", "is required"},
		{"bad_webhook_http_url.yaml", 7, "resources[0].webhook.url", "must use https"},
		{"bad_duplicate_resource.yaml", 9, "resources[1].name", `duplicate resource name "app" (also resources[0])`},
		{"bad_resource_name.yaml", 5, "resources[0].name", `"Prod_DB" is not a valid resource name`},
		{"bad_missing_slack_token.yaml", 9, "slack.bot_token", "is required"},
		{"bad_missing_signing_secret.yaml", 9, "slack.signing_secret", "is required (or slack.signing_secrets)"},
		{"bad_slack_http_api_url.yaml", 14, "slack.api_url", "must use https"},
		{"bad_missing_pagerduty_token.yaml", 9, "pagerduty.token", "is required"},
		{"bad_missing_github_token.yaml", 9, "github.token", "is required: resources app use provider github-team"},
		{"bad_min_approvals_zero.yaml", 8, "resources[0].policy.min_approvals", "must be at least 1 when approvers are configured"},
		{"bad_min_approvals_too_many.yaml", 10, "resources[0].policy.min_approvals", "is 3 but approvers.slack_users lists only 2"},
		{"bad_oncall_level.yaml", 9, "resources[0].policy.on_call.levels[0]", "escalation levels start at 1"},
		{"bad_auto_grant_unknown_resource.yaml", 14, "auto_grant[0].resources[1]", `unknown resource "prod-db"; configured: app`},
		{"bad_grace_without_revoke.yaml", 15, "auto_grant[0].grace_period", "only applies with revoke_on_resolve"},
		{"bad_summary_weekday.yaml", 14, "slack.summary.weekday", `"someday" is not a day of the week`},
		{"bad_summary_time.yaml", 16, "slack.summary.time", `"9am" is not a 24-hour HH:MM time`},
		{"bad_identity_slack.yaml", 10, "identities[0].slack", `"alice" is not a Slack user id`},
		{"bad_identity_email.yaml", 10, "identities[0].email", "is not a bare email address"},
		{"bad_identity_duplicate_slack.yaml", 11, "identities[1].slack", "duplicate Slack user U0ALICE (also identities[0])"},
		{"bad_identity_duplicate_email.yaml", 11, "identities[1].email", "duplicate email Alice@Example.com (also identities[0])"},
		{"bad_identity_fullwidth_email.yaml", 11, "identities[1].email", `normalise to "alice@example.com", which is a different mailbox`},
		{"bad_identity_lookalike_email.yaml", 10, "identities[0].email", "contains characters outside ASCII after Unicode normalisation; look-alike letters are not matched to anyone: write the address in plain ASCII"},
		{"bad_identity_resolve_by_email.yaml", 9, "identity.resolve_by_email", "maybe"},
		{"bad_checkpoint_every_zero.yaml", 3, "audit.checkpoint_every", "must be at least 1, not 0"},
		{"bad_missing_signing_key_file.yaml", 3, "audit.signing_key_file", "is required"},
		{"bad_listen.yaml", 1, "listen", `"8080" is not a host:port address`},
		{"bad_store_driver.yaml", 2, "store.driver", `must be sqlite or postgres, not "mysql"`},
		{"bad_missing_store_dsn.yaml", 2, "store.dsn", "is required"},
		{"bad_log_level.yaml", 1, "log_level", `must be debug, info, warn or error, not "verbose"`},
		{"bad_short_api_token.yaml", 9, "api.token", "is too short"},
		{"bad_backoff_base_over_max.yaml", 10, "revoker.backoff_base", "(10m) must not exceed revoker.backoff_max (1m)"},
		{"bad_secret_file_missing.yaml", 7, "resources[0].webhook.token", "cannot read the secret file"},
		{"bad_unset_env.yaml", 7, "resources[0].webhook.token", "environment variable HOOK_TOKEN_UNSET is not set"},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSuffix(tt.file, ".yaml"), func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(testdataDir, tt.file)
			var stdout, stderr bytes.Buffer
			code := runConfigCommand([]string{"check", "--config", file}, &stdout, &stderr, envMap(nil))
			if code != exitUsage {
				t.Fatalf("exit code = %d, want %d; stdout:\n%s", code, exitUsage, stdout.String())
			}
			want := fmt.Sprintf("%s:%d: ", file, tt.line)
			if tt.path != "" {
				want += tt.path + ": "
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != 2 {
				t.Fatalf("want exactly one problem and the summary line, got:\n%s", stderr.String())
			}
			if !strings.HasPrefix(lines[0], want) || !strings.Contains(lines[0], tt.msg) {
				t.Errorf("problem line\n  %s\nwant prefix %q and message containing %q", lines[0], want, tt.msg)
			}
			if want := fmt.Sprintf("%s has 1 problem", file); !strings.Contains(lines[1], want) {
				t.Errorf("summary line %q does not contain %q", lines[1], want)
			}
		})
	}
}

func TestConfigCheckReportsEveryProblem(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		want []string // each line of stderr contains the matching string
	}{
		{"bad_multiple_problems.yaml", []string{
			": aws.region: is required: resources app use AWS",
			`:2: store.driver: must be sqlite or postgres, not "oracle"`,
			":2: store.dsn: is required",
			":3: audit.signing_key_file: is required",
			":3: audit.checkpoint_every: must be at least 1, not 0",
			":7: resources[0].webhook.url: must be an absolute https:// URL",
			":7: resources[0].webhook.token: is required",
			":8: resources[0].max_duration: must be at most 168h, not 900h",
			`:9: resources[1].name: duplicate resource name "app" (also resources[0])`,
			":9: resources[1].aws_sts: is required",
			"has 10 problems",
		}},
		// Decoding problems do not hide validation problems, and are not reported twice.
		{"bad_decode_and_validation.yaml", []string{
			`:3: audit.checkpoint_every: must be a whole number, not "many"`,
			`:7: resources[0].max_duration: must be a duration such as 90m, 1h30m or 4h (Go syntax), not "4hours"`,
			":8: resources[0].webhook.url: must use https",
			`:9: resources[0].policy: unknown key "aproovers" (did you mean "approvers"?)`,
			"has 4 problems",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(testdataDir, tt.file)
			var stdout, stderr bytes.Buffer
			if code := runConfigCommand([]string{"check", "--config", file}, &stdout, &stderr, envMap(nil)); code != exitUsage {
				t.Fatalf("exit code = %d, want %d", code, exitUsage)
			}
			got := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(got) != len(tt.want) {
				t.Fatalf("got %d lines, want %d:\n%s", len(got), len(tt.want), stderr.String())
			}
			for i, want := range tt.want {
				if (i < len(got)-1 && !strings.HasPrefix(got[i], file)) || !strings.Contains(got[i], want) {
					t.Errorf("line %d = %q, want it to start with %s and contain %q", i, got[i], file, want)
				}
			}
		})
	}
}

func TestConfigCheckOK(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		env  map[string]string
		want string
	}{
		{"minimal.yaml", nil, "config OK: 1 resource (app [webhook])\n"},
		{"valid.yaml", validEnv, "config OK: 5 resources (prod-db [postgres], prod-aws [aws-sts], prod-sso [aws-identity-center], infra-admins [github-team], flags [webhook])\n"},
		{"anchors.yaml", nil, "config OK: 3 resources (app [webhook], app-two [webhook], app-three [webhook])\n"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := runConfigCommand([]string{"check", "--config", filepath.Join(testdataDir, tt.file)}, &stdout, &stderr, envMap(tt.env))
			if code != exitOK {
				t.Fatalf("exit code = %d, stderr:\n%s", code, stderr.String())
			}
			if diff := cmp.Diff(tt.want, stdout.String()); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr = %q, want empty", stderr.String())
			}
		})
	}
}

func TestConfigCommandUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no sub-command", nil, exitUsage, "usage: accessbroker config check --config FILE"},
		{"unknown sub-command", []string{"lint"}, exitUsage, `unknown sub-command "lint"`},
		{"missing --config", []string{"check"}, exitUsage, "--config FILE is required"},
		{"unknown flag", []string{"check", "--conf", "x.yaml"}, exitUsage, "flag provided but not defined: -conf"},
		{"extra argument", []string{"check", "--config", "x.yaml", "y.yaml"}, exitUsage, `unexpected arguments ["y.yaml"]`},
		{"missing file", []string{"check", "--config", filepath.Join(testdataDir, "does-not-exist.yaml")}, exitUsage, "read config: open testdata/config/does-not-exist.yaml: no such file or directory"},
		{"directory", []string{"check", "--config", testdataDir}, exitUsage, "read config testdata/config"},
		{"help", []string{"--help"}, exitOK, "usage: accessbroker config check"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			if code := runConfigCommand(tt.args, &stdout, &stderr, envMap(nil)); code != tt.code {
				t.Errorf("exit code = %d, want %d", code, tt.code)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.want)
			}
		})
	}
}

func TestConfigRegisteredInMain(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"config", "check", "--config", filepath.Join(testdataDir, "minimal.yaml")}, &stdout, &stderr)
	if code != exitOK || !strings.HasPrefix(stdout.String(), "config OK: 1 resource") {
		t.Errorf("run config check = %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
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
					ConnectionLimit: -1, SSLMode: "disable",
				},
				Policy: PolicyConfig{
					OnCall:            OnCallConfig{EscalationPolicies: []string{"PABC123"}, Schedules: []string{"PSCH123"}, Levels: []int{1, 2}},
					AutoApproveOnCall: true,
					Approvers:         ApproversConfig{SlackUsers: []string{"U0LEAD", "W0OTHER"}},
					MinApprovals:      2,
					CapToShift:        true,
				},
			},
			{
				Name: "prod-aws", Provider: "aws-sts", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour,
				AWSSTS: &AWSSTSConfig{
					RoleARN:            "arn:aws:iam::123456789012:role/team/oncall-admin",
					SessionPolicy:      `{"Version":"2012-10-17","Statement":[]}`,
					MaxSessionDuration: 2 * time.Hour,
				},
				Policy: PolicyConfig{Approvers: ApproversConfig{SlackUsergroup: "S0LEADS"}, MinApprovals: 1},
			},
			{
				Name: "prod-sso", Provider: "aws-identity-center", DefaultDuration: 30 * time.Minute, MaxDuration: 30 * time.Minute,
				AWSIdentityCenter: &AWSIdentityCenterConfig{
					InstanceARN:      "arn:aws:sso:::instance/ssoins-1234567890abcdef",
					IdentityStoreID:  "d-1234567890",
					PermissionSetARN: "arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-abcdef1234567890",
					AccountID:        "123456789012",
				},
				Policy: PolicyConfig{BreakGlass: true},
			},
			{
				Name: "infra-admins", Provider: "github-team", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour,
				GitHubTeam: &GitHubTeamConfig{Org: "acme", Team: "infra-admins", Role: "maintainer"},
				Policy:     PolicyConfig{Approvers: ApproversConfig{SlackUsers: []string{"U0LEAD"}}, MinApprovals: 1},
			},
			{
				Name: "flags", Provider: "webhook", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour,
				Webhook: &WebhookConfig{URL: "https://hooks.example.com/access", Token: s("hook-token-123")},
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
				Policy:  PolicyConfig{BreakGlass: true},
			},
			{
				Name: "db", Provider: "postgres", DefaultDuration: 30 * time.Minute, MaxDuration: 30 * time.Minute,
				Postgres: &PostgresConfig{
					DSN: NewSecret("postgres://admin@db.example.com/app"), Roles: []string{"readonly"},
					Host: "db.example.com", Port: 5432, Database: "app", ConnectionLimit: 5, SSLMode: "prefer",
				},
				Policy: PolicyConfig{Approvers: ApproversConfig{SlackUsers: []string{"U0LEAD"}}, MinApprovals: 1},
			},
			{
				Name: "aws", Provider: "aws-sts", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour,
				AWSSTS: &AWSSTSConfig{RoleARN: "arn:aws:iam::123456789012:role/oncall"},
			},
			{
				Name: "team", Provider: "github-team", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour,
				GitHubTeam: &GitHubTeamConfig{Org: "acme", Team: "infra", Role: "member"},
			},
		},
		AutoGrant: []AutoGrantConfig{
			{PagerDutyServices: []string{"PSVC123"}, Resources: []string{"app", "db"}, Duration: 30 * time.Minute},
		},
		Identities: []IdentityConfig{{Slack: "U0ALICE", SlackTeam: "T0TEAM"}},
		Identity:   IdentityRulesConfig{ResolveByEmail: true},
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
				AutoApproveOnCall: true, ApproverSlackUsers: []string{"U0LEAD", "W0OTHER"}, MinApprovals: 2, CapToShift: true,
			},
		},
		{Name: "prod-aws", Provider: "aws-sts", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour, Policy: grants.Policy{ApproverSlackUsergroup: "S0LEADS", MinApprovals: 1}},
		{Name: "prod-sso", Provider: "aws-identity-center", DefaultDuration: 30 * time.Minute, MaxDuration: 30 * time.Minute, Policy: grants.Policy{BreakGlass: true}},
		{Name: "infra-admins", Provider: "github-team", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour, Policy: grants.Policy{ApproverSlackUsers: []string{"U0LEAD"}, MinApprovals: 1}},
		{Name: "flags", Provider: "webhook", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour},
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
	leads := PolicyConfig{Approvers: ApproversConfig{SlackUsers: []string{"U0LEAD", "U0SRE"}}, MinApprovals: 2}
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
			wantErr: []Problem{{Line: 9, Msg: `unknown key "${KEY}" in config; known keys: api, audit, auto_grant, aws, github, identities, identity, instance_name, listen, log_level, pagerduty, resources, revoker, slack, store`}},
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

func TestSecretsNeverPrinted(t *testing.T) {
	t.Parallel()
	const canary = "CANARY-7f3a9c2e" // short on purpose: also too short for api.token
	base := minimalBase(t)
	dir := t.TempDir()
	canaryFile := filepath.Join(dir, "canary")
	if err := os.WriteFile(canaryFile, []byte(canary+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CANARY": canary, "CANARY_FILE": "file:" + canaryFile}
	tests := []struct {
		name  string
		extra string
	}{
		{"short api token", "api: {token: ${CANARY}}\n"},
		{"short api token from a file", "api: {token: \"${CANARY_FILE}\"}\n"},
		{"password in a bad postgres URL", "  - {name: db, provider: postgres, postgres: {dsn: \"postgres://admin:${CANARY}@db:badport/app\", roles: [r]}}\n"},
		{"password in a bad postgres URL userinfo", "  - {name: db, provider: postgres, postgres: {dsn: \"postgres://admin:${CANARY} x@db/app\", roles: [r]}}\n"},
		{"password in an unterminated key=value DSN", "  - {name: db, provider: postgres, postgres: {dsn: \"host=db password='${CANARY}\", roles: [r]}}\n"},
		{"secret env var in a number", "revoker: {batch: ${CANARY}}\n"},
		{"secret env var in a duration", "revoker: {backoff_max: ${CANARY}}\n"},
		{"secret env var in a non-secret string", "listen: ${CANARY}\n"},
		{"secret env var as a provider", "  - {name: x, provider: ${CANARY}}\n"},
		{"secret as a mapping", "pagerduty: {token: {value: ${CANARY}}}\n"},
		{"secret under a misspelt key", "slack: {team_id: T1, bot_tokn: ${CANARY}, signing_secret: s, audit_channel: C1}\n"},
		{"secret in webhook URL credentials", "  - {name: x, provider: webhook, webhook: {url: \"https://u:${CANARY}@h.example.com/\", token: t}}\n"},
		{"secret in an unterminated quote", "slack: {bot_token: \"${CANARY}\n"},
		{"secret with other problems around it", "slack: {bot_token: ${CANARY}, signing_secret: ${CANARY}}\npagerduty: {token: ${CANARY}, webhook_secrets: [\"${CANARY_FILE}\", \"\"]}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseConfig([]byte(base+tt.extra), envMap(env))
			if err == nil {
				t.Fatal("config unexpectedly valid")
			}
			if strings.Contains(err.Error(), canary) {
				t.Errorf("error reveals the secret:\n%s", err)
			}
			file := writeTemp(t, base+tt.extra)
			var stdout, stderr bytes.Buffer
			if code := runConfigCommand([]string{"check", "--config", file}, &stdout, &stderr, envMap(env)); code != exitUsage {
				t.Errorf("exit code = %d, want %d", code, exitUsage)
			}
			if out := stdout.String() + stderr.String(); strings.Contains(out, canary) {
				t.Errorf("config check output reveals the secret:\n%s", out)
			}
		})
	}

	t.Run("a loaded config prints no secret", func(t *testing.T) {
		t.Parallel()
		canaryEnv := map[string]string{}
		for k := range validEnv {
			canaryEnv[k] = canary + "-" + k + "-0123456789abcdef0123456789abcdef"
		}
		cfg, err := LoadConfig(filepath.Join(testdataDir, "valid.yaml"), envMap(canaryEnv))
		if err != nil {
			t.Fatal(err)
		}
		js, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "config", cfg, "slack", cfg.Slack, "token", cfg.API.Token)
		for _, out := range []string{fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", *cfg), fmt.Sprintf("%#v", *cfg), fmt.Sprintf("%+v", *cfg.Slack), fmt.Sprint(cfg.API.Token), string(js), logs.String()} {
			if strings.Contains(out, canary) {
				t.Errorf("output reveals a secret:\n%s", out)
			}
		}
		if !strings.Contains(string(js), "[REDACTED]") {
			t.Errorf("JSON does not show redacted secrets: %s", js)
		}
		if got := cfg.API.Token.Reveal(); !strings.HasPrefix(got, canary) {
			t.Errorf("Reveal = %q", got)
		}
		vals := strings.Join(cfg.SecretValues(), "\n")
		for _, k := range []string{"API_TOKEN", "DB_PASSWORD", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "PD_WEBHOOK_SECRET", "GITHUB_TOKEN"} {
			if !strings.Contains(vals, canaryEnv[k]) {
				t.Errorf("SecretValues misses %s", k)
			}
		}
		if !strings.Contains(vals, "pd-token-from-file-0123") || !strings.Contains(vals, "hook-token-123") {
			t.Error("SecretValues misses the file and literal secrets")
		}
	})
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
	path := filepath.Join("..", "..", "accessbroker.example.yaml")
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
	seeds = append(seeds, filepath.Join("..", "..", "accessbroker.example.yaml"))
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
	data, err := os.ReadFile(filepath.Join("..", "..", "accessbroker.example.yaml"))
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
