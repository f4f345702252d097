package postgres

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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

// backendTicks is the CPU time (utime + stime, clock ticks of 10 ms) of the admin role's
// server backends, read from /proc: the server must run on this machine (else -1).
func backendTicks(b *testing.B, e *testEnv) int64 {
	b.Helper()
	rows, err := e.super.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE usename = $1`, e.admin)
	if err != nil {
		b.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return -1
		}
		_, rest, _ := strings.Cut(string(raw), ") ")
		f := strings.Fields(rest)
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += ut + st
	}
	return total
}

// BenchmarkPreparedIssue measures a prepared issue (PrepareIssue, then Commit) from a spare
// role made ahead and with CREATE ROLE (no spare), with the server's CPU time per issue
// (spares are made before the timed loop, so their cost is not in it):
//
//	ACCESSBROKER_TEST_POSTGRES_DSN=… go test -run '^$' -bench PreparedIssue -benchtime 200x ./integrations/postgres/
func BenchmarkPreparedIssue(b *testing.B) {
	for _, spares := range []bool{true, false} {
		b.Run(map[bool]string{true: "spare", false: "create"}[spares], func(b *testing.B) {
			e := newEnv(b)
			p := e.provider(b, Config{})
			p.spares.manual = true
			ctx := context.Background()
			if !spares {
				p.spares.target = 0
			}
			// Warm: a connection, the secret pool.
			if _, err := p.PrepareIssue(ctx, issueReq(grants.NewID("g"), time.Hour)).Commit(ctx); err != nil {
				b.Fatal(err)
			}
			if spares {
				for range b.N {
					if err := p.spares.make(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}
			var lat []time.Duration
			t0 := backendTicks(b, e)
			b.ResetTimer()
			for range b.N {
				s := time.Now()
				pi := p.PrepareIssue(ctx, issueReq(grants.NewID("g"), time.Hour))
				if got := pi.(*preparedRole).st.spare != nil; got != spares {
					pi.Abort(ctx)
					b.Fatalf("issue from a spare = %v, want %v", got, spares)
				}
				if _, err := pi.Commit(ctx); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(s))
			}
			b.StopTimer()
			if t1 := backendTicks(b, e); t0 >= 0 && t1 >= 0 {
				b.ReportMetric(float64(t1-t0)*10/float64(b.N), "server-cpu-ms/op")
			}
			reportLatency(b, "issue", lat)
		})
	}
}
