package audit

import (
	"math"
	"strings"
	"time"
)

// FormatDuration renders d the way people write durations and time.ParseDuration reads them,
// in whole units: "4h", "1h30m", "45m", "2m5s", "0s". From one second up it is rounded to the
// second; below a second it is in milliseconds ("350ms"). It is the one duration format of
// accessbroker's messages, reports and configuration problems.
func FormatDuration(d time.Duration) string {
	if d < 0 {
		if d == math.MinInt64 { // -d would overflow (a time.Sub that saturated): one ns less
			d++
		}
		return "-" + FormatDuration(-d)
	}
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	s := d.Round(time.Second).String() // "1h30m0s", "45m0s", "2m5s", "10s"
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
