package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"modernc.org/sqlite"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

func pendingRequestChange(i int, now time.Time) *grants.Change {
	id := fmt.Sprintf("r-%04d", i)
	return &grants.Change{
		Requests: []grants.RequestWrite{{Create: true, MaxPending: 1, Request: &grants.Request{
			ID: id, ExternalKey: "k-" + id, Resource: "db", State: grants.RequestPending, Duration: time.Hour,
			Requester: grants.Person{SlackUserID: fmt.Sprintf("U%04d", i), SlackTeamID: "T1"},
			CreatedAt: now, ExpiresAt: now.Add(time.Hour),
		}}},
		Events: []*audit.Event{{ID: "e-" + id, Time: now, Action: audit.ActionRequestCreated, RequestID: id,
			Actor: audit.Actor{Kind: audit.ActorUser, ID: fmt.Sprintf("U%04d", i)}}},
	}
}

// TestHotStatementsArePreparedOnce: once the store has run a statement on a connection, it
// runs it again without preparing it (#16.4: parsing the pending-cap query was a third of the
// Slack acknowledgement's CPU). Writes (a request with its pending cap and audit event, the
// acknowledgement's transaction) and reads both go through the cache.
func TestHotStatementsArePreparedOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, err := Open(ctx, "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), grants.RealClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	now := time.Now().UTC()
	const n = 20
	apply := func(from int) {
		t.Helper()
		for i := from; i < from+n; i++ {
			if err := s.Apply(ctx, pendingRequestChange(i, now)); err != nil {
				t.Fatal(err)
			}
		}
	}
	get := func() {
		t.Helper()
		for i := range n {
			if _, err := s.GetRequest(ctx, fmt.Sprintf("r-%04d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	apply(0) // the first of each statement is prepared
	get()
	w, r := s.wstmts.prepared.Load(), s.rstmts.prepared.Load()
	apply(n)
	get()
	if dw, dr := s.wstmts.prepared.Load()-w, s.rstmts.prepared.Load()-r; dw != 0 || dr != 0 {
		t.Errorf("%d more requests written and read %d times: %d statements prepared on the writer, %d on the readers; want 0 (cached)", n, n, dw, dr)
	}
	if w == 0 || r == 0 {
		t.Errorf("prepared counts writer %d, readers %d: the counter sees nothing", w, r)
	}
}

// openCached opens a SQLite database through the statement cache with room for size
// statements, on one connection.
func openCached(t *testing.T, size int) (*sql.DB, *stmtCacheConnector) {
	t.Helper()
	base, err := sqlite.NewConnector("file:" + filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	c := newStmtCacheConnector(base, size)
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL); INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')`); err != nil {
		t.Fatal(err)
	}
	return db, c
}

func cachedCount(t *testing.T, db *sql.DB) int {
	t.Helper()
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	n := -1
	if err := conn.Raw(func(dc any) error { n = len(dc.(*cachingConn).stmts); return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStatementCacheLendsAStatementToOneUseAtATime: the same text run again while a result
// set of it is still open (a query in a loop over its own rows, directly, in a transaction,
// or through a prepared statement) gets a statement of its own, and each result set reads its
// own rows.
func TestStatementCacheLendsAStatementToOneUseAtATime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const q = `SELECT v FROM t WHERE k >= ? ORDER BY k`
	read := func(rows *sql.Rows) []string {
		t.Helper()
		var vs []string
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				t.Fatal(err)
			}
			vs = append(vs, v)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return vs
	}
	for _, tc := range []struct {
		name  string
		query func(db *sql.DB, tx *sql.Tx, st *sql.Stmt, from int) (*sql.Rows, error)
	}{
		{"transaction", func(_ *sql.DB, tx *sql.Tx, _ *sql.Stmt, from int) (*sql.Rows, error) {
			return tx.QueryContext(ctx, q, from)
		}},
		{"prepared", func(_ *sql.DB, _ *sql.Tx, st *sql.Stmt, from int) (*sql.Rows, error) {
			return st.QueryContext(ctx, from)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := openCached(t, stmtCacheSize)
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			st, err := tx.PrepareContext(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			outer, err := tc.query(db, tx, st, 1)
			if err != nil {
				t.Fatal(err)
			}
			if !outer.Next() {
				t.Fatalf("no first row: %v", outer.Err())
			}
			var first string
			outer.Scan(&first)
			for i := range 3 { // the inner result sets, each read while the outer one is open
				inner, err := tc.query(db, tx, st, 2)
				if err != nil {
					t.Fatal(err)
				}
				if got := read(inner); fmt.Sprint(got) != "[b c]" {
					t.Errorf("inner query %d read %v, want [b c]", i, got)
				}
				inner.Close()
			}
			if rest := read(outer); first != "a" || fmt.Sprint(rest) != "[b c]" {
				t.Errorf("outer query read %s then %v, want a then [b c]", first, rest)
			}
			outer.Close()
			st.Close()
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			rows, err := db.QueryContext(ctx, q, 3)
			if err != nil {
				t.Fatal(err)
			}
			if got := read(rows); fmt.Sprint(got) != "[c]" {
				t.Errorf("after the transaction: %v, want [c]", got)
			}
			rows.Close()
		})
	}
}

// TestStatementCacheBoundAndFailures: at most size statements stay cached (the least recently
// used are finalized), a statement that failed is prepared afresh next time, and with no room
// at all every use prepares (the cache is what saves the prepares).
func TestStatementCacheBoundAndFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, c := openCached(t, 2)
	queries := []string{`SELECT v FROM t WHERE k = 1`, `SELECT v FROM t WHERE k = 2`, `SELECT v FROM t WHERE k = 3`}
	for range 3 {
		for _, q := range queries {
			var v string
			if err := db.QueryRowContext(ctx, q).Scan(&v); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := cachedCount(t, db); n != 2 {
		t.Errorf("%d statements cached, want the bound 2", n)
	}
	before := c.prepared.Load()
	for range 5 {
		var v string
		if err := db.QueryRowContext(ctx, queries[2]).Scan(&v); err != nil || v != "c" {
			t.Fatalf("cached query: %q, %v", v, err)
		}
	}
	if d := c.prepared.Load() - before; d != 0 {
		t.Errorf("the most recent query prepared %d more times, want 0", d)
	}

	const ins = `INSERT INTO t (k, v) VALUES (?, ?)`
	if _, err := db.ExecContext(ctx, ins, 10, "x"); err != nil {
		t.Fatal(err)
	}
	before = c.prepared.Load()
	if _, err := db.ExecContext(ctx, ins, 10, "y"); err == nil {
		t.Fatal("duplicate key inserted")
	}
	if _, err := db.ExecContext(ctx, ins, 11, "z"); err != nil {
		t.Fatalf("insert after a failed one: %v", err)
	}
	if d := c.prepared.Load() - before; d != 1 {
		t.Errorf("prepares around a failed statement: %d, want 1 (the failed one is not reused)", d)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM t WHERE k >= 10`).Scan(&n); err != nil || n != 2 {
		t.Errorf("rows inserted: %d (%v), want 2", n, err)
	}

	none, nc := openCached(t, 0)
	before = nc.prepared.Load()
	for range 4 {
		var v string
		if err := none.QueryRowContext(ctx, queries[0]).Scan(&v); err != nil {
			t.Fatal(err)
		}
	}
	if d := nc.prepared.Load() - before; d != 4 {
		t.Errorf("without a cache: %d prepares for 4 uses, want 4", d)
	}
}

// TestRequestsCreatedInChunks: a change creating more requests than one multi-row INSERT
// carries writes every one of them whole (the same as one at a time), and a duplicate in a
// chunk refuses the whole change with ErrConflict, writing nothing.
func TestRequestsCreatedInChunks(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, err := Open(ctx, "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), grants.RealClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	now := time.Now().UTC().Truncate(time.Millisecond)
	const n = 2*requestChunk + 5
	merged := &grants.Change{}
	var want []grants.Request
	for i := range n {
		c := pendingRequestChange(i, now)
		r := c.Requests[0].Request
		r.Reason, r.Stage, r.IncidentID, r.Notify = fmt.Sprintf("reason %d", i), "approval", "P1", fmt.Sprint("C", i)
		r.Evidence = map[string]string{"k": fmt.Sprint(i)}
		merged.Requests = append(merged.Requests, c.Requests...)
		merged.Events = append(merged.Events, c.Events...)
	}
	if err := s.Apply(ctx, merged); err != nil {
		t.Fatal(err)
	}
	for _, rw := range merged.Requests {
		want = append(want, *rw.Request)
	}
	for _, w := range want {
		got, err := s.GetRequest(ctx, w.ID)
		if err != nil {
			t.Fatalf("request %s: %v", w.ID, err)
		}
		if got.Version != 1 || got.Reason != w.Reason || got.Requester != w.Requester || got.Notify != w.Notify || got.Evidence["k"] != w.Evidence["k"] ||
			got.ExternalKey != w.ExternalKey || got.IncidentID != "P1" || !got.ExpiresAt.Equal(w.ExpiresAt) || got.State != grants.RequestPending {
			t.Errorf("request %s read back as %+v, want %+v", w.ID, got, w)
		}
	}

	dup := &grants.Change{}
	for i := range requestChunk {
		c := pendingRequestChange(1000+i, now)
		if i == requestChunk-1 {
			c.Requests[0].Request.ID = want[0].ID // already stored
		}
		dup.Requests = append(dup.Requests, c.Requests...)
		dup.Events = append(dup.Events, c.Events...)
	}
	if err := s.Apply(ctx, dup); !errors.Is(err, grants.ErrConflict) {
		t.Fatalf("a chunk with an existing id = %v, want ErrConflict", err)
	}
	if _, err := s.GetRequest(ctx, "r-1000"); !errors.Is(err, grants.ErrNotFound) {
		t.Errorf("the refused chunk's first request: %v, want not found", err)
	}
}

// TestPendingCapOfABatchCountsEachRequesterApart: with one query for the whole change, each
// request is still counted against its own requester (team and user) and resource only, and
// the refusal names that requester's pending requests.
func TestPendingCapOfABatchCountsEachRequesterApart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, err := Open(ctx, "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), grants.RealClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	now := time.Now().UTC()
	req := func(i int, team, user, resource string) *grants.Change {
		c := pendingRequestChange(i, now)
		r := c.Requests[0].Request
		r.Requester, r.Resource = grants.Person{SlackTeamID: team, SlackUserID: user}, resource
		return c
	}
	held := req(1, "T1", "U1", "db")
	if err := s.Apply(ctx, held); err != nil {
		t.Fatal(err)
	}
	merged := func(cs ...*grants.Change) *grants.Change {
		m := &grants.Change{}
		for _, c := range cs {
			m.Requests = append(m.Requests, c.Requests...)
			m.Events = append(m.Events, c.Events...)
		}
		return m
	}
	// Same user id in another team, same person for another resource, another user: all fit.
	if err := s.Apply(ctx, merged(req(2, "T2", "U1", "db"), req(3, "T1", "U1", "aws"), req(4, "T1", "U2", "db"))); err != nil {
		t.Fatalf("requests of other requesters or resources: %v", err)
	}
	err = s.Apply(ctx, merged(req(5, "T3", "U1", "db"), req(6, "T1", "U1", "db")))
	var pl *grants.PendingLimitError
	if !errors.As(err, &pl) {
		t.Fatalf("T1/U1's second request for db = %v, want a *PendingLimitError", err)
	}
	if fmt.Sprint(pl.Pending) != "[r-0001]" {
		t.Errorf("refusal names %v, want [r-0001] (T1/U1's pending request for db only)", pl.Pending)
	}
	if _, err := s.GetRequest(ctx, "r-0005"); !errors.Is(err, grants.ErrNotFound) {
		t.Errorf("the refused change was written: %v", err)
	}
}
