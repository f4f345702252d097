package postgres

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/accessbroker/accessbroker/grants"
)

// TestPreparedRoleExistsOnlyAfterCommit: between PrepareIssue and Commit the role's CREATE
// has run on the server (its transaction is open on an admin connection) but no other
// session sees the role or can log in as it; Commit makes it real, with the attributes,
// membership and comment Issue gives.
func TestPreparedRoleExistsOnlyAfterCommit(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, Config{})
	ctx := context.Background()
	id := grants.NewID("g")
	req := issueReq(id, time.Hour)
	pi := p.PrepareIssue(ctx, req).(*preparedRole)
	if pi.err != nil || pi.conn == nil {
		t.Fatalf("prepare: %v", pi.err)
	}
	name := RoleName(id, alice)
	var open int
	if err := e.super.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND state = 'idle in transaction'`, e.admin).Scan(&open); err != nil || open != 1 {
		t.Fatalf("admin sessions idle in a transaction = %d (%v), want the prepared one", open, err)
	}
	if e.role(t, name).exists {
		t.Fatal("the prepared role is visible before Commit")
	}
	if c, err := pgx.Connect(ctx, connString("127.0.0.1", p.port, e.db, "disable", name, pi.st.password)); err == nil {
		c.Close(ctx)
		t.Fatal("logged in as a prepared role before Commit")
	}
	iss, err := pi.Commit(ctx)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if r := e.role(t, name); !r.exists || !r.canLogin || !r.validUntil.Equal(req.ExpiresAt) || r.connLimit != DefaultConnectionLimit {
		t.Fatalf("after Commit the role is %+v", r)
	}
	sess, err := pgx.Connect(ctx, fields(iss.Credential)["connection_string"])
	if err != nil {
		t.Fatalf("the grantee cannot connect after Commit: %v", err)
	}
	defer sess.Close(ctx)
	var member bool
	if err := sess.QueryRow(ctx, "SELECT pg_has_role(current_user, $1, 'MEMBER')", e.ro).Scan(&member); err != nil || !member {
		t.Errorf("member of %s = %v (%v)", e.ro, member, err)
	}
	var comment string
	if err := e.super.QueryRow(ctx, "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1", name).Scan(&comment); err != nil || comment == "" {
		t.Errorf("role comment = %q (%v)", comment, err)
	}
	if iss.Handle.Key != name || iss.Handle.Data["role"] != name {
		t.Errorf("handle = %+v", iss.Handle)
	}
	if err := p.Revoke(ctx, revokeReq(id, iss.Handle)); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
}

// TestAbortedPrepareLeavesNothing: Abort rolls the role back, and the admin connection goes
// back to the pool outside any transaction (a later issue on it works).
func TestAbortedPrepareLeavesNothing(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, Config{})
	p.pool.Reset()
	ctx := context.Background()
	id := grants.NewID("g")
	pi := p.PrepareIssue(ctx, issueReq(id, time.Hour))
	pi.Abort(ctx)
	pi.Abort(ctx) // twice is harmless
	if e.role(t, RoleName(id, alice)).exists {
		t.Fatal("an aborted prepared role exists")
	}
	var open int
	if err := e.super.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND state LIKE 'idle in transaction%'`, e.admin).Scan(&open); err != nil || open != 0 {
		t.Fatalf("admin sessions in a transaction = %d (%v), want none", open, err)
	}
	// The same grant can still be issued, on the connection Abort returned.
	if _, err := p.Issue(ctx, issueReq(id, time.Hour)); err != nil {
		t.Fatalf("Issue after Abort: %v", err)
	}
	if !e.role(t, RoleName(id, alice)).exists {
		t.Fatal("no role after Issue")
	}
}

// TestPrepareOfAnExistingRoleReissues: a grant whose role exists (a retried issue) fails to
// prepare with duplicate_object; Commit then issues as Issue does, with a new password.
func TestPrepareOfAnExistingRoleReissues(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, Config{})
	ctx := context.Background()
	id := grants.NewID("g")
	first, err := p.Issue(ctx, issueReq(id, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	before := e.storedVerifier(t, first.Handle.Key)
	again, err := p.PrepareIssue(ctx, issueReq(id, 2*time.Hour)).Commit(ctx)
	if err != nil {
		t.Fatalf("Commit of a prepared reissue: %v", err)
	}
	if again.Handle.Key != first.Handle.Key || e.storedVerifier(t, first.Handle.Key) == before {
		t.Errorf("reissue: handle %q (first %q), verifier changed: %v", again.Handle.Key, first.Handle.Key, e.storedVerifier(t, first.Handle.Key) != before)
	}
	sess, err := pgx.Connect(ctx, fields(again.Credential)["connection_string"])
	if err != nil {
		t.Fatalf("the reissued credential does not connect: %v", err)
	}
	sess.Close(ctx)
}

// TestPreparedIssueFailureIsCommitsError: a prepare the server refuses (a granted role
// that no longer exists) leaves no role and no open transaction, and Commit returns the
// error without the password or its verifier.
func TestPreparedIssueFailureIsCommitsError(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, Config{})
	ctx := context.Background()
	p.roles = append(p.roles, "abtest_missing_"+randomName(t)) // as if dropped after the server check
	id := grants.NewID("g")
	pi := p.PrepareIssue(ctx, issueReq(id, time.Hour)).(*preparedRole)
	secrets := []string{pi.st.password, pi.st.verifier}
	_, err := pi.Commit(ctx)
	if err == nil {
		t.Fatal("Commit succeeded for a role granted a role that does not exist")
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Fatal("the error shows the password or its verifier")
		}
	}
	if e.role(t, RoleName(id, alice)).exists {
		t.Error("a role exists after a failed prepare")
	}
	var open int
	if err := e.super.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND state LIKE 'idle in transaction%'`, e.admin).Scan(&open); err != nil || open != 0 {
		t.Errorf("admin sessions in a transaction = %d (%v), want none", open, err)
	}
}

// TestPreparedIssueIsTwoRoundTrips: on a warm connection a prepared issue is one round trip
// for BEGIN, CREATE ROLE and COMMENT (or a spare's rename, attributes, GRANT and COMMENT),
// and one for COMMIT.
func TestPreparedIssueIsTwoRoundTrips(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, Config{})
	writes := countRoundTrips(t, p)
	ctx := context.Background()
	if _, err := p.PrepareIssue(ctx, issueReq(grants.NewID("g"), time.Hour)).Commit(ctx); err != nil { // connects
		t.Fatal(err)
	}
	for _, withSpare := range []bool{false, true} {
		if withSpare {
			if err := p.spares.make(ctx); err != nil {
				t.Fatal(err)
			}
		}
		writes.Store(0)
		pi := p.PrepareIssue(ctx, issueReq(grants.NewID("g"), time.Hour)).(*preparedRole)
		if (pi.st.spare != nil) != withSpare {
			pi.Abort(ctx)
			t.Fatalf("with a spare ready = %v, but the issue used one = %v", withSpare, pi.st.spare != nil)
		}
		if _, err := pi.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		// Two, and the pool may ping an idle connection.
		if n := writes.Load(); n > 3 {
			t.Errorf("a prepared issue (from a spare: %v) took %d round trips, want at most 3", withSpare, n)
		}
	}
}

// TestSecretsAheadAreFreshAndValid: passwords made ahead are all different, each verifier is
// the SCRAM-SHA-256 verifier of its password with 4096 iterations, and closing the pool stops
// its goroutine (take still works, making its own).
func TestSecretsAheadAreFreshAndValid(t *testing.T) {
	s := newSecretPool()
	seen := map[string]bool{}
	for range 3 * secretsAhead {
		pw, v, err := s.take()
		if err != nil {
			t.Fatal(err)
		}
		if seen[pw] {
			t.Fatal("a password was handed out twice")
		}
		seen[pw] = true
		checkVerifier(t, pw, v)
	}
	s.close()
	s.close()
	pw, v, err := s.take()
	if err != nil || seen[pw] {
		t.Fatalf("take after close: %v (a password seen before: %v)", err, seen[pw])
	}
	checkVerifier(t, pw, v)
}

// checkVerifier fails t unless v is the SCRAM-SHA-256 verifier of pw with 4096 iterations.
func checkVerifier(t *testing.T, pw, v string) {
	t.Helper()
	pv := parseVerifier(t, v)
	if pv.iterations != scramIterations {
		t.Fatalf("verifier has %d iterations, want %d", pv.iterations, scramIterations)
	}
	want, err := scramVerifierWithSalt(pw, pv.salt, pv.iterations)
	if err != nil || want != v {
		t.Fatalf("verifier is not its password's (%v)", err)
	}
}
