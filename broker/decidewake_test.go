package broker_test

import (
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/broker"
)

// TestApprovalAskAndDenialWakeTheSchedulerOnlyForAnEarlierDeadline: asking the approvers
// wakes a sleeping scheduler only when the request's expiry comes before the end of its
// sleep (as Submit does), and a denial, which leaves no deadline, does not wake it. Both used
// to wake it every time, and each wake-up lists every pending request and active grant.
func TestApprovalAskAndDenialWakeTheSchedulerOnlyForAnEarlierDeadline(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		sleepsFor time.Duration // PendingTTL is 1h
		wantAsk   bool
	}{
		{"sleeping until before the expiry", time.Minute, false},
		{"sleeping past the expiry", 2 * time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t) // alice is not on call: her request needs an approval
			broker.SleepUntil(e.b, e.clock.Now().Add(tc.sleepsFor))
			r := e.submit(t, broker.RequestInput{})
			broker.TakeWake(e.b) // Submit's own (tested elsewhere)
			e.process(t, r)
			if n := len(e.notes.Notes("ask")); n != 1 {
				t.Fatalf("approvers asked %d times, want 1", n)
			}
			if got := broker.TakeWake(e.b); got != tc.wantAsk {
				t.Errorf("after asking the approvers: woken = %v, want %v", got, tc.wantAsk)
			}
			if err := e.decide(t, bob, r.ID, false); err != nil {
				t.Fatal(err)
			}
			if got := broker.TakeWake(e.b); got {
				t.Error("a denial woke the scheduler")
			}
		})
	}
}
