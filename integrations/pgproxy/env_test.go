package pgproxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/integrations/pgproxy"
	"github.com/accessbroker/accessbroker/integrations/postgres"
)

const dsnEnv = "ACCESSBROKER_TEST_POSTGRES_DSN"

const resource = "prod-db"

var alice = grants.Person{SlackTeamID: "T0TEAM", SlackUserID: "U0ALICE", Email: "alice@example.com"}

// env is one test's proxy in front of its own database on the real server, with a real
// store (SQLite), a grants.Manager issuing through the postgres provider in proxy mode, and a
// fake clock.
type env struct {
	t        testing.TB
	super    *pgxpool.Pool // superuser, in the test database
	db       string
	rw       string // the granted role
	clock    *clocktest.Fake
	store    *sqlstore.Store
	manager  *grants.Manager
	proxy    *pgproxy.Proxy
	addr     string // the proxy's host:port
	events   *eventTap
	stop     context.CancelFunc
	served   chan error
	provider *postgres.Provider
	key      []byte
	orphan   string
}

// eventTap passes events to the manager and tells waiting tests about them. fail, when set,
// makes Record fail (the audit log is down).
type eventTap struct {
	next pgproxy.Recorder
	mu   sync.Mutex
	seen []audit.Event
	cond chan struct{} // closed and replaced on each new event
	fail func(e *audit.Event) bool
	// discard, for benchmarks, drops statement events instead of writing them (counting
	// them only), to tell the relay's cost from the audit store's.
	discard   bool
	discarded int
}

func (r *eventTap) Record(ctx context.Context, events ...*audit.Event) error {
	r.mu.Lock()
	fail := r.fail
	r.mu.Unlock()
	for _, e := range events {
		if fail != nil && fail(e) {
			return errors.New("audit store unreachable (test)")
		}
	}
	r.mu.Lock()
	discard := r.discard
	r.mu.Unlock()
	if discard {
		kept := events[:0:0]
		for _, e := range events {
			if e.Action != audit.ActionSessionStatement {
				kept = append(kept, e)
			}
		}
		r.mu.Lock()
		r.discarded += len(events) - len(kept)
		r.mu.Unlock()
		events = kept
	}
	if len(events) == 0 {
		return nil
	}
	if err := r.next.Record(ctx, events...); err != nil {
		return err
	}
	r.mu.Lock()
	for _, e := range events {
		r.seen = append(r.seen, *e)
	}
	close(r.cond)
	r.cond = make(chan struct{})
	r.mu.Unlock()
	return nil
}

func (r *eventTap) setFail(f func(e *audit.Event) bool) {
	r.mu.Lock()
	r.fail = f
	r.mu.Unlock()
}

// waitFor returns the recorded events once one matches, or fails the test at the deadline.
func (r *eventTap) waitFor(t testing.TB, what string, match func(audit.Event) bool) audit.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		r.mu.Lock()
		for _, e := range r.seen {
			if match(e) {
				r.mu.Unlock()
				return e
			}
		}
		c := r.cond
		r.mu.Unlock()
		select {
		case <-c:
		case <-ctx.Done():
			t.Fatalf("no audit event %s within 20s", what)
		}
	}
}

// session returns the events of one session, in chain order.
func (r *eventTap) session(id string) []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []audit.Event
	for _, e := range r.seen {
		if e.Evidence["session_id"] == id {
			out = append(out, e)
		}
	}
	return out
}

func randomName(t testing.TB) string {
	t.Helper()
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func withDB(t testing.TB, dsn, db string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		t.Fatalf("%s must be a postgres:// URL", dsnEnv)
	}
	u.Path = "/" + db
	return u.String()
}

func quote(s string) string { return pgx.Identifier{s}.Sanitize() }

// envOption changes the proxied resource's upstream settings.
type envOption func(*pgproxy.Upstream)

// recordingParameters makes the resource record bind values.
func recordingParameters(u *pgproxy.Upstream) { u.RecordParameters = true }

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	dsn := os.Getenv(dsnEnv)
	if dsn == "" {
		t.Skipf("the PostgreSQL proxy tests need a server: set %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable (a superuser DSN)", dsnEnv)
	}
	ctx := context.Background()
	root, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", dsnEnv, err)
	}
	defer root.Close(ctx)
	r := randomName(t)
	e := &env{t: t, db: "ab_proxy_" + r, rw: "abproxy_rw_" + r, orphan: "abproxy_orphans_" + r}
	if _, err := root.Exec(ctx, "CREATE DATABASE "+quote(e.db)); err != nil {
		t.Fatalf("create database: %v", err)
	}
	superDSN := withDB(t, dsn, e.db)
	e.super, err = pgxpool.New(ctx, superDSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.cleanup(dsn) })
	for _, sql := range []string{
		"CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)",
		"INSERT INTO items VALUES (1, 'one'), (2, 'two')",
		"CREATE ROLE " + quote(e.rw) + " NOLOGIN",
		"GRANT CONNECT ON DATABASE " + quote(e.db) + " TO " + quote(e.rw),
		"GRANT USAGE ON SCHEMA public TO " + quote(e.rw),
		"GRANT SELECT, INSERT ON items TO " + quote(e.rw),
	} {
		if _, err := e.super.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}

	e.clock = clocktest.New(grants.RealClock{}.Now())
	e.store, err = sqlstore.Open(ctx, "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), e.clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })

	e.key = make([]byte, 32)
	if _, err := rand.Read(e.key); err != nil {
		t.Fatal(err)
	}
	pw, err := postgres.NewProxyPasswords(e.key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	e.provider, err = postgres.New(ctx, postgres.Config{
		AdminDSN: superDSN, Roles: []string{e.rw}, OrphanOwner: e.orphan,
		Proxy: &postgres.ProxyConfig{Address: e.addr, Passwords: pw},
	}, e.clock, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.provider.Close)
	e.manager = grants.NewManager(e.store, map[string]grants.Provider{resource: e.provider},
		[]grants.Resource{{Name: resource, Provider: postgres.Kind, DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour}},
		e.clock, nil, grants.ManagerOptions{})
	e.events = &eventTap{next: e.manager, cond: make(chan struct{})}
	up := pgproxy.Upstream{DSN: superDSN}
	for _, o := range opts {
		o(&up)
	}
	e.proxy, err = pgproxy.New(pgproxy.Config{
		TLS:          serverTLS(t),
		Upstreams:    map[string]pgproxy.Upstream{resource: up},
		Grants:       e.store,
		Recorder:     e.events,
		Passwords:    pw,
		Clock:        e.clock,
		AuditTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	e.stop = stop
	e.served = make(chan error, 1)
	go func() { e.served <- e.proxy.Serve(sctx, ln) }()
	t.Cleanup(e.shutdown)
	return e
}

// shutdown stops the proxy and waits for Serve to return.
func (e *env) shutdown() {
	e.stop()
	if err := <-e.served; err != nil {
		e.t.Errorf("Serve: %v", err)
	}
	e.served <- nil // a second shutdown returns at once
}

func (e *env) cleanup(dsn string) {
	t := e.t
	ctx := context.Background()
	e.super.Close()
	root, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Errorf("cleanup: connect: %v", err)
		return
	}
	defer root.Close(ctx)
	if _, err := root.Exec(ctx, "DROP DATABASE IF EXISTS "+quote(e.db)+" WITH (FORCE)"); err != nil {
		t.Errorf("cleanup: drop database: %v", err)
	}
	rows, err := root.Query(ctx, `SELECT DISTINCT r.rolname FROM pg_roles r
		JOIN pg_auth_members m ON m.member = r.oid JOIN pg_roles g ON g.oid = m.roleid
		WHERE g.rolname = $1 AND starts_with(r.rolname, 'ab_')`, e.rw)
	if err != nil {
		t.Errorf("cleanup: list roles: %v", err)
		return
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Errorf("cleanup: list roles: %v", err)
	}
	for _, r := range append(left, e.rw, e.orphan) {
		if _, err := root.Exec(ctx, "DROP ROLE IF EXISTS "+quote(r)); err != nil {
			t.Errorf("cleanup: drop role %s: %v", r, err)
		}
	}
}

// issue grants alice the resource and returns the grant and its delivered credential fields.
func (e *env) issue(t testing.TB, d time.Duration) (grants.Grant, map[string]string) {
	t.Helper()
	g, cred, err := e.manager.Issue(t.Context(), grants.IssueInput{
		Resource: resource, Person: alice, Duration: d, Reason: "proxy test",
		Actor: audit.Actor{Kind: audit.ActorUser, ID: alice.SlackUserID, Email: alice.Email},
	})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	f := map[string]string{}
	for _, fl := range cred.Reveal() {
		f[fl.Name] = fl.Value
	}
	return g, f
}

// connect opens a pgx connection to the proxy with the delivered connection string.
func connect(t testing.TB, connString string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(t.Context(), connString)
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// serverTLS is a self-signed certificate for 127.0.0.1, made for the test.
func serverTLS(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := grants.RealClock{}.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "accessbroker proxy test"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}
