package sqlstore

import (
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
	s, err := Open(t.Context(), "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), grants.RealClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, tc := range []struct {
		name string
		f    grants.GrantFilter
	}{
		{"manager's overlap check", grants.GrantFilter{HandleKey: "ab_alice", States: []grants.State{grants.StateIssuing, grants.StateActive, grants.StateRevoking, grants.StateRevokeFailed}}},
		{"revoker's overlap check", grants.GrantFilter{HandleKey: "ab_alice", States: []grants.State{grants.StateIssuing, grants.StateActive}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := grantsWhere(tc.f)
			rows, err := s.r.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+listQuery("grants", grantCols, w, 0), w.args...)
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
			if p := strings.Join(plan, "; "); !strings.Contains(p, "INDEX grants_handle_key") {
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
	s, err := Open(t.Context(), "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), grants.RealClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	rows, err := s.r.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+pendingOfUsersSQL, `["U1","U2"]`, string(grants.RequestPending), 0)
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
	if p := strings.Join(plan, "; "); !strings.Contains(p, "USING INDEX requests_slack_user (slack_user=?)") {
		t.Errorf("plan %q does not look the users up in requests_slack_user", p)
	}
}
