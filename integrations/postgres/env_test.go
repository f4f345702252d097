package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/accessbroker/accessbroker/grants"
)

const dsnEnv = "ACCESSBROKER_TEST_POSTGRES_DSN"

// testEnv is one test's private corner of the real server: a database with a table, a
// read-only role, a read-write role (may create tables), and a least-privilege admin role
// made with the SQL from the package doc.
type testEnv struct {
	superDSN string        // the server's superuser DSN, in the test database
	super    *pgxpool.Pool // superuser, connected to the test database
	db       string
	ro, rw   string // granted roles
	admin    string // least-privilege admin role
	adminDSN string
	orphan   string // the orphan owner the test's providers use (created by New)
	spares   string // the prefix of the test's providers' spare roles
}

func randomName(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// withDB returns dsn pointing at database db (and, when user is set, as that user).
func withDB(tb testing.TB, dsn, db, user string) string {
	tb.Helper()
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		tb.Fatalf("%s must be a postgres:// URL", dsnEnv)
	}
	u.Path = "/" + db
	if user != "" {
		u.User = url.UserPassword(user, "admin-pw-"+user)
	}
	return u.String()
}

func mustExec(tb testing.TB, ctx context.Context, pool *pgxpool.Pool, sql string, args ...any) {
	tb.Helper()
	if _, err := pool.Exec(ctx, sql, args...); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
}

// newEnv creates the test's database and roles and drops them (and any role the provider
// left behind) on cleanup.
func newEnv(tb testing.TB) *testEnv {
	tb.Helper()
	dsn := os.Getenv(dsnEnv)
	if dsn == "" {
		tb.Skipf("PostgreSQL provider tests need a server: set %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable (a superuser DSN)", dsnEnv)
	}
	ctx := context.Background()
	root, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatalf("connect to %s: %v", dsnEnv, err)
	}
	defer root.Close(ctx)

	r := randomName(tb)
	e := &testEnv{db: "ab_test_" + r, ro: "abtest_ro_" + r, rw: "abtest_rw_" + r, admin: "abtest_admin_" + r, orphan: "abtest_orphans_" + r, spares: sparePrefix + "t" + r + "_"}
	if _, err := root.Exec(ctx, "CREATE DATABASE "+quoteIdent(e.db)); err != nil {
		tb.Fatalf("create database: %v", err)
	}
	e.superDSN = withDB(tb, dsn, e.db, "")
	e.super, err = pgxpool.New(ctx, e.superDSN)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.cleanup(tb, dsn) })

	db, ro, rw, admin := quoteIdent(e.db), quoteIdent(e.ro), quoteIdent(e.rw), quoteIdent(e.admin)
	for _, sql := range []string{
		"CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)",
		"INSERT INTO items VALUES (1, 'one'), (2, 'two')",
		"CREATE ROLE " + ro + " NOLOGIN",
		"GRANT CONNECT ON DATABASE " + db + " TO " + ro,
		"GRANT USAGE ON SCHEMA public TO " + ro,
		"GRANT SELECT ON items TO " + ro,
		"CREATE ROLE " + rw + " NOLOGIN",
		"GRANT CONNECT ON DATABASE " + db + " TO " + rw,
		"GRANT USAGE, CREATE ON SCHEMA public TO " + rw,
		"GRANT SELECT, INSERT ON items TO " + rw,
		// The least-privilege admin role, exactly as the package doc says.
		"CREATE ROLE " + admin + " LOGIN CREATEROLE INHERIT PASSWORD 'admin-pw-" + e.admin + "'",
		"GRANT " + ro + " TO " + admin + " WITH ADMIN OPTION",
		"GRANT " + rw + " TO " + admin + " WITH ADMIN OPTION",
		"GRANT CONNECT ON DATABASE " + db + " TO " + admin,
	} {
		mustExec(tb, ctx, e.super, sql)
	}
	e.adminDSN = withDB(tb, dsn, e.db, e.admin)
	return e
}

func (e *testEnv) cleanup(tb testing.TB, dsn string) {
	tb.Helper()
	ctx := context.Background()
	e.super.Close()
	root, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Errorf("cleanup: connect: %v", err)
		return
	}
	defer root.Close(ctx)
	if _, err := root.Exec(ctx, "DROP DATABASE IF EXISTS "+quoteIdent(e.db)+" WITH (FORCE)"); err != nil {
		tb.Errorf("cleanup: drop database: %v", err)
	}
	// Roles the provider made for this test (members of its granted roles) and left behind.
	rows, err := root.Query(ctx, `SELECT DISTINCT r.rolname FROM pg_roles r
		JOIN pg_auth_members m ON m.member = r.oid JOIN pg_roles g ON g.oid = m.roleid
		WHERE g.rolname IN ($1, $2) AND starts_with(r.rolname, 'ab_')`, e.ro, e.rw)
	if err != nil {
		tb.Errorf("cleanup: list roles: %v", err)
		return
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Errorf("cleanup: list roles: %v", err)
	}
	// Spare roles a provider did not drop at Close (one made while it closed).
	rows, err = root.Query(ctx, `SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)`, e.spares)
	if err != nil {
		tb.Errorf("cleanup: list spare roles: %v", err)
		return
	}
	spares, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Errorf("cleanup: list spare roles: %v", err)
	}
	left = append(left, spares...)
	for _, r := range append(left, e.ro, e.rw, e.orphan, e.admin) {
		if _, err := root.Exec(ctx, "DROP ROLE IF EXISTS "+quoteIdent(r)); err != nil {
			tb.Errorf("cleanup: drop role %s: %v", r, err)
		}
	}
}

// provider builds a provider on the least-privilege admin role.
func (e *testEnv) provider(tb testing.TB, cfg Config) *Provider {
	tb.Helper()
	return e.providerWithClock(tb, cfg, grants.RealClock{})
}

// providerWithClock is provider on the given clock. Its spare roles are named with the
// test's own prefix (e.spares), so that it never sweeps another test's spares.
func (e *testEnv) providerWithClock(tb testing.TB, cfg Config, clock grants.Clock) *Provider {
	tb.Helper()
	if cfg.AdminDSN == "" {
		cfg.AdminDSN = e.adminDSN
	}
	if cfg.Roles == nil {
		cfg.Roles = []string{e.ro}
	}
	if cfg.OrphanOwner == "" {
		cfg.OrphanOwner = e.orphan
	}
	p, err := New(context.Background(), cfg, clock, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	p.spares.prefix = e.spares // before the first issue starts the spare goroutine
	tb.Cleanup(p.Close)
	return p
}

// roleInfo is what pg_roles says about a role.
type roleInfo struct {
	exists, canLogin bool
	validUntil       time.Time
	connLimit        int
}

func (e *testEnv) role(tb testing.TB, name string) roleInfo {
	tb.Helper()
	var ri roleInfo
	var until *time.Time
	err := e.super.QueryRow(context.Background(),
		`SELECT true, rolcanlogin, rolvaliduntil, rolconnlimit FROM pg_roles WHERE rolname = $1`, name).
		Scan(&ri.exists, &ri.canLogin, &until, &ri.connLimit)
	if err == pgx.ErrNoRows {
		return roleInfo{}
	}
	if err != nil {
		tb.Fatalf("look up role %s: %v", name, err)
	}
	if until != nil {
		ri.validUntil = *until
	}
	return ri
}

// storedVerifier is the SCRAM verifier the server keeps for a role (superuser only).
func (e *testEnv) storedVerifier(tb testing.TB, name string) string {
	tb.Helper()
	var v string
	if err := e.super.QueryRow(context.Background(), `SELECT rolpassword FROM pg_authid WHERE rolname = $1`, name).Scan(&v); err != nil {
		tb.Fatalf("read verifier of %s: %v", name, err)
	}
	return v
}
