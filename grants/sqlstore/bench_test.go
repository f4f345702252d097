package sqlstore_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

func benchEvent(i int, now time.Time) *audit.Event {
	return &audit.Event{
		ID: grants.NewID("e"), Time: now, Actor: audit.Actor{Kind: audit.ActorUser, ID: fmt.Sprintf("U%05d", i%500), Email: fmt.Sprintf("user%d@example.com", i%500)},
		Action: audit.ActionGrantIssued, GrantID: fmt.Sprintf("g_%016d", i), Resource: fmt.Sprintf("res-%d", i%20),
		Reason: "checking replication lag", Evidence: map[string]string{"expires_at": "2026-11-22T11:00:00.000Z", "person": "alice@example.com"},
	}
}

// BenchmarkAuditAppend measures one audit event per transaction (synchronous=FULL: one fsync
// each) and 100 events per transaction (the revoker's group commit).
func BenchmarkAuditAppend(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("events-per-tx=%d", batch), func(b *testing.B) {
			s := openSQLite(b, grants.RealClock{})
			ctx := context.Background()
			now := time.Now().UTC()
			i := 0
			b.ResetTimer()
			for b.Loop() {
				c := &grants.Change{}
				for range batch {
					c.Events = append(c.Events, benchEvent(i, now))
					i++
				}
				if err := s.Apply(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

var (
	bigOnce sync.Once
	bigPath string
	bigKey  ed25519.PrivateKey
	bigErr  error
)

// bigLog builds (once per run) a SQLite database with 1,000,000 chained audit events and a
// final signed checkpoint.
func bigLog(b *testing.B) string {
	b.Helper()
	bigOnce.Do(func() {
		// $ACCESSBROKER_VERIFY_BENCH_DB: the log is kept there (its key beside it) and
		// reused by later runs and other commits' binaries, for interleaved comparisons.
		if p := os.Getenv("ACCESSBROKER_VERIFY_BENCH_DB"); p != "" {
			if seed, err := os.ReadFile(p + ".key"); err == nil {
				bigPath, bigKey = p, ed25519.NewKeyFromSeed(seed)
				return
			}
			bigPath = p
		} else {
			dir, err := os.MkdirTemp("", "ab-bench")
			if err != nil {
				bigErr = err
				return
			}
			bigPath = filepath.Join(dir, "big.db")
		}
		s, err := sqlstore.Open(context.Background(), "sqlite", "file:"+bigPath, grants.RealClock{}, nil)
		if err != nil {
			bigErr = err
			return
		}
		defer s.Close()
		ctx := context.Background()
		start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		const n, per = 1_000_000, 5000
		for i := 0; i < n; i += per {
			c := &grants.Change{}
			for j := i; j < i+per; j++ {
				c.Events = append(c.Events, benchEvent(j, start.Add(time.Duration(j)*time.Second)))
			}
			if err := s.Apply(ctx, c); err != nil {
				bigErr = err
				return
			}
		}
		bigKey, _ = audit.GenerateKey(nil)
		seq, h, _, err := s.Head(ctx)
		if err != nil {
			bigErr = err
			return
		}
		if bigErr = s.AppendCheckpoint(ctx, audit.SignCheckpoint(bigKey, seq, h, time.Now().UTC())); bigErr == nil && os.Getenv("ACCESSBROKER_VERIFY_BENCH_DB") != "" {
			bigErr = os.WriteFile(bigPath+".key", bigKey.Seed(), 0o600)
		}
	})
	if bigErr != nil {
		b.Fatal(bigErr)
	}
	return bigPath
}

// pgBigLog fills a fresh PostgreSQL schema with the same 1,000,000 events as bigLog (read
// back from it, sealed again as the store appends them) and a final signed checkpoint.
// With $ACCESSBROKER_VERIFY_BENCH_PG_SCHEMA (and $ACCESSBROKER_VERIFY_BENCH_DB) the schema
// of that name is kept, and reused by later runs and other commits' binaries once it holds
// the log (filling it takes minutes).
func pgBigLog(b *testing.B) *sqlstore.Store {
	b.Helper()
	path := bigLog(b)
	ctx := context.Background()
	var s *sqlstore.Store
	if name := os.Getenv("ACCESSBROKER_VERIFY_BENCH_PG_SCHEMA"); name != "" && os.Getenv("ACCESSBROKER_VERIFY_BENCH_DB") != "" {
		c := pgConn(b, pgDSN(b))
		if _, err := c.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{name}.Sanitize()); err != nil {
			b.Fatal(err)
		}
		s = openPG(b, withParams(b, pgDSN(b), map[string]string{"search_path": name, "pool_max_conns": "4"}), grants.RealClock{})
		if seq, _, _, err := s.Head(ctx); err != nil {
			b.Fatal(err)
		} else if seq == 1_000_000 {
			if _, ok, err := s.LastCheckpoint(ctx); err == nil && ok {
				return s
			}
		} else if seq != 0 {
			b.Fatalf("schema %s holds %d events: drop it (DROP SCHEMA %s CASCADE) to fill it again", name, seq, name)
		}
	} else {
		s = openPG(b, withParams(b, newPGSchema(b), map[string]string{"pool_max_conns": "4"}), grants.RealClock{})
	}
	src, err := sqlstore.Open(context.Background(), "sqlite", "file:"+path, grants.RealClock{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	for after := int64(0); ; {
		evs, err := src.ReadEvents(ctx, after, 5000)
		if err != nil {
			b.Fatal(err)
		}
		if len(evs) == 0 {
			break
		}
		after = evs[len(evs)-1].Seq
		c := &grants.Change{Events: make([]*audit.Event, len(evs))}
		for i := range evs {
			c.Events[i] = &evs[i]
		}
		if err := s.Apply(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	seq, h, _, err := s.Head(ctx)
	if err != nil || seq != 1_000_000 {
		b.Fatalf("postgres log head %d: %v", seq, err)
	}
	if err := s.AppendCheckpoint(ctx, audit.SignCheckpoint(bigKey, seq, h, time.Now().UTC())); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkAuditVerify1M runs the full verification over a 1,000,000-event log on SQLite
// and on PostgreSQL (the latter skipped without ACCESSBROKER_TEST_POSTGRES_DSN). cpu-s/verify
// is the process's CPU time (user + system, every goroutine) per verification, a second
// witness beside wall time on a loaded machine.
func BenchmarkAuditVerify1M(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			var s *sqlstore.Store
			if backend == "postgres" {
				s = pgBigLog(b)
			} else {
				var err error
				if s, err = sqlstore.Open(context.Background(), "sqlite", "file:"+bigLog(b), grants.RealClock{}, nil); err != nil {
					b.Fatal(err)
				}
				defer s.Close()
			}
			pub := bigKey.Public().(ed25519.PublicKey)
			b.ResetTimer()
			cpu0 := cpuTime()
			for b.Loop() {
				res, err := audit.Verify(context.Background(), s, pub, audit.VerifyOptions{RequireCheckpoint: true})
				if err != nil || !res.OK || res.Events != 1_000_000 {
					b.Fatalf("verify: %v %s", err, res)
				}
			}
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/verify")
			b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/verify")
		})
	}
}

// cpuTime is the process's CPU time so far (user + system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAuditSearch1M measures filtered searches over 1,000,000 events and reports p50/p99.
func BenchmarkAuditSearch1M(b *testing.B) {
	path := bigLog(b)
	s, err := sqlstore.Open(context.Background(), "sqlite", "file:"+path, grants.RealClock{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	queries := []audit.Query{
		{Actor: "U00042", Limit: 100},
		{Resource: "res-7", Limit: 100, Descending: true},
		{Actor: "user42@example.com", Since: start.Add(500_000 * time.Second), Until: start.Add(600_000 * time.Second), Limit: 100},
		{Action: audit.ActionGrantIssued, Resource: "res-3", Since: start.Add(900_000 * time.Second), Limit: 100},
		{GrantID: "g_0000000000777777", Limit: 100},
	}
	// Each op is 1,000 searches, so that one run yields a meaningful p99.
	var lat []time.Duration
	b.ResetTimer()
	for b.Loop() {
		for i := range 1000 {
			t0 := time.Now()
			evs, err := s.Search(context.Background(), queries[i%len(queries)])
			lat = append(lat, time.Since(t0))
			if err != nil || len(evs) == 0 {
				b.Fatalf("search %d: %v (%d results)", i%len(queries), err, len(evs))
			}
		}
	}
	sort.Slice(lat, func(a, c int) bool { return lat[a] < lat[c] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkReadEvents reads 100,000 events back in pages, as verify and reports do.
func BenchmarkReadEvents(b *testing.B) {
	s := openSQLite(b, grants.RealClock{})
	ctx := context.Background()
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	const n = 100_000
	for i := 0; i < n; i += 5000 {
		c := &grants.Change{}
		for j := i; j < i+5000; j++ {
			c.Events = append(c.Events, benchEvent(j, start.Add(time.Duration(j)*time.Second)))
		}
		if err := s.Apply(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	cpu0 := cpuTime()
	for b.Loop() {
		var after int64
		total := 0
		for {
			evs, err := s.ReadEvents(ctx, after, 10000)
			if err != nil {
				b.Fatal(err)
			}
			if len(evs) == 0 {
				break
			}
			total += len(evs)
			after = evs[len(evs)-1].Seq
		}
		if total != n {
			b.Fatalf("read %d", total)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N*n), "cpu-ns/event")
}
