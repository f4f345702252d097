// Package config is the configuration contract of accessbroker: a strict YAML decoder with
// ${ENV} expansion, "file:" secrets, defaults and validation that names each bad key and its
// line. cmd/accessbroker loads it; nothing else does.
package config

// This file is the configuration contract of accessbroker: one YAML file, documented key by
// key in docs/configuration.md (generated from the doc comments below) and in
// accessbroker.example.yaml at the repository root.
//
// Loading happens in four steps, each of which collects every problem it finds instead of
// stopping at the first:
//
//  1. Parse the YAML into a yaml.v3 node tree (syntax errors carry their line).
//  2. Decode the tree into Config with our own strict decoder: unknown keys (with a
//     did-you-mean), duplicate keys, wrong shapes and wrong scalar types are problems with
//     their key path and line. ${NAME} references are expanded inside scalar values only,
//     while decoding, so an environment value can never change the document's structure.
//  3. Read secrets given as "file:/path", then apply defaults (a default applies only when the
//     key is absent, so an explicit 0 is still seen and rejected by validation).
//  4. Validate the whole configuration, naming each bad key path and its line.
//
// Secret values never appear in a Problem: messages about a secret name its key only, and
// values that came from the environment are not quoted back either.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
	awsprov "github.com/accessbroker/accessbroker/integrations/aws"
	"github.com/accessbroker/accessbroker/integrations/github"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
	"github.com/accessbroker/accessbroker/integrations/pagerduty"
	"github.com/accessbroker/accessbroker/integrations/postgres"
	"github.com/accessbroker/accessbroker/integrations/webhook"
)

// Provider kinds accepted in resources[].provider.
const (
	ProviderPostgres          = "postgres"
	ProviderAWSSTS            = "aws-sts"
	ProviderAWSIdentityCenter = "aws-identity-center"
	ProviderGitHubTeam        = "github-team"
	ProviderWebhook           = "webhook"
)

// Default upstream API base URLs, used when the matching api_url is empty or absent. They are
// the defaults of the SDKs accessbroker uses (slack-go, go-pagerduty, go-github).
const (
	DefaultSlackAPIURL     = "https://slack.com/api/"
	DefaultPagerDutyAPIURL = "https://api.pagerduty.com"
	DefaultGitHubAPIURL    = "https://api.github.com/"
)

// Limits that keep a configuration sane.
const (
	// MaxResourceDuration is the longest max_duration a resource may have: anything longer is
	// not just-in-time access.
	MaxResourceDuration = 7 * 24 * time.Hour
	// MinAPITokenLength is the shortest api.token accepted.
	MinAPITokenLength = 32
	// maxConfigSize bounds the config file LoadConfig reads.
	maxConfigSize = 1 << 20
	// maxSecretFileSize bounds a "file:" secret.
	maxSecretFileSize = 64 << 10
	// maxDecodeSteps bounds decoding work, so a small file full of aliases cannot explode.
	maxDecodeSteps = 200_000
)

// Config is the whole accessbroker configuration, after ${ENV} expansion, "file:" secrets,
// defaults and validation. A *Config returned by LoadConfig or ParseConfig is valid; do not
// build one by hand except in tests. Printing a Config never reveals a secret: every secret is
// a Secret, which prints as [REDACTED].
type Config struct {
	// InstanceName (instance_name) names this broker in its log lines (the key instance, next
	// to replica, the process's own id) when several brokers exist (e.g. "prod-eu"). Metrics
	// carry no such label: Prometheus labels each scrape target itself. Optional; at most 64
	// printable characters.
	InstanceName string `yaml:"instance_name"`
	// LogLevel (log_level) is debug, info, warn or error. Default info. See SlogLevel.
	LogLevel string `yaml:"log_level"`
	// Listen (listen) is the HTTP listen address, host:port. Default ":8080".
	Listen string `yaml:"listen"`
	// AdminListen (admin_listen) is a second listen address, host:port, for /metrics and
	// /api/v1 only; when set, those paths are no longer served on listen, which then carries
	// only what Slack and PagerDuty must reach, the health checks and the web console
	// (/ui/). Optional; must differ from listen.
	AdminListen string `yaml:"admin_listen"`
	// API (api) configures the /api/v1 admin API.
	API APIConfig `yaml:"api"`
	// Store (store) is the database. Required.
	Store StoreConfig `yaml:"store"`
	// Audit (audit) configures the audit log's signed checkpoints. Required.
	Audit AuditConfig `yaml:"audit"`
	// Revoker (revoker) tunes the durable revocation loop. Every key has a default.
	Revoker RevokerConfig `yaml:"revoker"`
	// Drift (drift) is the periodic comparison of each provider's access with the live
	// grants (docs/operations.md, "Drift"). Every key has a default.
	Drift DriftConfig `yaml:"drift"`
	// Slack (slack) is the Slack app. nil when the section is absent; required as soon as a
	// resource names approvers.
	Slack *SlackConfig `yaml:"slack"`
	// PagerDuty (pagerduty) is the PagerDuty account. nil when absent; required as soon as a
	// resource has an on-call policy or auto_grant rules exist.
	PagerDuty *PagerDutyConfig `yaml:"pagerduty"`
	// AWS (aws) is shared by the aws-sts and aws-identity-center providers. nil when absent;
	// required (with region) as soon as such a resource exists. Credentials come from the
	// AWS SDK's default chain (environment, shared config, instance or task role), never
	// from this file.
	AWS *AWSConfig `yaml:"aws"`
	// GitHub (github) is used by the github-team provider. nil when absent; required (with
	// token) as soon as a github-team resource exists.
	GitHub *GitHubConfig `yaml:"github"`
	// Resources (resources) are the things access can be granted to. At least one.
	Resources []ResourceConfig `yaml:"resources"`
	// AutoGrant (auto_grant) grants resources to whoever acknowledges a page on the listed
	// PagerDuty services.
	AutoGrant []AutoGrantConfig `yaml:"auto_grant"`
	// Identities (identities) is an optional explicit map from Slack users to the same person
	// elsewhere, consulted before the users.info → email → PagerDuty lookup.
	Identities []IdentityConfig `yaml:"identities"`
	// Identity (identity) says how people who are not in identities are identified. Every
	// key has a default.
	Identity IdentityRulesConfig `yaml:"identity"`
	// PostgresProxy (postgres_proxy) is the PostgreSQL session proxy (docs/postgres-proxy.md):
	// resources with postgres.proxy: true are reached through it, and every session and
	// statement is recorded. nil when absent; required as soon as a resource has proxy: true.
	PostgresProxy *PostgresProxyConfig `yaml:"postgres_proxy"`
	// Console (console) is the web console under /ui/ on listen (docs/console.md): Sign in
	// with Slack, grants, requests with a dry run, approvals, each grant's story, audit
	// search, the weekly report. nil when absent: no console. Needs the slack section.
	Console *ConsoleConfig `yaml:"console"`
	// Activity (activity) collects what people did with their grants upstream (CloudTrail
	// for aws-sts grants) onto each grant's audit timeline (docs/activity.md). Off unless a
	// source is enabled.
	Activity ActivityConfig `yaml:"activity"`

	lines   map[string]int  // key path → line of the key (or list item) in the file
	set     map[string]bool // key paths given a non-null value in the file
	fromEnv map[string]bool // key paths whose value came (partly) from ${NAME}
}

// APIConfig is the api section.
type APIConfig struct {
	// Token (api.token) is the bearer token of the /api/v1 admin API. Optional: without it
	// the admin API answers 401 to everything. When set it must be at least 32 characters.
	// A secret: accepts "file:/path".
	Token Secret `yaml:"token"`
}

// StoreConfig is the store section.
type StoreConfig struct {
	// Driver (store.driver) is sqlite (one process, embedded) or postgres (several replicas).
	// Required.
	Driver string `yaml:"driver"`
	// DSN (store.dsn) is the database to open: for sqlite a modernc.org/sqlite DSN such as
	// "file:accessbroker.db" (passed to the driver as is, relative to the working directory);
	// for postgres a postgres:// URL or key=value connection string. Required. With the
	// postgres driver it is a secret and accepts "file:/path"; with sqlite it does not (the
	// "file:" prefix is SQLite's own URI syntax there).
	DSN Secret `yaml:"dsn"`
}

// AuditConfig is the audit section.
type AuditConfig struct {
	// SigningKeyFile (audit.signing_key_file) is the ed25519 key that signs checkpoints.
	// Required. A relative path is relative to the config file's directory.
	SigningKeyFile string `yaml:"signing_key_file"`
	// CheckpointEvery (audit.checkpoint_every) signs a checkpoint after this many events.
	// Default 1000; at least 1.
	CheckpointEvery int `yaml:"checkpoint_every"`
	// CheckpointPeriod (audit.checkpoint_period) also signs a checkpoint this often, even when
	// nothing happened, so "no events" can be told from "events deleted". Default 1h; between
	// 1s and 24h.
	CheckpointPeriod time.Duration `yaml:"checkpoint_period"`
	// Witnesses (audit.witnesses) receive a copy of every signed checkpoint, outside the
	// database, so that deleting the newest checkpoints together with the events after an
	// older one is still caught (`audit verify --witness`). Optional; at most 8. A witness
	// that fails is retried forever and alerted; it never blocks grants. See docs/audit.md.
	Witnesses []WitnessConfig `yaml:"witnesses"`
	// Sinks (audit.sinks) receive a copy of every audit event, in seq order and at least
	// once (each with its seq, for deduplication), for the security team's tools: a
	// JSON-lines file, an HTTPS endpoint or S3 objects. Optional; at most 8. A sink that is
	// down never blocks grants: it is retried forever, alerted, and catches up from its
	// durable cursor. See docs/audit.md.
	Sinks []SinkConfig `yaml:"sinks"`
}

// Witness kinds accepted in audit.witnesses[].kind.
const (
	WitnessFile  = "file"
	WitnessHTTPS = "https"
	WitnessS3    = "s3"
)

// WitnessConfig is one entry of audit.witnesses: kind and the fields of that kind only.
type WitnessConfig struct {
	// Kind (witnesses[].kind) is file (an append-only JSON-lines file, fsynced), https (an
	// endpoint that stores what it is POSTed and returns it on GET) or s3 (one object per
	// checkpoint in an S3 bucket with Object Lock). Required.
	Kind string `yaml:"kind"`
	// Path (witnesses[].path) is the file of a file witness. Required for file; put it on
	// another volume than the database. A relative path is relative to the config file's
	// directory.
	Path string `yaml:"path"`
	// URL (witnesses[].url) is the endpoint of an https witness. Required for https; https
	// unless the host is loopback.
	URL string `yaml:"url"`
	// BearerToken (witnesses[].bearer_token) is sent as "Authorization: Bearer …" to an
	// https witness. Optional. A secret.
	BearerToken Secret `yaml:"bearer_token"`
	// Bucket (witnesses[].bucket) is the S3 bucket of an s3 witness, created with Object
	// Lock enabled (docs/audit.md). Required for s3; S3's bucket naming rules.
	Bucket string `yaml:"bucket"`
	// Prefix (witnesses[].prefix) is put before "checkpoints/" in the keys of an s3 witness,
	// e.g. "prod/audit/" (a '/' is added when missing). Optional; no leading '/'.
	Prefix string `yaml:"prefix"`
	// Region (witnesses[].region) is the s3 witness bucket's region. Default aws.region.
	Region string `yaml:"region"`
	// Retention (witnesses[].retention) is how long each checkpoint object of an s3 witness
	// stays locked, from the checkpoint's time, e.g. 2160h (90 days). Required for s3; at
	// least 24h, at most 100 years.
	Retention time.Duration `yaml:"retention"`
	// Mode (witnesses[].mode) is the Object Lock mode of an s3 witness: COMPLIANCE (no one,
	// not even the account root, can shorten or remove the lock) or GOVERNANCE (principals
	// with s3:BypassGovernanceRetention can). Default COMPLIANCE.
	Mode string `yaml:"mode"`
}

// Sink kinds accepted in audit.sinks[].kind.
const (
	SinkFile  = "file"
	SinkHTTPS = "https"
	SinkS3    = "s3"
)

// SinkConfig is one entry of audit.sinks: kind, format, batching and the fields of that
// kind only.
type SinkConfig struct {
	// Kind (sinks[].kind) is file (a JSON-lines file, fsynced after each batch; its last
	// line is its cursor), https (batches POSTed to an endpoint, HMAC-SHA256-signed) or s3
	// (one object per batch). Required.
	Kind string `yaml:"kind"`
	// Format (sinks[].format) is json (the export form of each event: every field with seq,
	// prev_hash and hash) or ocsf (OCSF 1.3.0: Account Change, Authentication or Base
	// Event; docs/audit.md has the mapping). Default json.
	Format string `yaml:"format"`
	// BatchSize (sinks[].batch_size) is the most events in one write, POST or object.
	// Default 500 for file, 100 for https, 1000 for s3; 1 to 10000.
	BatchSize int `yaml:"batch_size"`
	// FlushInterval (sinks[].flush_interval) holds a batch that is not full until this
	// long after the previous one, so that fewer, larger writes are made. Default 0s for
	// file and https, 1m for s3; at most 1h.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// Path (sinks[].path) is the file of a file sink; its directory must exist. Each
	// process writes its own file (a second process on the same file is refused). Required
	// for file. A relative path is relative to the config file's directory.
	Path string `yaml:"path"`
	// MaxBytes (sinks[].max_bytes) rotates a file sink's file once it reaches this many
	// bytes: it is renamed to path.<seq of its last event, 20 digits> and a new file is
	// started. Optional (0: never rotated); at least 1048576 (1 MiB).
	MaxBytes int `yaml:"max_bytes"`
	// URL (sinks[].url) is the endpoint an https sink POSTs to. Required for https; https
	// unless the host is loopback.
	URL string `yaml:"url"`
	// HMACSecret (sinks[].hmac_secret) signs every batch of an https sink (the receiver
	// verifies it: docs/audit.md). Required for https; at least 32 characters. A secret.
	HMACSecret Secret `yaml:"hmac_secret"`
	// Bucket (sinks[].bucket) is the S3 bucket of an s3 sink. Required for s3; S3's bucket
	// naming rules.
	Bucket string `yaml:"bucket"`
	// Prefix (sinks[].prefix) is put before "events/" in the keys of an s3 sink, e.g.
	// "prod/audit/" (a '/' is added when missing). Optional; no leading '/'.
	Prefix string `yaml:"prefix"`
	// Region (sinks[].region) is the s3 sink bucket's region. Default aws.region.
	Region string `yaml:"region"`
}

// S3WitnessConfig is the integrations/aws form of an s3 witness entry.
func (w WitnessConfig) S3WitnessConfig(aws *AWSConfig) awsprov.S3WitnessConfig {
	region := w.Region
	if region == "" && aws != nil {
		region = aws.Region
	}
	return awsprov.S3WitnessConfig{Bucket: w.Bucket, Prefix: w.Prefix, Region: region, Retention: w.Retention, Mode: w.Mode}
}

// RevokerConfig is the revoker section. Every field has a default.
type RevokerConfig struct {
	// ConcurrencyPerProvider (revoker.concurrency_per_provider) bounds concurrent revocations
	// per provider kind, so a slow provider cannot starve the others. Default 32; 1 to 1024.
	ConcurrencyPerProvider int `yaml:"concurrency_per_provider"`
	// Batch (revoker.batch) is how many due grants one claim takes. Default 256; 1 to 10000.
	Batch int `yaml:"batch"`
	// BackoffBase (revoker.backoff_base) is the first retry delay after a failed revocation;
	// it doubles (with jitter) up to BackoffMax, forever. Default 5s.
	BackoffBase time.Duration `yaml:"backoff_base"`
	// BackoffMax (revoker.backoff_max) caps the retry delay. Default 5m; at most 1h and at
	// least backoff_base.
	BackoffMax time.Duration `yaml:"backoff_max"`
	// ClaimLease (revoker.claim_lease) is how long a claimed grant stays reserved for the
	// broker that claimed it; after that another replica may take it. Default 2m; must be
	// longer than issue_timeout.
	ClaimLease time.Duration `yaml:"claim_lease"`
	// IssueTimeout (revoker.issue_timeout) bounds one provider call (issue or revoke).
	// Default 1m.
	IssueTimeout time.Duration `yaml:"issue_timeout"`
	// ShutdownGrace (revoker.shutdown_grace) lets in-flight revocations finish and be
	// recorded after shutdown starts. Default 10s; at most 5m.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
}

// DriftConfig is the drift section. Every field has a default.
type DriftConfig struct {
	// Interval (drift.interval) is the time between drift passes; one replica runs each
	// (the "drift" lease). The first pass runs a minute after start (or after interval, if
	// shorter). Default 10m; 1m to 24h.
	Interval time.Duration `yaml:"interval"`
	// Action (drift.action) is what a pass does with access that no live grant gives (a
	// role named for a revoked or unknown grant, a membership a revoked grant made that is
	// back): flag (record drift.found, log, count; leave it for an operator), revoke (also
	// remove it through the provider and read back that it is gone), or off (no passes at
	// all). Live grants whose access is gone are marked and reported with flag and revoke.
	// Default flag.
	Action string `yaml:"action"`
}

// SlackConfig is the slack section.
type SlackConfig struct {
	// APIURL (slack.api_url) overrides Slack's Web API base URL (tests, demo). Empty means
	// DefaultSlackAPIURL. Must be https unless the host is loopback.
	APIURL string `yaml:"api_url"`
	// TeamID (slack.team_id) is the workspace (T…) or Enterprise Grid org (E…) the broker
	// serves; requests from any other team are rejected. Optional: when empty, serve asks
	// Slack (auth.test) which team the bot token belongs to at start, and refuses to start if
	// it cannot tell.
	TeamID string `yaml:"team_id"`
	// BotToken (slack.bot_token) is the bot token (xoxb-…). Required. A secret.
	BotToken Secret `yaml:"bot_token"`
	// SigningSecret (slack.signing_secret) verifies Slack's request signatures. A secret.
	// At least one of signing_secret and signing_secrets is required.
	SigningSecret Secret `yaml:"signing_secret"`
	// SigningSecrets (slack.signing_secrets) are further accepted signing secrets, for
	// rotation. Secrets. See SigningSecretList.
	SigningSecrets []Secret `yaml:"signing_secrets"`
	// AuditChannel (slack.audit_channel) receives a note of every grant and every alert
	// (failed revocations, break-glass). Required; a channel id (C… or G…).
	AuditChannel string `yaml:"audit_channel"`
	// ApprovalsChannel (slack.approvals_channel) receives approval requests. Default: the
	// audit channel.
	ApprovalsChannel string `yaml:"approvals_channel"`
	// Summary (slack.summary) schedules the weekly report. Defaults: the audit channel,
	// monday, 09:00 UTC.
	Summary SummaryConfig `yaml:"summary"`
	// RequestTTL (slack.request_ttl) is how long a request may wait for approval before it
	// expires. Default 1h; at most 7 days.
	RequestTTL time.Duration `yaml:"request_ttl"`
	// MinReasonLength (slack.min_reason_length) is the shortest reason /access accepts, in
	// characters. Default 10; 0 accepts any reason; at most 500.
	MinReasonLength int `yaml:"min_reason_length"`
}

// SummaryConfig is slack.summary: when and where the weekly report is posted (UTC).
type SummaryConfig struct {
	// Channel (slack.summary.channel) is where the report goes. Default: the audit channel.
	Channel string `yaml:"channel"`
	// Day (slack.summary.weekday) is the English day name, any case. Default monday. Stored
	// in lower case; see Weekday.
	Day string `yaml:"weekday"`
	// Time (slack.summary.time) is HH:MM, 24-hour, UTC. Default "09:00". See HourMinute.
	Time string `yaml:"time"`
	// Reviewers (slack.summary.reviewers) are the Slack user ids who may mark a weekly
	// summary reviewed (its "Mark reviewed" button: a modal asks, for each anomaly, what
	// was found and what was done; recorded as review.recorded). Never for a report with an
	// anomaly about the reviewer. Optional; without it the button only says reviews are off.
	Reviewers []string `yaml:"reviewers"`
}

// PagerDutyConfig is the pagerduty section.
type PagerDutyConfig struct {
	// APIURL (pagerduty.api_url) overrides the REST API base URL (tests, demo). Empty means
	// DefaultPagerDutyAPIURL. Must be https unless the host is loopback.
	APIURL string `yaml:"api_url"`
	// Token (pagerduty.token) is a REST API key (read access suffices). Required. A secret.
	Token Secret `yaml:"token"`
	// WebhookSecrets (pagerduty.webhook_secrets) verify v3 webhook signatures; any one may
	// match (rotation). Required when auto_grant rules exist. Secrets.
	WebhookSecrets []Secret `yaml:"webhook_secrets"`
	// Freshness (pagerduty.freshness) is the oldest webhook event (by occurred_at) acted on.
	// Default 5m; at most 1h.
	Freshness time.Duration `yaml:"freshness"`
}

// AWSConfig is the aws section.
type AWSConfig struct {
	// Region (aws.region), e.g. us-east-1. Required when the section is used.
	Region string `yaml:"region"`
	// EndpointURL (aws.endpoint_url) overrides every AWS endpoint (tests, demo). Empty means
	// the SDK's endpoints. Must be https unless the host is loopback.
	EndpointURL string `yaml:"endpoint_url"`
}

// ActivityConfig is the activity section.
type ActivityConfig struct {
	// PollInterval (activity.poll_interval) is how often each grant is looked up again while
	// it is live and during its after-end window. Default 5m; 1m to 1h.
	PollInterval time.Duration `yaml:"poll_interval"`
	// AWS (activity.aws) collects CloudTrail events of aws-sts grants.
	AWS ActivityAWSConfig `yaml:"aws"`
	// GitHub (activity.github) collects github-team grants' actions from the organisation
	// audit log.
	GitHub ActivityGitHubConfig `yaml:"github"`
}

// ActivityGitHubConfig is the activity.github section.
type ActivityGitHubConfig struct {
	// AuditLog (activity.github.audit_log) looks up each github-team grant's person in the
	// organisation audit log (GET /orgs/{org}/audit-log, phrase actor:LOGIN; GitHub
	// Enterprise Cloud only; github.token needs read:audit_log) as github.activity events. An
	// organisation without the audit log API (404) is noted on the grant and not retried.
	// Needs the github section. Default false.
	AuditLog bool `yaml:"audit_log"`
	// LookbackAfterEnd (activity.github.lookback_after_end) is how long after a grant ended
	// the audit log is still read, and how far back each look-up re-reads. Default 20m; 5m
	// to 24h.
	LookbackAfterEnd time.Duration `yaml:"lookback_after_end"`
	// WebhookSecret (activity.github.webhook_secret) turns on POST /github/webhook on the
	// main listener: organisation webhooks (push, pull_request, repository, team, member)
	// signed with this secret (X-Hub-Signature-256) record the actions of github-team grants'
	// people as github.activity, for organisations without the audit log. At least 32
	// characters. A secret. Default empty (the endpoint is off).
	WebhookSecret Secret `yaml:"webhook_secret"`
}

// ActivityAWSConfig is the activity.aws section.
type ActivityAWSConfig struct {
	// Enabled (activity.aws.enabled) looks up every aws-sts grant's CloudTrail management
	// events (LookupEvents by the session's AccessKeyId, in aws.region), and every
	// aws-identity-center grant's (the person's AWSReservedSSO_<permission set> session in the
	// resource's account_id), as aws.activity events. The broker's credentials need
	// cloudtrail:LookupEvents in each account, or a role there (account_roles). Needs the aws
	// section. Default false.
	Enabled bool `yaml:"enabled"`
	// AccountRoles (activity.aws.account_roles) are roles the broker assumes to read other
	// accounts' CloudTrail: CloudTrail's event history is per account, so grants in accounts
	// other than the broker's own (Identity Center member accounts, aws-sts roles elsewhere)
	// need one. An account without an entry is read with the broker's own credentials, which
	// must be of that account (else the grant shows the source DOWN naming this key). Default
	// empty.
	AccountRoles []ActivityAccountRole `yaml:"account_roles"`
	// LookbackAfterEnd (activity.aws.lookback_after_end) is how long after a grant ended its
	// events are still looked up, and how far back each look-up re-reads: CloudTrail
	// delivers events minutes late (typically within 15). Default 20m; 5m to 24h.
	LookbackAfterEnd time.Duration `yaml:"lookback_after_end"`
	// CallsPerSecond (activity.aws.calls_per_second) is this broker's LookupEvents rate per
	// account and region, shared by all grants. CloudTrail allows 2 per second per account
	// and region in all; with several replicas give each a share (e.g. 1 for two). Default
	// 2; 1 or 2.
	CallsPerSecond int `yaml:"calls_per_second"`
}

// ActivityAccountRole is one activity.aws.account_roles entry.
type ActivityAccountRole struct {
	// AccountID (activity.aws.account_roles[].account_id) is the twelve-digit account whose
	// CloudTrail the role reads.
	AccountID string `yaml:"account_id"`
	// RoleARN (activity.aws.account_roles[].role_arn) is a role in that account allowed
	// cloudtrail:LookupEvents whose trust policy lets the broker's principal assume it.
	RoleARN string `yaml:"role_arn"`
}

// GitHubConfig is the github section.
type GitHubConfig struct {
	// APIURL (github.api_url) overrides the REST API base URL (GitHub Enterprise Server,
	// tests). Empty means DefaultGitHubAPIURL. Must be https unless the host is loopback.
	APIURL string `yaml:"api_url"`
	// Token (github.token) may manage the configured teams' memberships. Required when a
	// github-team resource exists. A secret.
	Token Secret `yaml:"token"`
}

// ResourceConfig is one entry of resources.
type ResourceConfig struct {
	// Name (resources[].name) is what requesters type: ^[a-z0-9][a-z0-9-]{0,62}$, unique.
	Name string `yaml:"name"`
	// Provider (resources[].provider) is the provider kind: postgres, aws-sts,
	// aws-identity-center, github-team or webhook. The block of the same name (with - as _)
	// is required and no other provider block is allowed.
	Provider string `yaml:"provider"`
	// DefaultDuration (resources[].default_duration) is used when a request names no
	// duration. Default 1h, or max_duration when that is shorter; at least 1m.
	DefaultDuration time.Duration `yaml:"default_duration"`
	// MaxDuration (resources[].max_duration) is the longest grant. Default 4h; at most 7 days
	// (168h); at least default_duration.
	MaxDuration time.Duration `yaml:"max_duration"`
	// Postgres (resources[].postgres) is the postgres provider's block.
	Postgres *PostgresConfig `yaml:"postgres"`
	// AWSSTS (resources[].aws_sts) is the aws-sts provider's block.
	AWSSTS *AWSSTSConfig `yaml:"aws_sts"`
	// AWSIdentityCenter (resources[].aws_identity_center) is the aws-identity-center
	// provider's block.
	AWSIdentityCenter *AWSIdentityCenterConfig `yaml:"aws_identity_center"`
	// GitHubTeam (resources[].github_team) is the github-team provider's block.
	GitHubTeam *GitHubTeamConfig `yaml:"github_team"`
	// Webhook (resources[].webhook) is the webhook provider's block.
	Webhook *WebhookConfig `yaml:"webhook"`
	// Policy (resources[].policy) says who gets access and how.
	Policy PolicyConfig `yaml:"policy"`
}

// ConsoleConfig is the console section.
type ConsoleConfig struct {
	// BaseURL (console.base_url) is the console's public address, e.g.
	// "https://access.example.com": Slack sends people back to BaseURL/ui/signin/callback
	// (add that redirect URL to the Slack app). Required; https, or http on a loopback host
	// (then the cookies are not Secure).
	BaseURL string `yaml:"base_url"`
	// SlackClientID (console.slack_client_id) is the Slack app's client id (Basic
	// Information → App Credentials). Required.
	SlackClientID string `yaml:"slack_client_id"`
	// SlackClientSecret (console.slack_client_secret) is the Slack app's client secret. It
	// also keys the signatures of the console's session cookies, so every replica must have
	// the same one, and changing it signs everyone out. Required; a secret.
	SlackClientSecret Secret `yaml:"slack_client_secret"`
	// Auditors (console.auditors) see every grant, request and audit event read-only, and
	// may revoke a grant with a reason. Optional; nobody is an auditor without it.
	Auditors AuditorsConfig `yaml:"auditors"`
	// IssuerURL (console.issuer_url) overrides Slack's OpenID Connect issuer (tests). Empty
	// means "https://slack.com". Must be https unless the host is loopback.
	IssuerURL string `yaml:"issuer_url"`
	// SessionTTL (console.session_ttl) is how long a sign-in lasts. Default 8h; between 5m
	// and 24h.
	SessionTTL time.Duration `yaml:"session_ttl"`
}

// AuditorsConfig is console.auditors.
type AuditorsConfig struct {
	// SlackUsers (console.auditors.slack_users) are Slack user ids (U… or W…).
	SlackUsers []string `yaml:"slack_users"`
	// SlackUsergroup (console.auditors.slack_usergroup) is a Slack user group id (S…) whose
	// members are auditors (looked up at most once a minute).
	SlackUsergroup string `yaml:"slack_usergroup"`
}

// PostgresProxyConfig is the postgres_proxy section.
type PostgresProxyConfig struct {
	// Listen (postgres_proxy.listen) is the proxy's listen address, host:port, e.g.
	// "127.0.0.1:6432" or ":6432". Required.
	Listen string `yaml:"listen"`
	// PublicAddress (postgres_proxy.public_address) is the host:port that delivered
	// connection strings name, e.g. "db-proxy.example.com:6432". Default: listen (which then
	// needs a host).
	PublicAddress string `yaml:"public_address"`
	// TLSCertFile (postgres_proxy.tls_cert_file) is the proxy's PEM certificate (chain);
	// clients must use TLS. Required; relative to the configuration file.
	TLSCertFile string `yaml:"tls_cert_file"`
	// TLSKeyFile (postgres_proxy.tls_key_file) is the PEM private key of tls_cert_file.
	// Required; relative to the configuration file.
	TLSKeyFile string `yaml:"tls_key_file"`
	// PasswordKey (postgres_proxy.password_key) is the key both passwords of a proxied grant
	// are derived from (HMAC-SHA-256: one for the person at the proxy, one for the role on
	// the server), at least 32 bytes; every replica needs the same one. Optional: by default
	// it is derived from the audit signing key, so rotating that key makes the passwords of
	// live proxied grants stop working. A secret: accepts "file:/path".
	PasswordKey Secret `yaml:"password_key"`
}

// Address is where delivered connection strings point: public_address, else listen.
func (p *PostgresProxyConfig) Address() string {
	if p.PublicAddress != "" {
		return p.PublicAddress
	}
	return p.Listen
}

// PostgresConfig is the postgres provider's block: a login role with VALID UNTIL, member of
// Roles, dropped on revoke.
type PostgresConfig struct {
	// DSN (postgres.dsn) is the admin connection (a postgres:// URL or key=value string) used
	// to create and drop login roles. Required. A secret.
	DSN Secret `yaml:"dsn"`
	// Roles (postgres.roles) are the existing roles the login role is granted. At least one.
	Roles []string `yaml:"roles"`
	// Host (postgres.host) goes into the connection string delivered to the requester.
	// Default: the admin DSN's host.
	Host string `yaml:"host"`
	// Port (postgres.port) goes into the delivered connection string. Default: the admin
	// DSN's port, else 5432.
	Port int `yaml:"port"`
	// Database (postgres.database) goes into the delivered connection string. Default: the
	// admin DSN's database.
	Database string `yaml:"database"`
	// ConnectionLimit (postgres.connection_limit) is the login role's CONNECTION LIMIT.
	// Default 5; at least 1 (0 could never log in; the provider refuses -1, unlimited).
	ConnectionLimit int `yaml:"connection_limit"`
	// SSLMode (postgres.sslmode) goes into the delivered connection string: disable, allow,
	// prefer, require, verify-ca or verify-full. Default: the admin DSN's sslmode, else
	// prefer.
	SSLMode string `yaml:"sslmode"`
	// OrphanOwner (postgres.orphan_owner) is the role that receives the tables, views and
	// other objects a revoked login role leaves behind (its functions, operators, statistics objects and the like are dropped): a NOLOGIN
	// role with no privileges, created at start when missing; the broker refuses to start if
	// it can log in, has a role attribute or is a member of any role. Never the admin role,
	// and not starting with ab_. Default accessbroker_orphans.
	OrphanOwner string `yaml:"orphan_owner"`
	// Proxy (postgres.proxy) routes the resource through the session proxy (postgres_proxy):
	// the delivered connection string points at the proxy with a password only the proxy
	// accepts, and the role's own password is never shown. Default false.
	Proxy bool `yaml:"proxy"`
	// RecordParameters (postgres.record_parameters) records the values bound to each
	// extended-protocol statement (param_values in session.statement; each value cut at 256
	// bytes, binary ones as \x hex). Values may hold personal data or secrets that the
	// statement text does not, so this is off unless a resource asks for it. Needs proxy:
	// true. Default false.
	RecordParameters bool `yaml:"record_parameters"`
}

// AWSSTSConfig is the aws-sts provider's block: AssumeRole per grant, revoked with a
// per-session deny.
type AWSSTSConfig struct {
	// RoleARN (aws_sts.role_arn) is the IAM role to assume,
	// arn:aws:iam::123456789012:role/name. Required.
	RoleARN string `yaml:"role_arn"`
	// SessionPolicy (aws_sts.session_policy) is an optional inline session policy (a JSON
	// object of at most 2048 characters) that narrows the role further.
	SessionPolicy string `yaml:"session_policy"`
	// MaxSessionDuration (aws_sts.max_session_duration) caps each STS session (credentials
	// last min(grant, this)); it must not exceed the role's own MaxSessionDuration.
	// Optional, 15m to 12h; unset means the role's own maximum (read from IAM).
	MaxSessionDuration time.Duration `yaml:"max_session_duration"`
}

// AWSIdentityCenterConfig is the aws-identity-center provider's block: an account
// assignment per grant. All four fields are required.
type AWSIdentityCenterConfig struct {
	// InstanceARN (aws_identity_center.instance_arn), arn:aws:sso:::instance/ssoins-….
	InstanceARN string `yaml:"instance_arn"`
	// IdentityStoreID (aws_identity_center.identity_store_id), d-1234567890.
	IdentityStoreID string `yaml:"identity_store_id"`
	// PermissionSetARN (aws_identity_center.permission_set_arn),
	// arn:aws:sso:::permissionSet/ssoins-…/ps-…, of the same instance.
	PermissionSetARN string `yaml:"permission_set_arn"`
	// AccountID (aws_identity_center.account_id), twelve digits.
	AccountID string `yaml:"account_id"`
}

// STSConfig is the block as the aws-sts provider takes it: config check validates exactly
// what serve builds the provider from.
func (s *AWSSTSConfig) STSConfig() awsprov.STSConfig {
	return awsprov.STSConfig{RoleARN: s.RoleARN, SessionPolicy: s.SessionPolicy, MaxSessionDuration: s.MaxSessionDuration}
}

// IdentityCenterConfig is the block as the aws-identity-center provider takes it.
func (ic *AWSIdentityCenterConfig) IdentityCenterConfig() awsprov.IdentityCenterConfig {
	return awsprov.IdentityCenterConfig{InstanceARN: ic.InstanceARN, IdentityStoreID: ic.IdentityStoreID,
		PermissionSetARN: ic.PermissionSetARN, AccountID: ic.AccountID}
}

// ProviderConfig is the block as the postgres provider takes it: config check validates
// exactly what serve builds the provider from.
func (pg *PostgresConfig) ProviderConfig() postgres.Config {
	return postgres.Config{AdminDSN: pg.DSN.Reveal(), Roles: pg.Roles, Host: pg.Host, Port: portString(pg.Port),
		Database: pg.Database, SSLMode: pg.SSLMode, ConnectionLimit: pg.ConnectionLimit, OrphanOwner: pg.OrphanOwner}
}

func portString(p int) string {
	if p == 0 {
		return ""
	}
	return strconv.Itoa(p)
}

// GitHubTeamConfig is the github-team provider's block: team membership per grant.
type GitHubTeamConfig struct {
	// Org (github_team.org) is the organization login. Required.
	Org string `yaml:"org"`
	// Team (github_team.team) is the team slug. Required.
	Team string `yaml:"team"`
	// Role (github_team.role) is member or maintainer. Default member.
	Role string `yaml:"role"`
}

// WebhookConfig is the webhook provider's block: a generic HTTP provider that POSTs issue
// and revoke requests to an operator's endpoint.
type WebhookConfig struct {
	// URL (webhook.url) is the endpoint. Required; https unless the host is loopback.
	URL string `yaml:"url"`
	// Token (webhook.token) is sent as a bearer token. Required. A secret.
	Token Secret `yaml:"token"`
}

// ProviderConfig is the block as the github-team provider takes it, with the github
// section's API URL and token: config check validates exactly what serve builds.
func (gt *GitHubTeamConfig) ProviderConfig(g *GitHubConfig) github.Config {
	return github.Config{Org: gt.Org, Team: gt.Team, Role: gt.Role, APIURL: g.APIURL, Token: g.Token.Reveal()}
}

// ProviderConfig is the block as the webhook provider takes it.
func (w *WebhookConfig) ProviderConfig() webhook.Config {
	return webhook.Config{URL: w.URL, Token: w.Token.Reveal()}
}

// PolicyConfig is resources[].policy; it maps onto grants.Policy.
type PolicyConfig struct {
	// OnCall (policy.on_call) says what counts as being on call for this resource.
	OnCall OnCallConfig `yaml:"on_call"`
	// AutoApproveOnCall (policy.auto_approve_on_call) grants on-call requesters without
	// approval. Needs on_call.escalation_policies or on_call.schedules.
	AutoApproveOnCall bool `yaml:"auto_approve_on_call"`
	// Approvers (policy.approvers) may approve requests; never their own.
	Approvers ApproversConfig `yaml:"approvers"`
	// MinApprovals (policy.min_approvals) is how many distinct approvers must approve.
	// Default 1 when approvers are configured (0 otherwise); at least 1 then, and at most
	// the number of slack_users when there is no usergroup.
	MinApprovals int `yaml:"min_approvals"`
	// BreakGlass (policy.break_glass) allows an immediate, loudly audited grant without
	// approval.
	BreakGlass bool `yaml:"break_glass"`
	// CapToShift (policy.cap_to_shift) ends on-call grants when the shift ends. Needs an
	// on_call policy.
	CapToShift bool `yaml:"cap_to_shift"`
	// MaxPendingPerPerson (policy.max_pending_per_person) is how many undecided requests
	// (new access or extensions) one person may have open for this resource at once.
	// Default 1, allowed 1 to 20. A request beyond it is refused at once, naming the pending
	// request's id, audited as request.rejected with evidence pending_requests, and posts no
	// approval message.
	MaxPendingPerPerson int `yaml:"max_pending_per_person"`
}

// OnCallConfig is policy.on_call. Sources are PagerDuty ids.
type OnCallConfig struct {
	// EscalationPolicies (on_call.escalation_policies): being on call in one of these counts.
	EscalationPolicies []string `yaml:"escalation_policies"`
	// Schedules (on_call.schedules): being on call in one of these counts.
	Schedules []string `yaml:"schedules"`
	// Levels (on_call.levels) restricts escalation_policies to these escalation levels
	// (each ≥ 1). Empty means all levels.
	Levels []int `yaml:"levels"`
}

// ApproversConfig is policy.approvers.
type ApproversConfig struct {
	// SlackUsers (approvers.slack_users) are Slack user ids (U… or W…).
	SlackUsers []string `yaml:"slack_users"`
	// SlackUsergroup (approvers.slack_usergroup) is a Slack user group id (S…) whose members
	// may approve.
	SlackUsergroup string `yaml:"slack_usergroup"`
}

// AutoGrantConfig is one entry of auto_grant: acknowledging an incident of one of
// PagerDutyServices grants Resources to the acknowledging user.
type AutoGrantConfig struct {
	// PagerDutyServices (auto_grant[].pagerduty_services) are PagerDuty service ids. At least
	// one.
	PagerDutyServices []string `yaml:"pagerduty_services"`
	// Resources (auto_grant[].resources) are configured resource names. At least one.
	Resources []string `yaml:"resources"`
	// Duration (auto_grant[].duration) of each grant. Default: the shortest default_duration
	// of its resources; never more than any of their max_duration.
	Duration time.Duration `yaml:"duration"`
	// RevokeOnResolve (auto_grant[].revoke_on_resolve) revokes the grants when the incident
	// is resolved.
	RevokeOnResolve bool `yaml:"revoke_on_resolve"`
	// GracePeriod (auto_grant[].grace_period) delays that revocation after the resolve.
	// Default 0; at most 24h; only with revoke_on_resolve.
	GracePeriod time.Duration `yaml:"grace_period"`
}

// IdentityConfig is one entry of identities: the same person in each system.
type IdentityConfig struct {
	// Slack (identities[].slack) is the Slack user id (U… or W…). Required; unique per team.
	Slack string `yaml:"slack"`
	// SlackTeam (identities[].slack_team) is the Slack team of that user. Default:
	// slack.team_id.
	SlackTeam string `yaml:"slack_team"`
	// Email (identities[].email) is the verified email, a bare address. Unique.
	Email string `yaml:"email"`
	// GitHub (identities[].github) is the GitHub login. Unique.
	GitHub string `yaml:"github"`
	// PagerDuty (identities[].pagerduty) is the PagerDuty user id. Unique.
	PagerDuty string `yaml:"pagerduty"`
}

// IdentityRulesConfig is the identity section. Whatever it says, a Slack user is a person
// only by (team, user id), and an email an identities entry has is never used for anyone
// else (refused and audited as identity.conflict); see docs/slack.md.
type IdentityRulesConfig struct {
	// ResolveByEmail (identity.resolve_by_email): true (the default) also serves Slack users
	// who are not in identities, identified by the email Slack has confirmed for them
	// (is_email_confirmed, plain ASCII), which then finds their PagerDuty user; and links a
	// PagerDuty user who acknowledges a page to the Slack user with that confirmed email.
	// false: only the people listed in identities get access, through any path.
	ResolveByEmail bool `yaml:"resolve_by_email"`
}

// Secret is a configuration value that must not be printed: tokens, signing secrets, DSNs
// with passwords. fmt, slog, encoding/json and yaml print it as [REDACTED] (or "" when
// empty); Reveal returns the value for the one place that uses it.
//
// In the file, a secret is either the value itself (usually "${ENV_NAME}") or
// "file:/path/to/secret", meaning the contents of that file with surrounding whitespace
// trimmed (Docker and Kubernetes secrets). A relative path is relative to the config file's
// directory. The file must be a regular file of at most 64 KiB and not empty.
type Secret struct {
	value  string
	source string // "file:/path" when read from a file; not secret
}

// NewSecret wraps a value, for tests and for the demo.
func NewSecret(v string) Secret { return Secret{value: v} }

// FromFile is the file the secret was read from ("file:" form), or "". Not secret.
func (s Secret) FromFile() string { return strings.TrimPrefix(s.source, "file:") }

// Reveal returns the secret value. Call it only where the value is used.
func (s Secret) Reveal() string { return s.value }

// IsSet reports whether the secret is non-empty.
func (s Secret) IsSet() bool { return s.value != "" }

// String redacts.
func (s Secret) String() string {
	if s.value == "" {
		return ""
	}
	return "[REDACTED]"
}

// GoString redacts (%#v).
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// LogValue redacts.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON redacts.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalYAML redacts.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Path is the key path, e.g. "resources[1].max_duration"; empty for the whole file.
	Path string
	// Line is the 1-based line in the file; 0 when unknown.
	Line int
	// Msg says what is wrong and how to fix it. It never contains a secret value.
	Msg string
}

// String formats the problem as "line 12: path: message" (parts omitted when unknown).
func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// ConfigError is the error LoadConfig and ParseConfig return when the configuration is
// invalid. It holds every problem found, sorted by line.
type ConfigError struct {
	// File is the config file's path as given to LoadConfig; empty from ParseConfig.
	File     string
	Problems []Problem
}

// Format formats one problem as "FILE:LINE: path: message", the form `config check` prints.
// Without a file it is Problem.String.
func (e *ConfigError) Format(p Problem) string {
	if e.File == "" {
		return p.String()
	}
	var b strings.Builder
	b.WriteString(e.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error prints every problem, one per line.
func (e *ConfigError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = e.Format(p)
	}
	return strings.Join(lines, "\n")
}

// LoadConfig reads, expands, decodes, defaults and validates the config file at path.
// getenv looks up ${NAME} references (os.LookupEnv in production). A file that cannot be read
// is a plain wrapped error; an invalid configuration is a *ConfigError with File set to path.
func LoadConfig(path string, getenv func(string) (string, bool)) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("read config %s: file is larger than %d bytes", path, maxConfigSize)
	}
	cfg, err := parseConfig(data, loadOptions{getenv: getenv, baseDir: filepath.Dir(path)})
	var ce *ConfigError
	if errors.As(err, &ce) {
		ce.File = path
	}
	return cfg, err
}

// ParseConfig is LoadConfig on bytes, for tests and fuzzing. Relative paths ("file:" secrets,
// audit.signing_key_file) are relative to the working directory. A nil getenv treats every
// variable as unset.
func ParseConfig(data []byte, getenv func(string) (string, bool)) (*Config, error) {
	return parseConfig(data, loadOptions{getenv: getenv})
}

type loadOptions struct {
	getenv  func(string) (string, bool)
	baseDir string // for relative paths; "" = working directory
	// maxSteps bounds decoding work; 0 means maxDecodeSteps.
	maxSteps int
}

func parseConfig(data []byte, opts loadOptions) (*Config, error) {
	if opts.getenv == nil {
		opts.getenv = func(string) (string, bool) { return "", false }
	}
	if opts.maxSteps == 0 {
		opts.maxSteps = maxDecodeSteps
	}
	protected, refs := protectEnvRefs(data)
	root, prob := parseYAML(protected)
	if prob != nil {
		return nil, &ConfigError{Problems: []Problem{*prob}}
	}
	d := &decoder{
		getenv:   opts.getenv,
		refs:     refs,
		bad:      map[string]bool{},
		lines:    map[string]int{},
		set:      map[string]bool{},
		fromEnv:  map[string]bool{},
		inAlias:  map[*yaml.Node]bool{},
		maxSteps: opts.maxSteps,
	}
	cfg := &Config{}
	if root != nil {
		d.decode(root, reflect.ValueOf(cfg).Elem(), "")
	}
	cfg.lines, cfg.set, cfg.fromEnv = d.lines, d.set, d.fromEnv
	probs := d.probs
	// Validation runs even after decoding problems, so one run reports everything; it skips
	// the keys whose value could not be decoded or read (their problem is already reported).
	if d.steps <= d.maxSteps {
		for _, p := range cfg.resolveFiles(opts.baseDir) {
			d.bad[p.Path] = true
			probs = append(probs, p)
		}
		if f := cfg.Audit.SigningKeyFile; f != "" && opts.baseDir != "" && !filepath.IsAbs(f) {
			cfg.Audit.SigningKeyFile = filepath.Join(opts.baseDir, f)
		}
		if pp := cfg.PostgresProxy; pp != nil && opts.baseDir != "" {
			for _, f := range []*string{&pp.TLSCertFile, &pp.TLSKeyFile} {
				if *f != "" && !filepath.IsAbs(*f) {
					*f = filepath.Join(opts.baseDir, *f)
				}
			}
		}
		for i := range cfg.Audit.Witnesses {
			if w := &cfg.Audit.Witnesses[i]; w.Kind == WitnessFile && w.Path != "" && opts.baseDir != "" && !filepath.IsAbs(w.Path) {
				w.Path = filepath.Join(opts.baseDir, w.Path)
			}
		}
		for i := range cfg.Audit.Sinks {
			if sc := &cfg.Audit.Sinks[i]; sc.Kind == SinkFile && sc.Path != "" && opts.baseDir != "" && !filepath.IsAbs(sc.Path) {
				sc.Path = filepath.Join(opts.baseDir, sc.Path)
			}
		}
		cfg.applyDefaults()
		for _, p := range cfg.validate() {
			if !underBad(p.Path, d.bad) {
				probs = append(probs, p)
			}
		}
	}
	if len(probs) > 0 {
		return nil, &ConfigError{Problems: sortProblems(probs)}
	}
	return cfg, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML returns the single document's root node (nil for an empty file).
func parseYAML(data []byte) (*yaml.Node, *Problem) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, yamlProblem(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlProblem(err)
		}
		return nil, &Problem{Line: extra.Line, Msg: "the config must be a single YAML document; remove the second document (after ---)"}
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		return doc.Content[0], nil
	}
	return &doc, nil
}

// yamlParserProblems are yaml.v3's parser (not scanner) error messages. For these, yaml.v3
// reports the 0-based line of the enclosing collection's start (or of the problem when that
// is the first line), so the line is shifted and the message says where to look.
var yamlParserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

func yamlProblem(err error) *Problem {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if yamlParserProblems[m[2]] {
			return &Problem{Line: line + 1, Msg: "invalid YAML: " + m[2] + " (on this line or in the block that starts here)"}
		}
		return &Problem{Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return &Problem{Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// decoder decodes a yaml.v3 node tree into Config strictly, expanding ${NAME} in scalars.
type decoder struct {
	getenv   func(string) (string, bool)
	refs     *envRefs
	bad      map[string]bool // paths whose value could not be decoded
	lines    map[string]int
	set      map[string]bool
	fromEnv  map[string]bool
	inAlias  map[*yaml.Node]bool
	probs    []Problem
	steps    int
	maxSteps int
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	secretType   = reflect.TypeFor[Secret]()
)

// underBad reports whether path is, or is inside, a key whose value was bad ("" is the
// whole document).
func underBad(path string, bad map[string]bool) bool {
	for p := path; ; p = parentPath(p) {
		if bad[p] {
			return true
		}
		if p == "" {
			return false
		}
	}
}

// add records a problem with the value at path, which validation then skips.
func (d *decoder) add(path string, line int, format string, args ...any) {
	d.bad[path] = true
	d.addKey(path, line, format, args...)
}

// addKey records a problem with a key (unknown, duplicate), leaving its value's path
// unmarked.
func (d *decoder) addKey(path string, line int, format string, args ...any) {
	d.probs = append(d.probs, Problem{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return "a single value"
	}
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	d.steps++
	if d.steps > d.maxSteps {
		if d.steps == d.maxSteps+1 {
			d.add(path, n.Line, "the config is too large: more than %d values (check for aliases that repeat large blocks)", d.maxSteps)
		}
		return
	}
	line := n.Line
	if n.Kind == yaml.AliasNode {
		target := n.Alias
		if target == nil {
			return
		}
		if d.inAlias[target] {
			d.add(path, line, "anchor %q contains an alias to itself", target.Anchor)
			return
		}
		d.inAlias[target] = true
		defer delete(d.inAlias, target)
		n = target
	}
	t := v.Type()
	switch {
	case t == secretType:
		if s, ok := d.scalar(n, line, path); ok {
			v.Set(reflect.ValueOf(Secret{value: s}))
		}
		return
	case t == durationType:
		s, ok := d.scalar(n, line, path)
		if !ok || s == "" {
			return
		}
		dur, err := time.ParseDuration(s)
		if err != nil {
			d.add(path, line, "must be a duration such as 90m, 1h30m or 4h (Go syntax), not %s", d.show(path, s))
			return
		}
		v.SetInt(int64(dur))
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if isNull(n) {
			v.SetZero()
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		d.decodeStruct(n, line, v, path)
	case reflect.Slice:
		if isNull(n) {
			v.SetZero()
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.add(path, line, "must be a list, like [a, b] or one \"- item\" per line, not %s", describe(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if d.steps > d.maxSteps {
				break
			}
			p := fmt.Sprintf("%s[%d]", path, i)
			d.lines[p] = item.Line
			d.decode(item, s.Index(i), p)
		}
		v.Set(s)
	case reflect.String:
		if s, ok := d.scalar(n, line, path); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		s, ok := d.scalar(n, line, path)
		if !ok || s == "" {
			return
		}
		switch strings.ToLower(s) {
		case "true":
			v.SetBool(true)
		case "false":
			v.SetBool(false)
		default:
			d.add(path, line, "must be true or false, not %s", d.show(path, s))
		}
	case reflect.Int:
		s, ok := d.scalar(n, line, path)
		if !ok || s == "" {
			return
		}
		i, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			d.add(path, line, "must be a whole number, not %s", d.show(path, s))
			return
		}
		v.SetInt(i)
	default:
		// Only reachable if Config grows a field of a kind this decoder does not know.
		d.add(path, line, "internal error: cannot decode into %s", t)
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, line int, v reflect.Value, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.add(path, line, "must be a mapping of keys to values, not %s", describe(n))
		return
	}
	fields := structFields(v.Type())
	// Merge keys (<<: *anchor) first, so the mapping's own keys override them.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if isMergeKey(n.Content[i]) {
			d.merge(n.Content[i+1], v, path)
		}
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content) && d.steps <= d.maxSteps; i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if isMergeKey(k) {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.addKey(path, k.Line, "keys must be plain names, not %s", describe(k))
			continue
		}
		name := d.refs.restore(k.Value)
		child := name
		if path != "" {
			child = path + "." + name
		}
		if first, dup := seen[name]; dup {
			d.addKey(child, k.Line, "duplicate key %q (first set on line %d); keep one", name, first)
			continue
		}
		seen[name] = k.Line
		idx, ok := fields.index[name]
		if !ok {
			d.addKey(path, k.Line, "%s", unknownKeyMsg(name, path, fields.names))
			continue
		}
		d.lines[child] = k.Line
		if !isNull(val) {
			d.set[child] = true
		}
		f := v.Field(idx)
		f.SetZero()
		d.decode(val, f, child)
	}
}

func isMergeKey(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Value == "<<" && k.ShortTag() == "!!merge"
}

// merge decodes the mapping(s) of a merge key into v.
func (d *decoder) merge(n *yaml.Node, v reflect.Value, path string) {
	switch {
	case n.Kind == yaml.AliasNode && n.Alias != nil && n.Alias.Kind == yaml.MappingNode:
		d.decode(n, v, path)
	case n.Kind == yaml.MappingNode:
		d.decode(n, v, path)
	case n.Kind == yaml.SequenceNode:
		// Earlier mappings win: decode in reverse so they overwrite later ones.
		for i := len(n.Content) - 1; i >= 0; i-- {
			m := n.Content[i]
			if m.Kind == yaml.AliasNode && m.Alias != nil && m.Alias.Kind == yaml.MappingNode {
				d.decode(m, v, path)
				continue
			}
			d.add(path, m.Line, "a merge key (<<) takes an alias of a mapping or a list of them")
		}
	default:
		d.add(path, n.Line, "a merge key (<<) takes an alias of a mapping or a list of them")
	}
}

type fieldSet struct {
	index map[string]int
	names []string
}

func structFields(t reflect.Type) fieldSet {
	fs := fieldSet{index: map[string]int{}}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		fs.index[tag] = i
		fs.names = append(fs.names, tag)
	}
	return fs
}

func unknownKeyMsg(name, path string, known []string) string {
	msg := fmt.Sprintf("unknown key %q", name)
	if path == "" {
		msg += " in config"
	}
	if s := closest(name, known); s != "" {
		return msg + fmt.Sprintf(" (did you mean %q?)", s)
	}
	sorted := append([]string(nil), known...)
	sort.Strings(sorted)
	return msg + "; known keys: " + strings.Join(sorted, ", ")
}

// closest returns the known name nearest to name by edit distance, if it is close enough to
// be a typo.
func closest(name string, known []string) string {
	best, bestDist := "", len(name)/3+2
	lower := strings.ToLower(name)
	for _, k := range known {
		if dist := editDistance(lower, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}

func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// scalar returns the expanded value of a scalar node; ok is false after recording a problem.
// A YAML null (absent value, "~", "null") is "".
func (d *decoder) scalar(n *yaml.Node, line int, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.add(path, line, "must be a single value, not %s", describe(n))
		return "", false
	}
	if isNull(n) {
		return "", true
	}
	if !strings.Contains(n.Value, "$") && !strings.Contains(n.Value, d.refs.prefix) {
		return n.Value, true
	}
	out, refs, err := expandEnv(n.Value, d.refs, d.getenv)
	if err != nil {
		d.add(path, valueLine(n, err.offset), "%s", err.msg)
		return "", false
	}
	if len(refs) > 0 {
		d.fromEnv[path] = true
	}
	missing := false
	for _, r := range refs {
		if !r.set {
			d.add(path, valueLine(n, r.offset), "environment variable %s is not set (referenced as ${%s}); set it, or use $$ for a literal $", r.name, r.name)
			missing = true
		}
	}
	return out, !missing
}

// valueLine is the line of the byte at offset in a scalar's value. Only literal (|) blocks
// keep their line structure; other multi-line scalars are folded, so their first line is used.
func valueLine(n *yaml.Node, offset int) int {
	if n.Style&yaml.LiteralStyle != 0 {
		return n.Line + 1 + strings.Count(n.Value[:offset], "\n")
	}
	return n.Line
}

// show quotes a value for a message, unless it came from the environment (it could be a
// secret put in the wrong key).
func (d *decoder) show(path, s string) string {
	if d.fromEnv[path] {
		return "the value from the environment (not shown)"
	}
	return strconv.Quote(s)
}

type envRef struct {
	name   string
	offset int
	set    bool
}

type expandError struct {
	offset int
	msg    string
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// envRefs records the ${NAME} references of a config file. Before YAML parsing, each is
// replaced by a placeholder made of letters, digits and underscores (prefix_N_), which is a
// plain scalar in any YAML context, including inside [..] and {..}. Placeholders are replaced
// by the variables' values only inside scalar values, after parsing, so a value can never
// change the document's structure.
type envRefs struct {
	prefix string // never occurs in the original file
	names  []string
}

// protectEnvRefs replaces every well-formed ${NAME} in data by a placeholder. $$ is kept as is
// (so $${NAME} stays literal); malformed references are kept and reported by expandEnv.
func protectEnvRefs(data []byte) ([]byte, *envRefs) {
	refs := &envRefs{}
	for k := 0; ; k++ {
		refs.prefix = "ABENV" + strconv.Itoa(k) + "_"
		if !bytes.Contains(data, []byte(refs.prefix)) {
			break
		}
	}
	if !bytes.Contains(data, []byte("${")) {
		return data, refs
	}
	var out bytes.Buffer
	out.Grow(len(data))
	for i := 0; i < len(data); {
		if data[i] != '$' || i+1 >= len(data) {
			out.WriteByte(data[i])
			i++
			continue
		}
		switch data[i+1] {
		case '$':
			out.WriteString("$$")
			i += 2
			continue
		case '{':
			if end := bytes.IndexByte(data[i+2:], '}'); end >= 0 {
				if name := string(data[i+2 : i+2+end]); envNameRE.MatchString(name) {
					fmt.Fprintf(&out, "%s%d_", refs.prefix, len(refs.names))
					refs.names = append(refs.names, name)
					i += 2 + end + 1
					continue
				}
			}
		}
		out.WriteByte('$')
		i++
	}
	return out.Bytes(), refs
}

// placeholder parses a placeholder at the start of s: the variable's index and the
// placeholder's length.
func (r *envRefs) placeholder(s string) (idx, n int, ok bool) {
	if !strings.HasPrefix(s, r.prefix) {
		return 0, 0, false
	}
	j := len(r.prefix)
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	if j == len(r.prefix) || j >= len(s) || s[j] != '_' {
		return 0, 0, false
	}
	idx, err := strconv.Atoi(s[len(r.prefix):j])
	if err != nil || idx >= len(r.names) {
		return 0, 0, false
	}
	return idx, j + 1, true
}

// restore turns placeholders back into ${NAME}, to show text (such as a key) as written.
func (r *envRefs) restore(s string) string {
	if !strings.Contains(s, r.prefix) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if idx, n, ok := r.placeholder(s[i:]); ok {
			b.WriteString("${" + r.names[idx] + "}")
			i += n
			continue
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

// expandEnv expands a scalar value: placeholders become getenv(NAME), $$ becomes $, and any
// other $ is kept. Values are inserted literally: they are never expanded again. An unset
// variable expands to "" and is reported in the result's refs (set false). A ${ left in the
// value is malformed (or came from a YAML escape sequence, and is then kept literally).
func expandEnv(s string, refs *envRefs, getenv func(string) (string, bool)) (string, []envRef, *expandError) {
	var b strings.Builder
	var used []envRef
	for i := 0; i < len(s); {
		if idx, n, ok := refs.placeholder(s[i:]); ok {
			name := refs.names[idx]
			val, set := getenv(name)
			used = append(used, envRef{name: name, offset: i, set: set})
			b.WriteString(val)
			i += n
			continue
		}
		c := s[i]
		if c != '$' || i+1 >= len(s) {
			b.WriteByte(c)
			i++
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i += 2
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", nil, &expandError{offset: i, msg: "unterminated ${ (write ${NAME}, or $$ for a literal $)"}
			}
			name := s[i+2 : i+2+end]
			if !envNameRE.MatchString(name) {
				return "", nil, &expandError{offset: i, msg: fmt.Sprintf("invalid variable reference %q: write ${NAME} with letters, digits and underscores, or $$ for a literal $", refs.restore("${"+name+"}"))}
			}
			b.WriteString(s[i : i+2+end+1])
			i += 2 + end + 1
		default:
			b.WriteByte('$')
			i++
		}
	}
	return b.String(), used, nil
}

// resolveFiles replaces "file:" secrets by their file's contents.
func (c *Config) resolveFiles(baseDir string) []Problem {
	var probs []Problem
	walkSecrets(reflect.ValueOf(c).Elem(), "", func(path string, s *Secret) {
		if path == "store.dsn" && c.Store.Driver != "postgres" {
			return // SQLite's own "file:" URIs
		}
		name, ok := strings.CutPrefix(s.value, "file:")
		if !ok {
			return
		}
		if name == "" {
			probs = append(probs, Problem{Path: path, Line: c.lineOf(path), Msg: "\"file:\" needs a path, e.g. file:/run/secrets/token"})
			return
		}
		if !filepath.IsAbs(name) && baseDir != "" {
			name = filepath.Join(baseDir, name)
		}
		v, err := readSecretFile(name)
		if err != nil {
			probs = append(probs, Problem{Path: path, Line: c.lineOf(path), Msg: err.Error()})
			return
		}
		*s = Secret{value: v, source: "file:" + name}
	})
	return probs
}

func readSecretFile(name string) (string, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return "", fmt.Errorf("cannot read the secret file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("secret file %s is not a regular file", name)
	}
	f, err := os.Open(name)
	if err != nil {
		return "", fmt.Errorf("cannot read the secret file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFileSize+1))
	if err != nil {
		return "", fmt.Errorf("cannot read the secret file %s: %w", name, err)
	}
	if len(data) > maxSecretFileSize {
		return "", fmt.Errorf("secret file %s is larger than %d bytes", name, maxSecretFileSize)
	}
	v := strings.TrimSpace(string(data))
	if v == "" {
		return "", fmt.Errorf("secret file %s is empty", name)
	}
	return v, nil
}

// walkSecrets calls fn for every Secret in v, with its key path.
func walkSecrets(v reflect.Value, path string, fn func(path string, s *Secret)) {
	switch {
	case v.Type() == secretType:
		fn(path, v.Addr().Interface().(*Secret))
	case v.Kind() == reflect.Pointer:
		if !v.IsNil() {
			walkSecrets(v.Elem(), path, fn)
		}
	case v.Kind() == reflect.Slice:
		for i := range v.Len() {
			walkSecrets(v.Index(i), fmt.Sprintf("%s[%d]", path, i), fn)
		}
	case v.Kind() == reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			tag := t.Field(i).Tag.Get("yaml")
			if tag == "" || !t.Field(i).IsExported() {
				continue
			}
			child := tag
			if path != "" {
				child = path + "." + tag
			}
			walkSecrets(v.Field(i), child, fn)
		}
	}
}

// has reports whether the key path was given a (non-null) value in the file.
func (c *Config) has(path string) bool { return c.set[path] }

// lineOf is the line of path, or of its closest ancestor written in the file.
func (c *Config) lineOf(path string) int {
	for path != "" {
		if l, ok := c.lines[path]; ok {
			return l
		}
		path = parentPath(path)
	}
	return 0
}

func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

// applyDefaults fills absent keys. Numbers and durations are defaulted only when the key is
// absent, so an explicit 0 reaches validation.
func (c *Config) applyDefaults() {
	setStr := func(p *string, def string) {
		if *p == "" {
			*p = def
		}
	}
	setInt := func(path string, p *int, def int) {
		if !c.has(path) {
			*p = def
		}
	}
	setDur := func(path string, p *time.Duration, def time.Duration) {
		if !c.has(path) {
			*p = def
		}
	}
	if !c.has("identity.resolve_by_email") {
		c.Identity.ResolveByEmail = true
	}
	setStr(&c.LogLevel, "info")
	c.LogLevel = strings.ToLower(c.LogLevel)
	setStr(&c.Listen, ":8080")
	setInt("audit.checkpoint_every", &c.Audit.CheckpointEvery, 1000)
	setDur("audit.checkpoint_period", &c.Audit.CheckpointPeriod, time.Hour)
	c.sinkDefaults()

	setDur("activity.poll_interval", &c.Activity.PollInterval, 5*time.Minute)
	setDur("activity.aws.lookback_after_end", &c.Activity.AWS.LookbackAfterEnd, 20*time.Minute)
	setInt("activity.aws.calls_per_second", &c.Activity.AWS.CallsPerSecond, 2)
	setDur("activity.github.lookback_after_end", &c.Activity.GitHub.LookbackAfterEnd, 20*time.Minute)

	r := &c.Revoker
	setInt("revoker.concurrency_per_provider", &r.ConcurrencyPerProvider, 32)
	setInt("revoker.batch", &r.Batch, 256)
	setDur("revoker.backoff_base", &r.BackoffBase, 5*time.Second)
	setDur("revoker.backoff_max", &r.BackoffMax, 5*time.Minute)
	setDur("revoker.claim_lease", &r.ClaimLease, 2*time.Minute)
	setDur("revoker.issue_timeout", &r.IssueTimeout, time.Minute)
	setDur("revoker.shutdown_grace", &r.ShutdownGrace, 10*time.Second)
	setDur("drift.interval", &c.Drift.Interval, 10*time.Minute)
	setStr(&c.Drift.Action, "flag")
	c.Drift.Action = strings.ToLower(c.Drift.Action)

	if s := c.Slack; s != nil {
		setStr(&s.APIURL, DefaultSlackAPIURL)
		setStr(&s.ApprovalsChannel, s.AuditChannel)
		setStr(&s.Summary.Channel, s.AuditChannel)
		setStr(&s.Summary.Day, "monday")
		s.Summary.Day = strings.ToLower(s.Summary.Day)
		setStr(&s.Summary.Time, "09:00")
		setDur("slack.request_ttl", &s.RequestTTL, time.Hour)
		setInt("slack.min_reason_length", &s.MinReasonLength, 10)
	}
	if cc := c.Console; cc != nil {
		setStr(&cc.IssuerURL, DefaultConsoleIssuer)
		setDur("console.session_ttl", &cc.SessionTTL, 8*time.Hour)
	}
	if p := c.PagerDuty; p != nil {
		setStr(&p.APIURL, DefaultPagerDutyAPIURL)
		setDur("pagerduty.freshness", &p.Freshness, 5*time.Minute)
	}
	if g := c.GitHub; g != nil {
		setStr(&g.APIURL, DefaultGitHubAPIURL)
	}

	byName := map[string]*ResourceConfig{}
	for i := range c.Resources {
		res := &c.Resources[i]
		rp := fmt.Sprintf("resources[%d]", i)
		setDur(rp+".max_duration", &res.MaxDuration, 4*time.Hour)
		def := time.Hour
		if res.MaxDuration > 0 {
			def = min(def, res.MaxDuration)
		}
		setDur(rp+".default_duration", &res.DefaultDuration, def)
		if pg := res.Postgres; pg != nil {
			setInt(rp+".postgres.connection_limit", &pg.ConnectionLimit, 5)
			if dsn, err := parsePostgresDSN(pg.DSN.Reveal()); err == nil {
				setStr(&pg.Host, dsn.host)
				if !c.has(rp + ".postgres.port") {
					pg.Port = 5432
					if dsn.port != "" {
						pg.Port, _ = strconv.Atoi(dsn.port)
					}
				}
				setStr(&pg.Database, dsn.database)
				setStr(&pg.SSLMode, dsn.sslmode)
			}
			setStr(&pg.SSLMode, "prefer")
		}
		if gt := res.GitHubTeam; gt != nil {
			setStr(&gt.Role, "member")
		}
		setInt(rp+".policy.max_pending_per_person", &res.Policy.MaxPendingPerPerson, grants.DefaultMaxPending)
		ap := res.Policy.Approvers
		if len(ap.SlackUsers) > 0 || ap.SlackUsergroup != "" {
			setInt(rp+".policy.min_approvals", &res.Policy.MinApprovals, 1)
		}
		if _, dup := byName[res.Name]; !dup {
			byName[res.Name] = res
		}
	}
	for i := range c.AutoGrant {
		ag := &c.AutoGrant[i]
		if c.has(fmt.Sprintf("auto_grant[%d].duration", i)) {
			continue
		}
		for _, name := range ag.Resources {
			if res, ok := byName[name]; ok && (ag.Duration == 0 || res.DefaultDuration < ag.Duration) {
				ag.Duration = res.DefaultDuration
			}
		}
	}
	for i := range c.Identities {
		if c.Slack != nil {
			setStr(&c.Identities[i].SlackTeam, c.Slack.TeamID)
		}
	}
}

var (
	resourceNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	slackUserRE    = regexp.MustCompile(`^[UW][A-Z0-9]+$`)
	slackTeamRE    = regexp.MustCompile(`^[TE][A-Z0-9]+$`)
	slackChannelRE = regexp.MustCompile(`^[CG][A-Z0-9]+$`)
	slackGroupRE   = regexp.MustCompile(`^S[A-Z0-9]+$`)
	pagerDutyIDRE  = regexp.MustCompile(`^[A-Z0-9]{2,20}$`)
	awsRegionRE    = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	githubLoginRE  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,37}[A-Za-z0-9])?$`)
	githubTeamRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$`)
	pgRoleRE       = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
	summaryTimeRE  = regexp.MustCompile(`^([01][0-9]|2[0-3]):([0-5][0-9])$`)
)

var weekdays = map[string]time.Weekday{
	"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday,
	"wednesday": time.Wednesday, "thursday": time.Thursday, "friday": time.Friday,
	"saturday": time.Saturday,
}

var providerBlocks = map[string]string{
	ProviderPostgres:          "postgres",
	ProviderAWSSTS:            "aws_sts",
	ProviderAWSIdentityCenter: "aws_identity_center",
	ProviderGitHubTeam:        "github_team",
	ProviderWebhook:           "webhook",
}

// validator collects problems with their lines.
type validator struct {
	c     *Config
	probs []Problem
}

func (v *validator) add(path, format string, args ...any) {
	v.probs = append(v.probs, Problem{Path: path, Line: v.c.lineOf(path), Msg: fmt.Sprintf(format, args...)})
}

// show quotes a value, unless it came from the environment.
func (v *validator) show(path, s string) string {
	if v.c.fromEnv[path] {
		return "the value from the environment (not shown)"
	}
	return strconv.Quote(s)
}

func (v *validator) required(path, s, hint string) bool {
	if strings.TrimSpace(s) == "" {
		v.add(path, "is required: %s", hint)
		return false
	}
	return true
}

func (v *validator) match(path, s string, re *regexp.Regexp, what string) bool {
	if !re.MatchString(s) {
		v.add(path, "%s is not %s", v.show(path, s), what)
		return false
	}
	return true
}

// duration checks lo ≤ d ≤ hi (hi 0 = no upper bound).
func (v *validator) duration(path string, d, lo, hi time.Duration) {
	switch {
	case d <= 0 && lo > 0:
		v.add(path, "must be positive, not %s", d)
	case d < lo:
		v.add(path, "must be at least %s, not %s", audit.FormatDuration(lo), audit.FormatDuration(d))
	case hi > 0 && d > hi:
		v.add(path, "must be at most %s, not %s", audit.FormatDuration(hi), audit.FormatDuration(d))
	}
}

func (v *validator) intRange(path string, n, lo, hi int) {
	if n < lo || n > hi {
		v.add(path, "must be between %d and %d, not %d", lo, hi, n)
	}
}

// checkURL applies the one rule for upstream URLs, httpclient.CheckBaseURL (an absolute
// https URL, or http on a loopback host, with no credentials), then extra: the further rule of
// the package that takes the URL, so that config check refuses what that package refuses.
func (v *validator) checkURL(path, raw string, extra ...func(string) error) {
	if _, err := httpclient.CheckBaseURL(raw); err != nil {
		v.add(path, "%v", err)
		return
	}
	for _, check := range extra {
		if err := check(raw); err != nil {
			v.add(path, "%s", providerMsg(err))
			return
		}
	}
}

// providerMsg is a provider package's error as a problem message: without the trailing
// ": invalid input" of grants.ErrInvalid, which a problem says already.
func providerMsg(err error) string {
	return strings.TrimSuffix(err.Error(), ": "+grants.ErrInvalid.Error())
}

func (c *Config) validate() []Problem {
	v := &validator{c: c}

	if c.InstanceName != "" {
		if len(c.InstanceName) > 64 || strings.IndexFunc(c.InstanceName, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
			v.add("instance_name", "must be at most 64 printable characters")
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		v.add("log_level", "must be debug, info, warn or error, not %s", v.show("log_level", c.LogLevel))
	}
	v.listenAddress("listen", c.Listen)
	if c.AdminListen != "" {
		v.listenAddress("admin_listen", c.AdminListen)
		if _, port, err := net.SplitHostPort(c.AdminListen); err == nil && port != "0" && c.AdminListen == c.Listen {
			v.add("admin_listen", "is the same address as listen; give the admin endpoints their own address (such as \"127.0.0.1:9090\") or leave admin_listen out")
		}
	}
	if c.API.Token.IsSet() && len(c.API.Token.Reveal()) < MinAPITokenLength {
		v.add("api.token", "is too short: use at least %d random characters (e.g. openssl rand -hex 32)", MinAPITokenLength)
	}

	// store
	switch c.Store.Driver {
	case "sqlite", "postgres":
	case "":
		v.add("store.driver", "is required: sqlite or postgres")
	default:
		v.add("store.driver", "must be sqlite or postgres, not %s", v.show("store.driver", c.Store.Driver))
	}
	if v.required("store.dsn", c.Store.DSN.Reveal(), "the database to open, e.g. \"file:accessbroker.db\" for sqlite") && c.Store.Driver == "postgres" {
		if _, err := parsePostgresDSN(c.Store.DSN.Reveal()); err != nil {
			v.add("store.dsn", "%v", err)
		}
	}

	// audit
	v.required("audit.signing_key_file", c.Audit.SigningKeyFile, "the ed25519 key file that signs checkpoints")
	if c.Audit.CheckpointEvery < 1 {
		v.add("audit.checkpoint_every", "must be at least 1, not %d", c.Audit.CheckpointEvery)
	}
	v.duration("audit.checkpoint_period", c.Audit.CheckpointPeriod, time.Second, 24*time.Hour)
	c.validateWitnesses(v)
	c.validateSinks(v)

	// revoker
	r := c.Revoker
	v.intRange("revoker.concurrency_per_provider", r.ConcurrencyPerProvider, 1, 1024)
	v.intRange("revoker.batch", r.Batch, 1, 10000)
	v.duration("revoker.backoff_base", r.BackoffBase, time.Millisecond, time.Hour)
	v.duration("revoker.backoff_max", r.BackoffMax, time.Millisecond, time.Hour)
	if r.BackoffBase > 0 && r.BackoffMax > 0 && r.BackoffBase > r.BackoffMax {
		v.add("revoker.backoff_base", "(%s) must not exceed revoker.backoff_max (%s)", audit.FormatDuration(r.BackoffBase), audit.FormatDuration(r.BackoffMax))
	}
	v.duration("revoker.claim_lease", r.ClaimLease, time.Second, 24*time.Hour)
	v.duration("revoker.issue_timeout", r.IssueTimeout, time.Second, time.Hour)
	if r.ClaimLease > 0 && r.IssueTimeout > 0 && r.ClaimLease <= r.IssueTimeout {
		v.add("revoker.claim_lease", "(%s) must be longer than revoker.issue_timeout (%s), or another replica could claim a grant whose revocation is still running", audit.FormatDuration(r.ClaimLease), audit.FormatDuration(r.IssueTimeout))
	}
	v.duration("revoker.shutdown_grace", r.ShutdownGrace, 0, 5*time.Minute)

	// drift
	v.duration("drift.interval", c.Drift.Interval, time.Minute, 24*time.Hour)
	switch c.Drift.Action {
	case "flag", "revoke", "off":
	default:
		v.add("drift.action", "is %q; use flag (record and report drift), revoke (also remove it) or off (no drift passes)", c.Drift.Action)
	}

	c.validateSlack(v)
	c.validatePagerDuty(v)
	if a := c.AWS; a != nil {
		if a.Region != "" {
			v.match("aws.region", a.Region, awsRegionRE, "an AWS region such as us-east-1")
		}
		if a.EndpointURL != "" {
			v.checkURL("aws.endpoint_url", a.EndpointURL, awsprov.ValidateEndpointURL)
		}
	}
	v.duration("activity.poll_interval", c.Activity.PollInterval, time.Minute, time.Hour)
	v.duration("activity.aws.lookback_after_end", c.Activity.AWS.LookbackAfterEnd, 5*time.Minute, 24*time.Hour)
	v.intRange("activity.aws.calls_per_second", c.Activity.AWS.CallsPerSecond, 1, 2)
	seenAccounts := map[string]bool{}
	for i, r := range c.Activity.AWS.AccountRoles {
		p := fmt.Sprintf("activity.aws.account_roles[%d]", i)
		if err := awsprov.ValidateActivityAccountRole(r.AccountID, r.RoleARN); err != nil {
			v.add(p, "%v", err)
		} else if seenAccounts[r.AccountID] {
			v.add(p+".account_id", "account %s has a role already (one role per account)", r.AccountID)
		}
		seenAccounts[r.AccountID] = true
	}
	if c.Activity.AWS.Enabled && (c.AWS == nil || c.AWS.Region == "") {
		v.add("activity.aws.enabled", "needs the aws section with region (CloudTrail is looked up there); add aws.region or set activity.aws.enabled: false")
	}
	v.duration("activity.github.lookback_after_end", c.Activity.GitHub.LookbackAfterEnd, 5*time.Minute, 24*time.Hour)
	if c.Activity.GitHub.AuditLog && (c.GitHub == nil || c.GitHub.Token.Reveal() == "") {
		v.add("activity.github.audit_log", "needs the github section with token (it reads the organisation audit log); add github.token or set activity.github.audit_log: false")
	}
	if sec := c.Activity.GitHub.WebhookSecret; sec.IsSet() && len(sec.Reveal()) < 32 {
		v.add("activity.github.webhook_secret", "is too short: at least 32 characters (generate one with `openssl rand -hex 32` and set the same secret on the GitHub organisation webhook)")
	}
	if g := c.GitHub; g != nil {
		v.checkURL("github.api_url", g.APIURL, func(s string) error { _, err := github.ParseAPIURL(s); return err })
	}
	c.validateResources(v)
	c.validatePostgresProxy(v)
	c.validateConsole(v)
	c.validateAutoGrant(v)
	c.validateIdentities(v)
	return v.probs
}

// DefaultConsoleIssuer is Slack's OpenID Connect issuer.
const DefaultConsoleIssuer = "https://slack.com"

// validateConsole checks the console section.
func (c *Config) validateConsole(v *validator) {
	cc := c.Console
	if cc == nil {
		return
	}
	if c.Slack == nil {
		v.add("console", "needs the slack section: people sign in with Slack, and requests and approvals go through the same Slack app")
	}
	if v.required("console.base_url", cc.BaseURL, "the console's public address, e.g. https://access.example.com") {
		if u, err := url.Parse(cc.BaseURL); err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			v.add("console.base_url", "%s is not a bare address such as https://access.example.com (no path, query or credentials)", v.show("console.base_url", cc.BaseURL))
		} else {
			v.checkURL("console.base_url", cc.BaseURL)
		}
	}
	v.required("console.slack_client_id", cc.SlackClientID, "the Slack app's client id (Basic Information → App Credentials)")
	if !cc.SlackClientSecret.IsSet() {
		v.add("console.slack_client_secret", "is required: the Slack app's client secret (Basic Information → App Credentials)")
	} else if len(cc.SlackClientSecret.Reveal()) < 16 {
		v.add("console.slack_client_secret", "is too short to be a Slack client secret (at least 16 characters)")
	}
	v.checkURL("console.issuer_url", cc.IssuerURL)
	v.duration("console.session_ttl", cc.SessionTTL, 5*time.Minute, 24*time.Hour)
	for i, u := range cc.Auditors.SlackUsers {
		v.match(fmt.Sprintf("console.auditors.slack_users[%d]", i), u, slackUserRE, "a Slack user id (U… or W…)")
	}
	if g := cc.Auditors.SlackUsergroup; g != "" {
		v.match("console.auditors.slack_usergroup", g, slackGroupRE, "a Slack user group id (S…)")
	}
}

// MinProxyKeyLength is the shortest postgres_proxy.password_key.
const MinProxyKeyLength = 32

// validatePostgresProxy checks postgres_proxy and that every proxy: true resource has it.
func (c *Config) validatePostgresProxy(v *validator) {
	p := c.PostgresProxy
	for i, res := range c.Resources {
		if res.Postgres != nil && res.Postgres.RecordParameters && !res.Postgres.Proxy {
			v.add(fmt.Sprintf("resources[%d].postgres.record_parameters", i), "needs proxy: true: bind values are seen only by the session proxy; set postgres.proxy: true or remove record_parameters")
		}
		if res.Postgres != nil && res.Postgres.Proxy && p == nil {
			v.add(fmt.Sprintf("resources[%d].postgres.proxy", i), "needs the postgres_proxy section (listen, tls_cert_file, tls_key_file): the proxy this resource is reached through")
		}
	}
	if p == nil {
		return
	}
	hostPort := func(path, addr string, needHost bool) {
		host, port, err := net.SplitHostPort(addr)
		n, perr := strconv.Atoi(port)
		switch {
		case err != nil:
			v.add(path, "%s is not a host:port address such as \":6432\" or \"db-proxy.example.com:6432\"", v.show(path, addr))
		case perr != nil || n < 1 || n > 65535:
			v.add(path, "port %s is not a number between 1 and 65535", v.show(path, port))
		case host != "" && net.ParseIP(host) == nil && !validHostname(host):
			v.add(path, "host %s is neither an IP address nor a host name", v.show(path, host))
		case needHost && (host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified()):
			v.add(path, "has no host clients can connect to; set postgres_proxy.public_address, e.g. db-proxy.example.com:6432")
		}
	}
	if v.required("postgres_proxy.listen", p.Listen, "the proxy's listen address, e.g. \":6432\"") {
		hostPort("postgres_proxy.listen", p.Listen, p.PublicAddress == "")
	}
	if p.PublicAddress != "" {
		hostPort("postgres_proxy.public_address", p.PublicAddress, true)
	}
	v.required("postgres_proxy.tls_cert_file", p.TLSCertFile, "the proxy's PEM certificate: clients must use TLS")
	v.required("postgres_proxy.tls_key_file", p.TLSKeyFile, "the PEM private key of tls_cert_file")
	if p.PasswordKey.IsSet() && len(p.PasswordKey.Reveal()) < MinProxyKeyLength {
		v.add("postgres_proxy.password_key", "is too short: use at least %d random characters (e.g. openssl rand -hex 32)", MinProxyKeyLength)
	}
}

// maxWitnesses bounds audit.witnesses: each is written on every checkpoint.
const maxWitnesses = 8

// validateWitnesses checks audit.witnesses: a known kind, that kind's fields and no other
// kind's, and no two entries writing to the same place.
func (c *Config) validateWitnesses(v *validator) {
	if n := len(c.Audit.Witnesses); n > maxWitnesses {
		v.add("audit.witnesses", "has %d entries; at most %d (each is written on every checkpoint)", n, maxWitnesses)
	}
	seen := map[string]int{}
	for i, w := range c.Audit.Witnesses {
		p := fmt.Sprintf("audit.witnesses[%d]", i)
		fields := map[string]bool{"path": w.Path != "", "url": w.URL != "", "bearer_token": w.BearerToken.IsSet(),
			"bucket": w.Bucket != "", "prefix": w.Prefix != "", "region": w.Region != "", "retention": w.Retention != 0, "mode": w.Mode != ""}
		var allowed []string
		var where string
		switch w.Kind {
		case WitnessFile:
			allowed = []string{"path"}
			if v.required(p+".path", w.Path, "the JSON-lines file checkpoints are appended to, on another volume than the database") {
				where = "file:" + filepath.Clean(w.Path)
			}
		case WitnessHTTPS:
			allowed = []string{"url", "bearer_token"}
			if v.required(p+".url", w.URL, "the endpoint checkpoints are POSTed to") {
				v.checkURL(p+".url", w.URL)
				where = "url:" + w.URL
			}
		case WitnessS3:
			allowed = []string{"bucket", "prefix", "region", "retention", "mode"}
			if v.required(p+".bucket", w.Bucket, "the S3 bucket (created with Object Lock enabled) checkpoints are stored in") {
				if err := awsprov.ValidateBucketName(w.Bucket); err != nil {
					v.add(p+".bucket", "%v", err)
				} else {
					where = "s3:" + w.Bucket + "/" + strings.TrimSuffix(w.Prefix, "/")
				}
			}
			if w.Prefix != "" {
				if err := awsprov.ValidateWitnessPrefix(w.Prefix); err != nil {
					v.add(p+".prefix", "%v", err)
				}
			}
			if w.Region != "" {
				v.match(p+".region", w.Region, awsRegionRE, "an AWS region such as us-east-1")
			} else if c.AWS == nil || c.AWS.Region == "" {
				v.add(p+".region", "is required when aws.region is not set: the bucket's region, e.g. us-east-1")
			}
			if w.Retention == 0 {
				v.add(p+".retention", "is required: how long each checkpoint stays locked, at least 24h (e.g. 2160h for 90 days)")
			} else {
				v.duration(p+".retention", w.Retention, awsprov.MinWitnessRetention, awsprov.MaxWitnessRetention)
			}
			if w.Mode != "" && w.Mode != awsprov.LockCompliance && w.Mode != awsprov.LockGovernance {
				v.add(p+".mode", "must be COMPLIANCE or GOVERNANCE (upper case), not %s", v.show(p+".mode", w.Mode))
			}
		case "":
			v.add(p+".kind", "is required: file, https or s3")
			continue
		default:
			v.add(p+".kind", "must be file, https or s3, not %s", v.show(p+".kind", w.Kind))
			continue
		}
		for _, f := range sortedKeys(fields) {
			if fields[f] && !slices.Contains(allowed, f) {
				v.add(p+"."+f, "does not apply to a %s witness (its keys: %s)", w.Kind, strings.Join(allowed, ", "))
			}
		}
		if where != "" {
			if first, dup := seen[where]; dup {
				v.add(p, "writes to the same place as audit.witnesses[%d]: one entry per witness", first)
			}
			seen[where] = i
		}
	}
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
				return false
			}
		}
	}
	return true
}

func (c *Config) validateSlack(v *validator) {
	s := c.Slack
	if s == nil {
		return
	}
	v.checkURL("slack.api_url", s.APIURL)
	if s.TeamID != "" {
		v.match("slack.team_id", s.TeamID, slackTeamRE, "a Slack team id (T… or E…)")
	}
	v.required("slack.bot_token", s.BotToken.Reveal(), "the Slack bot token (xoxb-…)")
	if !s.SigningSecret.IsSet() && len(s.SigningSecrets) == 0 {
		v.add("slack.signing_secret", "is required (or slack.signing_secrets): the app's signing secret verifies every Slack request")
	}
	for i, sec := range s.SigningSecrets {
		if !sec.IsSet() {
			v.add(fmt.Sprintf("slack.signing_secrets[%d]", i), "is empty")
		}
	}
	if v.required("slack.audit_channel", s.AuditChannel, "the channel id (C…) that receives grant notes and alerts") {
		v.match("slack.audit_channel", s.AuditChannel, slackChannelRE, "a Slack channel id (C… or G…)")
	}
	if s.ApprovalsChannel != s.AuditChannel {
		v.match("slack.approvals_channel", s.ApprovalsChannel, slackChannelRE, "a Slack channel id (C… or G…)")
	}
	if s.Summary.Channel != s.AuditChannel {
		v.match("slack.summary.channel", s.Summary.Channel, slackChannelRE, "a Slack channel id (C… or G…)")
	}
	if _, ok := weekdays[s.Summary.Day]; !ok {
		v.add("slack.summary.weekday", "%s is not a day of the week (monday … sunday)", v.show("slack.summary.weekday", s.Summary.Day))
	}
	if !summaryTimeRE.MatchString(s.Summary.Time) {
		v.add("slack.summary.time", "%s is not a 24-hour HH:MM time such as \"09:00\" (UTC)", v.show("slack.summary.time", s.Summary.Time))
	}
	for i, u := range s.Summary.Reviewers {
		v.match(fmt.Sprintf("slack.summary.reviewers[%d]", i), u, slackUserRE, "a Slack user id (U… or W…)")
	}
	v.duration("slack.request_ttl", s.RequestTTL, time.Minute, MaxResourceDuration)
	v.intRange("slack.min_reason_length", s.MinReasonLength, 0, 500)
}

func (c *Config) validatePagerDuty(v *validator) {
	p := c.PagerDuty
	if p == nil {
		return
	}
	v.checkURL("pagerduty.api_url", p.APIURL, func(s string) error { _, err := pagerduty.ValidateAPIURL(s); return err })
	v.required("pagerduty.token", p.Token.Reveal(), "a PagerDuty REST API key")
	for i, sec := range p.WebhookSecrets {
		if !sec.IsSet() {
			v.add(fmt.Sprintf("pagerduty.webhook_secrets[%d]", i), "is empty")
		}
	}
	if len(c.AutoGrant) > 0 && len(p.WebhookSecrets) == 0 {
		v.add("pagerduty.webhook_secrets", "is required when auto_grant is used: without a secret every webhook is rejected")
	}
	v.duration("pagerduty.freshness", p.Freshness, time.Second, time.Hour)
}

func (c *Config) validateResources(v *validator) {
	if len(c.Resources) == 0 {
		v.add("resources", "at least one resource is required")
	}
	names := map[string]int{}
	var needAWS, needGitHub []string
	for i := range c.Resources {
		res := &c.Resources[i]
		rp := fmt.Sprintf("resources[%d]", i)
		if v.required(rp+".name", res.Name, "the name requesters type, e.g. prod-db") {
			if v.match(rp+".name", res.Name, resourceNameRE, "a valid resource name (lower-case letters, digits and -, at most 63, starting with a letter or digit)") {
				if first, dup := names[res.Name]; dup {
					v.add(rp+".name", "duplicate resource name %q (also resources[%d])", res.Name, first)
				} else {
					names[res.Name] = i
				}
			}
		}
		v.duration(rp+".max_duration", res.MaxDuration, grants.MinDuration, MaxResourceDuration)
		v.duration(rp+".default_duration", res.DefaultDuration, grants.MinDuration, 0)
		if res.DefaultDuration > 0 && res.MaxDuration > 0 && res.DefaultDuration > res.MaxDuration {
			v.add(rp+".default_duration", "(%s) must not exceed max_duration (%s)", audit.FormatDuration(res.DefaultDuration), audit.FormatDuration(res.MaxDuration))
		}

		present := map[string]bool{
			"postgres":            res.Postgres != nil,
			"aws_sts":             res.AWSSTS != nil,
			"aws_identity_center": res.AWSIdentityCenter != nil,
			"github_team":         res.GitHubTeam != nil,
			"webhook":             res.Webhook != nil,
		}
		block, known := providerBlocks[res.Provider]
		switch {
		case res.Provider == "":
			v.add(rp+".provider", "is required: one of %s", knownProviders())
		case !known:
			v.add(rp+".provider", "unknown provider %s; known: %s", v.show(rp+".provider", res.Provider), knownProviders())
		case !present[block]:
			v.add(rp+"."+block, "is required: provider %s takes its settings from the %s block", res.Provider, block)
		}
		if known { // with an unknown provider, the provider is the one problem
			for _, b := range sortedKeys(present) {
				if present[b] && b != block {
					v.add(rp+"."+b, "does not belong to provider %s; remove it (or set provider to the kind this block is for)", res.Provider)
				}
			}
		}
		switch res.Provider {
		case ProviderPostgres:
			if res.Postgres != nil {
				n := len(v.probs)
				v.postgres(rp+".postgres", res.Postgres)
				if len(v.probs) == n { // the provider's own static rule, as serve applies it
					if err := res.Postgres.ProviderConfig().Validate(); err != nil {
						v.add(rp+".postgres", "%s", providerMsg(err))
					}
				}
			}
		case ProviderAWSSTS:
			needAWS = append(needAWS, res.Name)
			if res.AWSSTS != nil {
				v.awsSTS(rp+".aws_sts", res.AWSSTS)
			}
		case ProviderAWSIdentityCenter:
			needAWS = append(needAWS, res.Name)
			if res.AWSIdentityCenter != nil {
				v.identityCenter(rp+".aws_identity_center", res.AWSIdentityCenter)
			}
		case ProviderGitHubTeam:
			needGitHub = append(needGitHub, res.Name)
			if res.GitHubTeam != nil {
				n := len(v.probs)
				v.githubTeam(rp+".github_team", res.GitHubTeam)
				if g := c.GitHub; len(v.probs) == n && g != nil && g.Token.IsSet() {
					// The provider's own rule, as serve applies it (New makes no call).
					if _, err := github.New(res.GitHubTeam.ProviderConfig(g), nil, nil); err != nil {
						v.add(rp+".github_team", "%s", providerMsg(err))
					}
				}
			}
		case ProviderWebhook:
			if res.Webhook != nil {
				n := len(v.probs)
				if v.required(rp+".webhook.url", res.Webhook.URL, "the endpoint that issues and revokes access") {
					v.checkURL(rp+".webhook.url", res.Webhook.URL, func(s string) error { _, err := webhook.ParseURL(s); return err })
				}
				v.required(rp+".webhook.token", res.Webhook.Token.Reveal(), "the bearer token sent to the webhook")
				if len(v.probs) == n { // the provider's own rule, as serve applies it
					if _, err := webhook.New(res.Webhook.ProviderConfig(), nil); err != nil {
						v.add(rp+".webhook", "%s", providerMsg(err))
					}
				}
			}
		}
		c.validatePolicy(v, rp+".policy", &res.Policy)
	}
	if len(needAWS) > 0 {
		if c.AWS == nil || c.AWS.Region == "" {
			v.add("aws.region", "is required: resources %s use AWS", strings.Join(needAWS, ", "))
		}
	}
	if len(needGitHub) > 0 {
		if c.GitHub == nil || !c.GitHub.Token.IsSet() {
			v.add("github.token", "is required: resources %s use provider github-team", strings.Join(needGitHub, ", "))
		}
	}
}

func knownProviders() string {
	return strings.Join([]string{ProviderPostgres, ProviderAWSSTS, ProviderAWSIdentityCenter, ProviderGitHubTeam, ProviderWebhook}, ", ")
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var sslModes = map[string]bool{"disable": true, "allow": true, "prefer": true, "require": true, "verify-ca": true, "verify-full": true}

func (v *validator) postgres(p string, pg *PostgresConfig) {
	dsnOK := false
	if v.required(p+".dsn", pg.DSN.Reveal(), "the admin connection string that creates login roles") {
		if dsn, err := parsePostgresDSN(pg.DSN.Reveal()); err != nil {
			v.add(p+".dsn", "%v", err)
		} else {
			dsnOK = true
			if pg.Host == "" && dsn.host == "" {
				v.add(p+".host", "is required: the admin DSN names no TCP host, so the delivered connection string needs one")
			}
		}
	}
	if len(pg.Roles) == 0 {
		v.add(p+".roles", "at least one role to grant is required, e.g. [readonly]")
	}
	for i, role := range pg.Roles {
		v.match(fmt.Sprintf("%s.roles[%d]", p, i), role, pgRoleRE, "a plain PostgreSQL role name (letters, digits, _)")
	}
	if pg.OrphanOwner != "" {
		v.match(p+".orphan_owner", pg.OrphanOwner, pgRoleRE, "a plain PostgreSQL role name (letters, digits, _)")
		switch {
		case strings.HasPrefix(pg.OrphanOwner, "ab_"):
			v.add(p+".orphan_owner", "must not start with ab_, the prefix of the temporary login roles; e.g. accessbroker_orphans")
		case slices.Contains(pg.Roles, pg.OrphanOwner):
			v.add(p+".orphan_owner", "must not be one of roles: it owns what revoked roles leave behind, so nobody may be granted it")
		}
	}
	if dsnOK {
		if pg.Host != "" && net.ParseIP(pg.Host) == nil && !validHostname(pg.Host) {
			v.add(p+".host", "%s is neither an IP address nor a host name", v.show(p+".host", pg.Host))
		}
		v.intRange(p+".port", pg.Port, 1, 65535)
		if pg.Database == "" {
			v.add(p+".database", "is required: the admin DSN names no database")
		}
	}
	if !sslModes[pg.SSLMode] {
		v.add(p+".sslmode", "must be one of disable, allow, prefer, require, verify-ca, verify-full, not %s", v.show(p+".sslmode", pg.SSLMode))
	}
	if pg.ConnectionLimit < 1 {
		v.add(p+".connection_limit", "must be at least 1, not %d: every grant needs a bounded number of sessions", pg.ConnectionLimit)
	}
}

func (v *validator) awsSTS(p string, s *AWSSTSConfig) {
	if s.MaxSessionDuration == 0 && v.c.has(p+".max_session_duration") {
		v.add(p+".max_session_duration", "must be positive, not 0s")
	}
	v.providerErr(p, s.STSConfig().Validate())
}

func (v *validator) identityCenter(p string, ic *AWSIdentityCenterConfig) {
	v.providerErr(p, ic.IdentityCenterConfig().Validate())
}

// providerErr records the problems a provider package's Validate found in the block at p:
// each *grants.FieldError at its own key, anything else at the block.
func (v *validator) providerErr(p string, err error) {
	if err == nil {
		return
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			v.providerErr(p, e)
		}
		return
	}
	var fe *grants.FieldError
	if !errors.As(err, &fe) {
		v.add(p, "%v", err)
		return
	}
	path := p + "." + fe.Field
	if fe.Value != "" {
		v.add(path, "%s %s", v.show(path, fe.Value), fe.Msg)
		return
	}
	v.add(path, "%s", fe.Msg)
}

func (v *validator) githubTeam(p string, gt *GitHubTeamConfig) {
	if v.required(p+".org", gt.Org, "the organization login") {
		v.match(p+".org", gt.Org, githubLoginRE, "a GitHub organization login")
	}
	if v.required(p+".team", gt.Team, "the team slug") {
		v.match(p+".team", gt.Team, githubTeamRE, "a GitHub team slug")
	}
	if gt.Role != "member" && gt.Role != "maintainer" {
		v.add(p+".role", "must be member or maintainer, not %s", v.show(p+".role", gt.Role))
	}
}

func (c *Config) validatePolicy(v *validator, p string, pol *PolicyConfig) {
	oc := pol.OnCall
	for i, id := range oc.EscalationPolicies {
		v.match(fmt.Sprintf("%s.on_call.escalation_policies[%d]", p, i), id, pagerDutyIDRE, "a PagerDuty escalation policy id (e.g. PABC123)")
	}
	for i, id := range oc.Schedules {
		v.match(fmt.Sprintf("%s.on_call.schedules[%d]", p, i), id, pagerDutyIDRE, "a PagerDuty schedule id (e.g. PSCH123)")
	}
	for i, l := range oc.Levels {
		if l < 1 {
			v.add(fmt.Sprintf("%s.on_call.levels[%d]", p, i), "escalation levels start at 1, not %d", l)
		}
	}
	if len(oc.Levels) > 0 && len(oc.EscalationPolicies) == 0 {
		v.add(p+".on_call.levels", "only applies to on_call.escalation_policies, and there are none")
	}
	hasOnCall := len(oc.EscalationPolicies)+len(oc.Schedules) > 0
	if hasOnCall && c.PagerDuty == nil {
		v.add(p+".on_call", "needs the pagerduty section to check who is on call")
	}
	if pol.AutoApproveOnCall && !hasOnCall {
		v.add(p+".auto_approve_on_call", "needs on_call.escalation_policies or on_call.schedules: otherwise nobody is ever on call")
	}
	if pol.CapToShift && !hasOnCall {
		v.add(p+".cap_to_shift", "needs on_call.escalation_policies or on_call.schedules to know when the shift ends")
	}
	ap := pol.Approvers
	for i, u := range ap.SlackUsers {
		v.match(fmt.Sprintf("%s.approvers.slack_users[%d]", p, i), u, slackUserRE, "a Slack user id (U… or W…)")
	}
	if ap.SlackUsergroup != "" {
		v.match(p+".approvers.slack_usergroup", ap.SlackUsergroup, slackGroupRE, "a Slack user group id (S…)")
	}
	hasApprovers := len(ap.SlackUsers) > 0 || ap.SlackUsergroup != ""
	switch {
	case hasApprovers && pol.MinApprovals < 1:
		v.add(p+".min_approvals", "must be at least 1 when approvers are configured, not %d", pol.MinApprovals)
	case !hasApprovers && pol.MinApprovals > 0:
		v.add(p+".min_approvals", "is %d but policy.approvers names nobody who could approve", pol.MinApprovals)
	case hasApprovers && ap.SlackUsergroup == "" && pol.MinApprovals > len(uniq(ap.SlackUsers)):
		v.add(p+".min_approvals", "is %d but approvers.slack_users lists only %d distinct approvers", pol.MinApprovals, len(uniq(ap.SlackUsers)))
	}
	if hasApprovers && c.Slack == nil {
		v.add(p+".approvers", "needs the slack section: approvals happen in Slack")
	}
	if n := pol.MaxPendingPerPerson; n < 1 || n > maxPendingLimit {
		v.add(p+".max_pending_per_person", "must be from 1 to %d (pending requests one person may have open for the resource), not %d", maxPendingLimit, n)
	}
}

// maxPendingLimit is the largest policy.max_pending_per_person accepted.
const maxPendingLimit = 20

func uniq(s []string) map[string]bool {
	m := make(map[string]bool, len(s))
	for _, x := range s {
		m[x] = true
	}
	return m
}

func (c *Config) validateAutoGrant(v *validator) {
	if len(c.AutoGrant) > 0 && c.PagerDuty == nil {
		v.add("auto_grant", "needs the pagerduty section: auto grants are driven by PagerDuty webhooks")
	}
	byName := map[string]*ResourceConfig{}
	for i := range c.Resources {
		if _, dup := byName[c.Resources[i].Name]; !dup {
			byName[c.Resources[i].Name] = &c.Resources[i]
		}
	}
	for i, ag := range c.AutoGrant {
		p := fmt.Sprintf("auto_grant[%d]", i)
		if len(ag.PagerDutyServices) == 0 {
			v.add(p+".pagerduty_services", "at least one PagerDuty service id is required")
		}
		for j, s := range ag.PagerDutyServices {
			v.match(fmt.Sprintf("%s.pagerduty_services[%d]", p, j), s, pagerDutyIDRE, "a PagerDuty service id (e.g. PSVC123)")
		}
		if len(ag.Resources) == 0 {
			v.add(p+".resources", "at least one resource name is required")
		}
		for j, name := range ag.Resources {
			rp := fmt.Sprintf("%s.resources[%d]", p, j)
			res, ok := byName[name]
			if !ok {
				v.add(rp, "unknown resource %s; configured: %s", v.show(rp, name), strings.Join(sortedNames(byName), ", "))
				continue
			}
			if ag.Duration > res.MaxDuration && res.MaxDuration > 0 {
				v.add(p+".duration", "(%s) exceeds %s's max_duration (%s)", audit.FormatDuration(ag.Duration), name, audit.FormatDuration(res.MaxDuration))
			}
		}
		if c.has(p+".duration") || ag.Duration != 0 {
			v.duration(p+".duration", ag.Duration, grants.MinDuration, MaxResourceDuration)
		}
		if ag.GracePeriod < 0 || ag.GracePeriod > 24*time.Hour {
			v.add(p+".grace_period", "must be between 0 and 24h, not %s", audit.FormatDuration(ag.GracePeriod))
		}
		if ag.GracePeriod > 0 && !ag.RevokeOnResolve {
			v.add(p+".grace_period", "only applies with revoke_on_resolve: true")
		}
	}
}

func sortedNames(m map[string]*ResourceConfig) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (c *Config) validateIdentities(v *validator) {
	slackIDs := map[string]int{}
	emails := map[string]int{}
	githubs := map[string]int{}
	pds := map[string]int{}
	dup := func(seen map[string]int, key string, i int, path, what string) {
		if key == "" {
			return
		}
		if first, ok := seen[key]; ok {
			v.add(path, "duplicate %s (also identities[%d]): one person per entry", what, first)
			return
		}
		seen[key] = i
	}
	for i, id := range c.Identities {
		p := fmt.Sprintf("identities[%d]", i)
		if v.required(p+".slack", id.Slack, "the person's Slack user id (U…)") {
			if v.match(p+".slack", id.Slack, slackUserRE, "a Slack user id (U… or W…)") {
				dup(slackIDs, id.SlackTeam+"/"+id.Slack, i, p+".slack", "Slack user "+id.Slack)
			}
		}
		if id.SlackTeam != "" {
			v.match(p+".slack_team", id.SlackTeam, slackTeamRE, "a Slack team id (T… or E…)")
		}
		if id.Email != "" {
			if a, err := mail.ParseAddress(id.Email); err != nil || a.Address != id.Email || a.Name != "" {
				v.add(p+".email", "%s is not a bare email address such as alice@example.com", v.show(p+".email", id.Email))
			} else if folded, err := broker.CheckEmail(id.Email); err != nil {
				v.add(p+".email", "%s: write the address in plain ASCII (an internationalised domain in its xn-- form)", strings.TrimPrefix(err.Error(), broker.ErrEmailRefused.Error()+": "))
			} else {
				dup(emails, folded, i, p+".email", "email "+id.Email)
			}
		}
		if id.GitHub != "" && v.match(p+".github", id.GitHub, githubLoginRE, "a GitHub login") {
			dup(githubs, strings.ToLower(id.GitHub), i, p+".github", "GitHub login "+id.GitHub)
		}
		if id.PagerDuty != "" && v.match(p+".pagerduty", id.PagerDuty, pagerDutyIDRE, "a PagerDuty user id (e.g. PUSER12)") {
			dup(pds, id.PagerDuty, i, p+".pagerduty", "PagerDuty user "+id.PagerDuty)
		}
	}
}

// pgDSN is what accessbroker needs from a PostgreSQL connection string.
type pgDSN struct {
	host, port, database, sslmode string
	password                      string // secret: only for scrubbing it from errors
	rawPassword                   string // secret: the password as written in a URL, percent-encoded
}

// parsePostgresDSN parses a postgres:// URL or a libpq key=value string. Its errors never
// contain the DSN (it may hold a password).
func parsePostgresDSN(s string) (pgDSN, error) {
	var d pgDSN
	params := map[string]string{}
	switch {
	case strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://"):
		u, err := url.Parse(s)
		if err != nil {
			return d, errors.New("is not a valid postgres:// URL (postgres://user:password@host:5432/database?sslmode=require); percent-encode special characters in the password")
		}
		d.host, d.port = u.Hostname(), u.Port()
		d.database = strings.TrimPrefix(u.Path, "/")
		d.password, _ = u.User.Password()
		authority, _, _ := strings.Cut(s[strings.Index(s, "://")+3:], "/")
		authority, _, _ = strings.Cut(authority, "?")
		if at := strings.LastIndex(authority, "@"); at >= 0 {
			if _, pw, ok := strings.Cut(authority[:at], ":"); ok {
				d.rawPassword = pw
			}
		}
		for k, vs := range u.Query() {
			if len(vs) > 0 {
				params[k] = vs[len(vs)-1]
			}
		}
	case strings.Contains(s, "="):
		kv, err := parseKeyValueDSN(s)
		if err != nil {
			return d, err
		}
		params = kv
	default:
		return d, errors.New("must be a postgres:// URL or a key=value connection string (host=… dbname=… user=…)")
	}
	if h, ok := params["host"]; ok {
		d.host = h
	}
	if p, ok := params["port"]; ok {
		d.port = p
	}
	if db, ok := params["dbname"]; ok {
		d.database = db
	}
	d.sslmode = params["sslmode"]
	if pw, ok := params["password"]; ok {
		d.password = pw
	}
	if strings.HasPrefix(d.host, "/") {
		d.host = "" // a Unix socket directory is not deliverable
	}
	if d.port != "" {
		if p, err := strconv.Atoi(d.port); err != nil || p < 1 || p > 65535 {
			return d, errors.New("has a port that is not a number between 1 and 65535")
		}
	}
	if d.sslmode != "" && !sslModes[d.sslmode] {
		return d, errors.New("has an unknown sslmode (use disable, allow, prefer, require, verify-ca or verify-full)")
	}
	return d, nil
}

// parseKeyValueDSN parses libpq's key=value format: whitespace-separated pairs, values
// optionally single-quoted with \' and \\ escapes.
func parseKeyValueDSN(s string) (map[string]string, error) {
	out := map[string]string{}
	i := 0
	skipSpace := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
			i++
		}
	}
	for {
		skipSpace()
		if i >= len(s) {
			return out, nil
		}
		start := i
		for i < len(s) && s[i] != '=' && s[i] != ' ' && s[i] != '\t' {
			i++
		}
		key := s[start:i]
		skipSpace()
		if i >= len(s) || s[i] != '=' || key == "" || !envNameRE.MatchString(key) {
			return nil, errors.New("is not a valid key=value connection string: each setting must be key=value (quote values with spaces in single quotes)")
		}
		i++ // '='
		skipSpace()
		var val strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				if s[i] == '\\' && i+1 < len(s) {
					val.WriteByte(s[i+1])
					i += 2
					continue
				}
				if s[i] == '\'' {
					closed = true
					i++
					break
				}
				val.WriteByte(s[i])
				i++
			}
			if !closed {
				return nil, fmt.Errorf("is not a valid key=value connection string: the quoted value of %s is not closed", key)
			}
		} else {
			for i < len(s) && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				val.WriteByte(s[i])
				i++
			}
		}
		out[key] = val.String()
	}
}

func sortProblems(p []Problem) []Problem {
	sort.SliceStable(p, func(i, j int) bool { return p[i].Line < p[j].Line })
	return p
}

// SlogLevel is log_level as a slog.Level.
func (c *Config) SlogLevel() slog.Level {
	switch c.LogLevel {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// SigningSecretList is every accepted Slack signing secret: signing_secret first, then
// signing_secrets.
func (s *SlackConfig) SigningSecretList() []Secret {
	var out []Secret
	if s.SigningSecret.IsSet() {
		out = append(out, s.SigningSecret)
	}
	return append(out, s.SigningSecrets...)
}

// Weekday is slack.summary.weekday as a time.Weekday (valid after loading).
func (s SummaryConfig) Weekday() time.Weekday { return weekdays[s.Day] }

// HourMinute is slack.summary.time (UTC) as numbers (valid after loading).
func (s SummaryConfig) HourMinute() (hour, minute int) {
	m := summaryTimeRE.FindStringSubmatch(s.Time)
	if m == nil {
		return 0, 0
	}
	hour, _ = strconv.Atoi(m[1])
	minute, _ = strconv.Atoi(m[2])
	return hour, minute
}

// Resource returns the resource named name.
func (c *Config) Resource(name string) (*ResourceConfig, bool) {
	for i := range c.Resources {
		if c.Resources[i].Name == name {
			return &c.Resources[i], true
		}
	}
	return nil, false
}

// GrantResources maps resources to the domain's grants.Resource, in file order.
func (c *Config) GrantResources() []grants.Resource {
	out := make([]grants.Resource, 0, len(c.Resources))
	for _, r := range c.Resources {
		p := r.Policy
		out = append(out, grants.Resource{
			Name:            r.Name,
			Provider:        r.Provider,
			DefaultDuration: r.DefaultDuration,
			MaxDuration:     r.MaxDuration,
			Policy: grants.Policy{
				OnCallEscalationPolicies: clone(p.OnCall.EscalationPolicies),
				OnCallSchedules:          clone(p.OnCall.Schedules),
				OnCallLevels:             clone(p.OnCall.Levels),
				AutoApproveOnCall:        p.AutoApproveOnCall,
				ApproverSlackUsers:       clone(p.Approvers.SlackUsers),
				ApproverSlackUsergroup:   p.Approvers.SlackUsergroup,
				MinApprovals:             p.MinApprovals,
				BreakGlass:               p.BreakGlass,
				CapToShift:               p.CapToShift,
				MaxPendingPerPerson:      p.MaxPendingPerPerson,
			},
		})
	}
	return out
}

func clone[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return append([]T(nil), s...)
}

// SecretValues returns every configured secret value (non-empty), for scrubbing them from
// upstream error messages before they are logged, audited or shown. A secret that is a
// PostgreSQL DSN also gives its password alone, decoded and percent-encoded, since an error
// may quote the password without the rest of the DSN: as written, decoded, and encoded.
func (c *Config) SecretValues() []string {
	var out []string
	walkSecrets(reflect.ValueOf(c).Elem(), "", func(_ string, s *Secret) {
		if !s.IsSet() {
			return
		}
		out = append(out, s.Reveal())
		if d, err := parsePostgresDSN(s.Reveal()); err == nil && d.password != "" {
			for _, v := range []string{d.password, d.rawPassword, url.QueryEscape(d.password), url.PathEscape(d.password)} {
				if v != "" && !slices.Contains(out, v) {
					out = append(out, v)
				}
			}
		}
	})
	return out
}

// URLOverrides lists the upstream URLs that differ from the SDK defaults, as "key=url", so
// serve can log a warning about each: an override sends tokens somewhere else.
func (c *Config) URLOverrides() []string {
	var out []string
	if c.Slack != nil && c.Slack.APIURL != DefaultSlackAPIURL {
		out = append(out, "slack.api_url="+c.Slack.APIURL)
	}
	if c.PagerDuty != nil && c.PagerDuty.APIURL != DefaultPagerDutyAPIURL {
		out = append(out, "pagerduty.api_url="+c.PagerDuty.APIURL)
	}
	if c.GitHub != nil && c.GitHub.APIURL != DefaultGitHubAPIURL {
		out = append(out, "github.api_url="+c.GitHub.APIURL)
	}
	if c.Console != nil && c.Console.IssuerURL != DefaultConsoleIssuer {
		out = append(out, "console.issuer_url="+c.Console.IssuerURL)
	}
	if c.AWS != nil && c.AWS.EndpointURL != "" {
		out = append(out, "aws.endpoint_url="+c.AWS.EndpointURL)
	}
	return out
}

// listenAddress checks a host:port listen address.
func (v *validator) listenAddress(path, addr string) {
	if host, port, err := net.SplitHostPort(addr); err != nil {
		v.add(path, "%s is not a host:port address such as \":8080\" or \"127.0.0.1:8080\"", v.show(path, addr))
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		v.add(path, "port %s is not a number between 0 and 65535", v.show(path, port))
	} else if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
		v.add(path, "host %s is neither an IP address nor a host name", v.show(path, host))
	}
}
