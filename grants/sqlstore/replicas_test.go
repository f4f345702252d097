package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/grants/storetest"
)

func TestPostgresConformance(t *testing.T) {
	pgDSN(t)
	storetest.Run(t, func(t *testing.T, clock *clocktest.Fake) grants.Store {
		return openPG(t, newPGSchema(t), clock)
	})
}

// replicaFactory opens one more Store on the same database, as another broker process would.
type replicaFactory func() *sqlstore.Store

// forEachBackend runs fn against SQLite (several stores on one file) and PostgreSQL (several
// stores on one schema; skipped without ACCESSBROKER_TEST_POSTGRES_DSN).
func forEachBackend(t *testing.T, fn func(t *testing.T, clock *clocktest.Fake, replica replicaFactory)) {
	t.Run("sqlite", func(t *testing.T) {
		clock := clocktest.New(storetest.Start)
		path := "file:" + filepath.Join(t.TempDir(), "ab.db")
		fn(t, clock, func() *sqlstore.Store {
			s, err := sqlstore.Open(context.Background(), "sqlite", path, clock, nil)
			if err != nil {
				t.Fatalf("open sqlite: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := newPGSchema(t)
		clock := clocktest.New(storetest.Start)
		fn(t, clock, func() *sqlstore.Store { return openPG(t, dsn, clock) })
	})
}

// readAll reads the whole audit log in pages.
func readAll(t *testing.T, r audit.Reader) []audit.Event {
	t.Helper()
	var out []audit.Event
	var after int64
	for {
		evs, err := r.ReadEvents(context.Background(), after, 500)
		if err != nil {
			t.Fatalf("ReadEvents: %v", err)
		}
		if len(evs) == 0 {
			return out
		}
		out = append(out, evs...)
		after = evs[len(evs)-1].Seq
	}
}

// mustVerify signs a checkpoint at the head and runs the full verification.
func mustVerify(t *testing.T, s *sqlstore.Store, wantEvents int64) {
	t.Helper()
	ctx := context.Background()
	key, err := audit.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	seq, head, _, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AppendCheckpoint(ctx, audit.SignCheckpoint(key, seq, head, storetest.Start.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	res, err := audit.Verify(ctx, s, audit.PublicKeyOf(key), audit.VerifyOptions{RequireCheckpoint: true})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !res.OK || res.Events != wantEvents {
		t.Fatalf("verify = %s; want OK with %d events", res, wantEvents)
	}
}

// TestReplicasAppendOneChain: 8 writers spread over 4 stores (replicas) append concurrently;
// the log must hold seq 1..N with no gap or duplicate, each writer must have been told its
// events' real seqs, and the chain must verify.
func TestReplicasAppendOneChain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, clock *clocktest.Fake, replica replicaFactory) {
		stores := []*sqlstore.Store{replica(), replica(), replica(), replica()}
		const writers, changes = 8, 20
		var mu sync.Mutex
		told := map[int64]string{} // seq → event id, as reported back by Apply
		var wg sync.WaitGroup
		for w := range writers {
			s := stores[w%len(stores)]
			wg.Go(func() {
				for i := range changes {
					g := storetest.NewGrant(clock.Now(), fmt.Sprintf("w%d-%d", w, i), time.Hour)
					c := &grants.Change{Grants: []grants.GrantWrite{{Grant: g, Create: true}}}
					for range 1 + i%3 { // 1 to 3 events per change
						c.Events = append(c.Events, storetest.Event(clock.Now(), audit.ActionGrantIssued, g))
					}
					if err := s.Apply(context.Background(), c); err != nil {
						t.Errorf("writer %d change %d: %v", w, i, err)
						return
					}
					mu.Lock()
					for _, e := range c.Events {
						if prev, dup := told[e.Seq]; dup {
							t.Errorf("seq %d given to %s and %s", e.Seq, prev, e.ID)
						}
						told[e.Seq] = e.ID
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		evs := readAll(t, stores[0])
		if len(evs) != len(told) {
			t.Fatalf("log holds %d events, writers were told of %d", len(evs), len(told))
		}
		for i, e := range evs {
			if e.Seq != int64(i+1) {
				t.Fatalf("event %d has seq %d: gap or duplicate", i, e.Seq)
			}
			if told[e.Seq] != e.ID {
				t.Fatalf("seq %d holds %s, but writer was told %s", e.Seq, e.ID, told[e.Seq])
			}
		}
		mustVerify(t, stores[1], int64(len(evs)))
	})
}

// TestReplicasClaimDisjoint: six claimers on two stores never receive the same grant, and
// together they claim every due grant exactly once.
func TestReplicasClaimDisjoint(t *testing.T) {
	forEachBackend(t, func(t *testing.T, clock *clocktest.Fake, replica replicaFactory) {
		a, b := replica(), replica()
		const n = 300
		now := clock.Now()
		c := &grants.Change{}
		for i := range n {
			g := storetest.NewGrant(now, fmt.Sprintf("r%d", i%7), time.Minute)
			c.Grants = append(c.Grants, grants.GrantWrite{Grant: g, Create: true})
			c.Events = append(c.Events, storetest.Event(now, audit.ActionGrantIssued, g))
		}
		storetest.MustApply(t, a, c)
		clock.Advance(2 * time.Minute)

		var mu sync.Mutex
		owner := map[string]string{}
		var wg sync.WaitGroup
		for w := range 6 {
			s, name := a, fmt.Sprintf("a%d", w)
			if w%2 == 1 {
				s, name = b, fmt.Sprintf("b%d", w)
			}
			wg.Go(func() {
				for {
					got, err := s.ClaimDue(context.Background(), name, clock.Now(), 7, time.Hour)
					if err != nil {
						t.Errorf("%s: %v", name, err)
						return
					}
					if len(got) == 0 {
						return
					}
					mu.Lock()
					for _, g := range got {
						if prev, dup := owner[g.ID]; dup {
							t.Errorf("grant %s claimed by %s and %s", g.ID, prev, name)
						}
						owner[g.ID] = name
						if g.ClaimedBy != name {
							t.Errorf("grant %s returned with ClaimedBy %q to %s", g.ID, g.ClaimedBy, name)
						}
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(owner) != n {
			t.Fatalf("claimed %d grants, want %d", len(owner), n)
		}
		all, err := b.ListGrants(context.Background(), grants.GrantFilter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range all {
			if g.ClaimedBy != owner[g.ID] {
				t.Errorf("grant %s stored as claimed by %q, but %q received it", g.ID, g.ClaimedBy, owner[g.ID])
			}
		}
	})
}

// TestClaimOfDeadReplicaLapses: a replica claims grants and dies before recording anything;
// another replica cannot take them while the lease holds, and takes them all once it lapses.
func TestClaimOfDeadReplicaLapses(t *testing.T) {
	forEachBackend(t, func(t *testing.T, clock *clocktest.Fake, replica replicaFactory) {
		ctx := context.Background()
		a, b := replica(), replica()
		now := clock.Now()
		c := &grants.Change{}
		for i := range 10 {
			g := storetest.NewGrant(now, fmt.Sprintf("r%d", i), time.Minute)
			c.Grants = append(c.Grants, grants.GrantWrite{Grant: g, Create: true})
			c.Events = append(c.Events, storetest.Event(now, audit.ActionGrantIssued, g))
		}
		storetest.MustApply(t, a, c)
		clock.Advance(time.Minute)
		claimed, err := a.ClaimDue(ctx, "replica-a", clock.Now(), 100, 2*time.Minute)
		if err != nil || len(claimed) != 10 {
			t.Fatalf("replica a claimed %d (%v), want 10", len(claimed), err)
		}
		if err := a.Close(); err != nil { // replica a dies mid-revocation
			t.Fatal(err)
		}
		clock.Advance(2*time.Minute - time.Millisecond)
		if got, err := b.ClaimDue(ctx, "replica-b", clock.Now(), 100, 2*time.Minute); err != nil || len(got) != 0 {
			t.Fatalf("replica b claimed %d grants (%v) while a's lease holds", len(got), err)
		}
		next, ok, err := b.NextDue(ctx)
		if err != nil || !ok || !next.Equal(clock.Now().Add(time.Millisecond)) {
			t.Fatalf("NextDue = %v %v %v, want the end of a's lease", next, ok, err)
		}
		clock.Advance(time.Millisecond)
		got, err := b.ClaimDue(ctx, "replica-b", clock.Now(), 100, 2*time.Minute)
		if err != nil || len(got) != 10 {
			t.Fatalf("after the lease lapsed replica b claimed %d (%v), want 10", len(got), err)
		}
		// b's claims are current: it can record the revocations.
		out := &grants.Change{}
		for i := range got {
			g := &got[i]
			if g.ClaimedBy != "replica-b" {
				t.Errorf("grant %s claimed by %q", g.ID, g.ClaimedBy)
			}
			g.State, g.RevokedAt, g.ClaimedBy, g.ClaimedTo = grants.StateRevoked, clock.Now(), "", time.Time{}
			out.Grants = append(out.Grants, grants.GrantWrite{Grant: g})
			out.Events = append(out.Events, storetest.Event(clock.Now(), audit.ActionGrantRevoked, g))
		}
		storetest.MustApply(t, b, out)
		if _, ok, _ := b.NextDue(ctx); ok {
			t.Error("NextDue still reports a live grant after every grant was revoked")
		}
	})
}

// TestLeaseHasOneHolderAcrossReplicas: many processes race for one singleton lease; exactly
// one gets it, it can renew, and another takes over only after it lapses.
func TestLeaseHasOneHolderAcrossReplicas(t *testing.T) {
	forEachBackend(t, func(t *testing.T, clock *clocktest.Fake, replica replicaFactory) {
		ctx := context.Background()
		stores := []*sqlstore.Store{replica(), replica()}
		for round := range 5 {
			name := fmt.Sprintf("weekly-summary-%d", round)
			var winners atomic.Int32
			var winner atomic.Value
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Go(func() {
					holder := fmt.Sprintf("replica-%d", i)
					ok, err := stores[i%2].AcquireLease(ctx, name, holder, time.Minute)
					if err != nil {
						t.Errorf("%s: %v", holder, err)
					}
					if ok {
						winners.Add(1)
						winner.Store(holder)
					}
				})
			}
			wg.Wait()
			if n := winners.Load(); n != 1 {
				t.Fatalf("round %d: %d holders of one lease, want 1", round, n)
			}
			holder := winner.Load().(string)
			if ok, err := stores[1].AcquireLease(ctx, name, holder, time.Minute); err != nil || !ok {
				t.Fatalf("holder %s could not renew: %v %v", holder, ok, err)
			}
			if ok, _ := stores[0].AcquireLease(ctx, name, "latecomer", time.Minute); ok {
				t.Fatal("a latecomer took a lease that is held")
			}
		}
		clock.Advance(time.Minute)
		if ok, err := stores[0].AcquireLease(ctx, "weekly-summary-0", "latecomer", time.Minute); err != nil || !ok {
			t.Fatalf("after the lease lapsed, latecomer got %v %v; want the lease", ok, err)
		}
	})
}

// TestSeenOnceAcrossReplicas: a webhook delivered to several replicas at once is acted on by
// exactly one of them.
func TestSeenOnceAcrossReplicas(t *testing.T) {
	forEachBackend(t, func(t *testing.T, clock *clocktest.Fake, replica replicaFactory) {
		stores := []*sqlstore.Store{replica(), replica()}
		for k := range 10 {
			key := fmt.Sprintf("pagerduty:event:01HX%04d", k)
			var firsts atomic.Int32
			var wg sync.WaitGroup
			for i := range 6 {
				wg.Go(func() {
					first, err := stores[i%2].Seen(context.Background(), key)
					if err != nil {
						t.Errorf("Seen: %v", err)
					}
					if first {
						firsts.Add(1)
					}
				})
			}
			wg.Wait()
			if n := firsts.Load(); n != 1 {
				t.Fatalf("key %s: %d deliveries reported first, want 1", key, n)
			}
		}
	})
}

// TestPostgresAuditTablesAppendOnly: the database itself refuses to change or remove audit
// rows and checkpoints, whoever asks, and the log still verifies afterwards.
func TestPostgresAuditTablesAppendOnly(t *testing.T) {
	dsn := newPGSchema(t)
	clock := clocktest.New(storetest.Start)
	s := openPG(t, dsn, clock)
	for i := range 3 {
		g := storetest.NewGrant(clock.Now(), fmt.Sprintf("r%d", i), time.Hour)
		storetest.MustCreate(t, s, clock.Now(), g)
	}
	ctx := context.Background()
	key, _ := audit.GenerateKey(nil)
	seq, head, _, _ := s.Head(ctx)
	if err := s.AppendCheckpoint(ctx, audit.SignCheckpoint(key, seq, head, clock.Now())); err != nil {
		t.Fatal(err)
	}
	conn := pgConn(t, dsn)
	for _, stmt := range []string{
		`UPDATE audit_events SET reason = 'rewritten' WHERE seq = 2`,
		`UPDATE audit_events SET reason = 'rewritten' WHERE false`,
		`DELETE FROM audit_events WHERE seq = 3`,
		`DELETE FROM audit_events`,
		`TRUNCATE audit_events`,
		`TRUNCATE audit_events, audit_checkpoints`,
		`UPDATE audit_checkpoints SET seq = 1`,
		`DELETE FROM audit_checkpoints`,
		`TRUNCATE audit_checkpoints`,
	} {
		t.Run(stmt, func(t *testing.T) {
			_, err := conn.Exec(ctx, stmt)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "42501" {
				t.Fatalf("%s = %v; want the append-only trigger's insufficient_privilege error", stmt, err)
			}
			if want := "append-only"; !strings.Contains(pe.Message, want) {
				t.Errorf("error %q does not say %q", pe.Message, want)
			}
		})
	}
	var events, checkpoints int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM audit_events), (SELECT count(*) FROM audit_checkpoints)`).Scan(&events, &checkpoints); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([2]int{3, 1}, [2]int{events, checkpoints}); diff != "" {
		t.Errorf("audit rows after refused changes (-want +got):\n%s", diff)
	}
	res, err := audit.Verify(ctx, s, audit.PublicKeyOf(key), audit.VerifyOptions{RequireCheckpoint: true})
	if err != nil || !res.OK {
		t.Fatalf("verify after refused changes: %v %s", err, res)
	}
}

// TestPostgresReplicasMigrateOnce: replicas starting at the same moment on an empty schema
// all open, and the migrations are applied exactly once.
func TestPostgresReplicasMigrateOnce(t *testing.T) {
	dsn := newPGSchema(t)
	clock := clocktest.New(storetest.Start)
	var wg sync.WaitGroup
	stores := make([]*sqlstore.Store, 4)
	errs := make([]error, 4)
	for i := range stores {
		wg.Go(func() {
			stores[i], errs[i] = sqlstore.Open(context.Background(), "postgres", dsn, clock, nil)
		})
	}
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		t.Cleanup(func() { s.Close() })
		if err := s.Ready(context.Background()); err != nil {
			t.Errorf("replica %d not ready: %v", i, err)
		}
	}
	var rows, maxVersion int
	if err := pgConn(t, dsn).QueryRow(context.Background(), `SELECT count(*), max(version) FROM schema_migrations`).Scan(&rows, &maxVersion); err != nil {
		t.Fatal(err)
	}
	if rows != maxVersion || rows < 1 {
		t.Errorf("schema_migrations has %d rows up to version %d; want each migration recorded once", rows, maxVersion)
	}
}

// TestPostgresOpenErrors: bad connection settings give errors that say what to fix and never
// show the password.
func TestPostgresOpenErrors(t *testing.T) {
	base := pgDSN(t)
	const secret = "s3cret-pw-do-not-print"
	for _, tc := range []struct {
		name, dsn, want string
	}{
		{"empty", "", "store.dsn is empty"},
		{"not a dsn", "postgres://user:" + secret + "@[::1", "not a valid PostgreSQL connection string"},
		{"bad pool setting", "postgres://user:" + secret + "@127.0.0.1:5432/x?pool_max_conns=many", "not a valid PostgreSQL connection string"},
		{"unreachable", "postgres://user:" + secret + "@127.0.0.1:1/x?sslmode=disable&connect_timeout=2", "connect to postgres"},
		{"no such schema", withParams(t, base, map[string]string{"search_path": "ab_missing_schema_0"}), "no schema on the connection's search_path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := sqlstore.Open(context.Background(), "postgres", tc.dsn, grants.RealClock{}, nil)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded; want an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the password: %q", err)
			}
		})
	}
}

// TestPostgresSurvivesTerminatedBackends: every connection of the broker is killed (as in a
// database restart or failover); the store reconnects by itself, the next writes succeed, and
// the chain continues without a gap.
func TestPostgresSurvivesTerminatedBackends(t *testing.T) {
	dsn := newPGSchema(t)
	clock := clocktest.New(storetest.Start)
	s := openPG(t, dsn, clock)
	ctx := context.Background()
	for i := range 5 {
		storetest.MustCreate(t, s, clock.Now(), storetest.NewGrant(clock.Now(), fmt.Sprintf("r%d", i), time.Hour))
	}
	admin := pgConn(t, pgDSN(t))
	var killed int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, s.Schema()).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed == 0 {
		t.Fatal("setup: no backend of the store was found to terminate")
	}
	// The first write finds a dead connection at BEGIN, resets the pool and succeeds on a new
	// one; the following ones run normally.
	for i := range 3 {
		g := storetest.NewGrant(clock.Now(), fmt.Sprintf("after-%d", i), time.Hour)
		if err := s.Apply(ctx, &grants.Change{Grants: []grants.GrantWrite{{Grant: g, Create: true}}, Events: []*audit.Event{storetest.Event(clock.Now(), audit.ActionGrantIssued, g)}}); err != nil {
			t.Fatalf("write %d after the backends were terminated: %v", i, err)
		}
	}
	if err := s.Ready(ctx); err != nil {
		t.Errorf("Ready after recovery: %v", err)
	}
	evs := readAll(t, s)
	if len(evs) != 8 {
		t.Fatalf("log has %d events, want 8", len(evs))
	}
	mustVerify(t, s, 8)
}

// TestReplicasOverlappingChanges: writers on two stores repeatedly update random, overlapping
// sets of the same grants, listed in random order. Each change must either apply or fail with
// grants.ErrConflict (a stale version): never a deadlock or any other error, and the chain
// must verify afterwards.
func TestReplicasOverlappingChanges(t *testing.T) {
	forEachBackend(t, func(t *testing.T, clock *clocktest.Fake, replica replicaFactory) {
		stores := []*sqlstore.Store{replica(), replica()}
		ctx := context.Background()
		const n = 12
		var ids []string
		seed := &grants.Change{}
		for i := range n {
			g := storetest.NewGrant(clock.Now(), fmt.Sprintf("r%d", i), time.Hour)
			ids = append(ids, g.ID)
			seed.Grants = append(seed.Grants, grants.GrantWrite{Grant: g, Create: true})
			seed.Events = append(seed.Events, storetest.Event(clock.Now(), audit.ActionGrantIssued, g))
		}
		storetest.MustApply(t, stores[0], seed)
		var applied, conflicts atomic.Int64
		var wg sync.WaitGroup
		for w := range 6 {
			s := stores[w%2]
			rng := mathrand.New(mathrand.NewPCG(uint64(w), 7))
			wg.Go(func() {
				for range 25 {
					c := &grants.Change{}
					for _, i := range rng.Perm(n)[:2+rng.IntN(5)] {
						g, err := s.GetGrant(ctx, ids[i])
						if err != nil {
							t.Error(err)
							return
						}
						g.Attempts++
						c.Grants = append(c.Grants, grants.GrantWrite{Grant: &g})
						c.Events = append(c.Events, storetest.Event(clock.Now(), audit.ActionGrantExtended, &g))
					}
					switch err := s.Apply(ctx, c); {
					case err == nil:
						applied.Add(1)
					case errors.Is(err, grants.ErrConflict):
						conflicts.Add(1)
					default:
						t.Errorf("writer %d: %v", w, err)
						return
					}
				}
			})
		}
		wg.Wait()
		t.Logf("%d changes applied, %d refused as stale", applied.Load(), conflicts.Load())
		if applied.Load() == 0 {
			t.Fatal("no change applied")
		}
		evs := readAll(t, stores[1])
		mustVerify(t, stores[0], int64(len(evs)))
		// Every applied change bumped each of its grants' attempts once: the total of attempts
		// equals the grant.extended events recorded.
		all, err := stores[1].ListGrants(ctx, grants.GrantFilter{})
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, g := range all {
			total += g.Attempts
		}
		if want := len(evs) - n; total != want {
			t.Errorf("attempts total %d, but %d update events were recorded", total, want)
		}
	})
}

// TestPostgresLeastPrivilegeRole: the setup docs/postgres.md recommends. The schema's owner
// migrates it; the broker then runs as a role that may read and write the mutable tables but
// may only read and append the audit tables. That role can do all the broker's work, and it
// can neither change audit rows nor switch the append-only triggers off.
func TestPostgresLeastPrivilegeRole(t *testing.T) {
	ownerDSN := newPGSchema(t)
	clock := clocktest.New(storetest.Start)
	owner := openPG(t, ownerDSN, clock)
	schema := owner.Schema()
	role := schema + "_rt"
	ctx := context.Background()
	admin := pgConn(t, ownerDSN)
	for _, stmt := range []string{
		`CREATE ROLE ` + role + ` LOGIN`,
		`GRANT USAGE ON SCHEMA ` + schema + ` TO ` + role,
		`GRANT SELECT ON schema_migrations TO ` + role,
		`GRANT SELECT, INSERT, UPDATE ON requests, grants, seen_keys, leases TO ` + role,
		`GRANT SELECT, INSERT ON audit_events, audit_checkpoints TO ` + role,
	} {
		if _, err := admin.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	t.Cleanup(func() {
		c := pgConn(t, pgDSN(t))
		for _, stmt := range []string{`DROP OWNED BY ` + role, `DROP ROLE ` + role} {
			if _, err := c.Exec(context.Background(), stmt); err != nil {
				t.Errorf("%s: %v", stmt, err)
			}
		}
	})
	u, err := url.Parse(ownerDSN)
	if err != nil || u.Scheme == "" {
		t.Skipf("this test needs %s as a postgres:// URL: %v", pgEnv, err)
	}
	u.User = url.User(role)
	rtDSN := u.String()
	rt := openPG(t, rtDSN, clock) // finds the schema migrated, needs no CREATE
	if err := rt.Ready(ctx); err != nil {
		t.Fatalf("runtime role not ready: %v", err)
	}

	// The broker's work: issue, claim, revoke, dedupe, lease, checkpoint.
	g := storetest.NewGrant(clock.Now(), "prod-db", time.Minute)
	storetest.MustCreate(t, rt, clock.Now(), g)
	clock.Advance(time.Minute)
	claimed, err := rt.ClaimDue(ctx, "rt", clock.Now(), 10, time.Minute)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("ClaimDue as the runtime role = %d, %v", len(claimed), err)
	}
	claimed[0].State = grants.StateRevoked
	storetest.MustApply(t, rt, &grants.Change{Grants: []grants.GrantWrite{{Grant: &claimed[0]}}, Events: []*audit.Event{storetest.Event(clock.Now(), audit.ActionGrantRevoked, &claimed[0])}})
	if _, err := rt.Seen(ctx, "k1"); err != nil {
		t.Fatalf("Seen: %v", err)
	}
	if _, err := rt.AcquireLease(ctx, "checkpoints", "rt", time.Minute); err != nil {
		t.Fatalf("AcquireLease: %v", err)
	}
	mustVerify(t, rt, 2)

	conn := pgConn(t, rtDSN)
	for _, stmt := range []string{
		`ALTER TABLE audit_events DISABLE TRIGGER ALL`,
		`ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update`,
		`DROP TRIGGER audit_events_no_delete ON audit_events`,
		`UPDATE audit_events SET reason = 'rewritten'`,
		`DELETE FROM audit_events`,
		`TRUNCATE audit_events`,
		`DELETE FROM audit_checkpoints`,
		`DROP TABLE audit_events`,
	} {
		t.Run(stmt, func(t *testing.T) {
			_, err := conn.Exec(ctx, stmt)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "42501" {
				t.Fatalf("%s as the runtime role = %v; want permission denied (42501)", stmt, err)
			}
		})
	}
}
