package grants_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/grants"
)

// TestNewOrderedIDSortsByTime: ordered ids are distinct and sort as their times do, across
// digit carries and within one millisecond (the per-process count), and keep their shape.
func TestNewOrderedIDSortsByTime(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	var ids []string
	seen := map[string]bool{}
	for _, d := range []time.Duration{0, 0, 0, time.Millisecond, 31 * time.Millisecond, 32 * time.Millisecond,
		1023 * time.Millisecond, 1024 * time.Millisecond, time.Hour, 24 * 365 * time.Hour} {
		id := grants.NewOrderedID("e", base.Add(d))
		if !strings.HasPrefix(id, "e_") || len(id) != 28 {
			t.Fatalf("id %q: want e_ and 26 digits", id)
		}
		if seen[id] {
			t.Fatalf("id %q twice", id)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	if !slices.IsSorted(ids) {
		t.Errorf("ids do not sort by time: %v", ids)
	}
}

// TestNewCompactOrderedID: compact ordered ids keep NewID's form (ValidID accepts them, so
// role names and every id check take them as before), are distinct, and sort as their times
// do to the millisecond, across digit carries.
func TestNewCompactOrderedID(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	var ids []string
	seen := map[string]bool{}
	for _, d := range []time.Duration{0, time.Millisecond, 31 * time.Millisecond, 32 * time.Millisecond,
		1023 * time.Millisecond, 1024 * time.Millisecond, time.Hour, 24 * 365 * time.Hour, 290 * 24 * 365 * time.Hour} {
		id := grants.NewCompactOrderedID("g", base.Add(d))
		if !grants.ValidID("g", id) || len(id) != len(grants.NewID("g")) {
			t.Fatalf("id %q is not of NewID's form", id)
		}
		if seen[id] {
			t.Fatalf("id %q twice", id)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	if !slices.IsSorted(ids) {
		t.Errorf("ids do not sort by time: %v", ids)
	}
	for range 1000 { // the random part: ids of one millisecond differ
		id := grants.NewCompactOrderedID("g", base)
		if seen[id] {
			t.Fatalf("id %q twice in one millisecond", id)
		}
		seen[id] = true
	}
}
