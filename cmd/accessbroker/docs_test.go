package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/config"
)

// repoRoot is the repository root, from this package's directory.
const repoRoot = "../.."

// docFiles are the pages an operator reads: README, docs/*.md, the example configuration and
// config.go (whose doc comments are the configuration reference).
func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil || len(files) < 5 {
		t.Fatalf("docs/*.md: %v, %v", files, err)
	}
	return append(files, filepath.Join(repoRoot, "README.md"), filepath.Join(repoRoot, "accessbroker.example.yaml"),
		filepath.Join("internal", "config", "config.go"))
}

func readDoc(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDocumentedDefaults holds each default the docs state to the code's: testdata/docs/
// defaults.yaml leaves those keys out, and what the docs say must be what loading it gives.
func TestDocumentedDefaults(t *testing.T) {
	cfg, err := config.LoadConfig(filepath.Join("testdata", "docs", "defaults.yaml"), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("a config without slack.team_id (documented as optional) does not load: %v", err)
	}
	minutes := func(d interface{ Minutes() float64 }) string { return strconv.Itoa(int(d.Minutes())) }
	maxSession := "the role's maximum"
	if d := cfg.Resources[0].AWSSTS.MaxSessionDuration; d != 0 {
		maxSession = audit.FormatDuration(d)
	}
	approvals := "some other channel"
	if cfg.Slack.ApprovalsChannel == cfg.Slack.AuditChannel {
		approvals = "audit_channel"
	}
	teamID := "required"
	if cfg.Slack.TeamID == "" {
		teamID = "optional" // it loaded without one
	}
	for _, tc := range []struct {
		file string
		re   string // one group: the documented value
		want string // the code's
	}{
		{"docs/slack.md", `A reason is required \(default at least (\d+) characters`, strconv.Itoa(cfg.Slack.MinReasonLength)},
		{"docs/configuration.md", "`slack.min_reason_length` .*? Default (\\d+);", strconv.Itoa(cfg.Slack.MinReasonLength)},
		{"accessbroker.example.yaml", `min_reason_length: \d+ +# shortest accepted reason \(default (\d+)`, strconv.Itoa(cfg.Slack.MinReasonLength)},
		{"docs/pagerduty.md", "`occurred_at` is at most (\\d+) min old", minutes(cfg.PagerDuty.Freshness)},
		{"docs/configuration.md", "`pagerduty.freshness` .*? Default (\\w+);", audit.FormatDuration(cfg.PagerDuty.Freshness)},
		{"accessbroker.example.yaml", `team_id: \S+ +# the workspace this broker serves \((\w+)`, teamID},
		{"docs/configuration.md", "`slack.team_id` .*? (\\w+): when empty", strings.ToUpper(teamID[:1]) + teamID[1:]},
		{"accessbroker.example.yaml", `max_session_duration: \S+ +# .*\(default: ([^)]+?)(?:, read from IAM)?\)`, maxSession},
		{"docs/configuration.md", "`resources\\[\\]\\.aws_sts\\.max_session_duration` .*?; unset means (the role's own maximum)", "the role's own maximum"},
		{"accessbroker.example.yaml", `approvals_channel: \S+ +# approval requests \(default: (\w+)\)`, approvals},
		{"docs/slack.md", "`slack.approvals_channel`, which defaults to\\s+`slack.(\\w+)`", approvals},
	} {
		t.Run(tc.file+" "+tc.re, func(t *testing.T) {
			m := regexp.MustCompile(tc.re).FindStringSubmatch(readDoc(t, filepath.Join(repoRoot, tc.file)))
			if m == nil {
				t.Fatalf("%s no longer states this default (%s): update the test with the docs", tc.file, tc.re)
			}
			if m[1] != tc.want {
				t.Errorf("%s says %q; the code's default is %q", tc.file, m[1], tc.want)
			}
		})
	}
	if maxSession != "the role's maximum" {
		t.Errorf("max_session_duration has a default (%s), which docs/configuration.md does not say", maxSession)
	}
}

// TestDocsNameOnlyFilesInTheRepo: every *.md file the docs name exists in the repository
// (next to the page, at the root, or, for a bare name, somewhere in it).
func TestDocsNameOnlyFilesInTheRepo(t *testing.T) {
	out, err := exec.Command("git", "-C", repoRoot, "ls-files").Output()
	if err != nil {
		t.Skipf("git ls-files: %v (the check needs the git checkout)", err)
	}
	tracked := map[string]bool{} // paths and base names
	for _, p := range strings.Fields(string(out)) {
		tracked[p], tracked[filepath.Base(p)] = true, true
	}
	mdRE := regexp.MustCompile(`[A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md\b`)
	for _, f := range docFiles(t) {
		rel, ok := strings.CutPrefix(f, repoRoot+"/") // the path from the repository root
		if !ok {
			rel = filepath.Join("cmd", "accessbroker", f)
		}
		for _, name := range mdRE.FindAllString(readDoc(t, f), -1) {
			if strings.Contains(name, "://") {
				continue
			}
			here := filepath.Clean(filepath.Join(filepath.Dir(rel), name))
			if tracked[here] || tracked[filepath.Clean(name)] || (!strings.Contains(name, "/") && tracked[name]) {
				continue
			}
			t.Errorf("%s names %s, which is not in the repository", rel, name)
		}
	}
}

// TestDocsPromiseNoReload: the process reloads nothing on SIGHUP (main.go stops on SIGINT and
// SIGTERM only), so no page may tell operators to reload it.
func TestDocsPromiseNoReload(t *testing.T) {
	if strings.Contains(readDoc(t, "main.go"), "SIGHUP") {
		t.Skip("main.go handles SIGHUP: the docs may describe reloading")
	}
	re := regexp.MustCompile(`(?i)\breload|SIGHUP`)
	for _, f := range docFiles(t) {
		for i, line := range strings.Split(readDoc(t, f), "\n") {
			if re.MatchString(line) {
				t.Errorf("%s:%d promises a reload that does not exist (restart instead): %s", f, i+1, strings.TrimSpace(line))
			}
		}
	}
}

// TestInstanceNameDocMatchesMetrics: the configuration reference says instance_name labels
// the metrics exactly when serve's metrics carry it.
func TestInstanceNameDocMatchesMetrics(t *testing.T) {
	p := newInProcess(t)
	named := filepath.Join(p.dir, "named.yaml")
	if err := os.WriteFile(named, append([]byte(readDoc(t, p.config)), "instance_name: docs-check-7\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, ok := loadConfigFlag(named, io.Discard)
	if !ok {
		t.Fatal("config")
	}
	s, err := newServer(context.Background(), cfg, appOptions{logOut: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	families, err := s.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	labelled := false
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				labelled = labelled || l.GetValue() == "docs-check-7"
			}
		}
	}
	row := regexp.MustCompile("(?m)^\\| `instance_name` .*$").FindString(readDoc(t, filepath.Join(repoRoot, "docs", "configuration.md")))
	if row == "" {
		t.Fatal("docs/configuration.md has no instance_name row")
	}
	saysMetrics := regexp.MustCompile(`in (its |messages and )?metrics|labels? the metrics|names this broker in [^.]*metrics`).MatchString(row)
	if saysMetrics != labelled {
		t.Errorf("docs/configuration.md says instance_name labels metrics: %v; serve's metrics carry it: %v\n%s", saysMetrics, labelled, row)
	}
	example := readDoc(t, filepath.Join(repoRoot, "accessbroker.example.yaml"))
	if line := regexp.MustCompile(`(?m)^instance_name:.*$`).FindString(example); strings.Contains(line, "metrics") != labelled {
		t.Errorf("accessbroker.example.yaml's instance_name line does not match the metrics (labelled: %v): %s", labelled, line)
	}
}

// TestOperationsNamesTheKeygenFiles: docs/operations.md names every file `audit keygen --out
// audit.key` writes.
func TestOperationsNamesTheKeygenFiles(t *testing.T) {
	dir := t.TempDir()
	var errOut bytes.Buffer
	if code := run(context.Background(), []string{"audit", "keygen", "--out", filepath.Join(dir, "audit.key")}, io.Discard, &errOut); code != exitOK {
		t.Fatalf("keygen: %s", errOut.String())
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ops := readDoc(t, filepath.Join(repoRoot, "docs", "operations.md"))
	for _, e := range ents {
		if !strings.Contains(ops, "`--public-key "+e.Name()+"`") && e.Name() != "audit.key" {
			t.Errorf("docs/operations.md does not tell auditors to verify with %s, which keygen writes", e.Name())
		}
	}
	if len(ents) != 2 {
		t.Errorf("keygen wrote %d files, want the key and its .pub", len(ents))
	}
}
