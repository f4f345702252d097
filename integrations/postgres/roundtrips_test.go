package postgres

import (
	"context"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/accessbroker/accessbroker/grants"
)

// countingConn counts the writes a client makes: each round trip starts with one.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// countRoundTrips replaces p's pool with one whose connections count their writes.
func countRoundTrips(t *testing.T, p *Provider) *atomic.Int64 {
	t.Helper()
	p.spares.manual = true // the spare goroutine's round trips would be counted too
	cfg := p.pool.Config()
	// No liveness ping of an idle connection: it would add a round trip now and then.
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	writes := &atomic.Int64{}
	var d net.Dialer
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: c, writes: writes}, nil
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	old := p.pool
	p.pool = pool
	old.Close()
	return writes
}

// TestRevokeOfARoleThatOwnsNothingIsShort: a role that owns nothing and holds no privilege
// anywhere (pg_shdepend has nothing for it) is dropped in a handful of round trips on one
// connection (find it; NOLOGIN, membership, terminate, pg_shdepend; terminate again and DROP
// ROLE in one), not the dozen or so of the owned-objects steps, and is gone with its
// sessions.
func TestRevokeOfARoleThatOwnsNothingIsShort(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, Config{})
	writes := countRoundTrips(t, p)
	ctx := context.Background()
	id := grants.NewID("g")
	iss, err := p.Issue(ctx, issueReq(id, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sess, err := pgx.Connect(ctx, fields(iss.Credential)["connection_string"])
	if err != nil {
		t.Fatalf("the grantee cannot connect: %v", err)
	}
	defer sess.Close(context.WithoutCancel(ctx))
	writes.Store(0) // the connection is made and authenticated
	if err := p.Revoke(ctx, revokeReq(id, iss.Handle)); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	t.Logf("round trips: %d", writes.Load())
	// findRoles prepares its statement (2), the rest are one simple query each (2).
	if n := writes.Load(); n > 4 {
		t.Errorf("revoking a role that owns nothing took %d round trips, want at most 4", n)
	}
	var exists bool
	if err := e.super.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", iss.Handle.Key).Scan(&exists); err != nil || exists {
		t.Fatalf("role still exists (%v, %v)", exists, err)
	}
	if err := sess.Ping(ctx); err == nil {
		t.Error("the grantee's session survived the revocation")
	}
}

// TestIssueIsOneRoundTrip: issuing on a warm connection creates and comments the role in one
// round trip (one implicit transaction), not BEGIN, CREATE, COMMENT, COMMIT.
func TestIssueIsOneRoundTrip(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, Config{})
	writes := countRoundTrips(t, p)
	ctx := context.Background()
	if _, err := p.Issue(ctx, issueReq(grants.NewID("g"), time.Hour)); err != nil { // connects
		t.Fatal(err)
	}
	writes.Store(0)
	iss, err := p.Issue(ctx, issueReq(grants.NewID("g"), time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// One for the script, and the pool may ping an idle connection.
	if n := writes.Load(); n > 2 {
		t.Errorf("issuing took %d round trips, want at most 2", n)
	}
	var comment string
	if err := e.super.QueryRow(ctx, "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1", iss.Handle.Key).Scan(&comment); err != nil || !strings.HasPrefix(comment, "accessbroker grant ") {
		t.Errorf("role comment = %q (%v), want it to name the grant", comment, err)
	}
}

// TestPoolIsSizedToTheRevoker: the admin pool holds DefaultMaxConns connections (the
// revoker's default concurrency per provider) unless the DSN says pool_max_conns.
func TestPoolIsSizedToTheRevoker(t *testing.T) {
	for _, tc := range []struct {
		name, dsn string
		want      int32
	}{
		{"default", "postgres://accessbroker:pw@127.0.0.1:5432/app?sslmode=disable", DefaultMaxConns},
		{"dsn says", "postgres://accessbroker:pw@127.0.0.1:5432/app?sslmode=disable&pool_max_conns=5", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Open(context.Background(), Config{AdminDSN: tc.dsn, Roles: []string{"readonly"}}, grants.RealClock{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if got := p.pool.Config().MaxConns; got != tc.want {
				t.Errorf("MaxConns = %d, want %d", got, tc.want)
			}
			if strings.Contains(p.String(), "pw") {
				t.Error("String shows the password")
			}
		})
	}
}

// TestFinalDropWaitsForTheLastSession: the last round trip terminates the role's sessions and
// drops it in one implicit transaction, and DROP ROLE must not run while a session of the
// role is left (a dropped role's session could no longer be signalled by a non-superuser
// admin). The grantee's backend is stopped (SIGSTOP) so that pg_terminate_backend gives up
// after its wait: the drop fails, the role and its login-less session remain, and once the
// backend runs again a revocation ends both. It needs the server on this host.
func TestFinalDropWaitsForTheLastSession(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, Config{})
	ctx := context.Background()
	id := grants.NewID("g")
	iss, err := p.Issue(ctx, issueReq(id, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sess, err := pgx.Connect(ctx, fields(iss.Credential)["connection_string"])
	if err != nil {
		t.Fatalf("the grantee cannot connect: %v", err)
	}
	defer sess.Close(context.WithoutCancel(ctx))
	pid := int(sess.PgConn().PID())
	proc, err := os.FindProcess(pid)
	if err == nil {
		err = proc.Signal(syscall.SIGSTOP)
	}
	if err != nil {
		t.Skipf("cannot stop the grantee's backend %d (server not on this host?): %v", pid, err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := proc.Signal(syscall.SIGCONT); err != nil {
				t.Errorf("resume backend %d: %v", pid, err)
			}
		}
	}
	defer resume()
	var oid uint32
	if err := e.super.QueryRow(ctx, "SELECT oid FROM pg_roles WHERE rolname = $1", iss.Handle.Key).Scan(&oid); err != nil {
		t.Fatal(err)
	}
	// Take the login away first, as dropRole's first round trip does.
	mustExec(t, ctx, e.super, "ALTER ROLE "+quoteIdent(iss.Handle.Key)+" NOLOGIN")
	conn, err := e.super.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = finalDrop(ctx, conn.Conn().PgConn(), revokeReq(id, iss.Handle), grantRole{oid: oid, name: iss.Handle.Key})
	conn.Release()
	if err == nil || !strings.Contains(err.Error(), "still alive") {
		t.Errorf("final drop with a session that survived: err = %v, want a session still alive", err)
	}
	var exists bool
	if err := e.super.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", iss.Handle.Key).Scan(&exists); err != nil || !exists {
		t.Fatalf("the role was dropped while its session was alive (exists %v, %v)", exists, err)
	}
	resume()
	if err := p.Revoke(ctx, revokeReq(id, iss.Handle)); err != nil {
		t.Fatalf("Revoke once the backend runs again: %v", err)
	}
	if err := e.super.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", iss.Handle.Key).Scan(&exists); err != nil || exists {
		t.Fatalf("role still exists after the revocation (%v, %v)", exists, err)
	}
}
