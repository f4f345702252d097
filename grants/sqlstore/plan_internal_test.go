package sqlstore

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/accessbroker/accessbroker/grants"
)

// TestLiveGrantsOfAHandleUseTheHandleIndex: the overlap check of every issue and revocation
// (the live grants holding one handle) is answered from the partial index grants_handle_key,
// not by reading every live grant (grants_state), whose number grows with the live grants.
func TestLiveGrantsOfAHandleUseTheHandleIndex(t *testing.T) {
	t.Parallel()
	s := openPlanStore(t)
	for _, tc := range []struct {
		name string
		f    grants.GrantFilter
	}{
		{"manager's overlap check", grants.GrantFilter{HandleKey: "ab_alice", States: []grants.State{grants.StateIssuing, grants.StateActive, grants.StateRevoking, grants.StateRevokeFailed}}},
		{"revoker's overlap check", grants.GrantFilter{HandleKey: "ab_alice", States: []grants.State{grants.StateIssuing, grants.StateActive}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := grantsWhere(tc.f)
			if p := queryPlan(t, s.r, listQuery("grants", grantCols, w, 0), w.args...); !strings.Contains(p, "INDEX grants_handle_key") {
				t.Errorf("plan %q does not use grants_handle_key", p)
			}
		})
	}
}

// TestPendingCapQueryUsesTheUserIndex: the pending-cap check of a group commit reads the
// pending requests of all its requesters through the requests' user index, not by scanning
// every request.
func TestPendingCapQueryUsesTheUserIndex(t *testing.T) {
	t.Parallel()
	s := openPlanStore(t)
	if p := queryPlan(t, s.r, pendingOfUsersSQL, `["U1","U2"]`, string(grants.RequestPending), 0); !strings.Contains(p, "USING INDEX requests_slack_user (slack_user=?)") {
		t.Errorf("plan %q does not look the users up in requests_slack_user", p)
	}
}

// openPlanStore opens an empty SQLite store for a query-plan test.
func openPlanStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), grants.RealClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// queryPlan is SQLite's EXPLAIN QUERY PLAN of query with args: its steps' details joined by "; ".
func queryPlan(t *testing.T, db *sql.DB, query string, args ...any) string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
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
	return strings.Join(plan, "; ")
}
