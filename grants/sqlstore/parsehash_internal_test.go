package sqlstore

import (
	"strings"
	"testing"

	"github.com/accessbroker/accessbroker/audit"
)

// TestParseHashMatchesAudit: the table-driven hex decoding of the read path gives what
// audit.ParseHash gives, for both cases of digits, and refuses what it refuses with its error.
func TestParseHashMatchesAudit(t *testing.T) {
	good := "00ff10a9b8c7d6e5f40312233445566778899aabbccddeeff0123456789abcdef"[:64]
	for _, s := range []string{good, strings.ToUpper(good), strings.Repeat("0", 64), strings.Repeat("f", 64)} {
		want, err := audit.ParseHash(s)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := parseHash(s); err != nil || got != want {
			t.Errorf("parseHash(%s) = %s, %v; want %s", s, got, err, want)
		}
	}
	for _, s := range []string{good[:63] + "g", "x" + good[1:], good[:62] + "\xff0", good[:63], "", good[:10] + ":" + good[11:]} {
		_, want := audit.ParseHash(s)
		if _, err := parseHash(s); err == nil || want == nil || err.Error() != want.Error() {
			t.Errorf("parseHash(%q) error %v, want %v", s, err, want)
		}
	}
}
