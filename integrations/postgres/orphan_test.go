package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// asGrantee runs sql on a connection made with a delivered credential.
func asGrantee(t *testing.T, ctx context.Context, iss grants.Issued, sql string) {
	t.Helper()
	c, err := pgx.Connect(ctx, fields(iss.Credential)["connection_string"])
	if err != nil {
		t.Fatalf("connect as the grantee: %v", err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, sql); err != nil {
		t.Fatalf("as the grantee, %s: %v", sql, err)
	}
}

// TestRevokedRoleLeavesNoFoothold is issue #11's scenario on the real server: a grantee
// with CREATE on a schema leaves a SECURITY DEFINER function, a trigger on a table it may
// write to, a table with data and a view. After revocation a new login calling the function
// gains nothing, the trojan trigger is gone, the table and view are kept and owned by the
// orphan owner (never by the admin), and the revocation result names every object.
func TestRevokedRoleLeavesNoFoothold(t *testing.T) {
	t.Parallel()
	for _, admin := range []string{"least-privilege admin", "superuser admin"} {
		t.Run(admin, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ctx := t.Context()
			mustExec(t, ctx, e.super, "CREATE TABLE vault (secret text)")
			mustExec(t, ctx, e.super, "INSERT INTO vault VALUES ('the-crown-jewels')")
			mustExec(t, ctx, e.super, "GRANT TRIGGER ON items TO "+quoteIdent(e.rw))
			cfg := Config{Roles: []string{e.rw}}
			if admin == "superuser admin" {
				cfg.AdminDSN = e.superDSN
			}
			p := e.provider(t, cfg)

			id := grants.NewID("g")
			iss, err := p.Issue(ctx, issueReq(id, time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			asGrantee(t, ctx, iss, `
				CREATE TABLE notes (id int, body text);
				INSERT INTO notes VALUES (1, 'kept for the record');
				CREATE VIEW notes_v AS SELECT id FROM notes;
				CREATE FUNCTION whoami() RETURNS text LANGUAGE sql SECURITY DEFINER AS 'SELECT current_user::text';
				CREATE FUNCTION peek() RETURNS text LANGUAGE sql SECURITY DEFINER AS 'SELECT string_agg(secret, '','') FROM vault';
				CREATE FUNCTION trap() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
				CREATE TRIGGER trap BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION trap();
				CREATE STATISTICS notes_stats ON id, body FROM notes;
				CREATE COLLATION notes_coll FROM "C";
				CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = int4eq);`)

			res, err := p.RevokeWithResult(ctx, revokeReq(id, iss.Handle))
			if err != nil {
				t.Fatalf("Revoke: %v", err)
			}
			if e.role(t, iss.Handle.Key).exists {
				t.Fatal("role still exists")
			}

			// A later login (another grant) calls the functions: they are gone, so they run
			// with nobody's rights, let alone the admin's.
			id2 := grants.NewID("g")
			iss2, err := p.Issue(ctx, issueReq(id2, time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = p.Revoke(context.Background(), revokeReq(id2, iss2.Handle)) })
			later, err := pgx.Connect(ctx, fields(iss2.Credential)["connection_string"])
			if err != nil {
				t.Fatal(err)
			}
			defer later.Close(context.Background())
			for _, call := range []string{"SELECT whoami()", "SELECT peek()"} {
				var got string
				err := later.QueryRow(ctx, call).Scan(&got)
				if err == nil {
					t.Errorf("%s as a later login returned %q; the grantee's definer function survived", call, got)
				} else if code := pgErrCode(err); code != "42883" { // undefined_function
					t.Errorf("%s: %v, want undefined_function (42883)", call, err)
				}
			}
			if _, err := later.Exec(ctx, "SELECT secret FROM vault"); pgErrCode(err) != "42501" {
				t.Errorf("later login reads vault: err %v, want insufficient_privilege", err)
			}
			if _, err := later.Exec(ctx, "SELECT * FROM notes_v"); pgErrCode(err) != "42501" {
				t.Errorf("later login reads the orphaned view: err %v, want insufficient_privilege", err)
			}

			// Catalog: nothing the grantee wrote is left to run; its data is kept.
			var triggers, definers, routines int
			if err := e.super.QueryRow(ctx, `SELECT
				(SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass AND NOT tgisinternal),
				(SELECT count(*) FROM pg_proc WHERE prosecdef AND proowner IN (SELECT oid FROM pg_roles WHERE rolname IN ($1, $2))),
				(SELECT count(*) FROM pg_proc WHERE proname IN ('whoami', 'peek', 'trap'))`, e.orphan, e.admin).Scan(&triggers, &definers, &routines); err != nil {
				t.Fatal(err)
			}
			if triggers != 0 || definers != 0 || routines != 0 {
				t.Errorf("after revoke: %d trigger(s) on items, %d definer function(s) owned by the orphan owner or admin, %d of the grantee's routines; want 0, 0, 0", triggers, definers, routines)
			}
			for _, rel := range []string{"notes", "notes_v"} {
				var owner string
				if err := e.super.QueryRow(ctx, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = $1", rel).Scan(&owner); err != nil {
					t.Fatalf("%s was not kept: %v", rel, err)
				}
				if owner != e.orphan {
					t.Errorf("%s is owned by %q, want the orphan owner %q", rel, owner, e.orphan)
				}
			}
			var body string
			if err := e.super.QueryRow(ctx, "SELECT body FROM notes").Scan(&body); err != nil || body != "kept for the record" {
				t.Errorf("notes data: %q, %v", body, err)
			}
			var login, super bool
			var memberOf int
			if err := e.super.QueryRow(ctx, `SELECT rolcanlogin, rolsuper, (SELECT count(*) FROM pg_auth_members WHERE member = r.oid)
				FROM pg_roles r WHERE rolname = $1`, e.orphan).Scan(&login, &super, &memberOf); err != nil {
				t.Fatalf("orphan owner: %v", err)
			}
			if login || super || memberOf != 0 {
				t.Errorf("orphan owner login=%v superuser=%v member of %d roles, want none", login, super, memberOf)
			}

			// The evidence a reviewer reads in grant.revoked.
			ev := res.Evidence
			if ev["orphan_owner"] != e.orphan || ev["reassigned_count"] != "2" || ev["dropped_count"] != "7" {
				t.Errorf("evidence counts: %v", ev)
			}
			for key, want := range map[string][]string{
				"reassigned": {e.db + ": table public.notes", e.db + ": view public.notes_v"},
				"dropped": {
					e.db + ": function public.whoami() (security definer)",
					e.db + ": function public.peek() (security definer)",
					e.db + ": function public.trap()",
					e.db + ": trigger trap on public.items (depended on function public.trap())",
					e.db + ": statistics object public.notes_stats",
					e.db + ": collation public.notes_coll",
					e.db + ": operator public.===(integer,integer)",
				},
			} {
				for _, w := range want {
					if !strings.Contains(ev[key], w) {
						t.Errorf("evidence %s = %q, want it to name %q", key, ev[key], w)
					}
				}
			}
		})
	}
}

func TestOrphanOwnerMustBeHarmless(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	withLogin, inRole := e.orphan+"_login", e.orphan+"_member"
	mustExec(t, ctx, e.super, "CREATE ROLE "+quoteIdent(withLogin)+" LOGIN")
	mustExec(t, ctx, e.super, "CREATE ROLE "+quoteIdent(inRole)+" NOLOGIN IN ROLE "+quoteIdent(e.rw))
	t.Cleanup(func() {
		for _, r := range []string{withLogin, inRole} {
			_, _ = e.super.Exec(context.Background(), "DROP ROLE IF EXISTS "+quoteIdent(r))
		}
	})
	for _, tt := range []struct {
		name, orphan, wantErr string
		wantKind              error
	}{
		{"can log in", withLogin, "has LOGIN or a role attribute", grants.ErrNeedsOperator},
		{"member of a role", inRole, "is a member of", grants.ErrNeedsOperator},
		{"temporary role prefix", "ab_orphans", "prefix of temporary roles", grants.ErrInvalid},
		{"spare role prefix", sparePrefix + "orphans", "prefix of spare roles", grants.ErrInvalid},
		{"one of the granted roles", e.ro, "is also in roles", grants.ErrInvalid},
		{"the admin itself", e.admin, "has LOGIN or a role attribute", grants.ErrNeedsOperator},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(ctx, Config{AdminDSN: e.adminDSN, Roles: []string{e.ro}, OrphanOwner: tt.orphan}, grants.RealClock{}, slog.New(slog.DiscardHandler))
			if err == nil {
				p.Close()
				t.Fatalf("New accepted orphan_owner %q", tt.orphan)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, tt.wantKind) {
				t.Errorf("New error = %v, want %q wrapping %v", err, tt.wantErr, tt.wantKind)
			}
		})
	}

	// Missing: New creates it, NOLOGIN, and the least-privilege admin becomes its member; a
	// second New (another replica) accepts it as it is.
	for range 2 {
		e.provider(t, Config{})
	}
	var login, adminMember bool
	if err := e.super.QueryRow(ctx, `SELECT rolcanlogin, pg_has_role($2, oid, 'USAGE') FROM pg_roles WHERE rolname = $1`, e.orphan, e.admin).
		Scan(&login, &adminMember); err != nil {
		t.Fatalf("orphan owner not created: %v", err)
	}
	if login || !adminMember {
		t.Errorf("orphan owner login=%v, admin member=%v; want NOLOGIN with the admin as member", login, adminMember)
	}
}

func TestEvidenceListIsBounded(t *testing.T) {
	var l leftBehind
	for i := range maxListed + 7 {
		l.reassigned = append(l.reassigned, fmt.Sprintf("app: table public.t%d", i))
	}
	ev := l.result("accessbroker_orphans").Evidence
	if ev["reassigned_count"] != fmt.Sprint(maxListed+7) {
		t.Errorf("reassigned_count = %q", ev["reassigned_count"])
	}
	if n := strings.Count(ev["reassigned"], "app: table"); n != maxListed {
		t.Errorf("listed %d objects, want %d", n, maxListed)
	}
	if !strings.HasSuffix(ev["reassigned"], "; … and 7 more") {
		t.Errorf("list does not say how many more: …%s", ev["reassigned"][len(ev["reassigned"])-40:])
	}
	if _, ok := ev["dropped"]; ok {
		t.Error("dropped listed with nothing dropped")
	}
}

// TestGrantRevokedEventListsWhatTheRoleLeft runs the real revoker over the real provider:
// the grant.revoked audit event a reviewer reads names the table handed to the orphan owner
// and the definer function dropped.
func TestGrantRevokedEventListsWhatTheRoleLeft(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	clock := clocktest.New(time.Now().UTC().Truncate(time.Millisecond))
	p, err := New(ctx, Config{AdminDSN: e.adminDSN, Roles: []string{e.rw}, OrphanOwner: e.orphan}, clock, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	st, err := sqlstore.Open(ctx, "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	providers := map[string]grants.Provider{"prod-db": p}
	res := grants.Resource{Name: "prod-db", Provider: Kind, DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour}
	m := grants.NewManager(st, providers, []grants.Resource{res}, clock, nil, grants.ManagerOptions{})
	g, cred, err := m.Issue(ctx, grants.IssueInput{Resource: "prod-db", Person: alice, Duration: time.Hour, Reason: "replication lag",
		Actor: audit.Actor{Kind: audit.ActorOperator, ID: "tester"}})
	if err != nil {
		t.Fatal(err)
	}
	asGrantee(t, ctx, grants.Issued{Credential: cred}, `
		CREATE TABLE lag_notes (id int);
		CREATE FUNCTION elevate() RETURNS text LANGUAGE sql SECURITY DEFINER AS 'SELECT current_user::text';`)

	clock.Advance(time.Hour)
	if err := grants.NewRevoker(st, providers, clock, nil, grants.RevokerOptions{}).Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	evs, err := st.Search(ctx, audit.Query{GrantID: g.ID, Action: audit.ActionGrantRevoked, Limit: 10})
	if err != nil || len(evs) != 1 {
		t.Fatalf("grant.revoked events = %d (%v), want 1", len(evs), err)
	}
	ev := evs[0].Evidence
	for key, want := range map[string]string{
		"orphan_owner":     e.orphan,
		"reassigned":       e.db + ": table public.lag_notes",
		"reassigned_count": "1",
		"dropped":          e.db + ": function public.elevate() (security definer)",
		"dropped_count":    "1",
		"cause":            string(grants.CauseExpired),
	} {
		if ev[key] != want {
			t.Errorf("grant.revoked evidence %s = %q, want %q", key, ev[key], want)
		}
	}
}
