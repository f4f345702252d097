package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/fixtures/awsfake"
	"github.com/accessbroker/accessbroker/grants"
	awsprov "github.com/accessbroker/accessbroker/integrations/aws"
)

// TestActivityCollectedAndListed: with activity.aws.enabled, a grant issued through the real
// aws-sts provider keeps its session key; the collector serve runs looks its CloudTrail events
// up at the fake AWS (and not another session's), records them as aws.activity on the grant's
// timeline, counts them in accessbroker_activity_events_total, and grants list shows them.
func TestActivityCollectedAndListed(t *testing.T) {
	dir := t.TempDir()
	const secret = "activitySecretAccessKey0123456789EXAMPLE"
	fake := awsfake.New(awsfake.Options{AccessKeyID: "AKIDACTIVITY", SecretAccessKey: secret, Region: "us-east-1"})
	t.Cleanup(fake.Close)
	role := fake.AddRole("oncall-admin", 0)
	useFakeAWSCredentials(t, dir, "AKIDACTIVITY", secret)
	config := filepath.Join(dir, "accessbroker.yaml")
	if err := os.WriteFile(config, []byte(`listen: "127.0.0.1:0"
store: {driver: sqlite, dsn: "file:`+filepath.Join(dir, "ab.db")+`"}
audit: {signing_key_file: "`+filepath.Join(dir, "audit.key")+`"}
aws: {region: us-east-1, endpoint_url: "`+fake.URL()+`"}
activity: {aws: {enabled: true}}
resources:
  - {name: prod-aws, provider: aws-sts, default_duration: 30m, max_duration: 1h, aws_sts: {role_arn: "`+role.ARN+`"}}
identities:
  - {slack: U0ALICE, slack_team: T0ACME, email: alice@example.com}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &inProcess{t: t, dir: dir, config: config}
	p.mustRun("audit", "keygen", "--out", filepath.Join(dir, "audit.key"))
	p.mustRun("grants", "issue", "--config", config, "--resource", "prod-aws", "--slack-user", "U0ALICE", "--reason", "activity test")
	var list []grantView
	if err := json.Unmarshal([]byte(p.mustRun("grants", "list", "--config", config, "--format", "json")), &list); err != nil || len(list) != 1 {
		t.Fatalf("grants list: %v %+v", err, list)
	}
	key := list[0].Handle[awsprov.DataAccessKeyID]
	if !strings.HasPrefix(key, "ASIA") {
		t.Fatalf("handle access_key_id %q, want the session's key", key)
	}
	now := time.Now()
	mine := fake.AddTrailEvent(awsfake.TrailEvent{EventTime: now, EventSource: "s3.amazonaws.com", EventName: "PutObject", AccessKeyID: key})
	fake.AddTrailEvent(awsfake.TrailEvent{EventTime: now, EventSource: "s3.amazonaws.com", EventName: "PutObject", AccessKeyID: "ASIAOTHERSESSION01"})

	cfg, ok := loadConfigFlag(config, io.Discard)
	if !ok {
		t.Fatal("config")
	}
	s, err := newServer(context.Background(), cfg, appOptions{logOut: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.activity == nil {
		t.Fatal("serve built no activity collector with activity.aws.enabled")
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if n, err := s.activity.Pass(ctx, awsprov.SourceCloudTrail); err != nil || n != 1 {
		t.Fatalf("collector pass: %d events, %v; want 1", n, err)
	}
	fams, err := s.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				got[f.GetName()] += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[f.GetName()] += m.GetGauge().GetValue()
			}
		}
	}
	if got["accessbroker_activity_events_total"] != 1 || got["accessbroker_activity_source_up"] != 1 {
		t.Errorf("activity metrics: events %v, up %v; want 1 and 1", got["accessbroker_activity_events_total"], got["accessbroker_activity_source_up"])
	}
	out := p.mustRun("audit", "export", "--config", config, "--format", "jsonl")
	if strings.Count(out, `"aws.activity"`) != 1 || !strings.Contains(out, mine) || strings.Contains(out, "ASIAOTHERSESSION01") {
		t.Errorf("audit log: want one aws.activity of this grant's session:\n%s", out)
	}
	table := p.mustRun("grants", "list", "--config", config)
	if !strings.Contains(table, "ACTIVITY") || !strings.Contains(table, "aws-cloudtrail 1") {
		t.Errorf("grants list does not show the activity:\n%s", table)
	}
}

// TestActivityNote: the ACTIVITY column shows the events per source, a failing source as DOWN
// with its failures and error, and a grant that could not be collected with the reason.
func TestActivityNote(t *testing.T) {
	ok := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		curs []grants.ActivityCursor
		want string
	}{
		{"none", nil, ""},
		{"events", []grants.ActivityCursor{{Source: "aws-cloudtrail", Events: 12, LastOK: ok}}, "aws-cloudtrail 12"},
		{"down", []grants.ActivityCursor{{Source: "aws-cloudtrail", Events: 3, Failures: 4, LastError: "ThrottlingException: Rate exceeded\nmore"}},
			"aws-cloudtrail DOWN (4 failures: ThrottlingException: Rate exceeded)"},
		{"not collectable", []grants.ActivityCursor{{Source: "aws-cloudtrail", Done: true, LastError: "no session access key id"}},
			"aws-cloudtrail not collected: no session access key id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := activityNote(tt.curs); got != tt.want {
				t.Errorf("activityNote = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestActivityIdentityCenterCollected: with activity.aws.enabled and an account role for the
// member account, an aws-identity-center grant issued and revoked through the real provider has
// its person's AWSReservedSSO session events in that account collected by serve's collector
// (not another person's, not another permission set's); a call after the revocation is marked
// after_revocation and the report flags activity_after_revocation.
func TestActivityIdentityCenterCollected(t *testing.T) {
	dir := t.TempDir()
	const secret = "activitySecretAccessKey0123456789EXAMPLE"
	const member, permSet = "111122223333", "arn:aws:sso:::permissionSet/ssoins-1111111111111111/ps-2222222222222222"
	fake := awsfake.New(awsfake.Options{AccessKeyID: "AKIDACTIVITY", SecretAccessKey: secret, Region: "us-east-1"})
	t.Cleanup(fake.Close)
	fake.AddNamedPermissionSet(permSet, "DatabaseAdministrator")
	fake.AddUser(awsfake.User{UserName: "alice@example.com", Email: "alice@example.com"})
	reader := fake.AddAccountRole(member, "accessbroker-activity")
	useFakeAWSCredentials(t, dir, "AKIDACTIVITY", secret)
	config := filepath.Join(dir, "accessbroker.yaml")
	if err := os.WriteFile(config, []byte(`listen: "127.0.0.1:0"
store: {driver: sqlite, dsn: "file:`+filepath.Join(dir, "ab.db")+`"}
audit: {signing_key_file: "`+filepath.Join(dir, "audit.key")+`"}
aws: {region: us-east-1, endpoint_url: "`+fake.URL()+`"}
activity:
  aws:
    enabled: true
    account_roles: [{account_id: "`+member+`", role_arn: "`+reader.ARN+`"}]
resources:
  - name: prod-sso
    provider: aws-identity-center
    default_duration: 30m
    max_duration: 1h
    aws_identity_center: {instance_arn: "arn:aws:sso:::instance/ssoins-1111111111111111", identity_store_id: d-1234567890,
      permission_set_arn: "`+permSet+`", account_id: "`+member+`"}
identities:
  - {slack: U0ALICE, slack_team: T0ACME, email: alice@example.com}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &inProcess{t: t, dir: dir, config: config}
	p.mustRun("audit", "keygen", "--out", filepath.Join(dir, "audit.key"))
	p.mustRun("grants", "issue", "--config", config, "--resource", "prod-sso", "--slack-user", "U0ALICE", "--reason", "activity test")
	var list []grantView
	if err := json.Unmarshal([]byte(p.mustRun("grants", "list", "--config", config, "--format", "json")), &list); err != nil || len(list) != 1 {
		t.Fatalf("grants list: %v %+v", err, list)
	}
	sso := func(permissionSet, user, name string, at time.Time) string {
		return fake.AddTrailEvent(awsfake.SSOTrailEvent(awsfake.TrailEvent{EventTime: at, EventSource: "rds.amazonaws.com", EventName: name},
			member, permissionSet, "1234567890abcdef", "", user))
	}
	during := sso("DatabaseAdministrator", "alice@example.com", "DescribeDBInstances", time.Now())
	sso("DatabaseAdministrator", "bob@example.com", "DeleteDBInstance", time.Now())
	sso("ReadOnly", "alice@example.com", "DescribeDBLogFiles", time.Now())
	p.mustRun("grants", "revoke", list[0].ID, "--config", config, "--reason", "done", "--operator", "tester")
	after := sso("DatabaseAdministrator", "alice@example.com", "ModifyDBInstance", time.Now())

	cfg, ok := loadConfigFlag(config, io.Discard)
	if !ok {
		t.Fatal("config")
	}
	// As serve: with the providers (the aws-identity-center one resolves the session names).
	s, err := newServer(context.Background(), cfg, appOptions{logOut: io.Discard, withProviders: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.activity == nil {
		t.Fatal("serve built no activity collector with activity.aws.enabled")
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if n, err := s.activity.Pass(ctx, awsprov.SourceCloudTrail); err != nil || n != 2 {
		t.Fatalf("collector pass: %d events, %v; want 2\n%s", n, err, p.mustRun("grants", "list", "--config", config))
	}
	out := p.mustRun("audit", "export", "--config", config, "--format", "jsonl")
	if strings.Count(out, `"aws.activity"`) != 2 || !strings.Contains(out, during) || !strings.Contains(out, after) ||
		strings.Contains(out, "DeleteDBInstance") || strings.Contains(out, "DescribeDBLogFiles") {
		t.Errorf("audit log: want the two aws.activity of alice's DatabaseAdministrator session:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, after) && !strings.Contains(line, `"after_revocation":"true"`) {
			t.Errorf("the call after revocation is not marked after_revocation: %s", line)
		}
	}
	rep := p.mustRun("report", "--config", config, "--format", "json",
		"--since", time.Now().Add(-time.Hour).Format(time.RFC3339), "--until", time.Now().Add(time.Hour).Format(time.RFC3339))
	if !strings.Contains(rep, string(audit.AnomalyActivityAfterRevocation)) {
		t.Errorf("report does not flag activity after revocation:\n%s", rep)
	}
	if table := p.mustRun("grants", "list", "--config", config); !strings.Contains(table, "aws-cloudtrail 2") {
		t.Errorf("grants list does not show the activity:\n%s", table)
	}
}
