package grants_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
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

// benchCountingStore counts the revoker's store calls and the time spent in them: a claim and
// an Apply are one write transaction (one synced commit) each on SQLite.
type benchCountingStore struct {
	*sqlstore.Store
	mu                     sync.Mutex
	claims, applies, renew int
	claimed, applied       int
	claimTime, applyTime   time.Duration
}

func (c *benchCountingStore) ClaimDue(ctx context.Context, owner string, now time.Time, limit int, lease time.Duration) ([]grants.Grant, error) {
	start := time.Now()
	gs, err := c.Store.ClaimDue(ctx, owner, now, limit, lease)
	c.mu.Lock()
	c.claims++
	c.claimed += len(gs)
	c.claimTime += time.Since(start)
	c.mu.Unlock()
	return gs, err
}

func (c *benchCountingStore) Apply(ctx context.Context, ch *grants.Change) error {
	start := time.Now()
	err := c.Store.Apply(ctx, ch)
	c.mu.Lock()
	c.applies++
	c.applied += len(ch.Grants)
	c.applyTime += time.Since(start)
	c.mu.Unlock()
	return err
}

func (c *benchCountingStore) RenewClaims(ctx context.Context, owner string, ids []string, now, until time.Time) (int, error) {
	c.mu.Lock()
	c.renew++
	c.mu.Unlock()
	return c.Store.RenewClaims(ctx, owner, ids, now, until)
}

// report adds the counts per 100 revocations (n) to b's metrics.
func (c *benchCountingStore) report(b *testing.B, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	per := func(v int) float64 { return float64(v) * 100 / float64(n) }
	b.ReportMetric(per(c.claims), "claims/100")
	b.ReportMetric(per(c.applies), "records/100")
	b.ReportMetric(c.claimTime.Seconds(), "claim-s")
	b.ReportMetric(c.applyTime.Seconds(), "record-s")
	b.Logf("claims %d (%d grants), record calls %d (%d grants), renewals %d", c.claims, c.claimed, c.applies, c.applied, c.renew)
}

// cpuTime is the process's CPU time so far (user and system): the revoker's work, which
// load from other processes on the machine does not inflate as it does wall time.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func cpuSince(b *testing.B, t0 time.Duration) time.Duration {
	b.Helper()
	return cpuTime(b) - t0
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
// 5 ms per call. Reports the revocation lag p50/p99 (deadline → the provider's answer, as
// RevokerMetrics.Revoked reports it once the outcome is recorded), the time until all are
// recorded revoked (all-done-s), the process's CPU time over the same span (cpu-s, the figure
// load on the machine does not inflate) and the store calls per 100 revocations (a claim
// and a record are one write transaction each), for the default per-provider concurrency
// and a higher one, with a provider called one grant at a time and with one that revokes
// many in one call (5 ms per call whatever their number, grants.BatchRevoker).
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
				cs := &benchCountingStore{Store: st}
				r := grants.NewRevoker(cs, map[string]grants.Provider{"slow": prov}, grants.RealClock{}, nil,
					grants.RevokerOptions{ConcurrencyPerProvider: conc, Metrics: rec})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				cpu0 := cpuTime(b)
				go func() { r.Run(ctx); close(done) }()
				b.StartTimer()
				<-rec.Done
				all := time.Since(due)
				b.StopTimer()
				b.ReportMetric(cpuSince(b, cpu0).Seconds(), "cpu-s")
				cancel()
				<-done
				b.ReportMetric(rec.Percentile(0.5).Seconds(), "p50-lag-s")
				b.ReportMetric(rec.Percentile(0.99).Seconds(), "p99-lag-s")
				b.ReportMetric(all.Seconds(), "all-done-s")
				cs.report(b, n)
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
