package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/fixtures/webhookfake"
)

// binary is the real accessbroker, built once for the tests that run it as a subprocess.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func accessbrokerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "accessbroker-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "accessbroker")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("go build: %s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build accessbroker: %v", buildErr)
	}
	return binPath
}

// e2eEnv is a broker configuration in a temporary directory, wired to a webhook fake.
type e2eEnv struct {
	t      *testing.T
	dir    string
	config string
	fake   *webhookfake.Server
	env    []string
}

const e2eToken = "wh-token-0123456789abcdef"

func newE2E(t *testing.T) *e2eEnv {
	t.Helper()
	bin := accessbrokerBinary(t)
	dir := t.TempDir()
	fake := webhookfake.New(e2eToken)
	t.Cleanup(fake.Close)
	e := &e2eEnv{t: t, dir: dir, config: filepath.Join("testdata", "e2e", "webhook.yaml"), fake: fake}
	e.env = append(os.Environ(),
		"AB_DB="+filepath.Join(dir, "ab.db"),
		"AB_KEY="+filepath.Join(dir, "audit.key"),
		"AB_WEBHOOK_URL="+fake.URL(),
		"AB_WEBHOOK_TOKEN="+e2eToken,
	)
	if out, code := e.run("audit", "keygen", "--out", filepath.Join(dir, "audit.key")); code != 0 {
		t.Fatalf("keygen exit %d: %s", code, out)
	}
	_ = bin
	return e
}

func (e *e2eEnv) command(args ...string) *exec.Cmd {
	cmd := exec.Command(binPath, args...)
	cmd.Env = e.env
	return cmd
}

// run runs the binary to completion and returns its combined output and exit code.
func (e *e2eEnv) run(args ...string) (string, int) {
	e.t.Helper()
	cmd := e.command(args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return out.String(), ee.ExitCode()
		}
		e.t.Fatalf("run %v: %v", args, err)
	}
	return out.String(), 0
}

// within fails the test if ctx's hang guard ends before cond holds. It polls the fake's
// state; the deadline only guards against a hang, it asserts nothing about speed.
func within(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCrashBetweenWriteAheadAndProvider kills the real binary after the grant is written
// ahead and the provider has created access but before it answered; a restarted server
// must revoke the leftover access, and the audit chain must verify.
func TestCrashBetweenWriteAheadAndProvider(t *testing.T) {
	e := newE2E(t)
	e.fake.HoldIssues(true)

	issue := e.command("grants", "issue", "--config", e.config, "--resource", "prod-db", "--slack-user", "U0ALICE",
		"--duration", "1h", "--reason", "crash test", "--operator", "tester")
	var issueOut bytes.Buffer
	issue.Stdout, issue.Stderr = &issueOut, &issueOut
	if err := issue.Start(); err != nil {
		t.Fatal(err)
	}
	var grantID string
	select {
	case grantID = <-e.fake.IssueStarted():
	case <-time.After(30 * time.Second):
		issue.Process.Kill()
		t.Fatalf("the provider was never called; output: %s", issueOut.String())
	}
	if err := issue.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = issue.Wait()
	e.fake.HoldIssues(false)
	if active, ok := e.fake.Access(grantID); !ok || !active {
		t.Fatalf("setup: the fake has no live access for %s", grantID)
	}
	if strings.Contains(issueOut.String(), "wh-secret-") {
		t.Fatal("credential printed by a process that was killed before the provider answered")
	}

	// The grant is durable and still marked issuing.
	out, code := e.run("grants", "list", "--config", e.config, "--state", "issuing")
	if code != 0 || !strings.Contains(out, grantID) {
		t.Fatalf("grants list --state issuing (exit %d) does not show %s:\n%s", code, grantID, out)
	}

	// Restart: serve reconciles and revokes.
	serve := e.command("serve", "--config", e.config)
	var serveOut syncBuffer
	serve.Stdout, serve.Stderr = &serveOut, &serveOut
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	within(t, 30*time.Second, "the leftover access to be revoked", func() bool {
		active, _ := e.fake.Access(grantID)
		return !active
	})
	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := serve.Wait(); err != nil {
		t.Fatalf("serve did not stop cleanly on SIGTERM: %v\n%s", err, serveOut.String())
	}
	out, _ = e.run("grants", "list", "--config", e.config, "--format", "json")
	if !strings.Contains(out, `"state": "revoked"`) || !strings.Contains(out, `"revoke_cause": "issue_interrupted"`) {
		t.Fatalf("grant not recorded as revoked after an interrupted issue:\n%s", out)
	}
	out, code = e.run("audit", "verify", "--config", e.config)
	if code != 0 {
		t.Fatalf("audit verify exit %d:\n%s", code, out)
	}
	for _, s := range []string{serveOut.String(), out} {
		if strings.Contains(s, e2eToken) || strings.Contains(s, "wh-secret-") {
			t.Fatalf("a secret leaked into output:\n%s", s)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a subprocess's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
