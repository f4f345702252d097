package sqlstore_test

import (
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// TestSinkCursor checks the audit sinks' durable cursors on both backends: none is 0, each
// sink has its own, and a cursor never moves back (a replica that lost its lease while
// delivering must not undo the new holder's progress).
func TestSinkCursor(t *testing.T) {
	backends := map[string]func(t *testing.T, clock *clocktest.Fake) *sqlstore.Store{
		"sqlite":   func(t *testing.T, clock *clocktest.Fake) *sqlstore.Store { return openSQLite(t, clock) },
		"postgres": func(t *testing.T, clock *clocktest.Fake) *sqlstore.Store { return openPG(t, newPGSchema(t), clock) },
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			clock := clocktest.New(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
			s := open(t, clock)
			ctx := t.Context()
			cursor := func(sink string) int64 {
				t.Helper()
				c, err := s.SinkCursor(ctx, sink)
				if err != nil {
					t.Fatalf("SinkCursor(%s): %v", sink, err)
				}
				return c
			}
			if c := cursor("https https://siem.example.com/in"); c != 0 {
				t.Fatalf("a new sink's cursor is %d, want 0", c)
			}
			steps := []struct {
				sink string
				seq  int64
				want int64
			}{
				{"https https://siem.example.com/in", 10, 10},
				{"https https://siem.example.com/in", 25, 25},
				{"https https://siem.example.com/in", 12, 25}, // never back
				{"s3 s3://archive/audit/", 3, 3},
			}
			for _, st := range steps {
				if err := s.AdvanceSinkCursor(ctx, st.sink, st.seq); err != nil {
					t.Fatalf("AdvanceSinkCursor(%s, %d): %v", st.sink, st.seq, err)
				}
				if got := cursor(st.sink); got != st.want {
					t.Fatalf("after AdvanceSinkCursor(%s, %d) the cursor is %d, want %d", st.sink, st.seq, got, st.want)
				}
			}
			if got := cursor("https https://siem.example.com/in"); got != 25 {
				t.Fatalf("another sink's cursor moved this one to %d", got)
			}
		})
	}
}
