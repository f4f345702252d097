package sqlstore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/grants/storetest"
)

// TestPeekLiveGrants: the live grants are read without creating, migrating or writing
// anything; a store that does not exist yet has none.
func TestPeekLiveGrants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fill := func(t *testing.T, s grants.Store, clock *clocktest.Fake) (live string) {
		t.Helper()
		a := storetest.NewGrant(clock.Now(), "prod-db", time.Hour)
		b := storetest.NewGrant(clock.Now(), "prod-aws", time.Hour)
		b.State = grants.StateRevoked
		storetest.MustCreate(t, s, clock.Now(), a)
		storetest.MustCreate(t, s, clock.Now(), b)
		return a.ID
	}
	check := func(t *testing.T, got []sqlstore.LiveGrant, err error, live string) {
		t.Helper()
		if err != nil || len(got) != 1 || got[0].ID != live || got[0].Resource != "prod-db" || got[0].State != grants.StateActive {
			t.Fatalf("PeekLiveGrants = %+v, %v; want only %s", got, err, live)
		}
	}

	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		missing := filepath.Join(dir, "nothing-yet.db")
		if got, err := sqlstore.PeekLiveGrants(ctx, "sqlite", "file:"+missing); err != nil || len(got) != 0 {
			t.Fatalf("a store that does not exist: %v, %v", got, err)
		}
		if _, err := os.Stat(missing); !os.IsNotExist(err) {
			t.Fatalf("PeekLiveGrants created %s (%v)", missing, err)
		}
		clock := clocktest.New(storetest.Start)
		path := filepath.Join(dir, "ab.db")
		s, err := sqlstore.Open(ctx, "sqlite", "file:"+path, clock, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		live := fill(t, s, clock)
		got, err := sqlstore.PeekLiveGrants(ctx, "sqlite", "file:"+path)
		check(t, got, err, live)
	})

	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		dsn := newPGSchema(t) // skips without the test server
		if got, err := sqlstore.PeekLiveGrants(ctx, "postgres", dsn); err != nil || len(got) != 0 {
			t.Fatalf("a schema never migrated: %v, %v", got, err)
		}
		clock := clocktest.New(storetest.Start)
		live := fill(t, openPG(t, dsn, clock), clock)
		got, err := sqlstore.PeekLiveGrants(ctx, "postgres", dsn)
		check(t, got, err, live)
	})
}
