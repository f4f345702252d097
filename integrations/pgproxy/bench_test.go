package pgproxy_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/integrations/pgproxy"
)

// Benchmarks, not timed tests: they report figures and assert nothing about time.
//
//	ACCESSBROKER_TEST_POSTGRES_DSN=… go test -run '^$' -bench . -benchtime 20000x ./integrations/pgproxy/

// percentile of sorted durations, in milliseconds.
func percentile(d []time.Duration, q float64) float64 {
	return float64(d[min(len(d)-1, int(q*float64(len(d))))].Microseconds()) / 1000
}

// directConnString is the grant's role straight to the server (the test server trusts
// loopback, so the upstream password is not needed there), with the client's sslmode.
func directConnString(b testing.TB, e *env, role string) string {
	b.Helper()
	u, err := url.Parse(withDB(b, os.Getenv(dsnEnv), e.db))
	if err != nil {
		b.Fatal(err)
	}
	u.User = url.User(role)
	q := u.Query()
	q.Set("sslmode", "require")
	u.RawQuery = q.Encode()
	return u.String()
}

// BenchmarkSelect1 runs SELECT 1 from 8 connections at once, directly and through the
// proxy, with the simple and the extended protocol, and reports queries per second and
// per-query latency (p50, p99). Through the proxy it also reports how many statements per
// second the audit log recorded and whether the recorder kept up.
func BenchmarkSelect1(b *testing.B) {
	e := newEnv(b)
	g, cred := e.issue(b, time.Hour)
	const conns = 8
	for _, mode := range []struct {
		name string
		exec pgx.QueryExecMode
	}{{"simple", pgx.QueryExecModeSimpleProtocol}, {"extended", pgx.QueryExecModeCacheStatement}} {
		for _, path := range []struct{ name, cs string }{
			{"direct", directConnString(b, e, g.Handle.Key)},
			{"proxy", cred["connection_string"]},
			{"proxy-unrecorded", cred["connection_string"]}, // statements counted, not written
		} {
			b.Run(mode.name+"/"+path.name, func(b *testing.B) {
				e.events.mu.Lock()
				e.events.discard = path.name == "proxy-unrecorded"
				e.events.mu.Unlock()
				ctx := context.Background()
				cs := make([]*pgx.Conn, conns)
				for i := range cs {
					cs[i] = connect(b, path.cs)
				}
				before := e.events.count(pgproxy.ActionSessionStatement)
				lat := make([][]time.Duration, conns)
				work := make(chan struct{}, 1024)
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for i := range cs {
					wg.Go(func() {
						var one int
						for range work {
							t0 := time.Now()
							if err := cs[i].QueryRow(ctx, "SELECT 1", mode.exec).Scan(&one); err != nil {
								b.Error(err)
								return
							}
							lat[i] = append(lat[i], time.Since(t0))
						}
					})
				}
				for b.Loop() {
					work <- struct{}{}
				}
				close(work)
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				all := slices.Concat(lat...)
				slices.Sort(all)
				b.ReportMetric(float64(len(all))/elapsed.Seconds(), "queries/s")
				b.ReportMetric(percentile(all, 0.50), "p50-ms")
				b.ReportMetric(percentile(all, 0.99), "p99-ms")
				if path.name == "proxy" {
					// The recorder is behind by what it has not written when the load stops.
					behind := len(all) - (e.events.count(pgproxy.ActionSessionStatement) - before)
					b.ReportMetric(float64(behind), "unrecorded-at-end")
					want := before + len(all)
					t0 := time.Now()
					e.events.waitCount(b, pgproxy.ActionSessionStatement, want)
					b.ReportMetric(float64(len(all))/(elapsed+time.Since(t0)).Seconds(), "recorded/s")
				}
				for _, c := range cs {
					c.Close(ctx)
				}
			})
		}
	}
}

// count returns how many recorded events have the action.
func (r *eventTap) count(a audit.Action) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.seen {
		if e.Action == a {
			n++
		}
	}
	return n
}

// waitCount waits until at least n events with the action were recorded.
func (r *eventTap) waitCount(b testing.TB, a audit.Action, n int) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		r.mu.Lock()
		c := r.cond
		r.mu.Unlock()
		if r.count(a) >= n {
			return
		}
		select {
		case <-c:
		case <-ctx.Done():
			b.Fatalf("only %d of %d %s events recorded within a minute", r.count(a), n, a)
		}
	}
}

var tpsRE = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// BenchmarkPgbench runs pgbench -S -c 8 -T 20 (select-only) directly and through the proxy,
// with -M simple and -M extended, and reports tps, the proxy/direct ratio and the p99 latency
// per transaction from pgbench's per-transaction log. Beside them, CPU time per transaction,
// steadier than wall time on a loaded machine: pgbench's own (-pgbench-cpu-us) and, through
// the proxy, this process's (the proxy relaying and recording: -proxy-cpu-us). Run it once:
// -benchtime 1x.
func BenchmarkPgbench(b *testing.B) {
	pgbench, err := exec.LookPath("pgbench")
	if err != nil {
		b.Skip("pgbench is not installed")
	}
	e := newEnv(b)
	seconds := "20"
	if s := os.Getenv("PGBENCH_SECONDS"); s != "" {
		seconds = s
	}
	init := exec.Command(pgbench, "-i", "-q", "-s", "1", withDB(b, os.Getenv(dsnEnv), e.db))
	if out, err := init.CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	for _, sql := range []string{"GRANT SELECT ON pgbench_accounts, pgbench_branches, pgbench_tellers TO " + quote(e.rw)} {
		if _, err := e.super.Exec(context.Background(), sql); err != nil {
			b.Fatal(err)
		}
	}
	g, cred := e.issue(b, time.Hour)
	host, port, err := net.SplitHostPort(e.addr)
	if err != nil {
		b.Fatal(err)
	}
	su, err := url.Parse(os.Getenv(dsnEnv))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		for _, mode := range []string{"simple", "extended"} {
			tps := map[string]float64{}
			for _, path := range []struct{ name, host, port, password string }{
				{"direct", su.Hostname(), su.Port(), ""},
				{"proxy", host, port, cred["password"]},
			} {
				dir := b.TempDir()
				cmd := exec.Command(pgbench, "-S", "-n", "-c", "8", "-j", "2", "-T", seconds, "-M", mode, "-l", "--log-prefix", filepath.Join(dir, "tx"), e.db)
				cmd.Env = append(os.Environ(), "PGHOST="+path.host, "PGPORT="+path.port, "PGUSER="+g.Handle.Key, "PGPASSWORD="+path.password, "PGSSLMODE=require")
				cpu0 := processCPU(b)
				out, err := cmd.CombinedOutput()
				if err != nil {
					b.Fatalf("pgbench %s %s: %v\n%s", mode, path.name, err, out)
				}
				proxyCPU := processCPU(b) - cpu0
				pgbenchCPU := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
				m := tpsRE.FindSubmatch(out)
				if m == nil {
					b.Fatalf("no tps in pgbench output:\n%s", out)
				}
				tps[path.name], _ = strconv.ParseFloat(string(m[1]), 64)
				lat := pgbenchLatencies(b, dir)
				b.ReportMetric(float64(pgbenchCPU.Microseconds())/float64(len(lat)), mode+"-"+path.name+"-pgbench-cpu-us")
				if path.name == "proxy" {
					b.ReportMetric(float64(proxyCPU.Microseconds())/float64(len(lat)), mode+"-proxy-cpu-us")
				}
				b.ReportMetric(tps[path.name], mode+"-"+path.name+"-tps")
				b.ReportMetric(percentile(lat, 0.50), mode+"-"+path.name+"-p50-ms")
				b.ReportMetric(percentile(lat, 0.99), mode+"-"+path.name+"-p99-ms")
			}
			b.ReportMetric(tps["proxy"]/tps["direct"], mode+"-ratio")
		}
	}
}

// pgbenchLatencies reads pgbench's per-transaction logs (client, tx, latency µs, …) in dir.
func pgbenchLatencies(b *testing.B, dir string) []time.Duration {
	b.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "tx*"))
	if err != nil || len(files) == 0 {
		b.Fatalf("no pgbench logs in %s: %v", dir, err)
	}
	var d []time.Duration
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 3 {
				continue
			}
			us, err := strconv.ParseInt(fields[2], 10, 64)
			if err != nil {
				fh.Close()
				b.Fatal(fmt.Errorf("pgbench log %s: %w", f, err))
			}
			d = append(d, time.Duration(us)*time.Microsecond)
		}
		fh.Close()
	}
	slices.Sort(d)
	return d
}

// processCPU is this process's CPU time so far (user + system, every goroutine).
func processCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
