package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/config"
)

// testdataDir holds the configuration files of the config package's tests; `config check`
// runs over the same files here.
const testdataDir = "internal/config/testdata/config"

// envMap is a fake getenv over a map.
func envMap(m map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

// minimalBase is a valid 8-line config (one webhook resource) that tests append to.
func minimalBase(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testdataDir, "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "accessbroker.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
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
		{"bad_role_arn_partition.yaml", 7, "resources[0].aws_sts.role_arn", `"arn:aws-iso:iam::123456789012:role/oncall-admin" is not an IAM role ARN (arn:aws:iam::123456789012:role/name, in partition aws, aws-cn or aws-us-gov)`},
		{"bad_session_policy.yaml", 7, "resources[0].aws_sts.session_policy", "must be an IAM policy document with Version and Statement"},
		{"bad_postgres_dsn.yaml", 8, "resources[0].postgres.dsn", "is not a valid postgres:// URL"},
		{"bad_sslmode.yaml", 10, "resources[0].postgres.sslmode", `not "strict"`},
		{"bad_proxy_without_section.yaml", 10, "resources[0].postgres.proxy", "needs the postgres_proxy section"},
		{"bad_record_parameters_without_proxy.yaml", 10, "resources[0].postgres.record_parameters", "needs proxy: true"},
		{"bad_proxy_listen_no_host.yaml", 10, "postgres_proxy.listen", "has no host clients can connect to; set postgres_proxy.public_address"},
		{"bad_proxy_short_key.yaml", 14, "postgres_proxy.password_key", "is too short"},
		{"bad_proxy_missing_cert.yaml", 9, "postgres_proxy.tls_cert_file", "is required"},
		{"bad_orphan_owner_prefix.yaml", 10, "resources[0].postgres.orphan_owner", "must not start with ab_"},
		{"bad_orphan_owner_granted.yaml", 10, "resources[0].postgres.orphan_owner", "must not be one of roles"},
		{"bad_orphan_owner_name.yaml", 10, "resources[0].postgres.orphan_owner", "a plain PostgreSQL role name"},
		{"bad_connection_limit_unlimited.yaml", 7, "resources[0].postgres.connection_limit", "must be at least 1, not -1"},
		{"bad_postgres_dsn_pgx.yaml", 7, "resources[0].postgres", "dsn is not a valid PostgreSQL connection string"},
		{"bad_identity_center_incomplete.yaml", 7, "resources[0].aws_identity_center.permission_set_arn", "is required"},
		{"bad_github_team_missing_team.yaml", 7, "resources[0].github_team.team", "is required"},
		{"bad_github_role.yaml", 7, "resources[0].github_team.role", `must be member or maintainer, not "owner"`},
		{"bad_webhook_missing_url.yaml", 7, "resources[0].webhook.url", "is required"},
		{"bad_webhook_http_url.yaml", 7, "resources[0].webhook.url", "must use https"},
		{"bad_webhook_url_query.yaml", 7, "resources[0].webhook.url", `url "https://hooks.example.com/access?tenant=1" must not have a query or fragment`},
		{"bad_github_team_dotdot.yaml", 7, "resources[0].github_team", `team "infra..admins" is not a team slug`},
		{"bad_aws_endpoint_path.yaml", 9, "aws.endpoint_url", "must be scheme://host[:port] only (no path, query, fragment or user info)"},
		{"bad_duplicate_resource.yaml", 9, "resources[1].name", `duplicate resource name "app" (also resources[0])`},
		{"bad_resource_name.yaml", 5, "resources[0].name", `"Prod_DB" is not a valid resource name`},
		{"bad_missing_slack_token.yaml", 9, "slack.bot_token", "is required"},
		{"bad_missing_signing_secret.yaml", 9, "slack.signing_secret", "is required (or slack.signing_secrets)"},
		{"bad_slack_http_api_url.yaml", 14, "slack.api_url", "must use https"},
		{"bad_missing_pagerduty_token.yaml", 9, "pagerduty.token", "is required"},
		{"bad_missing_github_token.yaml", 9, "github.token", "is required: resources app use provider github-team"},
		{"bad_min_approvals_zero.yaml", 8, "resources[0].policy.min_approvals", "must be at least 1 when approvers are configured"},
		{"bad_min_approvals_too_many.yaml", 10, "resources[0].policy.min_approvals", "is 3 but approvers.slack_users lists only 2"},
		{"bad_max_pending_zero.yaml", 8, "resources[0].policy.max_pending_per_person", "must be from 1 to 20 (pending requests one person may have open for the resource), not 0"},
		{"bad_max_pending_too_many.yaml", 8, "resources[0].policy.max_pending_per_person", "must be from 1 to 20"},
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
		{"bad_witness_kind.yaml", 12, "audit.witnesses[1].kind", `must be file, https or s3, not "ftp"`},
		{"bad_witness_s3.yaml", 11, "audit.witnesses[0].retention", "is required: how long each checkpoint stays locked, at least 24h"},
		{"bad_witness_s3_bucket.yaml", 12, "audit.witnesses[0].bucket", `bucket name "Acme_Audit" may hold only lowercase letters, digits, '.' and '-'`},
		{"bad_witness_s3_retention_short.yaml", 14, "audit.witnesses[0].retention", "must be at least 24h, not 12h"},
		{"bad_admin_listen_same.yaml", 2, "admin_listen", "is the same address as listen"},
		{"bad_admin_listen_addr.yaml", 2, "admin_listen", `"localhost" is not a host:port address`},
		{"bad_witness_s3_mode.yaml", 15, "audit.witnesses[0].mode", `must be COMPLIANCE or GOVERNANCE (upper case), not "compliance"`},
		{"bad_witness_s3_prefix.yaml", 13, "audit.witnesses[0].prefix", `must not start with '/' (S3 keys have no leading slash): write "prod/audit"`},
		{"bad_witness_s3_no_region.yaml", 11, "audit.witnesses[0].region", "is required when aws.region is not set"},
		{"bad_witness_s3_with_path.yaml", 15, "audit.witnesses[0].path", "does not apply to a s3 witness (its keys: bucket, prefix, region, retention, mode)"},
		{"bad_witness_file_with_url.yaml", 13, "audit.witnesses[0].url", "does not apply to a file witness (its keys: path)"},
		{"bad_witness_http_url.yaml", 12, "audit.witnesses[0].url", "https"},
		{"bad_witness_duplicate.yaml", 12, "audit.witnesses[1]", "writes to the same place as audit.witnesses[0]"},
		{"bad_missing_signing_key_file.yaml", 3, "audit.signing_key_file", "is required"},
		{"bad_listen.yaml", 1, "listen", `"8080" is not a host:port address`},
		{"bad_store_driver.yaml", 2, "store.driver", `must be sqlite or postgres, not "mysql"`},
		{"bad_missing_store_dsn.yaml", 2, "store.dsn", "is required"},
		{"bad_log_level.yaml", 1, "log_level", `must be debug, info, warn or error, not "verbose"`},
		{"bad_short_api_token.yaml", 9, "api.token", "is too short"},
		{"bad_backoff_base_over_max.yaml", 10, "revoker.backoff_base", "(10m) must not exceed revoker.backoff_max (1m)"},
		{"bad_drift_action.yaml", 11, "drift.action", `is "delete"; use flag (record and report drift), revoke (also remove it) or off (no drift passes)`},
		{"bad_drift_interval.yaml", 10, "drift.interval", "10s"},
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
		{"missing file", []string{"check", "--config", filepath.Join(testdataDir, "does-not-exist.yaml")}, exitUsage, "read config: open " + filepath.Join(testdataDir, "does-not-exist.yaml") + ": no such file or directory"},
		{"directory", []string{"check", "--config", testdataDir}, exitUsage, "read config " + testdataDir},
		{"help", []string{"--help"}, exitOK, "usage: accessbroker config check"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			if code := runConfigCommand(tt.args, &stdout, &stderr, envMap(nil)); code != tt.code {
				t.Errorf("exit code = %d, want %d", code, tt.code)
			}
			out, name := stderr.String(), "stderr"
			if tt.code == exitOK {
				out, name = stdout.String(), "stdout" // help goes to stdout
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("%s = %q, want it to contain %q", name, out, tt.want)
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
			_, err := config.ParseConfig([]byte(base+tt.extra), envMap(env))
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
		cfg, err := config.LoadConfig(filepath.Join(testdataDir, "valid.yaml"), envMap(canaryEnv))
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
