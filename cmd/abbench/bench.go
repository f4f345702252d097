package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/integrations/postgres"
)

const resourceName = "bench-db"

// behindClock is the wall clock held back by a fixed offset. It is the Manager's clock when
// -wait is below grants.MinDuration: a grant of the shortest duration then ends -wait after
// it is issued, in real time, because the Manager dates its issue back by the offset. The
// revocation path (revoker, store, provider, the pg_roles watcher) keeps the wall clock, so
// the deadlines, claims and timers it works with are the real ones. With -wait 1m or more
// the offset is zero.
type behindClock struct{ offset time.Duration }

func (c behindClock) Now() time.Time                        { return grants.RealClock{}.Now().Add(-c.offset) }
func (c behindClock) NewTimer(d time.Duration) grants.Timer { return grants.RealClock{}.NewTimer(d) }

// wall is the real time (the poller's and the report's).
func wall() time.Time { return grants.RealClock{}.Now() }

// bench is one run's world: the throwaway database and roles, the store, the broker parts.
type bench struct {
	o     options
	log   *slog.Logger
	clock behindClock // the Manager's

	superDSN string
	root     *pgx.Conn // superuser, in the server's own database: creates and drops the world
	watch    *pgx.Conn // superuser, polls pg_roles
	db, ro   string
	admin    string
	orphan   string
	pgVer    string

	dir      string
	store    *sqlstore.Store
	provider *postgres.Provider
	manager  *grants.Manager
	revoker  *grants.Revoker
	stop     context.CancelFunc
	stopped  chan struct{}
	made     []string // the temporary roles issued

	prefilled *PrefillStats
	timed     *timedStore // the revoker's view of the store
}

func randomHex() (string, error) {
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random name: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// withDB returns dsn pointing at database db, as user (with password) when user is set.
func withDB(dsn, db, user, password string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", errors.New("-dsn must be a postgres:// URL, e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	}
	u.Path = "/" + db
	if user != "" {
		u.User = url.UserPassword(user, password)
	}
	return u.String(), nil
}

func quote(s string) string { return pgx.Identifier{s}.Sanitize() }

// setup creates the throwaway database and roles and starts the broker parts. On error it
// undoes what it did.
func setup(ctx context.Context, o options, log *slog.Logger) (b *bench, err error) {
	b = &bench{o: o, log: log, superDSN: o.dsn, stopped: make(chan struct{})}
	if o.wait < grants.MinDuration {
		b.clock.offset = grants.MinDuration - o.wait
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.close(context.WithoutCancel(ctx)))
			b = nil
		}
	}()
	r, err := randomHex()
	if err != nil {
		return b, err
	}
	b.db, b.ro, b.admin, b.orphan = "abbench_"+r, "abbench_ro_"+r, "abbench_admin_"+r, "abbench_orphans_"+r
	if b.root, err = pgx.Connect(ctx, o.dsn); err != nil {
		return b, fmt.Errorf("connect to -dsn: %w", scrubDSN(err, o.dsn))
	}
	if err := b.root.QueryRow(ctx, "SHOW server_version").Scan(&b.pgVer); err != nil {
		return b, fmt.Errorf("server version: %w", err)
	}
	if _, err := b.root.Exec(ctx, "CREATE DATABASE "+quote(b.db)); err != nil {
		b.db = "" // not ours to drop
		return b, fmt.Errorf("create database: %w", err)
	}
	adminPW, err := randomHex()
	if err != nil {
		return b, err
	}
	db, ro, admin := quote(b.db), quote(b.ro), quote(b.admin)
	// The least-privilege admin role, as docs/postgres-provider.md says.
	for _, sql := range []string{
		"CREATE ROLE " + ro + " NOLOGIN",
		"GRANT CONNECT ON DATABASE " + db + " TO " + ro,
		"CREATE ROLE " + admin + " LOGIN CREATEROLE INHERIT PASSWORD '" + adminPW + "'",
		"GRANT " + ro + " TO " + admin + " WITH ADMIN OPTION",
		"GRANT CONNECT ON DATABASE " + db + " TO " + admin,
	} {
		if _, err := b.root.Exec(ctx, sql); err != nil {
			return b, fmt.Errorf("set up roles: %w", err)
		}
	}
	watchDSN, err := withDB(o.dsn, b.db, "", "")
	if err != nil {
		return b, err
	}
	if b.watch, err = pgx.Connect(ctx, watchDSN); err != nil {
		return b, fmt.Errorf("connect the pg_roles poller: %w", scrubDSN(err, o.dsn))
	}
	adminDSN, err := withDB(o.dsn, b.db, b.admin, adminPW)
	if err != nil {
		return b, err
	}
	b.provider, err = postgres.New(ctx, postgres.Config{AdminDSN: adminDSN, Roles: []string{b.ro}, OrphanOwner: b.orphan}, grants.RealClock{}, log)
	if err != nil {
		return b, fmt.Errorf("postgres provider: %w", err)
	}
	if b.dir, err = os.MkdirTemp("", "abbench-"); err != nil {
		return b, fmt.Errorf("temporary directory: %w", err)
	}
	if b.store, err = sqlstore.Open(ctx, "sqlite", "file:"+filepath.Join(b.dir, "accessbroker.db"), grants.RealClock{}, log); err != nil {
		return b, fmt.Errorf("open store: %w", err)
	}
	if o.prefillEvents > 0 {
		b.progress("prefilling the store", "grants", o.prefillGrants, "events", o.prefillEvents)
		ps, err := prefill(ctx, b.store, o.prefillGrants, o.prefillEvents, wall())
		if err != nil {
			return b, err
		}
		b.prefilled = &ps
		b.progress("prefilled", "stats", ps)
	}
	providers := map[string]grants.Provider{resourceName: b.provider}
	// As cmd/accessbroker wires them, with the default revoker settings.
	// The revoker's store is timed (and its lags collected) for the breakdown of each
	// revocation phase; the wrapper adds a stopwatch reading per call.
	b.timed = &timedStore{Store: b.store}
	b.revoker = grants.NewRevoker(b.timed, map[string]grants.Provider{resourceName: timedProvider{b.provider, b.timed}},
		grants.RealClock{}, log, grants.RevokerOptions{IdleWait: 15 * time.Second, Metrics: b.timed})
	b.manager = grants.NewManager(b.store, providers, []grants.Resource{{
		Name: resourceName, Provider: postgres.Kind, DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour,
	}}, b.clock, log, grants.ManagerOptions{Wake: b.revoker.Wake, WakeAt: b.revoker.WakeAt, IssueTimeout: time.Minute + b.clock.offset})
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	b.stop = stop
	go func() {
		defer close(b.stopped)
		if err := b.revoker.Run(rctx); err != nil {
			log.Error("revoker stopped", "error", err)
		}
	}()
	return b, nil
}

// scrubDSN keeps the DSN (and its password) out of an error.
func scrubDSN(err error, dsn string) error {
	msg := err.Error()
	if u, perr := url.Parse(dsn); perr == nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "*****")
		}
	}
	return errors.New(strings.ReplaceAll(msg, dsn, "<dsn>"))
}

// close stops the broker parts and drops everything setup created.
func (b *bench) close(ctx context.Context) error {
	var errs []error
	if b.stop != nil {
		b.stop()
		<-b.stopped
	}
	if b.store != nil {
		errs = append(errs, b.store.Close())
	}
	if b.provider != nil {
		b.provider.Close()
	}
	if b.dir != "" {
		errs = append(errs, os.RemoveAll(b.dir))
	}
	if b.watch != nil {
		errs = append(errs, b.watch.Close(ctx))
	}
	if b.root == nil {
		return errors.Join(errs...)
	}
	defer b.root.Close(ctx)
	if b.db != "" {
		if _, err := b.root.Exec(ctx, "DROP DATABASE IF EXISTS "+quote(b.db)+" WITH (FORCE)"); err != nil {
			errs = append(errs, fmt.Errorf("drop database %s: %w", b.db, err))
		}
	}
	// The temporary roles still alive (live grants at the end) are members of ro.
	rows, err := b.root.Query(ctx, `SELECT r.rolname FROM pg_roles r
		JOIN pg_auth_members m ON m.member = r.oid JOIN pg_roles g ON g.oid = m.roleid
		WHERE g.rolname = $1 AND starts_with(r.rolname, 'ab_')`, b.ro)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list leftover roles: %w", err))...)
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		errs = append(errs, fmt.Errorf("list leftover roles: %w", err))
	}
	for _, r := range append(left, b.ro, b.orphan, b.admin) {
		if _, err := b.root.Exec(ctx, "DROP ROLE IF EXISTS "+quote(r)); err != nil {
			errs = append(errs, fmt.Errorf("drop role %s: %w", r, err))
		}
	}
	return errors.Join(errs...)
}

// Report is abbench's output.
type Report struct {
	Setup      Setup         `json:"setup"`
	Prefill    *PrefillStats `json:"prefill,omitempty"`
	Issue1     IssueStats    `json:"issue_1_client"`
	IssueN     IssueStats    `json:"issue_n_clients"`
	Spread     RevokeStats   `json:"revocation_spread"`
	Burst      *BurstStats   `json:"burst,omitempty"`
	RSS        RSS           `json:"rss_mib"`
	StoreCheck StoreCheck    `json:"store_check"`

	made []string // every database and role the run created, for the smoke test
}

// Setup says what was measured where.
type Setup struct {
	Clients         int     `json:"clients"`
	Grants          int     `json:"grants"`
	Burst           int     `json:"burst"`
	WaitS           float64 `json:"wait_s"`
	ManagerBehindS  float64 `json:"manager_clock_behind_s"`
	PostgresVersion string  `json:"postgres_version"`
	GoVersion       string  `json:"go_version"`
	CPUs            int     `json:"cpus"`
}

// IssueStats is one issue phase: Manager.Issue latency (write-ahead, provider, outcome).
type IssueStats struct {
	Clients   int     `json:"clients"`
	N         int     `json:"n"`
	P50MS     float64 `json:"p50_ms"`
	P99MS     float64 `json:"p99_ms"`
	PerSecond float64 `json:"per_second"`
	// GapMS is -issue-gap: each client's pause after each issue.
	GapMS float64 `json:"gap_ms"`
	// PostgresCPUMSPerIssue is the CPU time (user + system, /proc/<pid>/stat) the admin
	// role's PostgreSQL backends spent during the phase, per issue: the issue's statements
	// and any spare roles made meanwhile. Absent when the server's processes cannot be read
	// (another machine).
	PostgresCPUMSPerIssue *float64 `json:"postgres_cpu_ms_per_issue,omitempty"`
}

// RevokeStats is the lag from each grant's deadline to its role's absence from pg_roles.
type RevokeStats struct {
	N     int     `json:"n"`
	Gone  int     `json:"gone"`
	P50MS float64 `json:"lag_p50_ms"`
	P99MS float64 `json:"lag_p99_ms"`
	MaxMS float64 `json:"lag_max_ms"`
	// Early counts roles seen gone before their deadline (must be 0).
	Early int `json:"early"`
	// Breakdown is the revoker's own view of the phase.
	Breakdown Breakdown `json:"breakdown"`
}

// BurstStats is -burst grants due at the same instant.
type BurstStats struct {
	RevokeStats
	FirstGoneMS float64 `json:"first_gone_ms"`
	AllGoneMS   float64 `json:"all_gone_ms"`
	IssueS      float64 `json:"issue_s"`
}

// RSS is the process's resident set (VmRSS) at three moments.
type RSS struct {
	Idle       float64 `json:"idle"`
	Live       float64 `json:"live"`
	LiveGrants int     `json:"live_grants"`
	End        float64 `json:"end"`
	// LiveParts splits Live: what it is made of.
	LiveParts RSSParts `json:"live_parts"`
}

// RSSParts is where the resident set is (MiB): anonymous memory (the Go heap, and SQLite's
// page caches, which modernc.org/sqlite allocates outside it) and file pages (SQLite's
// memory-mapped database file, shared with the kernel's page cache), with the Go runtime's
// own view.
type RSSParts struct {
	Anon        float64 `json:"anon"`
	File        float64 `json:"file"`
	GoHeapInuse float64 `json:"go_heap_inuse"`
	GoSys       float64 `json:"go_sys"`
}

// rssParts reads RssAnon and RssFile from /proc/self/status and the Go runtime's statistics.
func rssParts() (RSSParts, error) {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return RSSParts{}, fmt.Errorf("read RSS: %w", err)
	}
	var p RSSParts
	for line := range strings.Lines(string(raw)) {
		for key, dst := range map[string]*float64{"RssAnon:": &p.Anon, "RssFile:": &p.File} {
			if rest, ok := strings.CutPrefix(line, key); ok {
				f := strings.Fields(rest)
				if len(f) == 2 {
					kb, _ := strconv.ParseFloat(f[0], 64)
					*dst = round(kb / 1024)
				}
			}
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p.GoHeapInuse, p.GoSys = round(float64(ms.HeapInuse)/(1<<20)), round(float64(ms.Sys)/(1<<20))
	return p, nil
}

// writeHeapProfile writes the live heap (after a GC) to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("-memprofile: %w", err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		return fmt.Errorf("-memprofile: %w", err)
	}
	return f.Close()
}

// StoreCheck is what the store says at the end.
type StoreCheck struct {
	Revoked      int `json:"revoked"`
	RevokedEarly int `json:"revoked_before_expiry"`
	RevokeFailed int `json:"revoke_failed_now"`
}

func (b *bench) measure(ctx context.Context) (rep Report, _ error) {
	rep = Report{Setup: Setup{
		Clients: b.o.clients, Grants: b.o.grants, Burst: b.o.burst, WaitS: b.o.wait.Seconds(),
		ManagerBehindS: b.clock.offset.Seconds(), PostgresVersion: b.pgVer, GoVersion: runtime.Version(), CPUs: runtime.NumCPU(),
	}}
	rep.Prefill = b.prefilled
	defer func() { rep.made = append([]string{b.db, b.ro, b.admin, b.orphan}, b.made...) }()
	var err error
	if rep.RSS.Idle, err = rssMiB(); err != nil {
		return rep, err
	}
	if rep.Issue1, _, err = b.issuePhase(ctx, 1, b.o.grants, func(int) grants.IssueInput { return b.input(time.Hour, time.Time{}) }); err != nil {
		return rep, err
	}
	if rep.IssueN, _, err = b.issuePhase(ctx, b.o.clients, b.o.grants, func(int) grants.IssueInput { return b.input(time.Hour, time.Time{}) }); err != nil {
		return rep, err
	}
	b.progress("issued", "one_client", rep.Issue1, "n_clients", rep.IssueN)
	if rep.RSS.Live, err = rssMiB(); err != nil {
		return rep, err
	}
	if rep.RSS.LiveParts, err = rssParts(); err != nil {
		return rep, err
	}
	if b.o.memprofile != "" {
		if err := writeHeapProfile(b.o.memprofile); err != nil {
			return rep, err
		}
	}
	rep.RSS.LiveGrants = 2 * b.o.grants
	if b.o.issueOnly {
		return rep, nil
	}

	// Deadlines spread over issuance: one client, back to back, each grant ending -wait
	// after it was issued, so that later issues overlap earlier expiries.
	err = watching(ctx, b.watch, func(w *watcher) error {
		ttl := max(b.o.wait, grants.MinDuration)
		b.timed.start()
		_, gs, err := b.issuePhase(ctx, 1, b.o.grants, func(int) grants.IssueInput { return b.input(ttl, time.Time{}) })
		for _, g := range gs {
			w.add(g.Handle.Key, g.ExpiresAt)
		}
		if err != nil {
			return err
		}
		last := gs[len(gs)-1].ExpiresAt
		if err := w.waitAll(ctx, last.Add(b.o.timeout)); err != nil {
			return err
		}
		rep.Spread = w.stats()
		rep.Spread.Breakdown = b.timed.stop()
		b.progress("spread revocations done", "stats", rep.Spread)
		return nil
	})
	if err != nil {
		return rep, err
	}

	if b.o.burst > 0 {
		bs, err := b.burstPhase(ctx, rep.IssueN.PerSecond)
		if err != nil {
			return rep, err
		}
		rep.Burst = &bs
	}
	if rep.RSS.End, err = rssMiB(); err != nil {
		return rep, err
	}
	rep.StoreCheck, err = b.storeCheck(ctx, b.o.grants+b.o.burst)
	return rep, err
}

// burstPhase issues -burst grants with -clients clients, all ending at the same instant
// -wait after the estimated end of issuance, and watches them go.
func (b *bench) burstPhase(ctx context.Context, perSecond float64) (BurstStats, error) {
	estimate := time.Duration(float64(b.o.burst)/max(perSecond, 1)*1.5*float64(time.Second)) + time.Second
	deadline := wall().Add(b.o.wait + estimate).Truncate(time.Second).Add(time.Second)
	var bs BurstStats
	err := watching(ctx, b.watch, func(w *watcher) error {
		sw := grants.StartStopwatch()
		b.timed.start()
		_, gs, err := b.issuePhase(ctx, b.o.clients, b.o.burst, func(int) grants.IssueInput { return b.input(4*time.Hour, deadline) })
		issued := sw.Elapsed()
		for _, g := range gs {
			w.add(g.Handle.Key, deadline)
		}
		if err != nil {
			return fmt.Errorf("burst (deadline %s, estimated issuance %s): %w", grants.Timestamp(deadline), estimate, err)
		}
		if err := w.waitAll(ctx, deadline.Add(b.o.timeout)); err != nil {
			return err
		}
		bs = BurstStats{RevokeStats: w.stats(), IssueS: round(issued.Seconds())}
		bs.Breakdown = b.timed.stop()
		first, all := w.span()
		bs.FirstGoneMS, bs.AllGoneMS = ms(first.Sub(deadline)), ms(all.Sub(deadline))
		return nil
	})
	return bs, err
}

// progress says on stderr where the run is.
func (b *bench) progress(msg string, args ...any) {
	if b.o.progress != nil {
		fmt.Fprintln(b.o.progress, append([]any{"abbench:", wall().Format(time.TimeOnly), msg}, args...)...)
	}
}

func (b *bench) input(d time.Duration, capAt time.Time) grants.IssueInput {
	return grants.IssueInput{
		Resource: resourceName, Person: grants.Person{SlackUserID: "UBENCH", Email: "bench@example.com"},
		Duration: d, ExpiresAt: capAt, Reason: "abbench", Actor: audit.Actor{Kind: audit.ActorOperator, ID: "abbench"},
	}
}

// issuePhase issues n grants from clients goroutines and times each Manager.Issue. It returns
// the grants issued (also on error).
func (b *bench) issuePhase(ctx context.Context, clients, n int, in func(i int) grants.IssueInput) (IssueStats, []grants.Grant, error) {

	next := make(chan int)
	var (
		mu   sync.Mutex
		lat  = make([]time.Duration, 0, n)
		out  = make([]grants.Grant, 0, n)
		errs []error
		wg   sync.WaitGroup
	)
	cpu0, cpuErr := b.backendCPU(ctx)
	sw := grants.StartStopwatch()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				one := grants.StartStopwatch()
				g, _, err := b.manager.Issue(ctx, in(i))
				d := one.Elapsed()
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					lat, out = append(lat, d), append(out, g)
				}
				mu.Unlock()
				if b.o.issueGap > 0 {
					select {
					case <-time.After(b.o.issueGap):
					case <-ctx.Done():
					}
				}
			}
		}()
	}
	for i := range n {
		mu.Lock()
		failed := len(errs) > 0
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	elapsed := sw.Elapsed()
	for _, g := range out {
		b.made = append(b.made, g.Handle.Key)
	}
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return IssueStats{}, out, fmt.Errorf("issue with %d clients: %w", clients, err)
	}
	slices.Sort(lat)
	st := IssueStats{Clients: clients, N: n, P50MS: ms(quantile(lat, 0.50)), P99MS: ms(quantile(lat, 0.99)),
		PerSecond: round(float64(n) / elapsed.Seconds()), GapMS: ms(b.o.issueGap)}
	if cpu1, err := b.backendCPU(ctx); err == nil && cpuErr == nil {
		var ticks int64
		for pid, t := range cpu1 {
			ticks += t - cpu0[pid] // a backend started during the phase: all of its time
		}
		per := round(float64(ticks) * 1000 / clockTicks / float64(n))
		st.PostgresCPUMSPerIssue = &per
	}
	return st, out, nil
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's utime and stime (100 on Linux).
const clockTicks = 100

// backendCPU returns the CPU time (utime + stime, in clock ticks) of every PostgreSQL
// backend of the admin role, by pid, read from /proc: the server must run on this machine.
func (b *bench) backendCPU(ctx context.Context) (map[int]int64, error) {
	rows, err := b.root.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE usename = $1`, b.admin)
	if err != nil {
		return nil, fmt.Errorf("admin backends: %w", err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, fmt.Errorf("admin backends: %w", err)
	}
	out := make(map[int]int64, len(pids))
	for _, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return nil, err
		}
		// pid (comm) state ppid … : fields after the closing parenthesis; utime and stime
		// are the 14th and 15th fields of the line.
		_, rest, ok := strings.Cut(string(raw), ") ")
		f := strings.Fields(rest)
		if !ok || len(f) < 13 {
			return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
		}
		ut, err1 := strconv.ParseInt(f[11], 10, 64)
		stime, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
		}
		out[int(pid)] = ut + stime
	}
	return out, nil
}

// storeCheck waits (up to -timeout) until the store has recorded want revocations (a role
// is gone from pg_roles before its outcome is committed) and counts what it says.
func (b *bench) storeCheck(ctx context.Context, want int) (StoreCheck, error) {
	var c StoreCheck
	var revoked []grants.Grant
	giveUp := wall().Add(b.o.timeout)
	for {
		var err error
		revoked, err = b.store.ListGrants(ctx, grants.GrantFilter{States: []grants.State{grants.StateRevoked}})
		if err != nil {
			return c, fmt.Errorf("store check: %w", err)
		}
		revoked = slices.DeleteFunc(revoked, func(g grants.Grant) bool { return strings.HasPrefix(g.Handle.Key, prefillKeyPrefix) })
		if len(revoked) >= want || wall().After(giveUp) {
			break
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return c, ctx.Err()
		case <-t.C:
		}
	}
	for _, g := range revoked {
		c.Revoked++
		if g.RevokeCause == grants.CauseExpired && g.RevokedAt.Before(g.ExpiresAt) {
			c.RevokedEarly++
		}
	}
	failed, err := b.store.ListGrants(ctx, grants.GrantFilter{States: []grants.State{grants.StateRevokeFailed}})
	if err != nil {
		return c, fmt.Errorf("store check: %w", err)
	}
	c.RevokeFailed = len(failed)
	return c, nil
}

// rssMiB reads VmRSS from /proc/self/status.
func rssMiB() (float64, error) {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read RSS: %w", err)
	}
	for line := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "12345 kB"
			kb, err := strconv.ParseFloat(f[0], 64)
			if err != nil || len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("read RSS: unexpected VmRSS line %q", line)
			}
			return round(kb / 1024), nil
		}
	}
	return 0, errors.New("read RSS: no VmRSS line in /proc/self/status")
}

// quantile is the nearest-rank q-quantile of sorted d.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(q*float64(len(d))+0.999999) - 1
	return d[min(max(i, 0), len(d)-1)]
}

func ms(d time.Duration) float64 { return round(float64(d) / float64(time.Millisecond)) }

func round(f float64) float64 { return math.Round(f*10) / 10 }
