package demo

import (
	"testing"
	"time"
)

// fired reports whether t has fired, and when (the clock's time then), without waiting.
func fired(t *testing.T, tm interface{ C() <-chan time.Time }) (time.Time, bool) {
	t.Helper()
	select {
	case at := <-tm.C():
		return at, true
	default:
		return time.Time{}, false
	}
}

func TestSimClock(t *testing.T) {
	start := time.Date(2026, 12, 3, 6, 10, 53, 0, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		name    string
		after   time.Duration // the timer's duration
		advance []time.Duration
		stop    bool // stop the timer before advancing
		fires   bool
		firedAt time.Duration // clock time when it fired, from start
	}{
		{"not before its deadline", 15 * time.Minute, []time.Duration{14 * time.Minute, 59 * time.Second}, false, false, 0},
		{"at its deadline", 15 * time.Minute, []time.Duration{15 * time.Minute}, false, true, 15 * time.Minute},
		{"past it, in one move", 15 * time.Minute, []time.Duration{time.Hour}, false, true, time.Hour},
		{"past it, in several moves", 90 * time.Second, []time.Duration{time.Minute, time.Minute}, false, true, 2 * time.Minute},
		{"at once when the duration is zero", 0, nil, false, true, 0},
		{"at once when the duration is negative", -time.Second, nil, false, true, 0},
		{"never once stopped", time.Minute, []time.Duration{time.Hour}, true, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newSimClock(start)
			if got := c.Now(); !got.Equal(start) || got.Location() != time.UTC {
				t.Fatalf("Now = %v, want %v in UTC", got, start.UTC())
			}
			tm := c.NewTimer(tc.after)
			if tc.stop && !tm.Stop() {
				t.Fatal("Stop of a pending timer reported it was not pending")
			}
			for _, d := range tc.advance {
				c.Advance(d)
			}
			at, ok := fired(t, tm)
			if ok != tc.fires {
				t.Fatalf("fired = %v, want %v", ok, tc.fires)
			}
			if ok && !at.Equal(start.Add(tc.firedAt)) {
				t.Errorf("fired at %v, want %v", at, start.Add(tc.firedAt).UTC())
			}
			if _, again := fired(t, tm); again {
				t.Error("the timer fired twice")
			}
			c.Advance(24 * time.Hour)
			_, late := fired(t, tm)
			switch {
			case (ok || tc.stop) && late:
				t.Error("a fired or stopped timer fired on a later move")
			case !ok && !tc.stop && !late:
				t.Error("a pending timer did not fire once the clock passed its deadline")
			}
		})
	}
}

func TestSimClockStopAfterFiring(t *testing.T) {
	c := newSimClock(time.Unix(0, 0))
	a, b := c.NewTimer(time.Minute), c.NewTimer(2*time.Minute)
	c.Advance(time.Minute)
	if a.Stop() {
		t.Error("Stop of a fired timer reported it was pending")
	}
	if !b.Stop() {
		t.Error("Stop of the other, pending timer reported it was not pending")
	}
	if b.Stop() {
		t.Error("a second Stop reported the timer pending")
	}
	if _, ok := fired(t, a); !ok {
		t.Error("the first timer did not fire")
	}
}
