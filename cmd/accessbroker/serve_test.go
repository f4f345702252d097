package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// startServer runs serve in this process until the test ends and returns its base URL and
// its log output.
func startServer(t *testing.T, p *inProcess) (string, *syncBuffer) {
	t.Helper()
	return startServerWith(t, p, appOptions{})
}

// startServerWith is startServer with further options (logOut and withProviders are set).
func startServerWith(t *testing.T, p *inProcess, opts appOptions) (string, *syncBuffer) {
	t.Helper()
	cfg, ok := loadConfigFlag(p.config, io.Discard)
	if !ok {
		t.Fatal("config")
	}
	logs := &syncBuffer{}
	opts.logOut, opts.withProviders = logs, true
	s, err := newServer(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, addr) }()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("serve stopped at start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		s.Close()
	})
	return base, logs
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServeHealthReadyMetrics(t *testing.T) {
	p := newInProcess(t)
	p.mustRun("grants", "issue", "--config", p.config, "--resource", "prod-db", "--slack-user", "U0ALICE", "--reason", "metrics test")
	base, _ := startServer(t, p)
	if code, body := get(t, base+"/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 200 || !strings.Contains(body, "ready") {
		t.Errorf("/readyz = %d %q", code, body)
	}
	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{`accessbroker_grants{state="active"} 1`, `accessbroker_grants{state="revoked"} 0`,
		"accessbroker_audit_append_seconds"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestCanarySecretNeverLeaks issues a grant whose credential carries a canary value, then
// looks for it (and the provider token) everywhere except the one delivery to its owner.
func TestCanarySecretNeverLeaks(t *testing.T) {
	p := newInProcess(t)
	base, logs := startServer(t, p)
	issueOut, issueErr, code := p.run("grants", "issue", "--config", p.config, "--resource", "prod-db", "--slack-user", "U0ALICE", "--reason", "canary")
	if code != 0 {
		t.Fatalf("issue: %s %s", issueOut, issueErr)
	}
	if !strings.Contains(issueOut, "wh-secret-") {
		t.Fatalf("the owner did not get the credential: %s", issueOut)
	}
	id := strings.Fields(issueOut)[1][:len("g_")+16]
	p.fake.FailRevokes(1, 500) // a failed attempt writes an error into the grant and the log
	revokeOut, revokeErr, _ := p.run("grants", "revoke", id, "--config", p.config, "--reason", "canary done")
	_, metricsBody := get(t, base+"/metrics")

	var outputs []string
	outputs = append(outputs, issueErr, revokeOut, revokeErr, logs.String(), metricsBody)
	for _, args := range [][]string{
		{"grants", "list", "--config", p.config, "--format", "json"},
		{"grants", "list", "--config", p.config},
		{"audit", "search", "--config", p.config, "--format", "json", "--limit", "1000"},
		{"audit", "search", "--config", p.config, "--format", "csv", "--limit", "1000"},
		{"audit", "export", "--config", p.config},
		{"audit", "verify", "--config", p.config},
	} {
		o, e, _ := p.run(args...)
		outputs = append(outputs, o, e)
	}
	for _, f := range []string{"ab.db", "ab.db-wal"} {
		if b, err := os.ReadFile(filepath.Join(p.dir, f)); err == nil {
			outputs = append(outputs, string(b))
		}
	}
	secret := "wh-secret-" + id
	for i, s := range outputs {
		for _, canary := range []string{secret, e2eToken} {
			if strings.Contains(s, canary) {
				t.Errorf("output %d contains the canary %q:\n%s", i, canary, excerpt(s, canary))
			}
		}
	}
	if !strings.Contains(revokeOut+revokeErr, "revoke") {
		t.Errorf("revoke said nothing: %s %s", revokeOut, revokeErr)
	}
}

func excerpt(s, around string) string {
	i := strings.Index(s, around)
	lo, hi := max(i-200, 0), min(i+200, len(s))
	return string(bytes.ToValidUTF8([]byte(s[lo:hi]), []byte("?")))
}
