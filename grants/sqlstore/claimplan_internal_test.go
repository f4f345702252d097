package sqlstore

import (
	"context"
	"database/sql"
	"slices"
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

// TestClaimCommitsAtSynchronousNormal: the claim's own statement runs at synchronous=NORMAL
// (a trigger records the setting in force as the claim updates the grant), the writes
// before and after it at FULL.
func TestClaimCommitsAtSynchronousNormal(t *testing.T) {
	t.Parallel()
	s := openPlanStore(t)
	ctx := t.Context()
	for _, q := range []string{
		`CREATE TABLE sync_probe (what TEXT NOT NULL, level INTEGER NOT NULL)`,
		`CREATE TRIGGER sync_probe_claim AFTER UPDATE OF claimed_by ON grants
			BEGIN INSERT INTO sync_probe SELECT 'claim', synchronous FROM pragma_synchronous; END`,
		`CREATE TRIGGER sync_probe_insert AFTER INSERT ON grants
			BEGIN INSERT INTO sync_probe SELECT 'insert', synchronous FROM pragma_synchronous; END`,
	} {
		if _, err := s.w.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	create := func(id string) {
		t.Helper()
		g := &grants.Grant{ID: id, Resource: "prod-db", Provider: "fake", State: grants.StateActive, Person: grants.Person{SlackUserID: "U1"},
			Reason: "test", CreatedAt: now, IssuedAt: now, ExpiresAt: now.Add(time.Minute), DueAt: now.Add(time.Minute)}
		if err := s.Apply(ctx, &grants.Change{Grants: []grants.GrantWrite{{Grant: g, Create: true}},
			Events: []*audit.Event{grants.NewGrantEvent(now, audit.Actor{Kind: audit.ActorSystem, ID: "test"}, audit.ActionGrantIssued, g, "", nil)}}); err != nil {
			t.Fatal(err)
		}
	}
	create("g1")
	if gs, err := s.ClaimDue(ctx, "i-test", now.Add(time.Minute), 10, time.Minute); err != nil || len(gs) != 1 {
		t.Fatalf("claim at the deadline: %d grants, %v", len(gs), err)
	}
	create("g2")
	rows, err := s.w.QueryContext(ctx, `SELECT what || '=' || level FROM sync_probe ORDER BY rowid`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	// PRAGMA synchronous: 1 is NORMAL, 2 is FULL.
	if want := []string{"insert=2", "claim=1", "insert=2"}; !slices.Equal(got, want) {
		t.Fatalf("synchronous during the writes = %v, want %v (the claim at NORMAL, every other write at FULL)", got, want)
	}
}

// TestSynchronousNotRestoredDiscardsTheConnection: when synchronous=FULL cannot be set again
// after the work at NORMAL (here because the work left a transaction open, where SQLite
// refuses to change it), the error says so and the connection is discarded: the next user
// of the writer gets a new connection, at FULL and outside any transaction.
func TestSynchronousNotRestoredDiscardsTheConnection(t *testing.T) {
	t.Parallel()
	s := openPlanStore(t)
	ctx := t.Context()
	err := withSynchronousNormal(ctx, s.w, "test work", func(conn *sql.Conn) error {
		_, err := conn.ExecContext(ctx, `BEGIN`)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "test work: restore synchronous=FULL") {
		t.Fatalf("withSynchronousNormal = %v, want the failure to restore FULL", err)
	}
	var level int
	if err := s.w.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&level); err != nil {
		t.Fatal(err)
	}
	if level != 2 {
		t.Fatalf("the writer's next connection has synchronous %d, want 2 (FULL): the connection left at NORMAL was reused", level)
	}
	if _, err := s.w.ExecContext(ctx, `BEGIN`); err != nil {
		t.Fatalf("the writer's next connection is inside a transaction: %v", err)
	}
	if _, err := s.w.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
}
