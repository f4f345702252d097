package demo

// prod-db on a local PostgreSQL: the throwaway database and role, and alice using her login.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// demoPG is the throwaway database and group role the demo made on a local PostgreSQL.
type demoPG struct {
	baseDSN  string // where the database was created (dropped from there)
	adminDSN string // the throwaway database, for the postgres provider
	password string // of adminDSN, masked in the transcript
	db, role string
	where    string // host:port, for the transcript
	version  string
}

// setupDemoPostgres connects to the demo's PostgreSQL (1 s timeout) and creates a throwaway
// database with a table and a read-only group role. It returns nil and the reason when there
// is no usable PostgreSQL.
func setupDemoPostgres(ctx context.Context, suffix string) (*demoPG, string) {
	dsn, from := os.Getenv(PostgresEnv), PostgresEnv
	if dsn == "" {
		dsn, from = demoDefaultPostgresDSN, "the default "+demoDefaultPostgresDSN
	}
	if strings.EqualFold(dsn, "none") {
		return nil, PostgresEnv + "=none"
	}
	pc, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Sprintf("%s is not a PostgreSQL connection string (%s)", PostgresEnv, firstLine(err.Error(), 120))
	}
	where := fmt.Sprintf("%s:%d", pc.Host, pc.Port)
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	conn, err := pgx.Connect(cctx, dsn)
	cancel()
	if err != nil {
		return nil, fmt.Sprintf("no PostgreSQL answered at %s (from %s) within 1 s: %s", where, from, firstLine(scrubPassword(err.Error(), pc.Password), 160))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	p := &demoPG{baseDSN: dsn, db: "accessbroker_demo_" + suffix, role: "demo_readonly_" + suffix, where: where, password: pc.Password}
	_ = conn.QueryRow(ctx, "SHOW server_version").Scan(&p.version)
	fail := func(what string, err error) (*demoPG, string) {
		p.drop(context.WithoutCancel(ctx))
		return nil, fmt.Sprintf("the PostgreSQL at %s (from %s) answered, but %s failed: %s", where, from, what, firstLine(scrubPassword(err.Error(), pc.Password), 160))
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{p.db}.Sanitize()); err != nil {
		return fail("CREATE DATABASE", err)
	}
	if _, err := conn.Exec(ctx, "CREATE ROLE "+pgx.Identifier{p.role}.Sanitize()+" NOLOGIN"); err != nil {
		return fail("CREATE ROLE", err)
	}
	p.adminDSN = withDatabase(dsn, p.db)
	dbc, err := pgx.Connect(ctx, p.adminDSN)
	if err != nil {
		return fail("connecting to the new database", err)
	}
	defer dbc.Close(context.WithoutCancel(ctx))
	role, db := pgx.Identifier{p.role}.Sanitize(), pgx.Identifier{p.db}.Sanitize()
	for _, stmt := range []string{
		"CREATE TABLE replication_status (replica text PRIMARY KEY, lag_seconds numeric NOT NULL)",
		"INSERT INTO replication_status VALUES ('replica-1', 0.4), ('replica-2', 37.2)",
		"GRANT CONNECT ON DATABASE " + db + " TO " + role,
		"GRANT USAGE ON SCHEMA public TO " + role,
		"GRANT SELECT ON ALL TABLES IN SCHEMA public TO " + role,
	} {
		if _, err := dbc.Exec(ctx, stmt); err != nil {
			return fail("setting up the demo table", err)
		}
	}
	return p, ""
}

// withDatabase returns dsn pointing at database db.
func withDatabase(dsn, db string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			u.Path, u.RawPath = "/"+db, ""
			return u.String()
		}
	}
	return dsn + " dbname=" + db // key=value: a later key wins
}

func scrubPassword(s, password string) string {
	if password == "" {
		return s
	}
	return strings.ReplaceAll(s, password, Mask)
}

// drop removes the database, any login role the provider left behind (none, normally: every
// grant is revoked before the demo ends) and the group role. It returns the leftovers dropped.
func (p *demoPG) drop(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.baseDSN)
	if err != nil {
		return nil, fmt.Errorf("connect to drop %s: %s", p.db, scrubPassword(err.Error(), p.password))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var leftovers []string
	rows, err := conn.Query(ctx, `SELECT m.rolname FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member
		JOIN pg_roles g ON g.oid = a.roleid WHERE g.rolname = $1 AND m.rolname LIKE 'ab\_%'`, p.role)
	if err == nil {
		leftovers, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	var errs []error
	if err != nil {
		errs = append(errs, fmt.Errorf("list login roles left in %s: %w", p.role, err))
	}
	var num int
	_ = conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&num)
	db := pgx.Identifier{p.db}.Sanitize()
	if num >= 130000 {
		_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)")
	} else {
		_, _ = conn.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", p.db)
		_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("drop database %s: %w", p.db, err))
	}
	for _, r := range append(leftovers, p.role) {
		if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize()); err != nil {
			errs = append(errs, fmt.Errorf("drop role %s: %w", r, err))
		}
	}
	return leftovers, errors.Join(errs...)
}

var demoConnRE = regexp.MustCompile(`postgres(?:ql)?://\S+`)

// useDatabase connects with the connection string alice received, as she would. Before the
// revocation a refusal is reported but not fatal (the local server's pg_hba.conf may not allow
// password logins from 127.0.0.1); after it, a login that still works is a failure, and the
// role's absence is checked in the catalogue.
func (d *demo) useDatabase(ctx context.Context, delivered string, beforeRevocation bool) error {
	cs := demoConnRE.FindString(delivered)
	pc, err := pgconn.ParseConfig(cs)
	if cs == "" || err != nil {
		return errors.New("no connection string in the delivered message")
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, cs)
	if err == nil {
		var user string
		var lag float64
		qerr := conn.QueryRow(cctx, "SELECT current_user, max(lag_seconds)::float8 FROM replication_status").Scan(&user, &lag)
		switch {
		case !beforeRevocation:
			conn.Close(context.WithoutCancel(ctx))
			d.say("alice's old connection string still logs in as %s", pc.User)
			return fmt.Errorf("the revoked PostgreSQL login %s still works", pc.User)
		case qerr != nil:
			conn.Close(context.WithoutCancel(ctx))
			d.say("alice logs in as %s, but the query fails: %s", user, firstLine(qerr.Error(), 200))
		default:
			d.say("alice connects with it (TLS, to the broker's session proxy at %s): logged in to %s as %s;\n  SELECT max(lag_seconds) FROM replication_status → %.1f s\n  (she leaves the session open)",
				net.JoinHostPort(pc.Host, fmt.Sprint(pc.Port)), d.pg.db, user, lag)
			d.pgSession = conn // kept open: the proxy must cut it at expiry
		}
		return nil
	}
	if beforeRevocation {
		d.say("alice tries the connection string, but it is refused (does pg_hba.conf allow the proxy's password logins from %s?):\n    %s",
			pc.Host, pgMessage(err))
		return nil
	}
	d.say("alice tries the same connection string again: the proxy refuses it:\n    %s", pgMessage(err))
	admin, err := pgx.Connect(cctx, d.pg.baseDSN)
	if err != nil {
		return fmt.Errorf("connect to check that %s is gone: %s", pc.User, scrubPassword(err.Error(), d.pg.password))
	}
	defer admin.Close(context.WithoutCancel(ctx))
	var n int
	if err := admin.QueryRow(cctx, "SELECT count(*) FROM pg_roles WHERE rolname = $1", pc.User).Scan(&n); err != nil {
		return fmt.Errorf("check that %s is gone: %w", pc.User, err)
	}
	if n != 0 {
		return fmt.Errorf("the login role %s still exists after its grant was revoked", pc.User)
	}
	d.outcome("the login role %s no longer exists in PostgreSQL", pc.User)
	return nil
}

// pgMessage is the server's own words when there are some (they name no password).
func pgMessage(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s: %s (SQLSTATE %s)", pe.Severity, pe.Message, pe.Code)
	}
	return firstLine(err.Error(), 200)
}
