package sqlstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/grants/storetest"
)

// openSQLite opens a fresh SQLite store in the test's temporary directory.
func openSQLite(t testing.TB, clock grants.Clock) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(context.Background(), "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), clock, nil)
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, clock *clocktest.Fake) grants.Store { return openSQLite(t, clock) })
}
