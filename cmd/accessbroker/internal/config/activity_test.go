package config

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestActivityConfig: the activity section's defaults, explicit values, and each refusal (with
// the key, line and what to do).
func TestActivityConfig(t *testing.T) {
	t.Parallel()
	const base = "store: {driver: sqlite, dsn: x}\naudit: {signing_key_file: k}\nresources:\n  - {name: a, provider: webhook, webhook: {url: \"https://h/\", token: t}}\n"
	cfg, err := ParseConfig([]byte(base+"aws: {region: eu-west-1}\nactivity:\n  poll_interval: 2m\n  aws: {enabled: true, lookback_after_end: 30m, calls_per_second: 1,\n    account_roles: [{account_id: \"111122223333\", role_arn: \"arn:aws:iam::111122223333:role/accessbroker-activity\"}]}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := ActivityConfig{PollInterval: 2 * time.Minute, AWS: ActivityAWSConfig{Enabled: true, LookbackAfterEnd: 30 * time.Minute, CallsPerSecond: 1,
		AccountRoles: []ActivityAccountRole{{AccountID: "111122223333", RoleARN: "arn:aws:iam::111122223333:role/accessbroker-activity"}}},
		GitHub: ActivityGitHubConfig{LookbackAfterEnd: 20 * time.Minute}}
	if diff := cmp.Diff(want, cfg.Activity, configCmpOpts...); diff != "" {
		t.Errorf("activity (-want +got):\n%s", diff)
	}
	hook, err := ParseConfig([]byte(base+"activity: {github: {webhook_secret: 0123456789abcdef0123456789abcdef}}\n"), nil)
	if err != nil {
		t.Fatalf("a 32-character activity.github.webhook_secret: %v", err)
	}
	if got := hook.Activity.GitHub.WebhookSecret.Reveal(); got != "0123456789abcdef0123456789abcdef" {
		t.Errorf("activity.github.webhook_secret = %q", got)
	}
	tests := []struct {
		name, data string
		want       []Problem
	}{
		{"enabled without aws", "activity: {aws: {enabled: true}}\n", []Problem{{Path: "activity.aws.enabled", Line: 5,
			Msg: "needs the aws section with region (CloudTrail is looked up there); add aws.region or set activity.aws.enabled: false"}}},
		{"rate above CloudTrail's", "aws: {region: eu-west-1}\nactivity: {aws: {calls_per_second: 3}}\n", []Problem{{Path: "activity.aws.calls_per_second", Line: 6, Msg: "must be between 1 and 2, not 3"}}},
		{"window too short", "activity: {aws: {lookback_after_end: 1m}}\n", []Problem{{Path: "activity.aws.lookback_after_end", Line: 5, Msg: "must be at least 5m, not 1m"}}},
		{"audit log without github", "activity: {github: {audit_log: true}}\n", []Problem{{Path: "activity.github.audit_log", Line: 5,
			Msg: "needs the github section with token (it reads the organisation audit log); add github.token or set activity.github.audit_log: false"}}},
		{"webhook secret too short", "activity: {github: {webhook_secret: short-secret}}\n", []Problem{{Path: "activity.github.webhook_secret", Line: 5,
			Msg: "is too short: at least 32 characters (generate one with `openssl rand -hex 32` and set the same secret on the GitHub organisation webhook)"}}},
		{"account role not an ARN", "activity: {aws: {account_roles: [{account_id: \"111122223333\", role_arn: reader}]}}\n", []Problem{{Path: "activity.aws.account_roles[0]", Line: 5,
			Msg: `"reader" is not an IAM role ARN (arn:aws:iam::111122223333:role/NAME, in aws, aws-cn or aws-us-gov)`}}},
		{"account role in another account", "activity: {aws: {account_roles: [{account_id: \"111122223333\", role_arn: \"arn:aws:iam::444455556666:role/reader\"}]}}\n", []Problem{{Path: "activity.aws.account_roles[0]", Line: 5,
			Msg: "role arn:aws:iam::444455556666:role/reader is in account 444455556666, not in 111122223333: give the role in 111122223333 that may call cloudtrail:LookupEvents and trusts the broker"}}},
		{"account id not twelve digits", "activity: {aws: {account_roles: [{account_id: \"1234\", role_arn: \"arn:aws:iam::444455556666:role/reader\"}]}}\n", []Problem{{Path: "activity.aws.account_roles[0]", Line: 5,
			Msg: `"1234" is not a twelve-digit AWS account id`}}},
		{"poll too fast", "activity: {poll_interval: 10s}\n", []Problem{{Path: "activity.poll_interval", Line: 5, Msg: "must be at least 1m, not 10s"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseConfig([]byte(base+tt.data), nil)
			ce := mustConfigError(t, err)
			if diff := cmp.Diff(tt.want, ce.Problems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}
