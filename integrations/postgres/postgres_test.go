package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/accessbroker/accessbroker/grants"
)

var alice = grants.Person{SlackTeamID: "T0ACME", SlackUserID: "U0ALICE", Email: "alice@example.com"}

func issueReq(id string, d time.Duration) grants.IssueRequest {
	return grants.IssueRequest{GrantID: id, Resource: "prod-db", Person: alice,
		ExpiresAt: time.Now().Add(d).UTC().Truncate(time.Millisecond), Reason: "test"}
}

func revokeReq(id string, h grants.Handle) grants.RevokeRequest {
	return grants.RevokeRequest{GrantID: id, Resource: "prod-db", Person: alice, Handle: h}
}

func fields(c grants.Credential) map[string]string {
	out := map[string]string{}
	for _, f := range c.Reveal() {
		out[f.Name] = f.Value
	}
	return out
}

func pgErrCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// checkPasswordMatchesVerifier proves the delivered password is the one the server stored,
// i.e. that SCRAM authentication with it would succeed (the test server trusts 127.0.0.1,
// so connecting alone does not prove it).
func checkPasswordMatchesVerifier(t *testing.T, password, verifier string) {
	t.Helper()
	pv := parseVerifier(t, verifier)
	salted, err := pbkdf2.Key(sha256.New, password, pv.salt, pv.iterations, sha256.Size)
	if err != nil {
		t.Fatal(err)
	}
	stored := sha256.Sum256(hmacSHA256(salted, "Client Key"))
	if !hmac.Equal(stored[:], pv.stored) || !hmac.Equal(hmacSHA256(salted, "Server Key"), pv.server) {
		t.Fatal("the delivered password does not match the verifier PostgreSQL stored")
	}
}

func TestRoleName(t *testing.T) {
	tests := []struct {
		name    string
		grantID string
		person  grants.Person
		want    string
	}{
		{"email local part", "g_k3xq7m2a4b4c5d6e", alice, "ab_alice_k3xq7m2a4b4c5d6e"},
		{"dots and plus", "g_k3xq7m2a4b4c5d6e", grants.Person{Email: "Jean.Luc+ops@example.com"}, "ab_jean_luc_ops_k3xq7m2a4b4c5d6e"},
		{"slack id fallback", "g_k3xq7m2a4b4c5d6e", grants.Person{SlackUserID: "U0BOB"}, "ab_u0bob_k3xq7m2a4b4c5d6e"},
		{"nothing usable", "g_k3xq7m2a4b4c5d6e", grants.Person{Email: "\"ünïcødé\"@example.com"}, "ab_n_c_d_k3xq7m2a4b4c5d6e"},
		{"empty person", "g_k3xq7m2a4b4c5d6e", grants.Person{}, "ab_user_k3xq7m2a4b4c5d6e"},
		{"long local part", "g_k3xq7m2a4b4c5d6e", grants.Person{Email: strings.Repeat("x", 80) + "@example.com"}, "ab_" + strings.Repeat("x", 24) + "_k3xq7m2a4b4c5d6e"},
		{"foreign grant id hashed", "request-42", alice, "ab_alice_" + grantSuffix("request-42")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RoleName(tt.grantID, tt.person)
			if got != tt.want {
				t.Errorf("RoleName = %q, want %q", got, tt.want)
			}
			if len(got) > 63 {
				t.Errorf("RoleName %q is %d bytes, over PostgreSQL's 63", got, len(got))
			}
			if !ownRole(got, tt.grantID) {
				t.Errorf("ownRole(%q, %q) = false for the provider's own name", got, tt.grantID)
			}
		})
	}
	if ownRole("ab_alice_k3xq7m2a4b4c5d6e", "g_aaaaaaaaaaaaaaaa") || ownRole("postgres", "g_k3xq7m2a4b4c5d6e") ||
		ownRole(`ab_x"; DROP ROLE y; --_k3xq7m2a4b4c5d6e`, "g_k3xq7m2a4b4c5d6e") {
		t.Error("ownRole accepted a role the provider would not make for the grant")
	}
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	mustExec(t, ctx, e.super, "CREATE ROLE "+quoteIdent(e.admin+"_weak")+" LOGIN")
	t.Cleanup(func() { _, _ = e.super.Exec(context.Background(), "DROP ROLE IF EXISTS "+quoteIdent(e.admin+"_weak")) })
	weakDSN := withDB(t, e.superDSN, e.db, e.admin+"_weak")

	tests := []struct {
		name     string
		cfg      Config
		wantErr  string
		wantKind error
	}{
		{"empty dsn", Config{Roles: []string{e.ro}}, "dsn is empty", grants.ErrInvalid},
		{"garbage dsn with password", Config{AdminDSN: "postgres://u:hunter2hunter2@host:notaport/db", Roles: []string{e.ro}}, "not a valid PostgreSQL connection string", grants.ErrInvalid},
		{"no roles", Config{AdminDSN: e.adminDSN}, "roles is empty", grants.ErrInvalid},
		{"negative limit", Config{AdminDSN: e.adminDSN, Roles: []string{e.ro}, ConnectionLimit: -1}, "connection_limit", grants.ErrInvalid},
		{"bad sslmode", Config{AdminDSN: e.adminDSN, Roles: []string{e.ro}, SSLMode: "sometimes"}, "sslmode", grants.ErrInvalid},
		{"bad port", Config{AdminDSN: e.adminDSN, Roles: []string{e.ro}, Port: "54x"}, "port", grants.ErrInvalid},
		{"missing role", Config{AdminDSN: e.adminDSN, Roles: []string{e.ro, "abtest_nosuchrole"}}, `roles ["abtest_nosuchrole"] do not exist`, grants.ErrInvalid},
		{"superuser role", Config{AdminDSN: e.superDSN, Roles: []string{"postgres"}}, "superuser role", grants.ErrInvalid},
		{"admin without CREATEROLE", Config{AdminDSN: weakDSN, Roles: []string{e.ro}}, "neither CREATEROLE nor SUPERUSER", grants.ErrNeedsOperator},
		{"database admin cannot reach", Config{AdminDSN: e.adminDSN, Roles: []string{e.ro}, Database: "abtest_no_such_db"}, "cannot connect to database", grants.ErrNeedsOperator},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(ctx, tt.cfg, grants.RealClock{}, slog.New(slog.DiscardHandler))
			if err == nil {
				p.Close()
				t.Fatalf("New succeeded, want an error mentioning %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New error = %v, want it to mention %q", err, tt.wantErr)
			}
			if !errors.Is(err, tt.wantKind) {
				t.Errorf("New error = %v, want it to wrap %v", err, tt.wantKind)
			}
			for _, secret := range []string{"hunter2hunter2", "admin-pw-"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("New error leaks a password: %v", err)
				}
			}
		})
	}
}

func TestCredentialGivesExactlyTheGrantedAccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	p := e.provider(t, Config{ConnectionLimit: 3})
	id := grants.NewID("g")
	req := issueReq(id, time.Hour)

	iss, err := p.Issue(ctx, req)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	name := RoleName(id, alice)
	if diff := cmp.Diff(grants.Handle{Key: name, Data: map[string]string{"role": name}}, iss.Handle); diff != "" {
		t.Errorf("handle (-want +got):\n%s", diff)
	}
	f := fields(iss.Credential)
	if f["user"] != name || f["database"] != e.db || f["host"] == "" || f["port"] == "" {
		t.Errorf("credential fields user=%q database=%q host=%q port=%q", f["user"], f["database"], f["host"], f["port"])
	}
	if !strings.HasPrefix(f["connection_string"], "postgres://"+name+":") || !strings.Contains(f["connection_string"], "/"+e.db+"?sslmode=disable") {
		t.Errorf("connection string has the wrong shape (user %s, db %s)", name, e.db)
	}
	ri := e.role(t, name)
	if !ri.exists || !ri.canLogin || ri.connLimit != 3 || !ri.validUntil.Equal(req.ExpiresAt) {
		t.Errorf("role = %+v, want login, connection limit 3, valid until %s", ri, req.ExpiresAt)
	}
	checkPasswordMatchesVerifier(t, f["password"], e.storedVerifier(t, name))

	conn, err := pgx.Connect(ctx, f["connection_string"])
	if err != nil {
		t.Fatalf("connect with the delivered credential: %v", err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil || n != 2 {
		t.Errorf("SELECT with the granted role: n=%d err=%v, want 2 rows", n, err)
	}
	denied := []string{
		"INSERT INTO items VALUES (3, 'three')",
		"UPDATE items SET name = 'x'",
		"CREATE TABLE sneaky (id int)",
		"CREATE ROLE sneaky",
	}
	for _, sql := range denied {
		if _, err := conn.Exec(ctx, sql); pgErrCode(err) != "42501" {
			t.Errorf("%s: err = %v, want insufficient_privilege (42501)", sql, err)
		}
	}
	conn.Close(ctx)

	if err := p.Revoke(ctx, revokeReq(id, iss.Handle)); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if e.role(t, name).exists {
		t.Fatal("role still exists after Revoke")
	}
	if c, err := pgx.Connect(ctx, f["connection_string"]); err == nil {
		c.Close(ctx)
		t.Fatal("the credential still connects after Revoke")
	}
}

func TestRevokeTerminatesOpenSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	p := e.provider(t, Config{})
	id := grants.NewID("g")
	iss, err := p.Issue(ctx, issueReq(id, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, fields(iss.Credential)["connection_string"])
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx) // an open transaction holding a snapshot
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT * FROM items"); err != nil {
		t.Fatal(err)
	}

	if err := p.Revoke(ctx, revokeReq(id, iss.Handle)); err != nil {
		t.Fatalf("Revoke with a live session: %v", err)
	}
	if _, err := tx.Exec(ctx, "SELECT * FROM items"); err == nil {
		t.Fatal("the session opened before Revoke still runs queries")
	}
	var alive int
	if err := e.super.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", iss.Handle.Key).Scan(&alive); err != nil || alive != 0 {
		t.Errorf("sessions of the revoked role: %d (err %v), want 0", alive, err)
	}
	if e.role(t, iss.Handle.Key).exists {
		t.Error("role still exists")
	}
}

func TestRevokeRoleThatOwnsObjects(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()

	// A second database where the role also creates something: found through pg_shdepend.
	other := e.db + "_other"
	mustExec(t, ctx, e.super, "CREATE DATABASE "+quoteIdent(other))
	t.Cleanup(func() {
		_, _ = e.super.Exec(context.Background(), "DROP DATABASE IF EXISTS "+quoteIdent(other)+" WITH (FORCE)")
	})
	otherSuper, err := pgx.Connect(ctx, withDB(t, e.superDSN, other, ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := otherSuper.Exec(ctx, "GRANT USAGE, CREATE ON SCHEMA public TO "+quoteIdent(e.rw)); err != nil {
		t.Fatal(err)
	}
	otherSuper.Close(ctx)

	p := e.provider(t, Config{Roles: []string{e.rw}})
	id := grants.NewID("g")
	iss, err := p.Issue(ctx, issueReq(id, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	dsn := fields(iss.Credential)["connection_string"]
	for _, target := range []struct{ dsn, sql string }{
		{dsn, "CREATE TABLE scratch (id int); INSERT INTO scratch VALUES (1); CREATE VIEW scratch_v AS SELECT * FROM scratch"},
		{strings.Replace(dsn, "/"+e.db+"?", "/"+other+"?", 1), "CREATE TABLE elsewhere (id int)"},
	} {
		c, err := pgx.Connect(ctx, target.dsn)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		if _, err := c.Exec(ctx, target.sql); err != nil {
			t.Fatalf("create objects as the granted role: %v", err)
		}
		c.Close(ctx)
	}

	if err := p.Revoke(ctx, revokeReq(id, iss.Handle)); err != nil {
		t.Fatalf("Revoke of a role owning objects: %v", err)
	}
	if e.role(t, iss.Handle.Key).exists {
		t.Fatal("role still exists")
	}
	var owner string
	if err := e.super.QueryRow(ctx, "SELECT tableowner FROM pg_tables WHERE tablename = 'scratch'").Scan(&owner); err != nil {
		t.Fatalf("the table the role created is gone: %v", err)
	}
	if owner != e.orphan {
		t.Errorf("scratch is owned by %q, want the orphan owner %q", owner, e.orphan)
	}
}

func TestRevokeRefusesForeignRoleInHandle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.provider(t, Config{})
	h := grants.Handle{Key: e.ro, Data: map[string]string{"role": e.ro}}
	err := p.Revoke(t.Context(), revokeReq(grants.NewID("g"), h))
	if !errors.Is(err, grants.ErrNeedsOperator) {
		t.Fatalf("Revoke with a handle naming %s: %v, want ErrNeedsOperator", e.ro, err)
	}
	if !e.role(t, e.ro).exists {
		t.Fatal("Revoke dropped a role it did not create")
	}
}

func TestIssueAgainReplacesPassword(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	p := e.provider(t, Config{})
	id := grants.NewID("g")
	first, err := p.Issue(ctx, issueReq(id, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// The first role lost its login meanwhile; a retried Issue must restore a working role.
	mustExec(t, ctx, e.super, "ALTER ROLE "+quoteIdent(first.Handle.Key)+" NOLOGIN")
	second, err := p.Issue(ctx, issueReq(id, 2*time.Hour))
	if err != nil {
		t.Fatalf("second Issue for the same grant: %v", err)
	}
	if first.Handle.Key != second.Handle.Key {
		t.Errorf("keys differ: %q vs %q", first.Handle.Key, second.Handle.Key)
	}
	pw1, pw2 := fields(first.Credential)["password"], fields(second.Credential)["password"]
	if pw1 == pw2 {
		t.Error("second Issue returned the same password")
	}
	checkPasswordMatchesVerifier(t, pw2, e.storedVerifier(t, second.Handle.Key))
	if !e.role(t, second.Handle.Key).canLogin {
		t.Error("second Issue did not restore LOGIN")
	}
	if err := p.Revoke(ctx, revokeReq(id, second.Handle)); err != nil {
		t.Fatal(err)
	}
}

func TestIssueErrorsDoNotLeakPassword(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	p := e.provider(t, Config{})
	// The granted role disappears after New: CREATE ROLE … IN ROLE fails.
	mustExec(t, ctx, e.super, "DROP OWNED BY "+quoteIdent(e.ro))
	mustExec(t, ctx, e.super, "DROP ROLE "+quoteIdent(e.ro))
	_, err := p.Issue(ctx, issueReq(grants.NewID("g"), time.Hour))
	if err == nil {
		t.Fatal("Issue succeeded with a missing granted role")
	}
	for _, s := range []string{"SCRAM-SHA-256", "PASSWORD"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("Issue error shows the SQL's password part: %v", err)
		}
	}
	if _, err := p.Issue(ctx, issueReq(grants.NewID("g"), -time.Minute)); !errors.Is(err, grants.ErrInvalid) {
		t.Errorf("Issue with a past expiry: %v, want ErrInvalid", err)
	}
}

func TestExtend(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	p := e.provider(t, Config{})
	id := grants.NewID("g")
	iss, err := p.Issue(ctx, issueReq(id, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(3 * time.Hour).UTC().Truncate(time.Millisecond)
	if err := p.Extend(ctx, revokeReq(id, iss.Handle), later); err != nil {
		t.Fatalf("Extend: %v", err)
	}
	if got := e.role(t, iss.Handle.Key).validUntil; !got.Equal(later) {
		t.Errorf("valid until = %s, want %s", got, later)
	}
	if err := p.Revoke(ctx, revokeReq(id, iss.Handle)); err != nil {
		t.Fatal(err)
	}
	if err := p.Extend(ctx, revokeReq(id, iss.Handle), later); !errors.Is(err, grants.ErrGone) {
		t.Errorf("Extend after Revoke: %v, want ErrGone", err)
	}
}

func TestSuperuserAdminWorksToo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	p := e.provider(t, Config{AdminDSN: e.superDSN, Roles: []string{e.rw}})
	id := grants.NewID("g")
	iss, err := p.Issue(ctx, issueReq(id, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, fields(iss.Credential)["connection_string"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "CREATE TABLE su_scratch (id int)"); err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	if err := p.Revoke(ctx, revokeReq(id, grants.Handle{})); err != nil {
		t.Fatalf("Revoke with empty handle, superuser admin: %v", err)
	}
	if e.role(t, iss.Handle.Key).exists {
		t.Fatal("role still exists")
	}
}
