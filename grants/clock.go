package grants

import "time"

// Clock is the only source of time in accessbroker. Production code uses RealClock; tests use
// clocktest.Fake so that no test waits for a grant to expire.
type Clock interface {
	// Now returns the current time in UTC.
	Now() time.Time
	// NewTimer returns a timer that fires once after d.
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer that accessbroker uses.
type Timer interface {
	// C delivers the time once the timer fires.
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it was still pending.
	Stop() bool
}

// ElapsedClock is a Clock that can also tell how much time has passed, on a monotonic clock
// that steps of the wall clock (NTP stepping it, an operator's date -s, a VM resumed) do not
// move. Timers run on that clock. The Revoker uses it to notice a step of the wall clock and
// re-arm itself (see RevokerOptions.WallCheck). RealClock and clocktest.Fake implement it.
type ElapsedClock interface {
	Clock
	// Elapsed returns the monotonic time since a fixed origin; only the difference between
	// two readings means anything. It never goes backwards.
	Elapsed() time.Duration
}

// RealClock is the wall clock.
type RealClock struct{}

// origin is the monotonic origin of RealClock.Elapsed.
var origin = time.Now()

// Elapsed returns the process's monotonic time since it started (a wall-clock step does not
// change it).
func (RealClock) Elapsed() time.Duration { return time.Since(origin) }

// Now returns the wall-clock time in UTC.
func (RealClock) Now() time.Time { return time.Now().UTC() }

// NewTimer wraps time.NewTimer.
func (RealClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }

// Stopwatch measures elapsed time on the process's monotonic clock, for latency metrics
// only. It is not domain time: it never reaches a grant, the store or the audit log, and a
// fake Clock does not move it. Anything a test must control takes a Clock instead.
type Stopwatch struct{ start time.Time }

// StartStopwatch returns a Stopwatch started now.
func StartStopwatch() Stopwatch { return Stopwatch{start: time.Now()} }

// Elapsed returns the monotonic time since the Stopwatch started (never negative; a wall
// clock step does not affect it).
func (s Stopwatch) Elapsed() time.Duration { return time.Since(s.start) }

// Timestamp formats t as UTC RFC 3339 with milliseconds, the one time format accessbroker
// shows and stores.
func Timestamp(t time.Time) string { return t.UTC().Format(TimeLayout) }

// TimeLayout is RFC 3339 with exactly three fractional digits, always in UTC ("Z").
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"
