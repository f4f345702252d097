// Package clocktest provides a fake grants.Clock that only moves when a test advances it.
package clocktest

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/accessbroker/accessbroker/grants"
)

// Fake is a manual clock. Timers fire when Advance moves the time past their deadline.
// Like the real clock it has a wall time (Now) and a monotonic time (Elapsed): Advance moves
// both, StepWall moves only the wall time, as NTP or an operator stepping the system clock
// does; timers follow the monotonic time, as Go's do. It is safe for concurrent use.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	mono    time.Duration // monotonic time since New; timers are armed on it
	timers  []*fakeTimer
	changed chan struct{} // closed and replaced whenever the set of timers changes
}

// New returns a fake clock set to start (converted to UTC).
func New(start time.Time) *Fake {
	return &Fake{now: start.UTC(), changed: make(chan struct{})}
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTimer returns a timer that fires when the monotonic time reaches its current value plus
// d (Advance moves it; StepWall does not).
func (f *Fake) NewTimer(d time.Duration) grants.Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{f: f, at: f.mono + d, c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- f.now
		t.fired = true
		return t
	}
	f.timers = append(f.timers, t)
	f.notifyLocked()
	return t
}

// Advance moves the wall and the monotonic time forward by d and fires every timer whose
// deadline has passed.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d < 0 {
		panic("clocktest: Advance would move the monotonic clock backwards; use StepWall")
	}
	f.now = f.now.Add(d)
	f.mono += d
	sort.Slice(f.timers, func(i, j int) bool { return f.timers[i].at < f.timers[j].at })
	kept := f.timers[:0]
	for _, t := range f.timers {
		if t.at <= f.mono {
			t.fired = true
			t.c <- f.now
			continue
		}
		kept = append(kept, t)
	}
	f.timers = kept
	f.notifyLocked()
}

// StepWall moves the wall time by d (forward or, with d < 0, backward) without moving the
// monotonic time: no timer fires, as when the system clock is stepped under a running
// process. Elapsed is unchanged.
func (f *Fake) StepWall(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	f.notifyLocked()
}

// Elapsed returns the fake monotonic time since New: the sum of every Advance.
func (f *Fake) Elapsed() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mono
}

// Set moves the clock to t (which must not be earlier than now) and fires due timers.
func (f *Fake) Set(t time.Time) {
	d := t.Sub(f.Now())
	if d < 0 {
		panic("clocktest: Set would move the clock backwards")
	}
	f.Advance(d)
}

// Waiters returns how many timers are pending.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// BlockUntil waits until at least n timers are pending, or ctx ends.
func (f *Fake) BlockUntil(ctx context.Context, n int) error {
	for {
		f.mu.Lock()
		if len(f.timers) >= n {
			f.mu.Unlock()
			return nil
		}
		ch := f.changed
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *Fake) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

type fakeTimer struct {
	f     *Fake
	at    time.Duration // monotonic deadline
	c     chan time.Time
	fired bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	for i, o := range t.f.timers {
		if o == t {
			t.f.timers = append(t.f.timers[:i], t.f.timers[i+1:]...)
			t.f.notifyLocked()
			return true
		}
	}
	return false
}
