package postgres

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// driftRig is a store, a manager and a postgres provider on the test's real server.
type driftRig struct {
	e     *testEnv
	clock *clocktest.Fake
	store *sqlstore.Store
	p     *Provider
	m     *grants.Manager
	provs map[string]grants.Provider
}

func newDriftRig(t *testing.T) *driftRig {
	t.Helper()
	e := newEnv(t)
	ctx := t.Context()
	clock := clocktest.New(time.Now().UTC().Truncate(time.Millisecond))
	p, err := New(ctx, Config{AdminDSN: e.adminDSN, Roles: []string{e.ro}, OrphanOwner: e.orphan}, clock, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	st, err := sqlstore.Open(ctx, "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	provs := map[string]grants.Provider{"prod-db": p}
	res := grants.Resource{Name: "prod-db", Provider: Kind, DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour}
	m := grants.NewManager(st, provs, []grants.Resource{res}, clock, nil, grants.ManagerOptions{})
	return &driftRig{e: e, clock: clock, store: st, p: p, m: m, provs: provs}
}

func (r *driftRig) issue(t *testing.T) grants.Grant {
	t.Helper()
	g, _, err := r.m.Issue(t.Context(), grants.IssueInput{Resource: "prod-db", Person: alice, Duration: time.Hour, Reason: "replication lag",
		Actor: audit.Actor{Kind: audit.ActorOperator, ID: "tester"}})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func (r *driftRig) events(t *testing.T, action audit.Action) []audit.Event {
	t.Helper()
	evs, err := r.store.Search(t.Context(), audit.Query{Action: action, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestDriftOnRealPostgres: on the real server, a login role with the broker's name made by
// hand (no grant in the store: as after a restore) is found, and revoked or only flagged per
// drift.action; a live grant whose role an admin dropped is marked access-missing; the live
// grant that still has its role is left alone.
func TestDriftOnRealPostgres(t *testing.T) {
	t.Parallel()
	for _, action := range []grants.DriftAction{grants.DriftFlag, grants.DriftRevoke} {
		t.Run(string(action), func(t *testing.T) {
			t.Parallel()
			r := newDriftRig(t)
			ctx := t.Context()
			kept := r.issue(t)
			dropped := r.issue(t)
			mustExec(t, ctx, r.e.super, "DROP ROLE "+quoteIdent(dropped.Handle.Key))
			strayID := grants.NewID("g")
			stray := RoleName(strayID, grants.Person{Email: "mallory@example.com"})
			mustExec(t, ctx, r.e.super, "CREATE ROLE "+quoteIdent(stray)+" LOGIN PASSWORD 'x' IN ROLE "+quoteIdent(r.e.ro))
			// A prefix look-alike outside the resource's roles is not this resource's business.
			other := RoleName(grants.NewID("g"), grants.Person{Email: "bob@example.com"})
			mustExec(t, ctx, r.e.super, "CREATE ROLE "+quoteIdent(other)+" NOLOGIN")
			t.Cleanup(func() { _, _ = r.e.super.Exec(context.Background(), "DROP ROLE IF EXISTS "+quoteIdent(other)) })

			d := grants.NewDriftReconciler(r.store, r.provs, r.clock, nil, grants.DriftOptions{Action: action})
			rep, err := d.Pass(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Unmanaged) != 1 || rep.Unmanaged[0].Access.Key != stray || rep.Unmanaged[0].Access.GrantID != strayID {
				t.Fatalf("unmanaged = %+v, want only role %s", rep.Unmanaged, stray)
			}
			if !slices.Equal(rep.Missing, []string{dropped.ID}) {
				t.Fatalf("missing = %v, want [%s]", rep.Missing, dropped.ID)
			}
			if got, _ := r.store.GetGrant(ctx, dropped.ID); got.AccessMissingAt.IsZero() {
				t.Fatal("the grant whose role was dropped is not marked")
			}
			if got, _ := r.store.GetGrant(ctx, kept.ID); !got.AccessMissingAt.IsZero() {
				t.Fatal("the grant with its role is marked")
			}
			if !r.e.role(t, kept.Handle.Key).exists || !r.e.role(t, other).exists {
				t.Fatal("drift touched a role it must leave alone")
			}
			found := r.events(t, audit.ActionDriftFound)
			if len(found) != 1 || found[0].Evidence["key"] != stray {
				t.Fatalf("drift.found events = %+v", found)
			}
			switch action {
			case grants.DriftFlag:
				if !r.e.role(t, stray).exists {
					t.Fatal("flag dropped the stray role")
				}
			case grants.DriftRevoke:
				if r.e.role(t, stray).exists {
					t.Fatal("revoke left the stray role")
				}
				if n := len(r.events(t, audit.ActionDriftRevoked)); n != 1 {
					t.Fatalf("%d drift.revoked events, want 1", n)
				}
			}
		})
	}
}

// TestRevokeReadsBackOnRealPostgres: the revoker's read-back finds the role gone after a
// real revocation and says so in grant.revoked.
func TestRevokeReadsBackOnRealPostgres(t *testing.T) {
	t.Parallel()
	r := newDriftRig(t)
	ctx := t.Context()
	g := r.issue(t)
	if has, err := r.p.HasAccess(ctx, grants.RevokeRequest{GrantID: g.ID, Handle: g.Handle}); err != nil || !has {
		t.Fatalf("HasAccess before revoke = %v, %v; want true", has, err)
	}
	r.clock.Advance(time.Hour)
	if err := grants.NewRevoker(r.store, r.provs, r.clock, nil, grants.RevokerOptions{}).Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	evs, err := r.store.Search(ctx, audit.Query{GrantID: g.ID, Action: audit.ActionGrantRevoked, Limit: 10})
	if err != nil || len(evs) != 1 || evs[0].Evidence["read_back"] != "gone" {
		t.Fatalf("grant.revoked = %+v (%v), want one with read_back=gone", evs, err)
	}
	if has, err := r.p.HasAccess(ctx, grants.RevokeRequest{GrantID: g.ID, Handle: g.Handle}); err != nil || has {
		t.Fatalf("HasAccess after revoke = %v, %v; want false", has, err)
	}
}
