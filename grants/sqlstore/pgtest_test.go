package sqlstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// pgEnv names the variable that points the PostgreSQL tests at a server.
const pgEnv = "ACCESSBROKER_TEST_POSTGRES_DSN"

// pgDSN returns the test server's DSN, or skips the test saying how to enable it.
func pgDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(pgEnv)
	if dsn == "" {
		t.Skipf("PostgreSQL tests skipped: set %s, e.g. %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable (.ci/run sets it)", pgEnv, pgEnv)
	}
	return dsn
}

// withParams returns dsn with extra connection parameters, for both the URL and the
// key=value forms.
func withParams(t testing.TB, dsn string, params map[string]string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("%s is not a URL: %v", pgEnv, err)
		}
		q := u.Query()
		for k, v := range params {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	for k, v := range params {
		dsn += " " + k + "=" + v
	}
	return dsn
}

// newPGSchema creates a uniquely named schema for one test and drops it (with everything in
// it) when the test ends. It returns a DSN whose every pooled connection uses that schema
// (search_path is a startup parameter, so no connection can miss it).
func newPGSchema(t testing.TB) string {
	t.Helper()
	base := pgDSN(t)
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	schema := "ab_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to %s: %v (is PostgreSQL running?)", pgEnv, err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return withParams(t, base, map[string]string{"search_path": schema, "pool_max_conns": "4", "application_name": schema})
}

// openPG opens a store on dsn (from newPGSchema) and closes it when the test ends.
func openPG(t testing.TB, dsn string, clock grants.Clock) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(context.Background(), "postgres", dsn, clock, nil)
	if err != nil {
		t.Fatalf("open postgres store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// pgConn opens a plain pgx connection on dsn (its search_path included), closed at the end.
func pgConn(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	// pool_max_conns is a pgxpool setting that a plain connection would send to the server.
	delete(cfg.RuntimeParams, "pool_max_conns")
	c, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}
