package grants

import (
	"testing"
	"time"
)

// TestWakeAtOnlyForAnEarlierDeadline: WakeAt wakes the sleeping revoker only for a deadline
// earlier than the one it sleeps until (then that becomes the armed one); while the revoker
// reads the next deadline, every WakeAt is remembered; while it claims, none wakes it (the
// next read sees the committed grant).
func TestWakeAtOnlyForAnEarlierDeadline(t *testing.T) {
	armed := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		armed     time.Time
		at        time.Time
		wakes     bool
		wantArmed time.Time
	}{
		{"later deadline", armed, armed.Add(time.Hour), false, armed},
		{"same deadline", armed, armed, false, armed},
		{"earlier deadline", armed, armed.Add(-time.Minute), true, armed.Add(-time.Minute)},
		{"while reading the next deadline", farFuture, armed.Add(time.Hour), true, armed.Add(time.Hour)},
		{"while claiming", time.Time{}, armed, false, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRevoker(nil, nil, RealClock{}, nil, RevokerOptions{})
			r.armed = tc.armed
			r.WakeAt(tc.at)
			if got := len(r.wake) == 1; got != tc.wakes {
				t.Errorf("woken = %v, want %v", got, tc.wakes)
			}
			if !r.armed.Equal(tc.wantArmed) {
				t.Errorf("armed = %s, want %s", r.armed, tc.wantArmed)
			}
		})
	}
}
