package audit

import (
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	millionOnce sync.Once
	millionLog  *MemLog
)

// millionEventLog builds, once per test binary, a sealed log of 1,000,000 varied events with
// a checkpoint every 1,000.
func millionEventLog(b *testing.B) *MemLog {
	b.Helper()
	millionOnce.Do(func() { millionLog = buildLog(b, 1_000_000, 1000) })
	if millionLog == nil {
		b.Fatal("building the million-event log failed")
	}
	return millionLog
}

// BenchmarkVerify1M verifies a 1,000,000-event log with 1,001 checkpoints through the
// in-memory Reader (which copies each page, as a database driver would allocate rows).
func BenchmarkVerify1M(b *testing.B) {
	m := millionEventLog(b)
	pub := PublicKeyOf(testKey())
	opts := VerifyOptions{RequireCheckpoint: true, CheckpointEvery: 1000}
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		res, err := Verify(b.Context(), m, pub, opts)
		if err != nil || !res.OK || res.Events != 1_000_000 || res.Checkpoints != 1001 {
			b.Fatalf("Verify = %s, %v", res, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ns/event")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/1e6, "cpu-ns/event")
}

// cpuTime is the process's CPU time so far (user + system, every goroutine): a second
// witness beside wall time on a loaded machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkCanonical(b *testing.B) {
	for _, bc := range []struct {
		name string
		e    Event
	}{
		{"evidence", makeEvent(4)},         // four evidence entries, ASCII
		{"escapes+unicode", makeEvent(35)}, // quotes, controls, non-ASCII, U+2028
	} {
		b.Run(bc.name, func(b *testing.B) {
			c, err := Canonical(bc.e)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(c)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Canonical(bc.e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkNext(b *testing.B) {
	e := makeEvent(4)
	prev := Hash{1}
	b.ReportAllocs()
	for b.Loop() {
		h, err := Next(prev, e)
		if err != nil {
			b.Fatal(err)
		}
		prev = h
	}
}
