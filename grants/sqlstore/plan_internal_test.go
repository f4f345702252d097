package sqlstore

import (
	"database/sql"
	"fmt"
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

// TestPendingCapQueryUsesTheUserStateIndex: the pending-cap check of a group commit reads
// the pending requests of its requesters through requests_user_state (slack_user, state),
// not every request the person ever made (requests_slack_user) nor every pending request of
// everybody (requests_state): on an empty store, and on one where the requesters have a long
// history of decided requests and the planner has statistics (#16.7).
func TestPendingCapQueryUsesTheUserStateIndex(t *testing.T) {
	t.Parallel()
	for _, history := range []bool{false, true} {
		t.Run(fmt.Sprintf("history=%v", history), func(t *testing.T) {
			t.Parallel()
			s := openPlanStore(t)
			if history {
				// 20,000 requests of 20 people, all but 40 decided, then ANALYZE.
				if _, err := s.w.ExecContext(t.Context(), `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i < 19999)
					INSERT INTO requests(id, requester, slack_user, resource, duration_ms, reason, source, state, approvals,
						incident_id, evidence, external_key, notify, created_at, decided_at, expires_at, version, updated_at)
					SELECT 'r_' || i, '{}', 'U' || (i % 20), 'prod-db', 3600000, 'x', 'slack',
						CASE WHEN i % 500 = 0 THEN 'pending' ELSE 'approved' END, '[]', '', '', NULL, '', i, i, i + 3600000, 1, i FROM n`); err != nil {
					t.Fatal(err)
				}
				if _, err := s.w.ExecContext(t.Context(), `ANALYZE`); err != nil {
					t.Fatal(err)
				}
			}
			if p := queryPlan(t, s.r, pendingOfUsersSQL, `["U1","U2"]`, string(grants.RequestPending), 0); !strings.Contains(p, "USING INDEX requests_user_state (slack_user=? AND state=?)") {
				t.Errorf("plan %q does not look the users' pending requests up in requests_user_state", p)
			}
		})
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
