package demo

import (
	"slices"
	"sync"
	"time"

	"github.com/accessbroker/accessbroker/grants"
)

// simClock is the demo's simulated time: a grants.Clock that stands still until the narrator
// advances it ("15 minutes later…"), when the timers it passed fire. The broker and the fakes
// run on it; the demo's own pacing and its wall-time figure use realClock.
type simClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*simTimer // pending, in no particular order
}

func newSimClock(start time.Time) *simClock { return &simClock{now: start.UTC()} }

// Now returns the simulated time.
func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer that fires when the clock reaches now+d (at once when d <= 0).
func (c *simClock) NewTimer(d time.Duration) grants.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &simTimer{c: c, at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

// Advance moves the clock forward by d and fires, earliest first, every timer whose deadline
// is now reached.
func (c *simClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	slices.SortFunc(c.timers, func(a, b *simTimer) int { return a.at.Compare(b.at) })
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			kept = append(kept, t)
			continue
		}
		t.ch <- c.now // buffered, and each timer fires once
	}
	clear(c.timers[len(kept):])
	c.timers = kept
}

type simTimer struct {
	c  *simClock
	at time.Time
	ch chan time.Time
}

func (t *simTimer) C() <-chan time.Time { return t.ch }

// Stop removes the timer if it is still pending and reports whether it was.
func (t *simTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	i := slices.Index(t.c.timers, t)
	if i < 0 {
		return false
	}
	t.c.timers = slices.Delete(t.c.timers, i, i+1)
	return true
}
