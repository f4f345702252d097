package audit

import (
	"context"
	"fmt"
	"slices"
	"sort"
)

// MemLog is an in-memory Reader: a log loaded from an export (ReadJSONL) for verification,
// or built by tests. Events should be in ascending seq order, as a store returns them;
// ReadEvents returns them in slice order so that a file with misplaced lines is seen as
// such by Verify.
type MemLog struct {
	Events      []Event
	Checkpoints []Checkpoint
}

// ReadEvents returns up to limit events with Seq > after, in slice order, starting at the
// first position (found by binary search) whose Seq exceeds after. The events are copies.
func (m *MemLog) ReadEvents(ctx context.Context, after int64, limit int) ([]Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("read audit events: limit %d must be positive", limit)
	}
	i := sort.Search(len(m.Events), func(i int) bool { return m.Events[i].Seq > after })
	out := make([]Event, 0, min(limit, len(m.Events)-i))
	for i < len(m.Events) && len(out) < limit {
		// Copy runs of qualifying events at once; skip events at or below after (only an
		// unsorted slice has them).
		j := i
		for j < len(m.Events) && j-i < limit-len(out) && m.Events[j].Seq > after {
			j++
		}
		out = append(out, m.Events[i:j]...)
		for i = j; i < len(m.Events) && m.Events[i].Seq <= after; i++ {
		}
	}
	return out, nil
}

// ReadCheckpoints returns a copy of m.Checkpoints.
func (m *MemLog) ReadCheckpoints(ctx context.Context) ([]Checkpoint, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return slices.Clone(m.Checkpoints), nil
}
