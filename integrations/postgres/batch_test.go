package postgres

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/accessbroker/accessbroker/grants"
)

// issueMany issues n grants on p and returns their revoke requests.
func issueMany(t *testing.T, p *Provider, n int) ([]grants.RevokeRequest, []grants.Issued) {
	t.Helper()
	ctx := context.Background()
	var reqs []grants.RevokeRequest
	var iss []grants.Issued
	for range n {
		id := grants.NewID("g")
		is, err := p.Issue(ctx, issueReq(id, time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, revokeReq(id, is.Handle))
		iss = append(iss, is)
	}
	return reqs, iss
}

// TestRevokeBatchIsAFewRoundTripsForAnyNumber: 30 roles that own nothing, two of them with
// a live session, are dropped by one RevokeBatch in a handful of round trips (find; NOLOGIN,
// membership, terminate, pg_shdepend; terminate again; DROP ROLE of all), not five per role,
// their sessions ended, and read back as gone in one more.
func TestRevokeBatchIsAFewRoundTripsForAnyNumber(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, Config{})
	writes := countRoundTrips(t, p)
	ctx := context.Background()
	reqs, iss := issueMany(t, p, 30)
	var sessions []*pgx.Conn
	for _, is := range iss[:2] {
		s, err := pgx.Connect(ctx, fields(is.Credential)["connection_string"])
		if err != nil {
			t.Fatalf("the grantee cannot connect: %v", err)
		}
		defer s.Close(context.WithoutCancel(ctx))
		sessions = append(sessions, s)
	}
	writes.Store(0)
	for i, r := range p.RevokeBatch(ctx, reqs) {
		if r.Err != nil {
			t.Errorf("grant %d: %v", i, r.Err)
		}
	}
	n := writes.Load()
	t.Logf("round trips for 30 roles: %d", n)
	// find (prepare and run: 2), three simple queries, and the pool may ping (1).
	if n > 6 {
		t.Errorf("revoking 30 roles took %d round trips, want at most 6", n)
	}
	for _, is := range iss {
		if e.role(t, is.Handle.Key).exists {
			t.Errorf("role %s still exists", is.Handle.Key)
		}
	}
	for _, s := range sessions {
		if err := s.Ping(ctx); err == nil {
			t.Error("a grantee's session survived the revocation")
		}
	}
	writes.Store(0)
	has, err := p.HasAccessBatch(ctx, reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range has {
		if h {
			t.Errorf("read back: grant %d still has access", i)
		}
	}
	if n := writes.Load(); n > 3 {
		t.Errorf("reading back 30 grants took %d round trips, want at most 3", n)
	}
}

// TestRevokeBatchPartialFailure: in one batch, a handle naming a foreign role is refused for
// that grant only (ErrNeedsOperator); a role that owns a table is revoked on its own with its
// evidence; a role whose row another transaction holds locked fails the batch step, and then
// fails alone (lock timeout) while every other role is dropped; a grant whose role is gone
// already is success. The locked one is revoked once the lock is released.
func TestRevokeBatchPartialFailure(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, Config{Roles: []string{e.rw}, LockTimeout: 300 * time.Millisecond})
	ctx := context.Background()
	reqs, iss := issueMany(t, p, 6)
	asGrantee(t, ctx, iss[1], "CREATE TABLE batch_notes (id int)")
	foreign := reqs[2]
	foreign.Handle.Data = map[string]string{"role": e.rw}
	reqs[2] = foreign
	gone := reqs[4]
	if err := p.Revoke(ctx, gone); err != nil {
		t.Fatal(err)
	}
	// Another transaction holds the row of role 3.
	lock, err := e.super.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(context.WithoutCancel(ctx))
	if _, err := lock.Exec(ctx, "ALTER ROLE "+quoteIdent(iss[3].Handle.Key)+" CONNECTION LIMIT 3"); err != nil {
		t.Fatal(err)
	}

	res := p.RevokeBatch(ctx, reqs)
	if len(res) != len(reqs) {
		t.Fatalf("%d results for %d requests", len(res), len(reqs))
	}
	for i, r := range res {
		switch i {
		case 2:
			if !errors.Is(r.Err, grants.ErrNeedsOperator) {
				t.Errorf("foreign handle: err %v, want ErrNeedsOperator", r.Err)
			}
		case 3:
			if r.Err == nil {
				t.Error("the locked role: no error, want a failure (lock timeout)")
			}
		default:
			if r.Err != nil {
				t.Errorf("grant %d: %v", i, r.Err)
			}
		}
	}
	if got := res[1].Evidence["reassigned"]; got != e.db+": table public.batch_notes" {
		t.Errorf("the owning role's evidence reassigned = %q", got)
	}
	for i, is := range iss {
		want := i == 2 || i == 3 // role 2 is untouched (its grant named another role); 3 is locked
		if got := e.role(t, is.Handle.Key).exists; got != want {
			t.Errorf("role %d (%s) exists = %v, want %v", i, is.Handle.Key, got, want)
		}
	}
	if !e.role(t, e.rw).exists {
		t.Fatal("the foreign role was dropped")
	}
	var owner string
	if err := e.super.QueryRow(ctx, "SELECT tableowner FROM pg_tables WHERE tablename = 'batch_notes'").Scan(&owner); err != nil || owner != e.orphan {
		t.Errorf("batch_notes owner %q (%v), want %s", owner, err, e.orphan)
	}
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	again := p.RevokeBatch(ctx, []grants.RevokeRequest{reqs[3], reqs[0]})
	for _, r := range again {
		if r.Err != nil {
			t.Errorf("retry: %v", r.Err)
		}
	}
	if e.role(t, iss[3].Handle.Key).exists {
		t.Error("the once-locked role survived its retry")
	}
}

// TestRevokeBatchRoleDroppedMeanwhile: a role that RevokeBatch found in step 1 and that
// someone else drops before a later step (NOLOGIN fails the whole step with 42704, or the
// role is missing at terminate/DROP ROLE time) is reported revoked (nil error, nothing left
// behind, as Revoke reports a grant already gone), and every other grant of the batch is
// revoked with its own success; no role of the batch is left, with LOGIN or without.
func TestRevokeBatchRoleDroppedMeanwhile(t *testing.T) {
	for _, step := range []string{"found", "logins ended", "terminated"} {
		t.Run(step, func(t *testing.T) {
			e := newEnv(t)
			p := e.provider(t, Config{})
			ctx := context.Background()
			reqs, iss := issueMany(t, p, 4)
			// loginMembers counts the roles granted e.ro, other than the admin, that can log in.
			loginMembers := func() int {
				t.Helper()
				var n int
				if err := e.super.QueryRow(ctx, `SELECT count(*) FROM pg_roles r
					JOIN pg_auth_members m ON m.member = r.oid JOIN pg_roles g ON g.oid = m.roleid
					WHERE g.rolname = $1 AND r.rolname <> $2 AND r.rolcanlogin`, e.ro, e.admin).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			if n := loginMembers(); n != len(iss) {
				t.Fatalf("%d login roles before the batch, want %d", n, len(iss))
			}
			const vanished = 1
			fired := 0
			p.batchStep = func(s string) {
				if s != step {
					return
				}
				fired++
				mustExec(t, ctx, e.super, "DROP ROLE "+quoteIdent(iss[vanished].Handle.Key))
			}

			res := p.RevokeBatch(ctx, reqs)
			if fired != 1 {
				t.Fatalf("the hook at step %q ran %d times, want once", step, fired)
			}
			if len(res) != len(reqs) {
				t.Fatalf("%d results for %d requests", len(res), len(reqs))
			}
			for i, r := range res {
				if r.Err != nil {
					t.Errorf("grant %d (vanished %v): %v", i, i == vanished, r.Err)
				}
				if len(r.Evidence) != 0 {
					t.Errorf("grant %d (vanished %v): evidence %v, want none", i, i == vanished, r.Evidence)
				}
			}
			for i, is := range iss {
				if e.role(t, is.Handle.Key).exists {
					t.Errorf("role %d (%s) survived the batch", i, is.Handle.Key)
				}
			}
			if n := loginMembers(); n != 0 {
				t.Errorf("%d roles granted %s (besides the admin) still have LOGIN", n, e.ro)
			}
		})
	}
}

// TestRevokeReadsBackInItsLastRoundTrip: a single revocation reads the grant's access back,
// as HasAccess would (the handle's role, else every role with the grant id suffix), in the
// round trip that drops its role (RevokeResult.ReadBack), so the revoker needs no read-back
// call of its own. Without a handle, a role of the grant that appeared after the lookup (made
// here between the first round trip and the last) is seen there, and the revocation then says
// it did not read back, leaving the check to the revoker.
func TestRevokeReadsBackInItsLastRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name         string
		handle       bool
		lateRole     bool
		wantReadBack bool
	}{
		{"with its handle", true, false, true},
		{"without a handle", false, false, true},
		{"without a handle, a role of the grant made meanwhile", false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			p := e.provider(t, Config{})
			ctx := context.Background()
			reqs, iss := issueMany(t, p, 1)
			req := reqs[0]
			if !tc.handle {
				req.Handle = grants.Handle{} // an issue interrupted before the provider answered
			}
			late := rolePrefix + "late_" + grantSuffix(req.GrantID)
			if tc.lateRole {
				p.batchStep = func(s string) {
					if s == "role logins ended" {
						mustExec(t, ctx, e.super, "CREATE ROLE "+quoteIdent(late)+" LOGIN")
					}
				}
				t.Cleanup(func() { mustExec(t, context.Background(), e.super, "DROP ROLE IF EXISTS "+quoteIdent(late)) })
			}
			res, err := p.RevokeWithResult(ctx, req)
			if err != nil {
				t.Fatalf("RevokeWithResult: %v", err)
			}
			if res.ReadBack != tc.wantReadBack {
				t.Errorf("ReadBack = %v, want %v", res.ReadBack, tc.wantReadBack)
			}
			var exists bool
			if err := e.super.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", iss[0].Handle.Key).Scan(&exists); err != nil || exists {
				t.Fatalf("the grant's role is still there after the revocation (%v, %v)", exists, err)
			}
			if has, err := p.HasAccess(ctx, req); err != nil || has != !tc.wantReadBack {
				t.Errorf("HasAccess after the revocation = %v, %v; want %v", has, err, !tc.wantReadBack)
			}
		})
	}
}

// TestRevokeBatchReadsBackInItsDrop: RevokeBatch reads the dropped grants' roles back in the
// round trip of its DROP ROLE (RevokeResult.ReadBack for each), so the revoker makes no
// HasAccessBatch call; a grant whose role of the same grant appeared after the lookup is not
// reported read back, the others are.
func TestRevokeBatchReadsBackInItsDrop(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run(fmt.Sprintf("late role %v", late), func(t *testing.T) {
			e := newEnv(t)
			p := e.provider(t, Config{})
			ctx := context.Background()
			reqs, _ := issueMany(t, p, 4)
			lateRole := rolePrefix + "late_" + grantSuffix(reqs[0].GrantID)
			if late {
				p.batchStep = func(s string) {
					if s == "terminated" {
						mustExec(t, ctx, e.super, "CREATE ROLE "+quoteIdent(lateRole)+" LOGIN")
					}
				}
				t.Cleanup(func() { mustExec(t, context.Background(), e.super, "DROP ROLE IF EXISTS "+quoteIdent(lateRole)) })
			}
			res := p.RevokeBatch(ctx, reqs)
			for i, r := range res {
				if r.Err != nil {
					t.Fatalf("grant %d: %v", i, r.Err)
				}
				want := !(late && i == 0)
				if r.ReadBack != want {
					t.Errorf("grant %d: ReadBack = %v, want %v", i, r.ReadBack, want)
				}
			}
			has, err := p.HasAccessBatch(ctx, reqs)
			if err != nil {
				t.Fatal(err)
			}
			for i, h := range has {
				if h != (late && i == 0) {
					t.Errorf("grant %d: HasAccessBatch after the batch = %v", i, h)
				}
			}
		})
	}
}

// TestRevokeLooksUpTheHandlesRoleByName: with a handle, Revoke looks up the role it names
// (findRoleByNameSQL, an index lookup on pg_authid however many roles it holds) and drops it;
// another role with the grant's suffix is then left to the drift reconciler. Without a handle
// (an issue interrupted before the provider answered), every role with the grant's suffix is
// found by the scan and dropped; so is the grant's role renamed away from the handle's name.
func TestRevokeLooksUpTheHandlesRoleByName(t *testing.T) {
	for _, handle := range []bool{true, false} {
		t.Run(fmt.Sprintf("handle %v", handle), func(t *testing.T) {
			e := newEnv(t)
			p := e.provider(t, Config{})
			ctx := context.Background()
			reqs, iss := issueMany(t, p, 1)
			req := reqs[0]
			if !handle {
				req.Handle = grants.Handle{}
			}
			stray := rolePrefix + "stray_" + grantSuffix(req.GrantID)
			mustExec(t, ctx, e.super, "CREATE ROLE "+quoteIdent(stray)+" NOLOGIN")
			t.Cleanup(func() { mustExec(t, context.Background(), e.super, "DROP ROLE IF EXISTS "+quoteIdent(stray)) })
			if err := p.Revoke(ctx, req); err != nil {
				t.Fatal(err)
			}
			exists := func(name string) bool {
				t.Helper()
				var ok bool
				if err := e.super.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name).Scan(&ok); err != nil {
					t.Fatal(err)
				}
				return ok
			}
			if exists(iss[0].Handle.Key) {
				t.Errorf("the grant's role %s survived the revocation", iss[0].Handle.Key)
			}
			if got := exists(stray); got != handle {
				t.Errorf("the other role with the grant's suffix exists = %v, want %v", got, handle)
			}
		})
	}
	t.Run("the handle's role renamed", func(t *testing.T) {
		e := newEnv(t)
		p := e.provider(t, Config{})
		ctx := context.Background()
		reqs, iss := issueMany(t, p, 1)
		renamed := rolePrefix + "renamed_" + grantSuffix(reqs[0].GrantID)
		mustExec(t, ctx, e.super, "ALTER ROLE "+quoteIdent(iss[0].Handle.Key)+" RENAME TO "+quoteIdent(renamed))
		t.Cleanup(func() { mustExec(t, context.Background(), e.super, "DROP ROLE IF EXISTS "+quoteIdent(renamed)) })
		if err := p.Revoke(ctx, reqs[0]); err != nil {
			t.Fatal(err)
		}
		var ok bool
		if err := e.super.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", renamed).Scan(&ok); err != nil || ok {
			t.Errorf("the grant's role under another name survived the revocation (%v, %v)", ok, err)
		}
	})
}
