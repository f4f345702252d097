package audit_test

import (
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
)

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Time
		wantErr string
	}{
		{"", time.Time{}, ""},
		{" 2h ", now.Add(-2 * time.Hour), ""},
		{"2026-11-20T09:00:00+01:00", time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC), ""},
		{"-1h", time.Time{}, "must be positive"},
		{"yesterday", time.Time{}, `"yesterday" is neither an RFC 3339 time`},
		{strings.Repeat("x", 100), time.Time{}, strings.Repeat("x", 40) + "…"},
	}
	for _, tc := range tests {
		got, err := audit.ParseWhen(tc.in, now)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseWhen(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("ParseWhen(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}
