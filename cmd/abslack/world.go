package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/accessbroker/accessbroker/fixtures/pdfake"
	"github.com/accessbroker/accessbroker/fixtures/slackfake"
	"github.com/accessbroker/accessbroker/fixtures/webhookfake"
	"github.com/accessbroker/accessbroker/grants"
)

const (
	teamID           = "T0BENCH"
	resourceName     = "bench-db"
	escalationPolicy = "PBENCHEP"
)

// world is one run: the fakes (in this process), the configuration and database in a
// temporary directory, and the accessbroker serve process.
type world struct {
	o   options
	dir string
	db  string // the SQLite file

	slack *slackfake.Server
	pd    *pdfake.Server
	wh    *webhookfake.Server

	signing string
	base    string // http://127.0.0.1:port

	serve   *exec.Cmd
	exited  chan struct{} // closed when serve has exited
	waitErr error
	logFile *os.File
	killed  bool
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// user is the n-th benchmark user (0-based): Slack id, email, PagerDuty id.
func user(n int) (slackID, email, pdID string) {
	return fmt.Sprintf("U0B%06d", n), fmt.Sprintf("bench%06d@example.com", n), fmt.Sprintf("PB%06d", n)
}

const configTemplate = `# written by abslack (cmd/abslack): one webhook resource, auto-approved for whoever is on call
listen: "127.0.0.1:${PORT}"
log_level: warn
store: {driver: sqlite, dsn: "file:${DB}"}
audit: {signing_key_file: "${KEY}", checkpoint_every: 1000, checkpoint_period: 1h}
slack:
  api_url: "${SLACK_API_URL}"
  team_id: ` + teamID + `
  bot_token: "${SLACK_BOT_TOKEN}"
  signing_secret: "${SLACK_SIGNING_SECRET}"
  audit_channel: C0AUDIT
  approvals_channel: C0APPROVALS
pagerduty:
  api_url: "${PD_API_URL}"
  token: "${PD_TOKEN}"
  webhook_secrets: ["${PD_WEBHOOK_SECRET}"]
resources:
  - name: ` + resourceName + `
    provider: webhook
    default_duration: 1h
    max_duration: 4h
    webhook: {url: "${WEBHOOK_URL}", token: "${WEBHOOK_TOKEN}"}
    policy:
      on_call: {escalation_policies: [` + escalationPolicy + `]}
      auto_approve_on_call: true
      approvers: {slack_users: [U0LEAD]}
      min_approvals: 1
identity: {resolve_by_email: true}
`

// setup starts the fakes and the server; on error it undoes what it did.
func setup(ctx context.Context, o options) (w *world, err error) {
	w = &world{o: o, exited: make(chan struct{})}
	defer func() {
		if err != nil {
			err = errors.Join(err, w.close())
			w = nil
		}
	}()
	if w.dir, err = os.MkdirTemp("", "abslack-"); err != nil {
		return w, fmt.Errorf("temporary directory: %w", err)
	}
	w.db = filepath.Join(w.dir, "accessbroker.db")
	secrets := map[string]string{}
	for _, k := range []string{"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "PD_TOKEN", "PD_WEBHOOK_SECRET", "WEBHOOK_TOKEN"} {
		if secrets[k], err = randomHex(16); err != nil {
			return w, err
		}
	}
	secrets["SLACK_BOT_TOKEN"] = "xoxb-" + secrets["SLACK_BOT_TOKEN"]
	w.signing = secrets["SLACK_SIGNING_SECRET"]

	w.slack = slackfake.New(slackfake.Options{Token: secrets["SLACK_BOT_TOKEN"], TeamID: teamID})
	w.slack.AddChannel("C0AUDIT")
	w.slack.AddChannel("C0APPROVALS", "U0LEAD")
	w.slack.AddUser(slackfake.User{ID: "U0LEAD", Name: "lead", Email: "lead@example.com"})
	w.pd = pdfake.New(pdfake.Options{Token: secrets["PD_TOKEN"]})
	w.wh = webhookfake.New(secrets["WEBHOOK_TOKEN"])
	now := wall().UTC()
	var shifts []pdfake.OnCall
	for n := range o.concurrent * (o.rounds + 2) { // two help rounds, then the measured ones
		id, email, pdID := user(n)
		w.slack.AddUser(slackfake.User{ID: id, Name: strings.ToLower(id), Email: email})
		w.pd.AddUser(pdfake.User{ID: pdID, Name: id, Email: email})
		shifts = append(shifts, pdfake.OnCall{UserID: pdID, EscalationPolicyID: escalationPolicy, EscalationPolicyName: "bench primary",
			ScheduleID: "PBENCHSC", ScheduleName: "bench rotation", Level: 1, Start: now.Add(-time.Hour), End: now.Add(8 * time.Hour)})
	}
	w.pd.SetOnCalls(shifts...)

	port, err := freePort()
	if err != nil {
		return w, err
	}
	w.base = "http://127.0.0.1:" + strconv.Itoa(port)
	key := filepath.Join(w.dir, "audit.key")
	vars := map[string]string{
		"PORT": strconv.Itoa(port), "DB": w.db, "KEY": key,
		"SLACK_API_URL": w.slack.APIURL(), "PD_API_URL": w.pd.URL, "WEBHOOK_URL": w.wh.URL(),
	}
	for k, v := range secrets {
		vars[k] = v
	}
	cfg := os.Expand(configTemplate, func(k string) string { return vars[k] })
	cfgPath := filepath.Join(w.dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return w, fmt.Errorf("write config: %w", err)
	}
	if out, err := exec.CommandContext(ctx, o.accessbroker, "audit", "keygen", "--out", key).CombinedOutput(); err != nil {
		return w, fmt.Errorf("accessbroker audit keygen: %w: %s", err, out)
	}

	var logw io.Writer = io.Discard
	if o.serverLog != "" {
		if w.logFile, err = os.OpenFile(o.serverLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600); err != nil {
			return w, fmt.Errorf("-server-log: %w", err)
		}
		logw = w.logFile
	}
	w.serve = exec.Command(o.accessbroker, "serve", "--config", cfgPath)
	w.serve.Stdout, w.serve.Stderr = logw, logw
	if err := w.serve.Start(); err != nil {
		return w, fmt.Errorf("start accessbroker serve: %w", err)
	}
	go func() { w.waitErr = w.serve.Wait(); close(w.exited) }()
	if err := w.waitReady(ctx, 60*time.Second); err != nil {
		return w, err
	}
	return w, nil
}

// wall is the real time (the load generator's; serve keeps its own clock).
func wall() time.Time { return grants.RealClock{}.Now() }

// freePort asks the kernel for a free loopback port (it stays free until serve takes it,
// barring a race with another program).
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls /readyz until it answers 200, serve exits, or d passes.
func (w *world) waitReady(ctx context.Context, d time.Duration) error {
	giveUp := wall().Add(d)
	c := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.base+"/readyz", nil)
		if err != nil {
			return err
		}
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-w.exited:
			return fmt.Errorf("accessbroker serve exited before it was ready: %v (pass -server-log FILE to see why)", w.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if wall().After(giveUp) {
			return fmt.Errorf("accessbroker serve not ready after %s (pass -server-log FILE to see why)", d)
		}
	}
}

// kill ends serve with SIGKILL: nothing is flushed or finished.
func (w *world) kill() error {
	if w.serve == nil || w.serve.Process == nil || w.killed {
		return nil
	}
	w.killed = true
	if err := w.serve.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill serve: %w", err)
	}
	<-w.exited
	return nil
}

// rssMiB is serve's resident set (VmRSS).
func (w *world) rssMiB() (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.serve.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("read serve's RSS: %w", err)
	}
	for line := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			kb, err := strconv.ParseFloat(f[0], 64)
			if err != nil || len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("read serve's RSS: unexpected VmRSS line %q", line)
			}
			return round(kb / 1024), nil
		}
	}
	return 0, errors.New("read serve's RSS: no VmRSS line")
}

// cpuSeconds is the CPU time serve has used (user + system, from /proc/PID/stat), a
// witness that does not depend on the machine's load.
func (w *world) cpuSeconds() (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", w.serve.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("read serve's CPU time: %w", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces: count from after it.
	i := strings.LastIndexByte(string(raw), ')')
	f := strings.Fields(string(raw[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, errors.New("read serve's CPU time: unexpected /proc/PID/stat")
	}
	utime, err1 := strconv.ParseFloat(f[11], 64) // fields 14 and 15 of stat
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("read serve's CPU time: unexpected /proc/PID/stat")
	}
	const ticks = 100 // USER_HZ on Linux
	return (utime + stime) / ticks, nil
}

// close kills serve (if it still runs), stops the fakes and removes the directory.
func (w *world) close() error {
	var errs []error
	if w.serve != nil && w.serve.Process != nil {
		errs = append(errs, w.kill())
	}
	for _, c := range []interface{ Close() }{w.slack, w.pd, w.wh} {
		if c != nil && !isNil(c) {
			c.Close()
		}
	}
	if w.logFile != nil {
		errs = append(errs, w.logFile.Close())
	}
	if w.dir != "" {
		errs = append(errs, os.RemoveAll(w.dir))
	}
	return errors.Join(errs...)
}

func isNil(c interface{ Close() }) bool {
	switch v := c.(type) {
	case *slackfake.Server:
		return v == nil
	case *pdfake.Server:
		return v == nil
	case *webhookfake.Server:
		return v == nil
	}
	return false
}
