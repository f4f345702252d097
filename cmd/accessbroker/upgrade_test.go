package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/accessbroker/accessbroker/fixtures/webhookfake"
	_ "github.com/accessbroker/accessbroker/grants/sqlstore" // registers the "sqlite" database/sql driver
)

// previousRelease is the last commit whose migrations stop at level 0002 (before
// 0003_claimed_index): the release this build upgrades from. TestUpgradeAndRollback builds
// its binary from this repository's history.
const (
	previousRelease      = "aa71367df416ca76c4986319d58f31a2ee6bee65"
	previousReleaseLevel = 2
)

var (
	prevOnce sync.Once
	prevPath string
	prevErr  error
)

// errNoHistory: the checkout has no git history holding previousRelease.
var errNoHistory = errors.New("previous release not in this checkout's history")

// previousBinary builds accessbroker at previousRelease (git archive of that commit, go
// build), once per test run.
func previousBinary(t *testing.T) string {
	t.Helper()
	prevOnce.Do(func() {
		dir, err := os.MkdirTemp("", "accessbroker-prev")
		if err != nil {
			prevErr = err
			return
		}
		src := filepath.Join(dir, "src")
		if err := os.Mkdir(src, 0o755); err != nil {
			prevErr = err
			return
		}
		top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
		if err != nil {
			prevErr = errNoHistory
			return
		}
		// A checkout without that commit (a shallow clone, a source tarball) cannot run
		// this test: skip, saying how to get it, rather than fail a build that is fine.
		probe := exec.Command("git", "cat-file", "-e", previousRelease+"^{commit}")
		probe.Dir = strings.TrimSpace(string(top))
		if probe.Run() != nil {
			prevErr = errNoHistory
			return
		}
		archive := exec.Command("git", "archive", "--format=tar", previousRelease)
		archive.Dir = strings.TrimSpace(string(top))
		var tarball, stderr bytes.Buffer
		archive.Stdout, archive.Stderr = &tarball, &stderr
		if err := archive.Run(); err != nil {
			prevErr = fmt.Errorf("git archive %s (the test needs this repository's history; a shallow clone lacks it: git fetch --unshallow): %v: %s", previousRelease, err, stderr.String())
			return
		}
		untar := exec.Command("tar", "-x", "-C", src)
		untar.Stdin = &tarball
		if out, err := untar.CombinedOutput(); err != nil {
			prevErr = fmt.Errorf("untar: %v: %s", err, out)
			return
		}
		prevPath = filepath.Join(dir, "accessbroker-prev")
		build := exec.Command("go", "build", "-o", prevPath, "./cmd/accessbroker")
		build.Dir = src
		if out, err := build.CombinedOutput(); err != nil {
			prevErr = fmt.Errorf("go build at %s: %v: %s", previousRelease, err, out)
		}
	})
	if errors.Is(prevErr, errNoHistory) {
		t.Skipf("upgrade test skipped: this checkout lacks commit %s, the previous release it builds (a shallow clone? git fetch --unshallow)", previousRelease)
	}
	if prevErr != nil {
		t.Fatalf("build the previous release: %v", prevErr)
	}
	return prevPath
}

// upgradeEnv is one store (SQLite file or PostgreSQL schema) that two binaries take turns on.
type upgradeEnv struct {
	t      *testing.T
	dir    string
	driver string
	dsn    string
	db     *sql.DB // the test's own connection, for the schema level and grant rows
	fake   *webhookfake.Server
	config string
}

func newUpgradeEnv(t *testing.T, driver string) *upgradeEnv {
	t.Helper()
	e := &upgradeEnv{t: t, dir: t.TempDir(), driver: driver, fake: webhookfake.New(e2eToken),
		config: filepath.Join("testdata", "e2e", "upgrade.yaml")}
	t.Cleanup(e.fake.Close)
	switch driver {
	case "sqlite":
		path := filepath.Join(e.dir, "ab.db")
		e.dsn = "file:" + path
		// Opened lazily (the file is created by the previous release), never migrated here.
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatal(err)
		}
		e.db = db
	case "postgres":
		base := os.Getenv(pgTestEnv)
		if base == "" {
			t.Skipf("PostgreSQL upgrade test skipped: set %s, e.g. %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable (.ci/run sets it)", pgTestEnv, pgTestEnv)
		}
		schema := "ab_upgrade_" + randomSuffix(t)
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
		e.dsn = dsnWith(t, base, map[string]string{"search_path": schema})
		cfg, err := pgx.ParseConfig(e.dsn)
		if err != nil {
			t.Fatal(err)
		}
		e.db = stdlib.OpenDB(*cfg)
	}
	t.Cleanup(func() { e.db.Close() })
	return e
}

func (e *upgradeEnv) env(listen string) []string {
	return append(os.Environ(),
		"AB_LISTEN="+listen,
		"AB_STORE_DRIVER="+e.driver,
		"AB_STORE_DSN="+e.dsn,
		"AB_KEY="+filepath.Join(e.dir, "audit.key"),
		"AB_WEBHOOK_URL="+e.fake.URL(),
		"AB_WEBHOOK_TOKEN="+e2eToken,
	)
}

// run runs bin with args to completion and returns its combined output and exit code.
func (e *upgradeEnv) run(bin string, args ...string) (string, int) {
	e.t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = e.env("127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		e.t.Fatalf("run %v: %v", args, err)
	}
	return string(out), 0
}

var grantIDRE = regexp.MustCompile(`g_[a-z0-9]{16}`)

// issue runs `grants issue` with bin for a person and returns the grant id.
func (e *upgradeEnv) issue(bin, slackUser string) string {
	e.t.Helper()
	out, code := e.run(bin, "grants", "issue", "--config", e.config, "--resource", "prod-db", "--slack-user", slackUser,
		"--duration", "1h", "--reason", "upgrade test", "--operator", "tester")
	id := grantIDRE.FindString(out)
	if code != 0 || id == "" {
		e.t.Fatalf("%s grants issue for %s: exit %d:\n%s", filepath.Base(bin), slackUser, code, out)
	}
	return id
}

// level is the highest migration version applied.
func (e *upgradeEnv) level() int {
	e.t.Helper()
	var v int
	if err := e.db.QueryRow(`SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		e.t.Fatalf("read schema level: %v", err)
	}
	return v
}

// dueIn moves the deadline of ids to now+d, while no broker runs: the test cannot move a real
// process's clock, so it brings the deadlines to the clock instead (an hour-long grant whose
// hour has nearly passed). It returns the new deadline.
func (e *upgradeEnv) dueIn(d time.Duration, ids ...string) time.Time {
	e.t.Helper()
	at := time.Now().Add(d).UTC().Truncate(time.Millisecond)
	q := `UPDATE grants SET due_at = ?, expires_at = ? WHERE id = ? AND state = 'active'`
	if e.driver == "postgres" {
		q = `UPDATE grants SET due_at = $1, expires_at = $2 WHERE id = $3 AND state = 'active'`
	}
	for _, id := range ids {
		res, err := e.db.Exec(q, at.UnixMilli(), at.UnixMilli(), id)
		if err != nil {
			e.t.Fatalf("move the deadline of %s: %v", id, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			e.t.Fatalf("move the deadline of %s: %d rows, want 1 active grant", id, n)
		}
	}
	return at
}

// grantRow is what the test checks of a grant row.
type grantRow struct {
	state, cause       string
	expires, revokedAt time.Time
}

func (e *upgradeEnv) grant(id string) grantRow {
	e.t.Helper()
	q := `SELECT state, revoke_cause, expires_at, revoked_at FROM grants WHERE id = ?`
	if e.driver == "postgres" {
		q = strings.Replace(q, "?", "$1", 1)
	}
	var r grantRow
	var exp, rev int64
	if err := e.db.QueryRow(q, id).Scan(&r.state, &r.cause, &exp, &rev); err != nil {
		e.t.Fatalf("read grant %s: %v", id, err)
	}
	r.expires, r.revokedAt = time.UnixMilli(exp).UTC(), time.UnixMilli(rev).UTC()
	return r
}

// serve starts bin's `serve` and waits until it is ready.
func (e *upgradeEnv) serve(bin, name string) *replica {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "serve", "--config", e.config)
	cmd.Env = e.env(addr)
	r := &replica{name: name, cmd: cmd, out: &syncBuffer{}, addr: addr, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = r.out, r.out
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { r.done <- cmd.Wait() }()
	e.t.Cleanup(func() { _ = cmd.Process.Kill() })
	within(e.t, 60*time.Second, name+" to be ready", func() bool {
		select {
		case err := <-r.done:
			e.t.Fatalf("%s exited (%v):\n%s", name, err, r.out.String())
		default:
		}
		return r.status("/readyz") == http.StatusOK
	})
	return r
}

// revokedOnTime waits until the fake shows every id's access removed, and checks each grant
// is recorded revoked (cause expired) at or after its deadline and at most 15 s after it.
func (e *upgradeEnv) revokedOnTime(what string, due time.Time, ids ...string) {
	e.t.Helper()
	within(e.t, 90*time.Second, what, func() bool {
		for _, id := range ids {
			if active, ok := e.fake.Access(id); !ok || active {
				return false
			}
		}
		for _, id := range ids {
			if e.grant(id).state != "revoked" {
				return false
			}
		}
		return true
	})
	for _, id := range ids {
		g := e.grant(id)
		late := g.revokedAt.Sub(g.expires)
		if g.cause != "expired" || !g.expires.Equal(due) || late < 0 || late > 15*time.Second {
			e.t.Errorf("%s: grant %s revoked (%s) at %s, %s after its deadline %s; want cause expired, within [0, 15s] of %s",
				what, id, g.cause, g.revokedAt.Format(time.RFC3339Nano), late, g.expires.Format(time.RFC3339Nano), due.Format(time.RFC3339Nano))
		}
		if issued, revoked := e.fake.Counts(id); issued != 1 || revoked != 1 {
			e.t.Errorf("%s: grant %s issued %d, revoked %d times at the provider, want once each", what, id, issued, revoked)
		}
	}
}

// TestUpgradeAndRollbackWithLiveGrants (issue #15.7): the previous release (migration level
// 0002, built from this repository's history) creates live grants; this build's serve
// migrates the store and revokes the ones that fall due, on time; this build issues more; then
// the previous release's serve runs again on the newer schema (the rollback) and revokes every
// grant still pending, those it wrote and those this build wrote, on time. The audit chain
// verifies with both binaries. On SQLite and on PostgreSQL.
//
// Rollback runs (it does not refuse): migrations are additive, so a previous release keeps
// serving on a newer schema; refusing would stop every revocation exactly when an operator
// rolls back a bad upgrade. See docs/operations.md.
func TestUpgradeAndRollbackWithLiveGrants(t *testing.T) {
	t.Parallel() // its own stores, fake and ports
	cur := accessbrokerBinary(t)
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			prev := previousBinary(t)
			e := newUpgradeEnv(t, driver)
			if out, code := e.run(prev, "audit", "keygen", "--out", filepath.Join(e.dir, "audit.key")); code != 0 {
				t.Fatalf("keygen exit %d: %s", code, out)
			}

			// The previous release: grants written at its schema level.
			first := []string{e.issue(prev, "U0ALICE"), e.issue(prev, "U0BOB")}
			kept := []string{e.issue(prev, "U0CAROL"), e.issue(prev, "U0DAN")}
			if got := e.level(); got != previousReleaseLevel {
				t.Fatalf("the previous release left the schema at level %d, want %d", got, previousReleaseLevel)
			}

			// Upgrade: this build migrates and revokes what falls due.
			due := e.dueIn(6*time.Second, first...)
			newer := e.serve(cur, "upgraded")
			want := len(mustGlob(t, filepath.Join("..", "..", "grants", "sqlstore", "migrations", driver, "*.sql")))
			if got := e.level(); got != want || want <= previousReleaseLevel {
				t.Fatalf("after the upgrade the schema is at level %d, want %d (> %d)", got, want, previousReleaseLevel)
			}
			e.revokedOnTime("the previous release's grants, revoked by this build", due, first...)
			// Grants written by this build, pending at the rollback.
			kept = append(kept, e.issue(cur, "U0ERIN"), e.issue(cur, "U0FRANK"))
			newer.stop(t)

			// Rollback: the previous release on the newer schema.
			due = e.dueIn(6*time.Second, kept...)
			older := e.serve(prev, "rolled back")
			e.revokedOnTime("every pending revocation after the rollback", due, kept...)
			older.stop(t)
			if got := e.level(); got != want {
				t.Errorf("after the rollback the schema is at level %d, want %d (a rollback leaves it)", got, want)
			}
			for _, bin := range []string{prev, cur} {
				if out, code := e.run(bin, "audit", "verify", "--config", e.config); code != 0 {
					t.Errorf("%s audit verify exit %d:\n%s", filepath.Base(bin), code, out)
				}
			}
			for _, r := range []*replica{newer, older} {
				if s := r.out.String(); strings.Contains(s, e2eToken) || strings.Contains(s, "wh-secret-") {
					t.Errorf("%s logged a secret", r.name)
				}
			}
			if driver == "postgres" && !strings.Contains(older.out.String(), "database schema is newer than this build") {
				t.Errorf("the previous release did not log that the schema is newer:\n%s", older.out.String())
			}
		})
	}
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) == 0 {
		t.Fatalf("glob %s: %v (%d files)", pattern, err, len(m))
	}
	return m
}
