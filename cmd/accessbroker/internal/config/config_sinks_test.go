package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// sinksBase is a valid configuration whose audit section ends with "sinks:", for the
// entries each case appends.
const sinksBase = `listen: ":8080"
store: {driver: sqlite, dsn: "file:test.db"}
resources:
  - name: app
    provider: webhook
    webhook: {url: "https://hooks.example.com/access", token: hook-token}
    policy: {break_glass: true}
aws: {region: us-east-1}
audit:
  signing_key_file: audit.key
  sinks:
`

const sinkSecret = "siem-hmac-secret-0123456789abcdef0123"

// TestSinksConfig: audit.sinks decodes with the defaults of each kind, and the https
// sink's secret is scrubbed from errors like every other secret.
func TestSinksConfig(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig([]byte(sinksBase+`    - {kind: file, path: /var/log/accessbroker/audit.jsonl}
    - {kind: https, url: "https://siem.example.com/ingest", hmac_secret: "${SIEM_SECRET}", format: ocsf}
    - {kind: s3, bucket: acme-audit-archive, prefix: prod/, batch_size: 5000, flush_interval: 5m}
    - {kind: file, path: /var/log/accessbroker/audit-small.jsonl, batch_size: 10, max_bytes: 104857600}
`), envMap(map[string]string{"SIEM_SECRET": sinkSecret}))
	if err != nil {
		t.Fatal(err)
	}
	want := []SinkConfig{
		{Kind: SinkFile, Format: "json", BatchSize: 500, Path: "/var/log/accessbroker/audit.jsonl"},
		{Kind: SinkHTTPS, Format: "ocsf", BatchSize: 100, URL: "https://siem.example.com/ingest", HMACSecret: NewSecret(sinkSecret)},
		{Kind: SinkS3, Format: "json", BatchSize: 5000, FlushInterval: 5 * time.Minute, Bucket: "acme-audit-archive", Prefix: "prod/"},
		{Kind: SinkFile, Format: "json", BatchSize: 10, Path: "/var/log/accessbroker/audit-small.jsonl", MaxBytes: 100 << 20},
	}
	if d := cmp.Diff(want, cfg.Audit.Sinks, configCmpOpts...); d != "" {
		t.Fatalf("audit.sinks (-want +got):\n%s", d)
	}
	if !slices.Contains(cfg.SecretValues(), sinkSecret) {
		t.Error("the https sink's HMAC secret is not among the secrets scrubbed from errors")
	}
	if got := cfg.Audit.Sinks[2].S3SinkConfig(cfg.AWS).Region; got != "us-east-1" {
		t.Errorf("s3 sink region = %q, want aws.region", got)
	}
	if got := cfg.Audit.Sinks[2].FlushInterval; got != 5*time.Minute {
		t.Errorf("s3 flush_interval = %s", got)
	}
}

// TestSinksConfigDefaultS3Flush: an s3 sink without flush_interval waits 1m between partial
// batches (one object per event would cost a request each).
func TestSinksConfigDefaultS3Flush(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig([]byte(sinksBase+"    - {kind: s3, bucket: acme-audit-archive}\n"), envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Audit.Sinks[0]; s.FlushInterval != time.Minute || s.BatchSize != 1000 {
		t.Fatalf("s3 defaults: flush_interval %s, batch_size %d; want 1m and 1000", s.FlushInterval, s.BatchSize)
	}
}

// TestSinksConfigErrors: each mistake is named by its key with what to write instead.
func TestSinksConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, entries, path, msg string
	}{
		{"no kind", "    - {path: /tmp/a.jsonl}\n", "audit.sinks[0].kind", "is required: file, https or s3"},
		{"unknown kind", "    - {kind: kafka, path: /tmp/a.jsonl}\n", "audit.sinks[0].kind", `must be file, https or s3, not "kafka"`},
		{"unknown format", "    - {kind: file, path: /tmp/a.jsonl, format: cef}\n", "audit.sinks[0].format", `must be json or ocsf, not "cef"`},
		{"file without path", "    - {kind: file}\n", "audit.sinks[0].path", "is required"},
		{"file with url", "    - {kind: file, path: /tmp/a.jsonl, url: \"https://x.example.com\"}\n", "audit.sinks[0].url", "does not apply to a file sink (its keys: path, max_bytes)"},
		{"tiny max_bytes", "    - {kind: file, path: /tmp/a.jsonl, max_bytes: 1000}\n", "audit.sinks[0].max_bytes", "must be at least 1048576"},
		{"https without secret", "    - {kind: https, url: \"https://siem.example.com/in\"}\n", "audit.sinks[0].hmac_secret", "is required"},
		{"https short secret", "    - {kind: https, url: \"https://siem.example.com/in\", hmac_secret: short}\n", "audit.sinks[0].hmac_secret", "is too short"},
		{"https plain http", "    - {kind: https, url: \"http://siem.example.com/in\", hmac_secret: " + sinkSecret + "}\n", "audit.sinks[0].url", "https"},
		{"https with bucket", "    - {kind: https, url: \"https://siem.example.com/in\", hmac_secret: " + sinkSecret + ", bucket: b-b-b}\n", "audit.sinks[0].bucket", "does not apply to a https sink"},
		{"s3 bad bucket", "    - {kind: s3, bucket: Acme_Audit}\n", "audit.sinks[0].bucket", "may hold only lowercase letters"},
		{"s3 bad prefix", "    - {kind: s3, bucket: acme-audit, prefix: /prod}\n", "audit.sinks[0].prefix", "must not start with '/'"},
		{"batch zero", "    - {kind: file, path: /tmp/a.jsonl, batch_size: 0}\n", "audit.sinks[0].batch_size", "must be between 1 and 10000, not 0"},
		{"batch huge", "    - {kind: file, path: /tmp/a.jsonl, batch_size: 20000}\n", "audit.sinks[0].batch_size", "must be between 1 and 10000"},
		{"flush too long", "    - {kind: s3, bucket: acme-audit, flush_interval: 2h}\n", "audit.sinks[0].flush_interval", "must be at most 1h"},
		{"duplicate", "    - {kind: file, path: /tmp/a.jsonl}\n    - {kind: file, path: /tmp/../tmp/a.jsonl}\n", "audit.sinks[1]", "writes to the same place as audit.sinks[0]"},
		{"unknown key", "    - {kind: file, path: /tmp/a.jsonl, fsync: always}\n", "audit.sinks[0]", `unknown key "fsync"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseConfig([]byte(sinksBase+tt.entries), envMap(nil))
			ce := mustConfigError(t, err)
			found := false
			for _, p := range ce.Problems {
				if p.Path == tt.path && strings.Contains(p.Msg, tt.msg) {
					found = true
				}
				if strings.Contains(p.Msg, sinkSecret) {
					t.Errorf("a problem shows the secret: %+v", p)
				}
			}
			if !found {
				t.Fatalf("problems = %+v, want one at %s containing %q", ce.Problems, tt.path, tt.msg)
			}
		})
	}
}

// TestSinksConfigRelativePath: a relative file sink path is relative to the config file.
func TestSinksConfigRelativePath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "accessbroker.yaml")
	if err := os.WriteFile(path, []byte(sinksBase+"    - {kind: file, path: sinks/audit.jsonl}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path, envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Audit.Sinks[0].Path, filepath.Join(dir, "sinks/audit.jsonl"); got != want {
		t.Fatalf("path = %q, want %q", got, want)
	}
}
