package pgproxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// countingRecorder passes events to the manager and counts the statements written, and how
// late the oldest of a batch was when it was written (maxLag: from the statement's end, its
// event time, to its commit).
type countingRecorder struct {
	next    Recorder
	written atomic.Int64
	maxLag  atomic.Int64 // nanoseconds
}

func (r *countingRecorder) Record(ctx context.Context, events ...*audit.Event) error {
	if err := r.next.Record(ctx, events...); err != nil {
		return err
	}
	r.written.Add(int64(len(events)))
	if len(events) > 0 {
		if lag := int64(time.Since(events[0].Time)); lag > r.maxLag.Load() {
			r.maxLag.Store(lag)
		}
	}
	return nil
}

// recordingProxy is a Proxy whose recorder writes through a grants.Manager into a real
// SQLite store (the default deployment), with no upstream: only its record path is used.
func recordingProxy(b *testing.B) (*Proxy, *countingRecorder, func()) {
	b.Helper()
	ctx := context.Background()
	clock := grants.RealClock{}
	store, err := sqlstore.Open(ctx, "sqlite", "file:"+filepath.Join(b.TempDir(), "ab.db"), clock, nil)
	if err != nil {
		b.Fatal(err)
	}
	m := grants.NewManager(store, nil, nil, clock, nil, grants.ManagerOptions{})
	rec := &countingRecorder{next: m}
	p, err := New(Config{TLS: &tls.Config{Certificates: []tls.Certificate{{}}}, Grants: store, Recorder: rec,
		Passwords: fixedPasswords{}, Clock: clock})
	if err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	go p.rec.run(stop)
	return p, rec, func() { close(stop); <-p.rec.done; store.Close() }
}

type fixedPasswords struct{}

func (fixedPasswords) Client(string, string) string   { return "client" }
func (fixedPasswords) Upstream(string, string) string { return "upstream" }

// BenchmarkRecordStatements measures the record path alone: 8 sessions' finished
// statements (a pgbench-like SELECT) queued the way a session queues them, written by the
// recorder through grants.Manager into SQLite. "max" queues as fast as it can and reports
// the statements per second written; "paced-20k" offers 20,000 statements per second and
// reports how far behind the recorder was at worst (queued, not yet written) and at the end;
// "paced-6k" offers what pgbench -S through the proxy offers on 2 cores. Each reports the
// process's CPU time per statement recorded (cpu-us/stmt), steadier than wall time on a
// loaded machine. RECORD_PREFILL=N first appends N events, so the record is measured
// against an audit table of a realistic size rather than an empty one.
// Run with -benchtime Nx: N statements.
func BenchmarkRecordStatements(b *testing.B) {
	g := grants.Grant{ID: "g_bench", Resource: "prod-db", Person: grants.Person{SlackUserID: "U0ALICE", Email: "alice@example.com"}}
	st := func(i int) Statement {
		t0 := time.Now()
		return Statement{Seq: i, Protocol: "simple", Text: "SELECT abalance FROM pgbench_accounts WHERE aid = " + fmt.Sprint(i),
			Tag: "SELECT 1", Commands: 1, Rows: 1, Start: t0, End: t0.Add(300 * time.Microsecond)}
	}
	const sessions = 8
	prefill := 0
	if v := os.Getenv("RECORD_PREFILL"); v != "" {
		var err error
		if prefill, err = strconv.Atoi(v); err != nil {
			b.Fatalf("RECORD_PREFILL=%q: %v", v, err)
		}
	}
	for _, rate := range []int{0, 6000, 20000} {
		name := "max"
		if rate > 0 {
			name = fmt.Sprintf("paced-%dk", rate/1000)
		}
		b.Run(name, func(b *testing.B) {
			p, rec, stop := recordingProxy(b)
			defer stop()
			ctx := context.Background()
			for i := 0; i < prefill; i += 512 {
				evs := make([]*audit.Event, min(512, prefill-i))
				for j := range evs {
					evs[j] = p.statementEvent(&queuedStatement{sessionID: "s_prefill", grant: &g, st: st(i + j)})
				}
				if err := rec.next.Record(ctx, evs...); err != nil {
					b.Fatal(err)
				}
			}
			var maxBehind atomic.Int64
			var queued atomic.Int64
			rec.maxLag.Store(0)
			b.ResetTimer()
			start := time.Now()
			cpu0 := cpuTime(b)
			var wg sync.WaitGroup
			per := b.N / sessions
			for s := range sessions {
				n := per
				if s == 0 {
					n += b.N % sessions
				}
				wg.Go(func() {
					id := fmt.Sprintf("s_%d", s)
					for i := range n {
						if rate > 0 {
							// Each session offers rate/sessions statements per second.
							due := start.Add(time.Duration(i) * time.Second * sessions / time.Duration(rate))
							if d := time.Until(due); d > 0 {
								time.Sleep(d)
							}
						}
						if err := p.recordStatement(ctx, id, &g, st(i)); err != nil {
							b.Error(err)
							return
						}
						q := queued.Add(1)
						if behind := q - rec.written.Load(); behind > maxBehind.Load() {
							maxBehind.Store(behind)
						}
					}
				})
			}
			wg.Wait()
			offered := time.Since(start)
			behindAtEnd := int64(b.N) - rec.written.Load()
			for rec.written.Load() < int64(b.N) {
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(start)
			cpu := cpuTime(b) - cpu0
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "recorded/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/stmt")
			if rate > 0 {
				b.ReportMetric(float64(b.N)/offered.Seconds(), "offered/s")
				b.ReportMetric(float64(maxBehind.Load()), "max-behind")
				b.ReportMetric(float64(behindAtEnd), "behind-at-end")
				// The statement's event time is its end truncated to the millisecond: up to
				// 1 ms is the truncation.
				b.ReportMetric(float64(rec.maxLag.Load())/1e6, "max-lag-ms")
			}
		})
	}
}

// cpuTime is the process's CPU time so far (user + system, every goroutine).
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
