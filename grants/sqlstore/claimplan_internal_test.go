package sqlstore

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// TestClaimWalksTheDueIndexInOrder: the SQLite claim reads grants_due in its own order and
// stops after its limit, without sorting: a sort (a temporary B-tree) would read every grant
// due by now on every claim, so a burst of 10,000 grants due in one second made each claim
// of 256 read all 10,000 (#16.3).
func TestClaimWalksTheDueIndexInOrder(t *testing.T) {
	t.Parallel()
	s := openPlanStore(t)
	p := queryPlan(t, s.w, claimSQLiteSQL, "i-test", 2000, 1000, 1000, 256)
	if !strings.Contains(p, "INDEX grants_due") {
		t.Errorf("claim plan %q does not read grants_due", p)
	}
	if strings.Contains(p, "TEMP B-TREE") {
		t.Errorf("claim plan %q sorts the due grants", p)
	}
}

// TestClaimLeavesTheWriterSynchronous: a claim commits without waiting for the disk, but
// every other write on the one SQLite writer (outcomes, write-ahead records) stays
// synchronous=FULL: the connection is back at FULL after a claim, also one that claimed
// nothing and one whose context was cancelled.
func TestClaimLeavesTheWriterSynchronous(t *testing.T) {
	t.Parallel()
	s := openPlanStore(t)
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	g := &grants.Grant{ID: "g1", Resource: "prod-db", Provider: "fake", State: grants.StateActive, Person: grants.Person{SlackUserID: "U1"},
		Reason: "test", CreatedAt: now, IssuedAt: now, ExpiresAt: now.Add(time.Minute), DueAt: now.Add(time.Minute)}
	if err := s.Apply(t.Context(), &grants.Change{Grants: []grants.GrantWrite{{Grant: g, Create: true}},
		Events: []*audit.Event{grants.NewGrantEvent(now, audit.Actor{Kind: audit.ActorSystem, ID: "test"}, audit.ActionGrantIssued, g, "", nil)}}); err != nil {
		t.Fatal(err)
	}
	sync := func(when string) {
		t.Helper()
		var v int
		if err := s.w.QueryRowContext(t.Context(), `PRAGMA synchronous`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		if v != 2 {
			t.Fatalf("%s: the writer's synchronous is %d, want 2 (FULL)", when, v)
		}
	}
	sync("after open")
	if gs, err := s.ClaimDue(t.Context(), "i-test", now, 10, time.Minute); err != nil || len(gs) != 0 {
		t.Fatalf("claim before the deadline: %d grants, %v", len(gs), err)
	}
	sync("after an empty claim")
	if gs, err := s.ClaimDue(t.Context(), "i-test", now.Add(time.Minute), 10, time.Minute); err != nil || len(gs) != 1 {
		t.Fatalf("claim at the deadline: %d grants, %v", len(gs), err)
	}
	sync("after a claim")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, _ = s.ClaimDue(ctx, "i-test", now.Add(time.Hour), 10, time.Minute)
	sync("after a cancelled claim")
}
