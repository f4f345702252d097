package sqlstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/providertest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// benchBackend opens stores for benchmarks: each call to the returned function is another
// process's store on the same database.
type benchBackend struct {
	name string
	open func(b *testing.B) func() *sqlstore.Store
}

func benchBackends() []benchBackend {
	return []benchBackend{
		{"sqlite", func(b *testing.B) func() *sqlstore.Store {
			path := "file:" + filepath.Join(b.TempDir(), "ab.db")
			return func() *sqlstore.Store {
				s, err := sqlstore.Open(context.Background(), "sqlite", path, grants.RealClock{}, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
				return s
			}
		}},
		{"postgres", func(b *testing.B) func() *sqlstore.Store {
			dsn := withParams(b, newPGSchema(b), map[string]string{"pool_max_conns": "10"})
			return func() *sqlstore.Store { return openPG(b, dsn, grants.RealClock{}) }
		}},
	}
}

// BenchmarkAuditAppendConcurrent measures audit appends per second (one event per change,
// each durable before Apply returns) with 1 and 8 concurrent writers on one store, and on
// PostgreSQL 8 writers spread over 3 stores (replicas) appending to one chain. On
// PostgreSQL every append takes the chain lock, so writers queue; the figure shows what the
// lock costs and what the pool still overlaps (BEGIN, the row writes' round trips).
// events/commit (PostgreSQL) is how many appends one transaction carried on average;
// cpu-µs/event is this process's CPU time (not the server's) per append.
func BenchmarkAuditAppendConcurrent(b *testing.B) {
	for _, be := range benchBackends() {
		for _, cs := range []struct{ writers, stores int }{{1, 1}, {8, 1}, {8, 3}} {
			if cs.stores > 1 && be.name != "postgres" {
				continue // one process per SQLite file
			}
			name := fmt.Sprintf("%s/writers=%d", be.name, cs.writers)
			if cs.stores > 1 {
				name += fmt.Sprintf("/replicas=%d", cs.stores)
			}
			b.Run(name, func(b *testing.B) {
				open := be.open(b)
				var stores []*sqlstore.Store
				for range cs.stores {
					stores = append(stores, open())
				}
				ctx := context.Background()
				now := time.Now().UTC()
				work := make(chan int, cs.writers)
				var wg sync.WaitGroup
				b.ResetTimer()
				for w := range cs.writers {
					s := stores[w%len(stores)]
					wg.Go(func() {
						for i := range work {
							if err := s.Apply(ctx, &grants.Change{Events: []*audit.Event{benchEvent(i, now)}}); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				i := 0
				cpu0 := cpuTime()
				for b.Loop() {
					work <- i
					i++
				}
				close(work)
				wg.Wait()
				b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "events/s")
				b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(i), "cpu-µs/event")
				if be.name == "postgres" {
					b.ReportMetric(float64(i)/float64(pgTransactions(b, stores[0])), "events/commit")
				}
			})
		}
	}
}

// pgTransactions counts the transactions that wrote s's audit events (their distinct xmin).
func pgTransactions(b *testing.B, s *sqlstore.Store) int64 {
	b.Helper()
	var n int64
	if err := pgConn(b, pgDSN(b)).QueryRow(context.Background(),
		`SELECT count(DISTINCT xmin::text) FROM `+s.Schema()+`.audit_events`).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

// BenchmarkRevocationSweep10k: 10,000 grants are due at once (a restart after downtime) and
// 1 or 3 revokers, each with its own store as separate replicas would have, sweep them; the
// provider takes 5 ms per call and each revoker runs the default 32 calls at a time. Reports
// the time until every grant is revoked and the revocation lag p50/p99.
func BenchmarkRevocationSweep10k(b *testing.B) {
	for _, be := range benchBackends() {
		for _, revokers := range []int{1, 3} {
			b.Run(fmt.Sprintf("%s/revokers=%d", be.name, revokers), func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					replica := be.open(b)
					const n = 10_000
					now := time.Now().UTC().Truncate(time.Millisecond)
					seedDue(b, replica(), n, now.Add(-time.Hour), now)
					rec := providertest.NewLagRecorder(n)
					providers := map[string]grants.Provider{"slow": providertest.Latency{Delay: 5 * time.Millisecond}}
					var rs []*grants.Revoker
					for i := range revokers {
						rs = append(rs, grants.NewRevoker(replica(), providers, grants.RealClock{}, nil,
							grants.RevokerOptions{Instance: fmt.Sprintf("replica-%d", i), Metrics: rec}))
					}
					ctx, cancel := context.WithCancel(context.Background())
					var wg sync.WaitGroup
					b.StartTimer()
					start := time.Now()
					for _, r := range rs {
						wg.Go(func() { r.Run(ctx) })
					}
					<-rec.Done
					all := time.Since(start)
					b.StopTimer()
					cancel()
					wg.Wait()
					b.ReportMetric(all.Seconds(), "sweep-s")
					b.ReportMetric(float64(n)/all.Seconds(), "grants/s")
					b.ReportMetric(rec.Percentile(0.5).Seconds(), "p50-lag-s")
					b.ReportMetric(rec.Percentile(0.99).Seconds(), "p99-lag-s")
					b.StartTimer()
				}
			})
		}
	}
}

// seedDue writes n active grants of resource "slow", all due at due.
func seedDue(b *testing.B, s *sqlstore.Store, n int, created, due time.Time) {
	b.Helper()
	actor := audit.Actor{Kind: audit.ActorSystem, ID: "bench"}
	for i := 0; i < n; i += 1000 {
		c := &grants.Change{}
		for j := i; j < min(i+1000, n); j++ {
			g := &grants.Grant{ID: grants.NewID("g"), Resource: "slow", Provider: "slow", State: grants.StateActive,
				Person: grants.Person{SlackUserID: fmt.Sprintf("U%05d", j)}, Reason: "bench",
				CreatedAt: created, IssuedAt: created, ExpiresAt: due, DueAt: due}
			c.Grants = append(c.Grants, grants.GrantWrite{Grant: g, Create: true})
			c.Events = append(c.Events, grants.NewGrantEvent(created, actor, audit.ActionGrantIssued, g, "bench", nil))
		}
		if err := s.Apply(context.Background(), c); err != nil {
			b.Fatal(err)
		}
	}
}
