package grants_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/providertest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// seedGrants writes n active grants of resource "slow" all due at due.
func seedGrants(b *testing.B, st *sqlstore.Store, n int, created, due time.Time) {
	b.Helper()
	for i := 0; i < n; i += 1000 {
		c := &grants.Change{}
		for j := i; j < min(i+1000, n); j++ {
			g := &grants.Grant{ID: grants.NewID("g"), Resource: "slow", Provider: "slow", State: grants.StateActive,
				Person: grants.Person{SlackUserID: fmt.Sprintf("U%05d", j)}, Reason: "bench",
				CreatedAt: created, IssuedAt: created, ExpiresAt: due, DueAt: due}
			c.Grants = append(c.Grants, grants.GrantWrite{Grant: g, Create: true})
			c.Events = append(c.Events, grants.NewGrantEvent(created, audit.Actor{Kind: audit.ActorSystem, ID: "bench"}, audit.ActionGrantIssued, g, "bench", nil))
		}
		if err := st.Apply(context.Background(), c); err != nil {
			b.Fatal(err)
		}
	}
}

func benchStore(b *testing.B) *sqlstore.Store {
	b.Helper()
	st, err := sqlstore.Open(context.Background(), "sqlite", "file:"+filepath.Join(b.TempDir(), "ab.db"), grants.RealClock{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

// BenchmarkRevoker10kSameSecond: 10,000 grants expire in the same second; the provider takes
// 5 ms per call. Reports the revocation lag (deadline → recorded) p50/p99 and the time until
// all are revoked, for the default per-provider concurrency and a higher one, with a
// provider called one grant at a time and with one that revokes many in one call (5 ms per
// call whatever their number, grants.BatchRevoker).
func BenchmarkRevoker10kSameSecond(b *testing.B) {
	for _, tc := range []struct {
		conc  int
		batch bool
	}{{32, false}, {128, false}, {32, true}} {
		conc := tc.conc
		var prov grants.Provider = providertest.Latency{Delay: 5 * time.Millisecond}
		name := fmt.Sprintf("concurrency=%d", conc)
		if tc.batch {
			prov = providertest.BatchLatency{Latency: providertest.Latency{Delay: 5 * time.Millisecond}}
			name += "/batch"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				st := benchStore(b)
				const n = 10_000
				now := time.Now().UTC()
				due := now.Add(3 * time.Second).Truncate(time.Second)
				seedGrants(b, st, n, now, due)
				rec := providertest.NewLagRecorder(n)
				r := grants.NewRevoker(st, map[string]grants.Provider{"slow": prov}, grants.RealClock{}, nil,
					grants.RevokerOptions{ConcurrencyPerProvider: conc, Metrics: rec})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { r.Run(ctx); close(done) }()
				b.StartTimer()
				<-rec.Done
				all := time.Since(due)
				b.StopTimer()
				cancel()
				<-done
				b.ReportMetric(rec.Percentile(0.5).Seconds(), "p50-lag-s")
				b.ReportMetric(rec.Percentile(0.99).Seconds(), "p99-lag-s")
				b.ReportMetric(all.Seconds(), "all-done-s")
				b.StartTimer()
			}
		})
	}
}

// BenchmarkStartup10kOverdue: a broker starts with 10,000 grants already past their deadline
// (downtime); reports the time from start until every one is revoked (5 ms provider latency).
func BenchmarkStartup10kOverdue(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		st := benchStore(b)
		const n = 10_000
		now := time.Now().UTC()
		seedGrants(b, st, n, now.Add(-2*time.Hour), now.Add(-time.Hour))
		rec := providertest.NewLagRecorder(n)
		mgr := grants.NewManager(st, nil, nil, grants.RealClock{}, nil, grants.ManagerOptions{})
		r := grants.NewRevoker(st, map[string]grants.Provider{"slow": providertest.Latency{Delay: 5 * time.Millisecond}}, grants.RealClock{}, nil,
			grants.RevokerOptions{Metrics: rec})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		b.StartTimer()
		start := time.Now()
		if _, err := mgr.ReconcileOnStart(ctx, true); err != nil {
			b.Fatal(err)
		}
		go func() { r.Run(ctx); close(done) }()
		<-rec.Done
		all := time.Since(start)
		b.StopTimer()
		cancel()
		<-done
		b.ReportMetric(all.Seconds(), "all-revoked-s")
		b.StartTimer()
	}
}
