package audit

import (
	"math"
	"testing"
	"time"
)

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{math.MinInt64, "-2562047h47m16.854775807s"}, // a saturated time.Sub: once recursed without end
		{350 * time.Millisecond, "350ms"},
		{time.Second, "1s"},
		{10 * time.Second, "10s"},
		{30 * time.Second, "30s"},
		{1350 * time.Millisecond, "1s"},
		{2*time.Minute + 5*time.Second, "2m5s"},
		{45 * time.Minute, "45m"},
		{time.Hour, "1h"},
		{90 * time.Minute, "1h30m"},
		{time.Hour + 10*time.Second, "1h0m10s"},
		{168 * time.Hour, "168h"},
		{-5 * time.Minute, "-5m"},
	} {
		got := FormatDuration(tc.d)
		if got != tc.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
		if back, err := time.ParseDuration(got); err != nil || (tc.d >= time.Second && back != tc.d.Round(time.Second)) {
			t.Errorf("FormatDuration(%v) = %q does not parse back: %v, %v", tc.d, got, back, err)
		}
	}
}
