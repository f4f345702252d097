package grants_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// slowProvider answers every call after a fixed latency, like a remote API.
type slowProvider struct{ latency time.Duration }

func (p slowProvider) Kind() string { return "slow" }
func (p slowProvider) Issue(context.Context, grants.IssueRequest) (grants.Issued, error) {
	return grants.Issued{}, nil
}
func (p slowProvider) Revoke(ctx context.Context, _ grants.RevokeRequest) error {
	t := time.NewTimer(p.latency)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lagRecorder collects revocation lags.
type lagRecorder struct {
	mu   sync.Mutex
	lags []time.Duration
	done chan struct{}
	want int
}

func (l *lagRecorder) Revoked(_ string, lag time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lags = append(l.lags, lag)
	if len(l.lags) == l.want {
		close(l.done)
	}
}
func (l *lagRecorder) RevokeFailed(string, bool) {}

func (l *lagRecorder) percentile(p float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := append([]time.Duration(nil), l.lags...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

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
// all are revoked, for the default per-provider concurrency and a higher one.
func BenchmarkRevoker10kSameSecond(b *testing.B) {
	for _, conc := range []int{32, 128} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				st := benchStore(b)
				const n = 10_000
				now := time.Now().UTC()
				due := now.Add(3 * time.Second).Truncate(time.Second)
				seedGrants(b, st, n, now, due)
				rec := &lagRecorder{done: make(chan struct{}), want: n}
				r := grants.NewRevoker(st, map[string]grants.Provider{"slow": slowProvider{5 * time.Millisecond}}, grants.RealClock{}, nil,
					grants.RevokerOptions{ConcurrencyPerProvider: conc, Metrics: rec})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { r.Run(ctx); close(done) }()
				b.StartTimer()
				<-rec.done
				all := time.Since(due)
				b.StopTimer()
				cancel()
				<-done
				b.ReportMetric(rec.percentile(0.5).Seconds(), "p50-lag-s")
				b.ReportMetric(rec.percentile(0.99).Seconds(), "p99-lag-s")
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
		rec := &lagRecorder{done: make(chan struct{}), want: n}
		mgr := grants.NewManager(st, nil, nil, grants.RealClock{}, nil, grants.ManagerOptions{})
		r := grants.NewRevoker(st, map[string]grants.Provider{"slow": slowProvider{5 * time.Millisecond}}, grants.RealClock{}, nil,
			grants.RevokerOptions{Metrics: rec})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		b.StartTimer()
		start := time.Now()
		if _, err := mgr.ReconcileOnStart(ctx, true); err != nil {
			b.Fatal(err)
		}
		go func() { r.Run(ctx); close(done) }()
		<-rec.done
		all := time.Since(start)
		b.StopTimer()
		cancel()
		<-done
		b.ReportMetric(all.Seconds(), "all-revoked-s")
		b.StartTimer()
	}
}
