package audit

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMemLogReadEvents(t *testing.T) {
	t.Parallel()
	mk := func(seqs ...int64) []Event {
		var es []Event
		for _, s := range seqs {
			es = append(es, Event{Seq: s})
		}
		return es
	}
	seqsOf := func(es []Event) []int64 {
		var out []int64
		for _, e := range es {
			out = append(out, e.Seq)
		}
		return out
	}
	tests := []struct {
		name   string
		stored []int64
		after  int64
		limit  int
		want   []int64
	}{
		{"first page", []int64{1, 2, 3, 4, 5}, 0, 2, []int64{1, 2}},
		{"middle page", []int64{1, 2, 3, 4, 5}, 2, 2, []int64{3, 4}},
		{"last short page", []int64{1, 2, 3, 4, 5}, 4, 2, []int64{5}},
		{"past the end", []int64{1, 2, 3, 4, 5}, 5, 2, nil},
		{"gap in seqs", []int64{1, 2, 7, 8}, 2, 10, []int64{7, 8}},
		{"stored order kept", []int64{1, 2, 4, 3, 5}, 0, 10, []int64{1, 2, 4, 3, 5}},
		{"rows at or below after are skipped", []int64{1, 5, 2, 6, 3, 7}, 4, 10, []int64{5, 6, 7}},
		{"limit across skipped rows", []int64{1, 5, 2, 6, 3, 7}, 4, 2, []int64{5, 6}},
	}
	for _, tc := range tests {
		m := &MemLog{Events: mk(tc.stored...)}
		got, err := m.ReadEvents(t.Context(), tc.after, tc.limit)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if diff := cmp.Diff(tc.want, seqsOf(got)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	m := &MemLog{Events: mk(1, 2)}
	got, _ := m.ReadEvents(t.Context(), 0, 1)
	got[0].Reason = "changed"
	if m.Events[0].Reason != "" {
		t.Error("ReadEvents returned the stored event, not a copy")
	}
	if _, err := m.ReadEvents(t.Context(), 0, 0); err == nil {
		t.Error("limit 0 accepted")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := m.ReadEvents(ctx, 0, 1); err == nil {
		t.Error("canceled context accepted by ReadEvents")
	}
	if _, err := m.ReadCheckpoints(ctx); err == nil {
		t.Error("canceled context accepted by ReadCheckpoints")
	}
}
