package demo

// prod-db's session proxy: a self-signed certificate in the demo's folder and a free loopback
// port, so that alice's connection goes through the broker and her statements land in the
// audit log; and what the transcript shows of her session.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// Files of the proxy's certificate, relative to the demo's folder (and its config.yaml).
const (
	demoProxyCert = "postgres-proxy.crt"
	demoProxyKey  = "postgres-proxy.key"
)

// setupProxy writes a self-signed certificate for 127.0.0.1 (valid a day from the simulated
// start) and picks a free loopback port for postgres_proxy.listen. The port is found by
// listening on port 0 and closing: the delivered connection string must name the real port,
// and the proxy binds it a moment later.
func (d *demo) setupProxy() (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", fmt.Errorf("proxy certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return "", fmt.Errorf("proxy certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "accessbroker demo postgres proxy"},
		NotBefore:    d.start.Add(-time.Hour),
		NotAfter:     d.start.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", fmt.Errorf("proxy certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("proxy certificate key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, demoProxyCert), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", fmt.Errorf("write the proxy certificate: %w", err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, demoProxyKey), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", fmt.Errorf("write the proxy key: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port for the proxy: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("find a free port for the proxy: %w", err)
	}
	return addr, nil
}

// showSession prints the grant's session events from the audit log once the proxy has
// recorded want statements (it writes them in batches, so they may lag the answer).
func (d *demo) showSession(ctx context.Context, grantID string, want int) error {
	if _, err := d.waitEvent(ctx, "alice's statements in the audit log", audit.Query{GrantID: grantID, Action: audit.ActionSessionStatement, Limit: 100},
		func(e audit.Event) bool { return e.Evidence["order"] == fmt.Sprint(want) }); err != nil {
		return err
	}
	d.say("$ accessbroker audit search --grant %s   (the session timeline, from the audit log)", grantID)
	d.showEvents(ctx, grantID, audit.ActionSessionStarted, audit.ActionSessionStatement, audit.ActionSessionEnded)
	return nil
}

// checkSessionCut checks that alice's session, still open from step 1, was ended by the proxy
// when her grant expired: the session.ended event, and the next query on it failing.
func (d *demo) checkSessionCut(ctx context.Context, grantID string) error {
	conn := d.pgSession
	if conn == nil {
		return nil
	}
	d.pgSession = nil
	defer conn.Close(context.WithoutCancel(ctx))
	end, err := d.waitEvent(ctx, "the end of alice's proxied session", audit.Query{GrantID: grantID, Action: audit.ActionSessionEnded, Limit: 10},
		func(audit.Event) bool { return true })
	if err != nil {
		return err
	}
	// Not numbered: the proxy's cut (on its own clock) and the revoker race for the next seq.
	d.say("audit log: %s by the proxy at %s%s", end.Action, grants.Timestamp(end.Time), sessionDetail(end))
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var one int
	qerr := conn.QueryRow(cctx, "SELECT 1").Scan(&one)
	if qerr == nil {
		return fmt.Errorf("alice's proxied session still answers after grant %s expired", grantID)
	}
	var pe *pgconn.PgError
	if errors.As(qerr, &pe) {
		d.say("alice's open psql session, on its next query, gets:\n    %s", pgMessage(qerr))
	} else {
		d.say("alice's open session is closed: the proxy ended it")
	}
	d.outcome("the proxy cut alice's open session when her grant ran out (session.ended, reason %s).", end.Evidence["reason"])
	return nil
}

// closeSession closes alice's proxied session if it is still open (an interrupted story).
func (d *demo) closeSession(ctx context.Context) {
	if c := d.pgSession; c != nil {
		d.pgSession = nil
		_ = c.Close(context.WithoutCancel(ctx))
	}
}
