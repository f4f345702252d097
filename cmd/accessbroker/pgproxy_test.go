package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/accessbroker/accessbroker/grants"
)

// writeProxyCert writes a self-signed certificate for 127.0.0.1 and its key as PEM files.
func writeProxyCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := grants.RealClock{}.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "accessbroker proxy e2e"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "proxy.crt"), filepath.Join(dir, "proxy.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// freePort returns a loopback address nothing listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// proxyDatabase makes the test's database with a granted role and drops both afterwards.
func proxyDatabase(t *testing.T) (dsn, role, orphan string) {
	t.Helper()
	root := os.Getenv(pgTestEnv)
	if root == "" {
		t.Skipf("the session proxy end-to-end test needs PostgreSQL: set %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable", pgTestEnv)
	}
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	r := hex.EncodeToString(b)
	db, role, orphan := "ab_e2eproxy_"+r, "abe2e_rw_"+r, "abe2e_orphans_"+r
	ctx := context.Background()
	c, err := pgx.Connect(ctx, root)
	if err != nil {
		t.Fatalf("connect to %s: %v", pgTestEnv, err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(root)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + db
	dsn = u.String()
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, root)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)"); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		rows, _ := c.Query(ctx, `SELECT r.rolname FROM pg_roles r JOIN pg_auth_members m ON m.member = r.oid JOIN pg_roles g ON g.oid = m.roleid
			WHERE g.rolname = $1 AND starts_with(r.rolname, 'ab_')`, role)
		left, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, name := range append(left, role, orphan) {
			if _, err := c.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{name}.Sanitize()); err != nil {
				t.Errorf("cleanup: drop role %s: %v", name, err)
			}
		}
	})
	d, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(ctx)
	for _, sql := range []string{"CREATE ROLE " + role + " NOLOGIN", "GRANT CONNECT ON DATABASE " + db + " TO " + role} {
		if _, err := d.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	return dsn, role, orphan
}

// TestServeSessionProxy: serve with postgres_proxy; a break-glass grant's delivered
// connection string reaches the database through the proxy only; `grants revoke` from
// another process ends the open session (the proxy polls the store); sessions list/show and
// audit search --grant tell the session; audit verify passes.
func TestServeSessionProxy(t *testing.T) {
	dsn, role, orphan := proxyDatabase(t)
	p := newInProcess(t)
	cert, key := writeProxyCert(t, p.dir)
	proxyAddr := freePort(t)
	t.Setenv("AB_PG_DSN", dsn)
	t.Setenv("AB_PG_ROLE", role)
	t.Setenv("AB_PG_ORPHAN", orphan)
	t.Setenv("AB_PROXY_LISTEN", proxyAddr)
	t.Setenv("AB_PROXY_CERT", cert)
	t.Setenv("AB_PROXY_KEY", key)
	p.config = filepath.Join("testdata", "e2e", "pgproxy.yaml")
	startServer(t, p)

	out := p.mustRun("grants", "issue", "--config", p.config, "--resource", "prod-db", "--slack-user", "U0ALICE", "--reason", "e2e proxy")
	gid := regexp.MustCompile(`grant (g_[a-z2-7]{16})`).FindStringSubmatch(out)
	cs := regexp.MustCompile(`connection_string: (\S+)`).FindStringSubmatch(out)
	if gid == nil || cs == nil || !strings.Contains(cs[1], "@"+proxyAddr+"/") || !strings.Contains(cs[1], "sslmode=require") {
		t.Fatalf("grants issue printed no proxy connection string for %s:\n%s", proxyAddr, out)
	}
	ctx := t.Context()
	c, err := pgx.Connect(ctx, cs[1])
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	defer c.Close(context.Background())
	var who string
	if err := c.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil || !strings.HasPrefix(who, "ab_alice_") {
		t.Fatalf("current_user through the proxy = %q, %v", who, err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Exec(context.Background(), "SELECT pg_sleep(600)")
		errc <- err
	}()
	root, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close(context.Background())
	if !eventually(20*time.Second, func() bool {
		var n int
		err := root.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND state = 'active' AND query = 'SELECT pg_sleep(600)'", who).Scan(&n)
		return err == nil && n == 1
	}) {
		t.Fatal("the query never started upstream")
	}
	p.mustRun("grants", "revoke", gid[1], "--reason", "e2e done", "--config", p.config)
	select {
	case err := <-errc:
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "57P01" || pgErr.Message != "access grant revoked" {
			t.Fatalf("the open query ended with %v, want FATAL 57P01 access grant revoked", err)
		}
	case <-ctx.Done():
		t.Fatal("the session outlived the revocation")
	}

	var list string
	if !eventually(20*time.Second, func() bool {
		list = p.mustRun("sessions", "list", "--grant", gid[1], "--config", p.config)
		return strings.Contains(list, "grant_revoked")
	}) {
		t.Fatalf("sessions list never showed the ended session:\n%s", list)
	}
	sid := regexp.MustCompile(`s_[a-z2-7]{16}`).FindString(list)
	show := p.mustRun("sessions", "show", sid, "--config", p.config)
	for _, want := range []string{"SELECT current_user", "SELECT pg_sleep(600)", "INTERRUPTED 57P01", "grant_revoked", "ab_alice_"} {
		if !strings.Contains(show, want) {
			t.Errorf("sessions show lacks %q:\n%s", want, show)
		}
	}
	search := p.mustRun("audit", "search", "--grant", gid[1], "--config", p.config)
	for _, want := range []string{"session.started", "session.statement", "session.ended"} {
		if !strings.Contains(search, want) {
			t.Errorf("audit search --grant lacks %s:\n%s", want, search)
		}
	}
	if out := p.mustRun("audit", "verify", "--config", p.config); !strings.Contains(out, "intact") {
		t.Errorf("audit verify: %s", out)
	}
}

// TestBrokerKillEndsProxiedSession: killing the broker (SIGKILL, the real binary) in the
// middle of a proxied SELECT pg_sleep(600) leaves no backend of the grant's role running:
// the server notices the dead proxy (client_connection_check_interval) and ends the query,
// so no session outlives the broker, let alone the grant.
func TestBrokerKillEndsProxiedSession(t *testing.T) {
	dsn, role, orphan := proxyDatabase(t)
	e := newE2E(t)
	cert, key := writeProxyCert(t, e.dir)
	proxyAddr := freePort(t)
	e.config = filepath.Join("testdata", "e2e", "pgproxy.yaml")
	e.env = append(e.env, "AB_PG_DSN="+dsn, "AB_PG_ROLE="+role, "AB_PG_ORPHAN="+orphan,
		"AB_PROXY_LISTEN="+proxyAddr, "AB_PROXY_CERT="+cert, "AB_PROXY_KEY="+key)
	serve := e.command("serve", "--config", e.config)
	var logs syncBuffer
	serve.Stdout, serve.Stderr = &logs, &logs
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = serve.Process.Kill(); _ = serve.Wait() })
	within(t, 60*time.Second, "the proxy to listen", func() bool {
		c, err := net.Dial("tcp", proxyAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	out, code := e.run("grants", "issue", "--config", e.config, "--resource", "prod-db", "--slack-user", "U0ALICE", "--reason", "kill test")
	cs := regexp.MustCompile(`connection_string: (\S+)`).FindStringSubmatch(out)
	if code != 0 || cs == nil {
		t.Fatalf("grants issue exit %d:\n%s", code, out)
	}
	ctx := t.Context()
	c, err := pgx.Connect(ctx, cs[1])
	if err != nil {
		t.Fatalf("connect through the proxy: %v\n%s", err, logs.String())
	}
	defer c.Close(context.Background())
	var who string
	if err := c.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Exec(context.Background(), "SELECT pg_sleep(600)")
		errc <- err
	}()
	root, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close(context.Background())
	backends := func() int {
		var n int
		if err := root.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", who).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	within(t, 20*time.Second, "the query to run upstream", func() bool {
		var n int
		err := root.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND state = 'active' AND query = 'SELECT pg_sleep(600)'", who).Scan(&n)
		return err == nil && n == 1
	})

	if err := serve.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = serve.Wait()
	if err := <-errc; err == nil {
		t.Fatal("the query succeeded although the broker died")
	}
	within(t, 20*time.Second, "the role's backend to end after the broker died", func() bool { return backends() == 0 })
}
