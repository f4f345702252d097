package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/providertest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	e := newEnv(t) // one database for the whole suite; each subtest gets a fresh provider
	providertest.Run(t, func(t *testing.T) providertest.Harness {
		p := e.provider(t, Config{LockTimeout: 300 * time.Millisecond})
		return providertest.Harness{
			Provider: p,
			Person:   alice,
			HasAccess: func(t *testing.T, h grants.Handle, req grants.RevokeRequest) bool {
				name := h.Key
				if name == "" {
					name = RoleName(req.GrantID, req.Person)
				}
				ri := e.role(t, name)
				return ri.exists && ri.canLogin
			},
			// A superuser transaction changes the grant roles and stays open: the provider's
			// ALTER ROLE waits for its row lock and gives up after LockTimeout, as it would
			// behind any long-running DDL.
			InjectRevokeFault: func(t *testing.T) func() {
				ctx := t.Context()
				tx, err := e.super.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				rows, err := tx.Query(ctx, `SELECT r.rolname FROM pg_roles r
					JOIN pg_auth_members m ON m.member = r.oid JOIN pg_roles g ON g.oid = m.roleid
					WHERE g.rolname = $1 AND starts_with(r.rolname, 'ab_')`, e.ro)
				if err != nil {
					t.Fatal(err)
				}
				names, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil || len(names) == 0 {
					t.Fatalf("no grant role to lock (%v)", err)
				}
				for _, n := range names {
					if _, err := tx.Exec(ctx, "ALTER ROLE "+quoteIdent(n)+" CONNECTION LIMIT 1"); err != nil {
						t.Fatal(err)
					}
				}
				return func() { _ = tx.Rollback(context.Background()) }
			},
			SharedAccess: false, // one role per grant
			// GrantPreexisting stays nil: a role named after the grant id cannot exist before it.
			SecretFields: []string{"password", "connection_string"},
		}
	})
}
