package postgres

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/grants"
)

// reportLatency adds p50 and p99 of d, in milliseconds, to the benchmark's output.
func reportLatency(b *testing.B, what string, d []time.Duration) {
	b.Helper()
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	at := func(q float64) float64 {
		return float64(d[min(len(d)-1, int(q*float64(len(d))))].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), what+"-p50-ms")
	b.ReportMetric(at(0.99), what+"-p99-ms")
}

// BenchmarkIssueRevoke measures one grant at a time, least-privilege admin role:
//
//	ACCESSBROKER_TEST_POSTGRES_DSN=… go test -run '^$' -bench . -benchtime 200x ./integrations/postgres/
func BenchmarkIssueRevoke(b *testing.B) {
	e := newEnv(b)
	p := e.provider(b, Config{})
	ctx := context.Background()
	var issue, revoke []time.Duration
	for b.Loop() {
		id := grants.NewID("g")
		t0 := time.Now()
		iss, err := p.Issue(ctx, issueReq(id, time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := p.Revoke(ctx, revokeReq(id, iss.Handle)); err != nil {
			b.Fatal(err)
		}
		issue = append(issue, t1.Sub(t0))
		revoke = append(revoke, time.Since(t1))
	}
	reportLatency(b, "issue", issue)
	reportLatency(b, "revoke", revoke)
}

// BenchmarkConcurrent8 runs issue+revoke cycles from 8 goroutines sharing one provider and
// reports grants (full cycles) per second.
func BenchmarkConcurrent8(b *testing.B) {
	e := newEnv(b)
	p := e.provider(b, Config{AdminDSN: e.adminDSN + "&pool_max_conns=8"})
	ctx := context.Background()
	const workers = 8
	ids := make(chan string)
	var (
		mu     sync.Mutex
		cycles []time.Duration
		wg     sync.WaitGroup
	)
	b.ResetTimer()
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for id := range ids {
				t0 := time.Now()
				iss, err := p.Issue(ctx, issueReq(id, time.Hour))
				if err != nil {
					b.Error(err)
					continue
				}
				if err := p.Revoke(ctx, revokeReq(id, iss.Handle)); err != nil {
					b.Error(err)
				}
				mu.Lock()
				cycles = append(cycles, time.Since(t0))
				mu.Unlock()
			}
		})
	}
	for range b.N {
		ids <- grants.NewID("g")
	}
	close(ids)
	wg.Wait()
	elapsed := time.Since(start)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "grants/s")
	reportLatency(b, "cycle", cycles)
}
