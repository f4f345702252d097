package audit

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ParseWhen reads a time bound as people write one: an RFC 3339 time, or a positive
// duration meaning that long before now. An empty string is the zero time (no bound). The
// error says what was wrong and what is accepted; the command line and the web console use
// it alike.
func ParseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, errors.New("a duration must be positive (it means that long ago)")
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		if len(s) > 40 {
			s = s[:40] + "…"
		}
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-11-22T09:00:00Z) nor a duration (168h)", s)
	}
	return t.UTC(), nil
}
