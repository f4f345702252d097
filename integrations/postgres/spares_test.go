package postgres

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
)

// spareRole is what the server says about a spare role.
type spareRole struct {
	oid                  uint32
	canLogin             bool
	validUntil           *time.Time
	memberships, comment string
}

func (e *testEnv) spareRole(tb testing.TB, name string) (spareRole, bool) {
	tb.Helper()
	var r spareRole
	err := e.super.QueryRow(context.Background(), `SELECT oid, rolcanlogin, rolvaliduntil,
			coalesce((SELECT string_agg(g.rolname, ',') FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid), ''),
			coalesce(shobj_description(oid, 'pg_authid'), '')
		FROM pg_roles r WHERE rolname = $1`, name).Scan(&r.oid, &r.canLogin, &r.validUntil, &r.memberships, &r.comment)
	if err == pgx.ErrNoRows {
		return spareRole{}, false
	}
	if err != nil {
		tb.Fatalf("look up spare role %s: %v", name, err)
	}
	return r, true
}

func (e *testEnv) roleOID(tb testing.TB, name string) uint32 {
	tb.Helper()
	var oid uint32
	if err := e.super.QueryRow(context.Background(), `SELECT oid FROM pg_roles WHERE rolname = $1`, name).Scan(&oid); err != nil {
		tb.Fatalf("oid of %s: %v", name, err)
	}
	return oid
}

// readySpares are the names of the spares p holds, oldest first.
func readySpares(p *Provider) []string {
	p.spares.mu.Lock()
	defer p.spares.mu.Unlock()
	var names []string
	for _, sp := range p.spares.ready {
		names = append(names, sp.name)
	}
	return names
}

// manualSpares returns p with its spare goroutine off and one spare made, and that spare.
func manualSpare(t *testing.T, e *testEnv, p *Provider) string {
	t.Helper()
	p.spares.manual = true
	if err := p.spares.make(context.Background()); err != nil {
		t.Fatalf("make a spare: %v", err)
	}
	names := readySpares(p)
	if len(names) == 0 {
		t.Fatal("no spare after make")
	}
	return names[len(names)-1]
}

// TestIssueFromASpareLogsIn: with a spare ready, Issue and a prepared issue turn the spare
// itself (same oid) into the grant's role, with LOGIN, the grant's expiry, connection limit,
// membership and comment, the spare's name gone; and the delivered password logs in (the
// rename kept the 4096-iteration SCRAM verifier, which clients require).
func TestIssueFromASpareLogsIn(t *testing.T) {
	for _, prepared := range []bool{false, true} {
		name := map[bool]string{false: "Issue", true: "PrepareIssue"}[prepared]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			p := e.provider(t, Config{})
			ctx := context.Background()
			sp := manualSpare(t, e, p)
			before, ok := e.spareRole(t, sp)
			if !ok {
				t.Fatal("the spare does not exist on the server")
			}
			id := grants.NewID("g")
			req := issueReq(id, time.Hour)
			var iss grants.Issued
			var err error
			if prepared {
				iss, err = p.PrepareIssue(ctx, req).Commit(ctx)
			} else {
				iss, err = p.Issue(ctx, req)
			}
			if err != nil {
				t.Fatalf("issue: %v", err)
			}
			role := RoleName(id, alice)
			if oid := e.roleOID(t, role); oid != before.oid {
				t.Fatalf("the grant's role has oid %d, the spare had %d: the spare was not used", oid, before.oid)
			}
			if _, ok := e.spareRole(t, sp); ok {
				t.Error("the spare's name still exists after it became a grant's role")
			}
			if left := readySpares(p); slices.Contains(left, sp) {
				t.Error("the used spare is still in the pool")
			}
			if r := e.role(t, role); !r.canLogin || !r.validUntil.Equal(req.ExpiresAt) || r.connLimit != DefaultConnectionLimit {
				t.Errorf("the role is %+v", r)
			}
			if got, _ := e.spareRole(t, role); got.memberships != e.ro || !strings.Contains(got.comment, "accessbroker grant "+id) {
				t.Errorf("memberships %q, comment %q", got.memberships, got.comment)
			}
			if v := parseVerifier(t, e.storedVerifier(t, role)); v.iterations != scramIterations {
				t.Errorf("stored verifier has %d iterations, want %d", v.iterations, scramIterations)
			}
			// The server trusts 127.0.0.1: logging in alone does not prove the password.
			checkPasswordMatchesVerifier(t, fields(iss.Credential)["password"], e.storedVerifier(t, iss.Handle.Key))
			sess, err := pgx.Connect(ctx, fields(iss.Credential)["connection_string"])
			if err != nil {
				t.Fatalf("the delivered password does not log in: %v", err)
			}
			var member bool
			if err := sess.QueryRow(ctx, "SELECT pg_has_role(current_user, $1, 'MEMBER')", e.ro).Scan(&member); err != nil || !member {
				t.Errorf("member of %s = %v (%v)", e.ro, member, err)
			}
			sess.Close(ctx)
			if err := p.Revoke(ctx, revokeReq(id, iss.Handle)); err != nil {
				t.Fatalf("Revoke: %v", err)
			}
			if e.role(t, role).exists {
				t.Error("the role exists after Revoke")
			}
		})
	}
}

// TestSparesAreNoGrantsAccess: a spare cannot log in, is a member of nothing and has a
// comment saying what it is; its name is not one a grant's role could have; ListAccess
// (drift) never lists it; Revoke, RevokeBatch and HasAccess of other grants leave it alone.
func TestSparesAreNoGrantsAccess(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, Config{})
	ctx := context.Background()
	p.spares.manual = true
	for range 3 {
		if err := p.spares.make(ctx); err != nil {
			t.Fatal(err)
		}
	}
	spares := readySpares(p)
	// Grants issued the ordinary way (spares reserved for the end of the test).
	p.spares.target = 0
	var issued []grants.Issued
	var ids []string
	for range 3 {
		id := grants.NewID("g")
		iss, err := p.Issue(ctx, issueReq(id, time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		issued, ids = append(issued, iss), append(ids, id)
	}
	for _, sp := range spares {
		r, ok := e.spareRole(t, sp)
		switch {
		case !ok:
			t.Fatalf("spare %s does not exist", sp)
		case r.canLogin || r.memberships != "":
			t.Errorf("spare %s: LOGIN %v, member of %q; want NOLOGIN and no membership", sp, r.canLogin, r.memberships)
		case !strings.HasPrefix(r.comment, "accessbroker spare role"):
			t.Errorf("spare %s has comment %q", sp, r.comment)
		case r.validUntil == nil || r.validUntil.After(time.Now().Add(spareMaxAge)):
			t.Errorf("spare %s valid until %v, want at most %s ahead", sp, r.validUntil, spareMaxAge)
		}
		if _, ok := grantOfRole(sp); ok {
			t.Errorf("grantOfRole(%q) names a grant", sp)
		}
		for _, id := range ids {
			if ownRole(sp, id) {
				t.Errorf("ownRole(%q, %s) = true", sp, id)
			}
		}
	}
	// A role any provider could see with the spare's name inside a member of the resource
	// roles would be listed; make one spare a member to prove that ListAccess still skips
	// it by name, not only because spares have no membership.
	mustExec(t, ctx, e.super, "GRANT "+quoteIdent(e.ro)+" TO "+quoteIdent(spares[0]))
	list, err := p.ListAccess(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(ids) {
		t.Errorf("ListAccess listed %d, want the %d grants' roles only: %+v", len(list), len(ids), list)
	}
	for _, a := range list {
		if strings.HasPrefix(a.Key, sparePrefix) {
			t.Errorf("ListAccess lists spare %s as grant %s", a.Key, a.GrantID)
		}
	}
	mustExec(t, ctx, e.super, "REVOKE "+quoteIdent(e.ro)+" FROM "+quoteIdent(spares[0]))

	if err := p.Revoke(ctx, revokeReq(ids[0], issued[0].Handle)); err != nil {
		t.Fatal(err)
	}
	if res := p.RevokeBatch(ctx, []grants.RevokeRequest{revokeReq(ids[1], issued[1].Handle), revokeReq(ids[2], grants.Handle{})}); res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("RevokeBatch: %v, %v", res[0].Err, res[1].Err)
	}
	for _, id := range ids {
		if has, err := p.HasAccess(ctx, revokeReq(id, grants.Handle{})); err != nil || has {
			t.Errorf("HasAccess(%s) = %v, %v after revoke", id, has, err)
		}
	}
	for _, sp := range spares {
		if _, ok := e.spareRole(t, sp); !ok {
			t.Errorf("spare %s was dropped by the revocation of other grants", sp)
		}
	}
}

// TestStaleSparesAreDroppedByAge: a replica that died left spares behind. The sweep of any
// replica drops those past their VALID UNTIL (made + spareMaxAge), keeps a younger one of
// another replica (whose password it does not hold, so it never uses it either), and drops
// and replaces its own once older than spareMaxUse. Close drops its own.
func TestStaleSparesAreDroppedByAge(t *testing.T) {
	e := newEnv(t)
	start := time.Now().UTC().Truncate(time.Millisecond)
	clock := clocktest.New(start)
	p := e.providerWithClock(t, Config{}, clock)
	p.spares.manual = true
	ctx := context.Background()

	// The dead replica: made one spare 2 h ago and one 20 min ago, then crashed (its memory
	// is gone: nothing drops them at Close).
	deadClock := clocktest.New(start.Add(-2 * time.Hour))
	dead := e.providerWithClock(t, Config{}, deadClock)
	dead.spares.manual = true
	old := manualSpare(t, e, dead)
	deadClock.Advance(100 * time.Minute)
	young := manualSpare(t, e, dead)
	dead.spares.mu.Lock()
	dead.spares.ready = nil
	dead.spares.mu.Unlock()

	// Roles named alike that make did not make (no VALID UNTIL, no comment, not 16 hex
	// digits) are never dropped, however old.
	lookalikes := []string{e.spares + "readonly", e.spares + "00000000000000ab", e.spares + "00000000000000cd"}
	mustExec(t, ctx, e.super, "CREATE ROLE "+quoteIdent(lookalikes[0])+" NOLOGIN VALID UNTIL '2000-01-01 00:00:00+00'")
	mustExec(t, ctx, e.super, "COMMENT ON ROLE "+quoteIdent(lookalikes[0])+" IS '"+spareComment+"'")
	mustExec(t, ctx, e.super, "CREATE ROLE "+quoteIdent(lookalikes[1])+" NOLOGIN")
	mustExec(t, ctx, e.super, "COMMENT ON ROLE "+quoteIdent(lookalikes[1])+" IS '"+spareComment+"'")
	mustExec(t, ctx, e.super, "CREATE ROLE "+quoteIdent(lookalikes[2])+" NOLOGIN VALID UNTIL '2000-01-01 00:00:00+00'")

	own := manualSpare(t, e, p)
	if err := p.spares.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range lookalikes {
		if _, ok := e.spareRole(t, r); !ok {
			t.Errorf("the sweep dropped %s, a role it did not make", r)
		}
	}
	if _, ok := e.spareRole(t, old); ok {
		t.Error("a dead replica's spare past its VALID UNTIL was not dropped")
	}
	if _, ok := e.spareRole(t, young); !ok {
		t.Error("another replica's young spare was dropped")
	}
	if _, ok := e.spareRole(t, own); !ok {
		t.Error("the replica's own young spare was dropped")
	}

	// An issue uses the replica's own spare, never the other's.
	id := grants.NewID("g")
	if _, err := p.Issue(ctx, issueReq(id, 2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.spareRole(t, young); !ok {
		t.Error("the issue took another replica's spare")
	}
	if _, ok := e.spareRole(t, own); ok {
		t.Error("the issue did not use the replica's own spare")
	}

	// Its own spare older than spareMaxUse is not used, but dropped and replaced by fill.
	own2 := manualSpare(t, e, p)
	clock.Advance(spareMaxUse + time.Minute)
	if sp, ok := p.spares.take(); ok {
		t.Fatalf("took spare %s, older than %s", sp.name, spareMaxUse)
	}
	if err := p.spares.fill(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.spareRole(t, own2); ok {
		t.Error("the replica's own spare older than spareMaxUse was not dropped")
	}
	if _, ok := e.spareRole(t, young); !ok {
		t.Error("the other replica's spare was dropped 9 minutes before its VALID UNTIL")
	}
	clock.Advance(10 * time.Minute) // the young spare was made 20 + 41 minutes ago
	if err := p.spares.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.spareRole(t, young); ok {
		t.Error("the other replica's spare, now past its VALID UNTIL, was not dropped")
	}
	fresh := readySpares(p)
	if len(fresh) != sparesAhead || slices.Contains(fresh, own2) {
		t.Errorf("after fill the pool holds %d spares (%v), want %d new ones", len(fresh), fresh, sparesAhead)
	}
	p.Close()
	for _, sp := range fresh {
		if _, ok := e.spareRole(t, sp); ok {
			t.Errorf("spare %s exists after Close", sp)
		}
	}
}

// TestIssueWithoutASpare: with no spare ready, or with one that another replica dropped
// meanwhile, the role is created with CREATE ROLE and the delivered password logs in.
func TestIssueWithoutASpare(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, Config{})
	ctx := context.Background()
	p.spares.manual = true
	for _, c := range []struct {
		name     string
		prepared bool
		gone     bool // a spare is ready but its role was dropped
	}{
		{"empty pool, Issue", false, false},
		{"empty pool, PrepareIssue", true, false},
		{"spare dropped meanwhile, Issue", false, true},
		{"spare dropped meanwhile, PrepareIssue", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.gone {
				sp := manualSpare(t, e, p)
				mustExec(t, ctx, e.super, "DROP ROLE "+quoteIdent(sp))
			}
			id := grants.NewID("g")
			var iss grants.Issued
			var err error
			if c.prepared {
				iss, err = p.PrepareIssue(ctx, issueReq(id, time.Hour)).Commit(ctx)
			} else {
				iss, err = p.Issue(ctx, issueReq(id, time.Hour))
			}
			if err != nil {
				t.Fatalf("issue: %v", err)
			}
			// The server trusts 127.0.0.1: logging in alone does not prove the password.
			checkPasswordMatchesVerifier(t, fields(iss.Credential)["password"], e.storedVerifier(t, iss.Handle.Key))
			sess, err := pgx.Connect(ctx, fields(iss.Credential)["connection_string"])
			if err != nil {
				t.Fatalf("the delivered password does not log in: %v", err)
			}
			sess.Close(ctx)
			if n := len(readySpares(p)); n != 0 {
				t.Errorf("%d spares in the pool, want none (a dropped spare is forgotten)", n)
			}
		})
	}
}

// TestAbortedSpareIssueLeavesASpare: a prepared issue from a spare that is aborted leaves
// no LOGIN role: the spare is still a NOLOGIN spare, under its own name, back in the pool,
// and the next issue uses it.
func TestAbortedSpareIssueLeavesASpare(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, Config{})
	ctx := context.Background()
	sp := manualSpare(t, e, p)
	oid := e.roleOID(t, sp)
	id := grants.NewID("g")
	pi := p.PrepareIssue(ctx, issueReq(id, time.Hour)).(*preparedRole)
	defer pi.Abort(ctx) // on a failure below: never leave the transaction open
	if pi.err != nil || pi.st.spare == nil || pi.st.spare.name != sp {
		t.Fatalf("prepare: %v, spare %+v", pi.err, pi.st.spare)
	}
	pi.Abort(ctx)
	if e.role(t, RoleName(id, alice)).exists {
		t.Fatal("the aborted grant's role exists")
	}
	var logins int
	if err := e.super.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE oid = $1 AND rolcanlogin`, oid).Scan(&logins); err != nil || logins != 0 {
		t.Fatalf("LOGIN roles with the spare's oid: %d (%v)", logins, err)
	}
	if r, ok := e.spareRole(t, sp); !ok || r.canLogin || r.memberships != "" {
		t.Fatalf("after Abort the spare is %+v (exists %v)", r, ok)
	}
	if got := readySpares(p); !slices.Equal(got, []string{sp}) {
		t.Fatalf("pool after Abort = %v, want [%s]", got, sp)
	}
	iss, err := p.PrepareIssue(ctx, issueReq(id, time.Hour)).Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if e.roleOID(t, RoleName(id, alice)) != oid {
		t.Error("the issue after Abort did not use the spare given back")
	}
	// The server trusts 127.0.0.1: logging in alone does not prove the password.
	checkPasswordMatchesVerifier(t, fields(iss.Credential)["password"], e.storedVerifier(t, iss.Handle.Key))
	sess, err := pgx.Connect(ctx, fields(iss.Credential)["connection_string"])
	if err != nil {
		t.Fatalf("the delivered password does not log in: %v", err)
	}
	sess.Close(ctx)
}

// TestRetriedIssueWithASpareReissues: a grant whose role exists already (a retried issue)
// fails the spare's rename; the spare stays a spare, back in the pool, and the role gets a
// new password (the one delivered: the verifier the server stored is the password's) that
// logs in.
func TestRetriedIssueWithASpareReissues(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, Config{})
	ctx := context.Background()
	p.spares.manual = true
	id := grants.NewID("g")
	if _, err := p.Issue(ctx, issueReq(id, time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, prepared := range []bool{false, true} {
		sp := manualSpare(t, e, p)
		var iss grants.Issued
		var err error
		if prepared {
			iss, err = p.PrepareIssue(ctx, issueReq(id, time.Hour)).Commit(ctx)
		} else {
			iss, err = p.Issue(ctx, issueReq(id, time.Hour))
		}
		if err != nil {
			t.Fatalf("reissue (prepared %v): %v", prepared, err)
		}
		// The server trusts 127.0.0.1: logging in alone does not prove the password.
		checkPasswordMatchesVerifier(t, fields(iss.Credential)["password"], e.storedVerifier(t, iss.Handle.Key))
		sess, err := pgx.Connect(ctx, fields(iss.Credential)["connection_string"])
		if err != nil {
			t.Fatalf("the reissued password does not log in: %v", err)
		}
		sess.Close(ctx)
		if _, ok := e.spareRole(t, sp); !ok {
			t.Errorf("prepared %v: the spare was dropped", prepared)
		}
		if !slices.Contains(readySpares(p), sp) {
			t.Errorf("prepared %v: the spare is not back in the pool", prepared)
		}
	}
}

// TestProxiedRolesUseFewIterations: a proxied role's upstream verifier has proxyIterations
// iterations (the upstream password is a 256-bit HMAC output), and pgconn, the proxy's
// upstream client, logs in with it.
func TestProxiedRolesUseFewIterations(t *testing.T) {
	e := newEnv(t)
	pw := testPasswords(t)
	p := e.provider(t, Config{Proxy: &ProxyConfig{Address: "127.0.0.1:6432", Passwords: pw}})
	ctx := context.Background()
	id := grants.NewID("g")
	iss, err := p.PrepareIssue(ctx, issueReq(id, time.Hour)).Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	role := iss.Handle.Key
	if v := parseVerifier(t, e.storedVerifier(t, role)); v.iterations != proxyIterations || v.iterations >= scramIterations {
		t.Errorf("upstream verifier has %d iterations, want %d", v.iterations, proxyIterations)
	}
	sess, err := pgx.Connect(ctx, connString("127.0.0.1", p.port, e.db, "disable", role, pw.Upstream(id, role)))
	if err != nil {
		t.Fatalf("the upstream password does not log in: %v", err)
	}
	sess.Close(ctx)
	if n := p.spares.count(); n != 0 || p.spares.target != 0 {
		t.Errorf("a proxied provider keeps spares (%d, target %d)", n, p.spares.target)
	}
}

// TestSpareSweepFailureStillMakesSpares: a stale spare the admin cannot drop (here one that
// owns a table, as a superuser made it) is reported, and the pool is filled all the same.
func TestSpareSweepFailureStillMakesSpares(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, Config{})
	p.spares.manual = true
	ctx := context.Background()
	stuck := e.spares + "5707c4000000000f"
	mustExec(t, ctx, e.super, "CREATE ROLE "+quoteIdent(stuck)+" NOLOGIN VALID UNTIL '2000-01-01 00:00:00+00'")
	mustExec(t, ctx, e.super, "COMMENT ON ROLE "+quoteIdent(stuck)+" IS '"+spareComment+", made 1999-12-31T23:00:00.000Z'")
	mustExec(t, ctx, e.super, "CREATE TABLE spare_owned (id int)")
	mustExec(t, ctx, e.super, "ALTER TABLE spare_owned OWNER TO "+quoteIdent(stuck))
	t.Cleanup(func() { mustExec(t, ctx, e.super, "DROP TABLE spare_owned") })
	err := p.spares.fill(ctx)
	if err == nil || !strings.Contains(err.Error(), stuck) {
		t.Errorf("fill = %v, want an error naming %s", err, stuck)
	}
	if n := p.spares.count(); n != sparesAhead {
		t.Errorf("the pool holds %d spares after a failed sweep, want %d", n, sparesAhead)
	}
}
