package postgres

import (
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/fixtures/tcpproxy"
	"github.com/accessbroker/accessbroker/grants"
)

// behind returns a proxy (down) to the server of dsn and dsn rewritten to go through it.
func behind(t *testing.T, dsn string) (*tcpproxy.Proxy, string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	if u.Port() == "" {
		target += ":5432"
	}
	px, err := tcpproxy.New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	u.Host = px.Addr()
	return px, u.String()
}

// TestOpenDuringOutage: a provider opened while its server is down is built all the same;
// Check and Revoke fail as retryable (neither invalid nor needing an operator), and once the
// server answers the same provider passes Check and the revocation completes.
func TestOpenDuringOutage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	id := grants.NewID("g")
	iss, err := e.provider(t, Config{}).Issue(ctx, issueReq(id, time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	px, dsn := behind(t, e.adminDSN)
	p, err := Open(ctx, Config{AdminDSN: dsn, Roles: []string{e.ro}, OrphanOwner: e.orphan}, grants.RealClock{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Open while the server is down: %v", err)
	}
	t.Cleanup(p.Close)
	retryable := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s succeeded while the server is down", what)
		}
		if errors.Is(err, grants.ErrInvalid) || errors.Is(err, grants.ErrNeedsOperator) {
			t.Errorf("%s during an outage = %v; want a retryable error, not a configuration one", what, err)
		}
		if got := err.Error(); strings.Contains(got, "admin-pw-") {
			t.Errorf("%s error leaks the password: %s", what, got)
		}
	}
	retryable("Check", p.Check(ctx))
	retryable("Revoke", p.Revoke(ctx, revokeReq(id, iss.Handle)))
	if !e.role(t, iss.Handle.Key).exists {
		t.Fatal("the role went while the server was unreachable through the proxy")
	}

	if err := px.Up(); err != nil {
		t.Fatal(err)
	}
	if err := p.Revoke(ctx, revokeReq(id, iss.Handle)); err != nil {
		t.Fatalf("Revoke once the server answers: %v", err)
	}
	if e.role(t, iss.Handle.Key).exists {
		t.Error("role still exists after the revocation")
	}
	if err := p.Check(ctx); err != nil {
		t.Errorf("Check once the server answers: %v", err)
	}
}

// TestOpenChecksNothingCheckRefusesConfig: Open refuses only what it can see without the
// server; Check then names a configuration the server contradicts as invalid.
func TestOpenChecksNothingCheckRefusesConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	if _, err := Open(ctx, Config{AdminDSN: "postgres://u:pw@host:notaport/db", Roles: []string{e.ro}}, grants.RealClock{}, nil); !errors.Is(err, grants.ErrInvalid) {
		t.Errorf("Open with a DSN that does not parse = %v, want ErrInvalid", err)
	}
	p, err := Open(ctx, Config{AdminDSN: e.adminDSN, Roles: []string{"abtest_nosuchrole"}, OrphanOwner: e.orphan}, grants.RealClock{}, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(p.Close)
	if err := p.Check(ctx); !errors.Is(err, grants.ErrInvalid) {
		t.Errorf("Check with a missing role = %v, want ErrInvalid", err)
	}
	if _, err := p.Issue(ctx, issueReq(grants.NewID("g"), time.Hour)); !errors.Is(err, grants.ErrInvalid) {
		t.Errorf("Issue on a provider that never passed Check = %v, want Check's ErrInvalid", err)
	}
}
