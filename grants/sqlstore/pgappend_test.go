package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/fixtures/tcpproxy"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/grants/storetest"
)

// viaAddr returns dsn (a URL, from newPGSchema) pointing at addr instead of the server, with
// extra parameters; it skips the test for a key=value DSN, which it cannot rewrite.
func viaAddr(t *testing.T, dsn, addr string, params map[string]string) (target, rewritten string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		t.Skipf("%s must be a postgres:// URL for this test", pgEnv)
	}
	target, u.Host = u.Host, addr
	q := u.Query()
	for k, v := range params {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return target, u.String()
}

// requestCreated returns a pending request by user for resource, with its request.created
// event.
func requestCreated(now time.Time, user, resource string) (*grants.Request, *audit.Event) {
	r := &grants.Request{ID: grants.NewID("r"), Requester: grants.Person{SlackTeamID: "T1", SlackUserID: user},
		Resource: resource, Duration: time.Hour, Reason: "x", Source: grants.SourceSlack, State: grants.RequestPending,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	return r, &audit.Event{ID: grants.NewID("e"), Time: now, Actor: audit.Actor{Kind: audit.ActorUser, ID: user},
		Action: audit.ActionRequestCreated, RequestID: r.ID, Resource: r.Resource}
}

// TestPostgresAppendRoundTrips: a change is written in two round trips whatever it holds
// (BEGIN, the row writes, the chain lock, the pending counts and the head read in one; the
// events' insert and COMMIT in the other), so that the chain lock is held for one round trip
// and the commit, not one round trip per statement.
func TestPostgresAppendRoundTrips(t *testing.T) {
	dsn := newPGSchema(t)
	u, _ := url.Parse(dsn)
	if u == nil || u.Host == "" {
		t.Skipf("%s must be a postgres:// URL for this test", pgEnv)
	}
	wc := newWireCounter(t, u.Host)
	_, dsn = viaAddr(t, dsn, wc.Addr(), map[string]string{"pool_max_conns": "1"})
	clock := clocktest.New(storetest.Start)
	s := openPG(t, dsn, clock)
	ctx := context.Background()
	now := clock.Now()

	existing := []*grants.Grant{storetest.NewGrant(now, "db-a", time.Hour), storetest.NewGrant(now, "db-b", time.Hour),
		storetest.NewGrant(now, "db-c", time.Hour), storetest.NewGrant(now, "db-d", time.Hour)}
	for _, g := range existing {
		storetest.MustCreate(t, s, now, g)
	}
	shapes := []struct {
		name string
		make func(round int) *grants.Change
	}{
		{"events only", func(int) *grants.Change {
			g := storetest.NewGrant(now, "db", time.Hour)
			return &grants.Change{Events: []*audit.Event{storetest.Event(now, audit.ActionGrantIssued, g), storetest.Event(now, audit.ActionGrantRevoked, g)}}
		}},
		{"capped request, new grant and events", func(round int) *grants.Change {
			r, ev := requestCreated(now, fmt.Sprintf("U%d", round), "db")
			g := storetest.NewGrant(now, "db", time.Hour)
			return &grants.Change{
				Requests: []grants.RequestWrite{{Request: r, Create: true, MaxPending: 2}},
				Grants:   []grants.GrantWrite{{Grant: g, Create: true}},
				Events:   []*audit.Event{ev, storetest.Event(now, audit.ActionGrantIssued, g)},
			}
		}},
		{"two grant updates", func(round int) *grants.Change {
			a, b := existing[2*round], existing[2*round+1]
			a.Attempts++
			b.Attempts++
			return &grants.Change{Grants: []grants.GrantWrite{{Grant: a}, {Grant: b}},
				Events: []*audit.Event{storetest.Event(now, audit.ActionGrantRevoked, a), storetest.Event(now, audit.ActionGrantRevoked, b)}}
		}},
	}
	for _, sh := range shapes {
		// Round 0 prepares the shape's statements on the connection (one more round trip
		// per new statement, once per connection); round 1 is counted.
		for round := range 2 {
			c := sh.make(round)
			before := wc.Trips()
			if err := s.Apply(ctx, c); err != nil {
				t.Fatalf("%s, round %d: %v", sh.name, round, err)
			}
			if n := wc.Trips() - before; round == 1 && n != 2 {
				t.Errorf("%s: %d round trips; want 2 (rows, lock and head; insert and commit)", sh.name, n)
			}
		}
	}
	mustVerify(t, s, int64(len(existing)+2*len(shapes)*2))
}

// holdChain takes s's audit chain lock in a transaction of its own and returns the function
// that releases it.
func holdChain(t *testing.T, dsn string, s *sqlstore.Store) (release func()) {
	t.Helper()
	ctx := context.Background()
	c := pgConn(t, dsn)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, sqlstore.ChainLockKey(s)); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := tx.Commit(ctx); err != nil {
			t.Errorf("release the chain lock: %v", err)
		}
	}
}

// waitForLockWaiter waits until a backend of the store's schema waits for an advisory lock.
func waitForLockWaiter(t *testing.T, admin *pgx.Conn, schema string) {
	t.Helper()
	for i := 0; ; i++ {
		var n int
		if err := admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND wait_event_type = 'Lock' AND wait_event = 'advisory'`, schema).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if i == 100_000 {
			t.Fatal("no transaction of the store waits for the chain lock")
		}
	}
}

// waitQueued waits until n changes wait in s's group commit.
func waitQueued(t *testing.T, s *sqlstore.Store, n int) {
	t.Helper()
	for i := 0; sqlstore.QueuedChanges(s) < n; i++ {
		if i == 10_000_000 {
			t.Fatalf("%d of %d changes queued", sqlstore.QueuedChanges(s), n)
		}
		runtime.Gosched()
	}
}

// transactions counts the transactions that wrote the schema's audit events.
func transactions(t *testing.T, admin *pgx.Conn, schema string) int {
	t.Helper()
	var n int
	if err := admin.QueryRow(context.Background(), `SELECT count(DISTINCT xmin::text) FROM `+schema+`.audit_events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPostgresGroupCommitsWaitingCallersTogether: callers that arrive while a transaction of
// the store waits for (or holds) the chain lock are written by the next one, all together:
// N changes from N callers take two transactions, and each caller is told its own events'
// place in the chain.
func TestPostgresGroupCommitsWaitingCallersTogether(t *testing.T) {
	dsn := newPGSchema(t)
	clock := clocktest.New(storetest.Start)
	s := openPG(t, dsn, clock)
	admin := pgConn(t, pgDSN(t))
	now := clock.Now()

	release := holdChain(t, dsn, s)
	lead := make(chan error, 1)
	go func() {
		g := storetest.NewGrant(now, "lead", time.Hour)
		lead <- s.Apply(context.Background(), &grants.Change{Events: []*audit.Event{storetest.Event(now, audit.ActionGrantIssued, g)}})
	}()
	waitForLockWaiter(t, admin, s.Schema())

	const callers = 24
	changes := make([]*grants.Change, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		g := storetest.NewGrant(now, fmt.Sprintf("db-%d", i), time.Hour)
		c := &grants.Change{Events: []*audit.Event{storetest.Event(now, audit.ActionGrantIssued, g)}}
		switch i % 3 {
		case 1: // a new grant with it
			c.Grants = []grants.GrantWrite{{Grant: g, Create: true}}
		case 2: // a capped request and a second event
			r, ev := requestCreated(now, fmt.Sprintf("U%d", i), "db")
			c.Requests = []grants.RequestWrite{{Request: r, Create: true, MaxPending: 1}}
			c.Events = append(c.Events, ev)
		}
		changes[i] = c
		wg.Go(func() { errs[i] = s.Apply(context.Background(), c) })
	}
	waitQueued(t, s, callers)
	release()
	wg.Wait()
	if err := <-lead; err != nil {
		t.Fatalf("first caller: %v", err)
	}
	seqs := map[int64]string{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
		for _, e := range changes[i].Events {
			seqs[e.Seq] = e.ID
		}
	}
	evs := readAll(t, s)
	if len(evs) != len(seqs)+1 {
		t.Fatalf("log holds %d events; callers were told of %d, plus the first", len(evs), len(seqs))
	}
	for _, e := range evs[1:] {
		if seqs[e.Seq] != e.ID {
			t.Fatalf("seq %d holds %s; its caller was told %s", e.Seq, e.ID, seqs[e.Seq])
		}
	}
	if n := transactions(t, admin, s.Schema()); n != 2 {
		t.Errorf("%d changes took %d transactions; want 2 (the first caller's, then every waiting caller's)", callers+1, n)
	}
	mustVerify(t, s, int64(len(evs)))
}

// TestPostgresGroupFailsOnlyTheBadChange: a change that cannot be written, in a group of
// waiting callers, fails alone with its own error; the others are written. One is refused
// before it joins (an event without an action), one by PostgreSQL inside the group's
// transaction (a NUL byte, which no text column holds), after which the group is written
// again without it.
func TestPostgresGroupFailsOnlyTheBadChange(t *testing.T) {
	dsn := newPGSchema(t)
	clock := clocktest.New(storetest.Start)
	s := openPG(t, dsn, clock)
	admin := pgConn(t, pgDSN(t))
	now := clock.Now()

	release := holdChain(t, dsn, s)
	lead := make(chan error, 1)
	go func() {
		g := storetest.NewGrant(now, "lead", time.Hour)
		lead <- s.Apply(context.Background(), &grants.Change{Events: []*audit.Event{storetest.Event(now, audit.ActionGrantIssued, g)}})
	}()
	waitForLockWaiter(t, admin, s.Schema())

	const good = 6
	var wg sync.WaitGroup
	errs := make([]error, good)
	for i := range good {
		g := storetest.NewGrant(now, fmt.Sprintf("db-%d", i), time.Hour)
		c := &grants.Change{Grants: []grants.GrantWrite{{Grant: g, Create: true}}, Events: []*audit.Event{storetest.Event(now, audit.ActionGrantIssued, g)}}
		wg.Go(func() { errs[i] = s.Apply(context.Background(), c) })
	}
	noAction := make(chan error, 1)
	go func() {
		g := storetest.NewGrant(now, "no-action", time.Hour)
		e := storetest.Event(now, audit.ActionGrantIssued, g)
		e.Action = ""
		noAction <- s.Apply(context.Background(), &grants.Change{Events: []*audit.Event{e}})
	}()
	nul := make(chan error, 1)
	go func() {
		g := storetest.NewGrant(now, "nul", time.Hour)
		e := storetest.Event(now, audit.ActionGrantIssued, g)
		e.Reason = "bad\x00reason"
		nul <- s.Apply(context.Background(), &grants.Change{Events: []*audit.Event{e}})
	}()
	waitQueued(t, s, good+1)
	release()
	wg.Wait()
	if err := <-lead; err != nil {
		t.Fatalf("first caller: %v", err)
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("good caller %d failed: %v", i, err)
		}
	}
	if err := <-noAction; err == nil || !strings.Contains(err.Error(), "action") {
		t.Errorf("event without an action: %v; want its own error naming what is required", err)
	}
	var pe *pgconn.PgError
	if err := <-nul; !errors.As(err, &pe) || !strings.HasPrefix(pe.Code, "22") {
		t.Errorf("event with a NUL byte: %v; want PostgreSQL's data exception", err)
	}
	if t.Failed() {
		return
	}
	mustVerify(t, s, 1+good)
}

// TestPostgresReplicasAppendConcurrently: 8 writers on 3 stores (replicas) append at once,
// one event per change; every caller is told a seq no one else got, the log holds exactly
// what they were told, and the whole chain verifies.
func TestPostgresReplicasAppendConcurrently(t *testing.T) {
	dsn := newPGSchema(t)
	clock := clocktest.New(storetest.Start)
	stores := []*sqlstore.Store{openPG(t, dsn, clock), openPG(t, dsn, clock), openPG(t, dsn, clock)}
	admin := pgConn(t, pgDSN(t))
	const writers, changes = 8, 60
	var mu sync.Mutex
	told := map[int64]string{}
	var wg sync.WaitGroup
	for w := range writers {
		s := stores[w%len(stores)]
		wg.Go(func() {
			for i := range changes {
				g := storetest.NewGrant(clock.Now(), fmt.Sprintf("w%d-%d", w, i), time.Hour)
				e := storetest.Event(clock.Now(), audit.ActionGrantIssued, g)
				if err := s.Apply(context.Background(), &grants.Change{Events: []*audit.Event{e}}); err != nil {
					t.Errorf("writer %d change %d: %v", w, i, err)
					return
				}
				mu.Lock()
				if prev, dup := told[e.Seq]; dup {
					t.Errorf("seq %d given to %s and %s", e.Seq, prev, e.ID)
				}
				told[e.Seq] = e.ID
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	evs := readAll(t, stores[2])
	if len(evs) != writers*changes {
		t.Fatalf("log holds %d events; %d were appended", len(evs), writers*changes)
	}
	for i, e := range evs {
		if e.Seq != int64(i+1) || told[e.Seq] != e.ID {
			t.Fatalf("event %d: seq %d holds %s, its writer was told %s", i, e.Seq, e.ID, told[e.Seq])
		}
	}
	t.Logf("%d appends in %d transactions", len(evs), transactions(t, admin, stores[0].Schema()))
	mustVerify(t, stores[1], int64(len(evs)))
}

// TestPostgresAppendFailsClosed: while the database is unreachable every change fails (and
// none is reported written); once it is back the chain continues where it was.
func TestPostgresAppendFailsClosed(t *testing.T) {
	dsn := newPGSchema(t)
	target, _ := viaAddr(t, dsn, "", nil)
	px, err := tcpproxy.New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	if err := px.Up(); err != nil {
		t.Fatal(err)
	}
	_, dsn = viaAddr(t, dsn, px.Addr(), map[string]string{"connect_timeout": "5"})
	clock := clocktest.New(storetest.Start)
	s := openPG(t, dsn, clock)
	now := clock.Now()
	appendOne := func() error {
		g := storetest.NewGrant(now, "db", time.Hour)
		return s.Apply(context.Background(), &grants.Change{Grants: []grants.GrantWrite{{Grant: g, Create: true}},
			Events: []*audit.Event{storetest.Event(now, audit.ActionGrantIssued, g)}})
	}
	for range 3 {
		if err := appendOne(); err != nil {
			t.Fatal(err)
		}
	}
	px.Down()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = appendOne() })
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			t.Errorf("change %d reported written while the database was unreachable", i)
		}
	}
	if err := px.Up(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := appendOne(); err != nil {
			t.Fatalf("after the database came back: %v", err)
		}
	}
	mustVerify(t, s, 5)
}

// txOfSeq returns, in seq order, the transaction (xmin) that wrote each audit event.
func txOfSeq(t *testing.T, admin *pgx.Conn, schema string) []string {
	t.Helper()
	rows, err := admin.Query(context.Background(), `SELECT xmin::text FROM `+schema+`.audit_events ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	xs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return xs
}

// TestPostgresWaitingEventsJoinAtTheLock: changes that carry only events and wait at the
// head of the queue when a transaction of the store gets the chain lock are appended by
// that transaction; the first change that writes rows, and every change behind it, wait for
// the next one. Arrival order is the chain's order.
func TestPostgresWaitingEventsJoinAtTheLock(t *testing.T) {
	dsn := newPGSchema(t)
	clock := clocktest.New(storetest.Start)
	s := openPG(t, dsn, clock)
	admin := pgConn(t, pgDSN(t))
	now := clock.Now()

	release := holdChain(t, dsn, s)
	var wg sync.WaitGroup
	var ids []string // event ids in arrival order
	errs := make([]error, 12)
	submit := func(i int, c *grants.Change) {
		ids = append(ids, c.Events[0].ID)
		wg.Go(func() { errs[i] = s.Apply(context.Background(), c) })
	}
	eventOnly := func(i int) *grants.Change {
		g := storetest.NewGrant(now, fmt.Sprintf("db-%d", i), time.Hour)
		return &grants.Change{Events: []*audit.Event{storetest.Event(now, audit.ActionGrantIssued, g)}}
	}
	submit(0, eventOnly(0))
	waitForLockWaiter(t, admin, s.Schema())
	for i := 1; i < 12; i++ {
		c := eventOnly(i)
		if i == 6 { // writes a grant: cannot join a transaction that holds the lock
			c.Grants = []grants.GrantWrite{{Grant: storetest.NewGrant(now, "db-6", time.Hour), Create: true}}
		}
		submit(i, c)
		waitQueued(t, s, i) // one at a time, so that the arrival order is known
	}
	release()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	evs := readAll(t, s)
	for i, e := range evs {
		if e.ID != ids[i] {
			t.Fatalf("seq %d holds %s; the caller that came %d-th appended %s", e.Seq, e.ID, i+1, ids[i])
		}
	}
	xs := txOfSeq(t, admin, s.Schema())
	for i, x := range xs {
		first := i < 6 // the lock holder's own event and the five that waited behind it
		if same := x == xs[0]; same != first {
			t.Fatalf("transactions by seq = %v; want seqs 1-6 in the first (the five events joined at the lock), 7-12 in the second", xs)
		}
	}
	mustVerify(t, s, 12)
}
