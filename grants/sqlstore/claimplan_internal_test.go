package sqlstore

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/accessbroker/accessbroker/grants"
)

// TestClaimWalksTheDueIndexInOrder: the SQLite claim reads grants_due in its own order and
// stops after its limit, without sorting: a sort (a temporary B-tree) would read every grant
// due by now on every claim, so a burst of 10,000 grants due in one second made each claim
// of 256 read all 10,000 (#16.3).
func TestClaimWalksTheDueIndexInOrder(t *testing.T) {
	t.Parallel()
	s, err := Open(t.Context(), "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), grants.RealClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	rows, err := s.w.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+claimSQLiteSQL, "i-test", 2000, 1000, 1000, 256)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	p := strings.Join(plan, "; ")
	if !strings.Contains(p, "INDEX grants_due") {
		t.Errorf("claim plan %q does not read grants_due", p)
	}
	if strings.Contains(p, "TEMP B-TREE") {
		t.Errorf("claim plan %q sorts the due grants", p)
	}
}
