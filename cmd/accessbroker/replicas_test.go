package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/fixtures/webhookfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/integrations/webhook"
)

const pgTestEnv = "ACCESSBROKER_TEST_POSTGRES_DSN"

// replicaCluster is several `accessbroker serve` processes on one PostgreSQL schema, wired to
// one webhook fake, plus an in-process store on the same schema for seeding and inspection.
type replicaCluster struct {
	t       *testing.T
	dir     string
	config  string
	baseDSN string // the test server, without schema
	dsn     string // what the replicas use: search_path = schema, application_name = appName
	appName string // the replicas' application_name, to find their backends
	fake    *webhookfake.Server
	store   *sqlstore.Store // the test's own connection (another application_name)
	prov    *webhook.Provider
	// extraEnv is added to every process's environment (the values further ${…} of a test's
	// own config need).
	extraEnv []string

	mu       sync.Mutex
	replicas []*replica
}

// replica is one running `accessbroker serve`.
type replica struct {
	name     string
	cmd      *exec.Cmd
	out      *syncBuffer
	addr     string
	instance string // its claim owner id, read from its "started" log line
	done     chan error
}

func newReplicaCluster(t *testing.T) *replicaCluster {
	t.Helper()
	base := os.Getenv(pgTestEnv)
	if base == "" {
		t.Skipf("PostgreSQL replica test skipped: set %s, e.g. %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable (.ci/run sets it)", pgTestEnv, pgTestEnv)
	}
	accessbrokerBinary(t)
	if !strings.HasPrefix(base, "postgres://") && !strings.HasPrefix(base, "postgresql://") {
		t.Fatalf("%s must be a postgres:// URL for this test", pgTestEnv)
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	schema := "ab_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to %s: %v", pgTestEnv, err)
	}
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	admin.Close(ctx)
	c := &replicaCluster{t: t, dir: t.TempDir(), config: filepath.Join("testdata", "e2e", "replicas.yaml"), baseDSN: base, appName: schema}
	c.dsn = dsnWith(t, base, map[string]string{"search_path": schema, "application_name": schema, "pool_max_conns": "4"})
	c.fake = webhookfake.New(e2eToken)
	// Cleanups run last-in first-out: stop the replicas, close the store, then drop the schema.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	t.Cleanup(c.fake.Close)
	if out, code := c.run("audit", "keygen", "--out", filepath.Join(c.dir, "audit.key")); code != 0 {
		t.Fatalf("keygen exit %d: %s", code, out)
	}
	st, err := sqlstore.Open(ctx, "postgres", dsnWith(t, c.dsn, map[string]string{"application_name": schema + "_test"}), grants.RealClock{}, nil)
	if err != nil {
		t.Fatalf("open the test's store: %v", err)
	}
	c.store = st
	t.Cleanup(func() { st.Close() })
	c.prov, err = webhook.New(webhook.Config{URL: c.fake.URL(), Token: e2eToken}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.killAll)
	t.Cleanup(c.dumpErrorsOnFailure)
	return c
}

func dsnWith(t *testing.T, dsn string, params map[string]string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for k, v := range params {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func (c *replicaCluster) env(listen string) []string {
	return append(append(os.Environ(),
		"AB_LISTEN="+listen,
		"AB_PG_DSN="+c.dsn,
		"AB_KEY="+filepath.Join(c.dir, "audit.key"),
		"AB_WEBHOOK_URL="+c.fake.URL(),
		"AB_WEBHOOK_TOKEN="+e2eToken,
	), c.extraEnv...)
}

// run runs a one-shot sub-command to completion.
func (c *replicaCluster) run(args ...string) (string, int) {
	c.t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = c.env("127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		c.t.Fatalf("run %v: %v", args, err)
	}
	return string(out), 0
}

var startedRE = regexp.MustCompile(`"replica":"(i_[a-z0-9]+)".*"msg":"started"|"msg":"started".*"replica":"(i_[a-z0-9]+)"`)

// start launches one more replica and waits until it answers /readyz.
func (c *replicaCluster) start(name string) *replica {
	c.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	began := time.Now()
	cmd := exec.Command(binPath, "serve", "--config", c.config)
	cmd.Env = c.env(addr)
	r := &replica{name: name, cmd: cmd, out: &syncBuffer{}, addr: addr, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = r.out, r.out
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { r.done <- cmd.Wait() }()
	c.mu.Lock()
	c.replicas = append(c.replicas, r)
	c.mu.Unlock()
	within(c.t, 45*time.Second, name+" to be ready", func() bool {
		select {
		case err := <-r.done:
			c.t.Fatalf("%s exited early (%v):\n%s", name, err, r.out.String())
		default:
		}
		return r.status("/readyz") == http.StatusOK
	})
	m := startedRE.FindStringSubmatch(r.out.String())
	if m == nil {
		c.t.Fatalf("%s logged no instance id:\n%s", name, r.out.String())
	}
	r.instance = m[1] + m[2]
	c.t.Logf("%s ready after %s", name, time.Since(began).Round(time.Millisecond))
	return r
}

func (r *replica) status(path string) int {
	resp, err := http.Get("http://" + r.addr + path)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// revokedTotal reads accessbroker_grants_revoked_total for the webhook provider from /metrics.
func (r *replica) revokedTotal(t *testing.T) int {
	t.Helper()
	resp, err := http.Get("http://" + r.addr + "/metrics")
	if err != nil {
		t.Fatalf("%s /metrics: %v", r.name, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `accessbroker_grants_revoked_total{provider="webhook"} `); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s /metrics: %q", r.name, sc.Text())
			}
			return int(n)
		}
	}
	return 0
}

// stop ends a replica with SIGTERM and requires a clean exit.
func (r *replica) stop(t *testing.T) {
	t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", r.name, err)
	}
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("%s did not stop cleanly: %v\n%s", r.name, err, r.out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not stop within 30s of SIGTERM", r.name)
	}
}

// kill ends a replica with SIGKILL, as a crash would.
func (r *replica) kill(t *testing.T) {
	t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL %s: %v", r.name, err)
	}
	<-r.done
}

func (c *replicaCluster) killAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.replicas {
		// Kill of a process already waited for fails harmlessly (os.ErrProcessDone); reading
		// cmd.ProcessState here would race with the goroutine that waits for it.
		_ = r.cmd.Process.Kill()
	}
}

// seed creates n grants of prod-db that all fall due dueIn after the access exists: the access
// is created at the webhook fake through the real provider (as a broker would), then the grant
// rows and their grant.issued events are written to the shared store. It returns the ids and
// the due time.
func (c *replicaCluster) seed(n int, dueIn time.Duration) ([]string, time.Time) {
	c.t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	provisional := now.Add(time.Hour) // told to the provider; the broker's own deadline is due
	gs := make([]*grants.Grant, n)
	var wg sync.WaitGroup
	work := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range work {
				g := &grants.Grant{ID: grants.NewID("g"), Resource: "prod-db", Provider: "webhook",
					Person: grants.Person{SlackTeamID: "T0ACME", SlackUserID: fmt.Sprintf("U%05d", i), Email: fmt.Sprintf("user%d@example.com", i)},
					State:  grants.StateActive, Reason: "replica test", CreatedAt: now, IssuedAt: now}
				iss, err := c.prov.Issue(ctx, grants.IssueRequest{GrantID: g.ID, Resource: g.Resource, Person: g.Person, ExpiresAt: provisional, Reason: g.Reason})
				if err != nil {
					c.t.Errorf("issue at the fake: %v", err)
					continue
				}
				g.Handle = iss.Handle
				gs[i] = g
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if c.t.Failed() {
		c.t.FailNow()
	}
	ids := make([]string, 0, n)
	actor := audit.Actor{Kind: audit.ActorSystem, ID: "replicas-test"}
	due := time.Now().Add(dueIn).UTC().Truncate(time.Millisecond)
	for i := 0; i < n; i += 100 {
		ch := &grants.Change{}
		for _, g := range gs[i:min(i+100, n)] {
			g.ExpiresAt, g.DueAt = due, due
			ch.Grants = append(ch.Grants, grants.GrantWrite{Grant: g, Create: true})
			ch.Events = append(ch.Events, grants.NewGrantEvent(now, actor, audit.ActionGrantIssued, g, g.Reason, nil))
			ids = append(ids, g.ID)
		}
		if err := c.store.Apply(ctx, ch); err != nil {
			c.t.Fatalf("seed grants: %v", err)
		}
	}
	return ids, due
}

// revokedCount counts how many of ids the store records as revoked.
func (c *replicaCluster) revokedCount(ids map[string]bool) int {
	c.t.Helper()
	all, err := c.store.ListGrants(context.Background(), grants.GrantFilter{States: []grants.State{grants.StateRevoked}})
	if err != nil {
		c.t.Logf("list revoked grants: %v", err)
		return -1
	}
	n := 0
	for _, g := range all {
		if ids[g.ID] {
			n++
		}
	}
	return n
}

// answeredRevokes counts, per grant id, the /revoke calls the fake answered.
func (c *replicaCluster) answeredRevokes() map[string]int {
	out := map[string]int{}
	for _, call := range c.fake.Calls() {
		if call.Path == "/revoke" && call.Status != 0 {
			out[call.GrantID]++
		}
	}
	return out
}

// terminateBackends ends every PostgreSQL session of the replicas (not the test's own), as a
// database restart or failover would, and returns how many it ended.
func (c *replicaCluster) terminateBackends() int {
	c.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.baseDSN)
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, c.appName).Scan(&n); err != nil {
		c.t.Fatalf("terminate backends: %v", err)
	}
	return n
}

// backends counts the replicas' live PostgreSQL sessions.
func (c *replicaCluster) backends() int {
	c.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.baseDSN)
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, c.appName).Scan(&n); err != nil {
		c.t.Fatal(err)
	}
	return n
}

func set(ids []string) map[string]bool {
	m := make(map[string]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// TestReplicasOnPostgres is the scale-out must-show, sized for CI: three real `accessbroker
// serve` processes share one PostgreSQL schema.
//
//  1. 1,000 grants expire together. One replica is killed with SIGKILL mid-sweep while it
//     holds claims. Every grant ends revoked, its access removed exactly once at the
//     provider and one grant.revoked event recorded; only grants the dead replica held can
//     have seen a second (no-op) provider call, after its lease lapsed. Meanwhile `grants
//     issue` processes append to the same chain.
//  2. A replacement replica starts with 300 overdue grants, and every broker backend is
//     terminated (pg_terminate_backend, twice) mid-sweep, as in a database restart: the
//     revocations resume and all complete; /readyz is green again.
//
// Then every replica stops cleanly and `audit verify` passes over the one chain.
func TestReplicasOnPostgres(t *testing.T) {
	c := newReplicaCluster(t)
	c.fake.SetLatency(0)

	// Phase 1: 1,000 grants expiring together, three replicas, one killed mid-sweep.
	const n1 = 1000
	wave1, due := c.seed(n1, 3*time.Second)
	reps := []*replica{c.start("replica-1"), c.start("replica-2"), c.start("replica-3")}
	if now := time.Now(); now.After(due) {
		t.Logf("note: replicas were ready %s after the grants fell due", now.Sub(due))
	}
	c.fake.SetLatency(100 * time.Millisecond)

	// Other processes append to the same chain while the sweep runs.
	var issuers sync.WaitGroup
	issueOut := make([]string, 4)
	issueCode := make([]int, 4)
	for i := range issueOut {
		issuers.Go(func() {
			issueOut[i], issueCode[i] = c.run("grants", "issue", "--config", c.config, "--resource", "prod-db", "--slack-user", "U0ALICE",
				"--duration", "1h", "--reason", fmt.Sprintf("replica test writer %d", i), "--operator", "tester")
		})
	}

	within(t, 45*time.Second, "300 revocations before the kill", func() bool {
		n := 0
		for _, k := range c.answeredRevokes() {
			n += k
		}
		return n >= 300
	})
	// Kill the replica holding the most claims, so the kill really interrupts work.
	live, err := c.store.ListGrants(context.Background(), grants.GrantFilter{States: []grants.State{grants.StateActive}})
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]int{}
	for _, g := range live {
		held[g.ClaimedBy]++
	}
	victim := reps[0]
	for _, r := range reps {
		if held[r.instance] > held[victim.instance] {
			victim = r
		}
	}
	victim.kill(t)
	orphaned := map[string]bool{} // grants the dead replica held: claimed, not recorded
	live, err = c.store.ListGrants(context.Background(), grants.GrantFilter{States: []grants.State{grants.StateActive, grants.StateRevoking, grants.StateRevokeFailed}})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range live {
		if g.ClaimedBy == victim.instance {
			orphaned[g.ID] = true
		}
	}
	if len(orphaned) == 0 {
		t.Fatalf("%s held no claims when killed; the kill did not interrupt a sweep", victim.name)
	}
	var survivors []*replica
	for _, r := range reps {
		if r != victim {
			survivors = append(survivors, r)
		}
	}
	ids1 := set(wave1)
	within(t, 60*time.Second, "every grant of phase 1 to be revoked", func() bool { return c.revokedCount(ids1) == n1 })
	issuers.Wait()

	answered := c.answeredRevokes()
	twice := 0
	for _, id := range wave1 {
		issued, revoked := c.fake.Counts(id)
		active, _ := c.fake.Access(id)
		if issued != 1 || revoked != 1 || active {
			t.Errorf("grant %s: issued %d, revoked %d, still active %v; want access created and removed exactly once", id, issued, revoked, active)
		}
		switch calls := answered[id]; {
		case calls == 1:
		case calls == 2 && orphaned[id]:
			twice++
		default:
			t.Errorf("grant %s: %d answered revoke calls (held by the killed replica: %v)", id, calls, orphaned[id])
		}
	}
	for i, r := range survivors {
		if got := r.revokedTotal(t); got == 0 {
			t.Errorf("survivor %d (%s) revoked nothing: the sweep was not spread over the replicas", i, r.name)
		}
	}
	t.Logf("phase 1: %d grants revoked by 3 replicas; %s killed holding %d claims; %d of those saw a second, no-op call after the lease lapsed",
		n1, victim.name, len(orphaned), twice)
	for i := range issueOut {
		if issueCode[i] != 0 {
			t.Errorf("grants issue %d exit %d:\n%s", i, issueCode[i], issueOut[i])
		}
	}

	// Phase 2: a replacement replica and a simulated database restart under load.
	c.fake.SetLatency(0)
	wave2, _ := c.seed(300, 0) // overdue by the time the replacement starts
	c.fake.SetLatency(50 * time.Millisecond)
	reps = append(survivors, c.start("replica-4"))
	ids2 := set(wave2)
	within(t, 45*time.Second, "phase 2 revocations to start", func() bool {
		calls := c.answeredRevokes()
		n := 0
		for id := range ids2 {
			n += calls[id]
		}
		return n >= 60
	})
	if killed := c.terminateBackends(); killed == 0 {
		t.Fatal("found no replica backend to terminate")
	}
	// Once the replicas have reconnected, end their sessions again (a flapping database).
	within(t, 30*time.Second, "the replicas to reconnect", func() bool { return c.backends() > 0 })
	c.terminateBackends()
	within(t, 60*time.Second, "every grant of phase 2 to be revoked after the outage", func() bool { return c.revokedCount(ids2) == len(wave2) })
	for _, id := range wave2 {
		if issued, revoked := c.fake.Counts(id); issued != 1 || revoked != 1 {
			t.Errorf("grant %s: issued %d, revoked %d; want exactly once each", id, issued, revoked)
		}
	}
	for _, r := range reps {
		t.Logf("%s after the outage: %d error lines logged", r.name, strings.Count(r.out.String(), `"level":"ERROR"`))
		if os.Getenv("AB_DEBUG_REPLICAS") != "" {
			t.Logf("%s log:\n%s", r.name, r.out.String())
		}
		within(t, 15*time.Second, r.name+" /readyz green after the outage", func() bool { return r.status("/readyz") == http.StatusOK })
	}

	// One revocation record per grant, and one intact chain.
	revokedEvents := map[string]int{}
	var after int64
	for {
		evs, err := c.store.ReadEvents(context.Background(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			break
		}
		for _, e := range evs {
			if e.Action == audit.ActionGrantRevoked {
				revokedEvents[e.GrantID]++
			}
		}
		after = evs[len(evs)-1].Seq
	}
	for _, id := range append(append([]string(nil), wave1...), wave2...) {
		if revokedEvents[id] != 1 {
			t.Errorf("grant %s has %d grant.revoked events, want 1", id, revokedEvents[id])
		}
	}
	for _, r := range reps {
		r.stop(t)
	}
	out, code := c.run("audit", "verify", "--config", c.config)
	if code != 0 {
		t.Fatalf("audit verify exit %d:\n%s", code, out)
	}
	t.Logf("audit verify: %s", strings.TrimSpace(out))
	for _, r := range append(reps, victim) {
		if s := r.out.String(); strings.Contains(s, e2eToken) || strings.Contains(s, "wh-secret-") {
			t.Errorf("%s logged a secret", r.name)
		}
	}
}

// dumpErrorsOnFailure logs the replicas' warning and error lines when the test failed, so a
// failure in CI can be understood from its output alone.
func (c *replicaCluster) dumpErrorsOnFailure() {
	if !c.t.Failed() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.replicas {
		n := 0
		for _, line := range strings.Split(r.out.String(), "\n") {
			if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"level":"WARN"`) {
				c.t.Logf("%s: %s", r.name, line)
				if n++; n == 20 {
					break
				}
			}
		}
	}
}
