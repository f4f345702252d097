package broker

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

var wakeT0 = time.Date(2026, 3, 2, 13, 0, 0, 0, time.UTC)

// woken reports (and consumes) a pending wake-up of the scheduler.
func woken(b *Broker) bool {
	select {
	case <-b.wake:
		return true
	default:
		return false
	}
}

// TestWakeAtWakesOnlyForAnEarlierDeadline: the scheduler is woken when it is not sleeping or
// sleeps past the deadline given; while it ticks, the deadline is kept for its next sleep.
func TestWakeAtWakesOnlyForAnEarlierDeadline(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		ticking   bool
		early     time.Time
		until     time.Time
		at        time.Time
		wantWoken bool
		wantEarly time.Time
	}{
		{"not sleeping (Run not started)", false, time.Time{}, time.Time{}, wakeT0.Add(time.Hour), true, time.Time{}},
		{"sleeping past the deadline", false, time.Time{}, wakeT0.Add(time.Minute), wakeT0.Add(30 * time.Second), true, time.Time{}},
		{"sleeping until before the deadline", false, time.Time{}, wakeT0.Add(time.Minute), wakeT0.Add(time.Hour), false, time.Time{}},
		{"sleeping until the deadline exactly", false, time.Time{}, wakeT0.Add(time.Minute), wakeT0.Add(time.Minute), false, time.Time{}},
		{"ticking: kept for the next sleep", true, time.Time{}, time.Time{}, wakeT0.Add(time.Hour), false, wakeT0.Add(time.Hour)},
		{"ticking: the earliest kept", true, wakeT0.Add(time.Minute), time.Time{}, wakeT0.Add(time.Hour), false, wakeT0.Add(time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &Broker{wake: make(chan struct{}, 1)}
			b.armed.ticking, b.armed.early, b.armed.until = tc.ticking, tc.early, tc.until
			b.WakeAt(tc.at)
			if got := woken(b); got != tc.wantWoken {
				t.Errorf("woken = %v, want %v", got, tc.wantWoken)
			}
			if !b.armed.early.Equal(tc.wantEarly) {
				t.Errorf("early = %v, want %v", b.armed.early, tc.wantEarly)
			}
		})
	}
}

// TestSubmitWakesTheSchedulerOnlyForAnEarlierExpiry: a new pending request wakes a sleeping
// scheduler only when it expires before the sleep ends (it used to wake it every time, and each
// wake-up lists every pending request and active grant).
func TestSubmitWakesTheSchedulerOnlyForAnEarlierExpiry(t *testing.T) {
	t.Parallel()
	clock := clocktest.New(wakeT0)
	st, err := sqlstore.Open(t.Context(), "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	res := grants.Resource{Name: "prod-db", Provider: "postgres", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour,
		Policy: grants.Policy{ApproverSlackUsers: []string{"U0BOB"}, MinApprovals: 1}}
	mgr := grants.NewManager(st, map[string]grants.Provider{}, []grants.Resource{res}, clock, nil, grants.ManagerOptions{})
	b := &Broker{m: mgr, store: st, clock: clock, log: slog.New(slog.DiscardHandler),
		opts: Options{PendingTTL: 10 * time.Minute}.withDefaults(), wake: make(chan struct{}, 1), sched: newSchedState()}
	for i, tc := range []struct {
		sleepsFor time.Duration
		want      bool
	}{
		{time.Minute, false},      // the scheduler wakes before the request expires anyway
		{30 * time.Minute, true},  // it would sleep past the request's expiry
		{10 * time.Minute, false}, // it wakes exactly at the expiry
	} {
		b.armed.until = clock.Now().Add(tc.sleepsFor)
		_, err := b.Submit(t.Context(), RequestInput{TeamID: "T0TEAM", UserID: fmt.Sprintf("U0USER%d", i), Resource: "prod-db",
			Duration: time.Hour, Reason: "checking replication lag"})
		if err != nil {
			t.Fatal(err)
		}
		if got := woken(b); got != tc.want {
			t.Errorf("scheduler sleeping for %s: woken = %v, want %v", tc.sleepsFor, got, tc.want)
		}
	}
}
