package audit

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestQueryValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		q       Query
		wantErr string
	}{
		{name: "zero query"},
		{name: "max limit", q: Query{Limit: MaxQueryLimit}},
		{name: "since equals until", q: Query{Since: baseTime, Until: baseTime}},
		{name: "only since", q: Query{Since: baseTime}},
		{name: "negative limit", q: Query{Limit: -1}, wantErr: "limit -1 is out of range"},
		{name: "limit too large", q: Query{Limit: MaxQueryLimit + 1}, wantErr: "limit 10001 is out of range: use 1..10000"},
		{name: "negative cursor", q: Query{AfterSeq: -5}, wantErr: "cursor (after seq) -5 is negative"},
		{name: "since after until", q: Query{Since: baseTime.Add(time.Hour), Until: baseTime}, wantErr: "since 2026-11-22T11:00:00.000Z is after until 2026-11-22T10:00:00.000Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.q.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.wantErr)
			}
			if _, err := tc.q.Select(nil); err == nil {
				t.Error("Select accepted an invalid query")
			}
		})
	}
}

func TestQueryMatch(t *testing.T) {
	t.Parallel()
	e := Event{
		Seq: 10, ID: "ev10", Time: baseTime,
		Actor:  Actor{Kind: ActorUser, ID: "U0ALICE", Email: "alice@example.com"},
		Action: ActionGrantIssued, RequestID: "req1", GrantID: "grt1", Resource: "prod-db",
	}
	tests := []struct {
		name string
		q    Query
		want bool
	}{
		{"zero query matches", Query{}, true},
		{"actor by id", Query{Actor: "U0ALICE"}, true},
		{"actor by email", Query{Actor: "alice@example.com"}, true},
		{"actor email differs in case", Query{Actor: "Alice@example.com"}, false},
		{"other actor", Query{Actor: "U0BOB"}, false},
		{"actor kind is not an actor", Query{Actor: "user"}, false},
		{"resource", Query{Resource: "prod-db"}, true},
		{"resource prefix does not match", Query{Resource: "prod"}, false},
		{"action", Query{Action: ActionGrantIssued}, true},
		{"other action", Query{Action: ActionGrantRevoked}, false},
		{"grant id", Query{GrantID: "grt1"}, true},
		{"other grant id", Query{GrantID: "grt2"}, false},
		{"request id", Query{RequestID: "req1"}, true},
		{"other request id", Query{RequestID: "req2"}, false},
		{"since is inclusive", Query{Since: baseTime}, true},
		{"since after", Query{Since: baseTime.Add(time.Millisecond)}, false},
		{"until is exclusive", Query{Until: baseTime}, false},
		{"until after", Query{Until: baseTime.Add(time.Millisecond)}, true},
		{"since in another zone, same instant", Query{Since: baseTime.In(time.FixedZone("", -3600))}, true},
		{"ascending cursor before", Query{AfterSeq: 9}, true},
		{"ascending cursor at", Query{AfterSeq: 10}, false},
		{"descending cursor after", Query{AfterSeq: 11, Descending: true}, true},
		{"descending cursor at", Query{AfterSeq: 10, Descending: true}, false},
		{"descending first page", Query{Descending: true}, true},
		{"all filters together", Query{Actor: "U0ALICE", Resource: "prod-db", Action: ActionGrantIssued, GrantID: "grt1", RequestID: "req1", Since: baseTime, Until: baseTime.Add(time.Second), AfterSeq: 1}, true},
		{"all but one filter", Query{Actor: "U0ALICE", Resource: "prod-db", Action: ActionGrantIssued, GrantID: "grt1", RequestID: "req9"}, false},
	}
	for _, tc := range tests {
		if got := tc.q.Match(e); got != tc.want {
			t.Errorf("%s: Match = %v, want %v", tc.name, got, tc.want)
		}
	}
	var empty Event
	if (Query{Actor: ""}).Match(empty) != true || (Query{Actor: "x"}).Match(empty) {
		t.Error("an empty actor filter must match everything, a set one must not match an empty actor")
	}
}

func TestQuerySelect(t *testing.T) {
	t.Parallel()
	var events []Event
	for seq := int64(1); seq <= 30; seq++ {
		events = append(events, makeEvent(seq))
	}
	// Store order is not seq order here, to show that Select sorts.
	events[3], events[20] = events[20], events[3]
	seqs := func(es []Event) []int64 {
		var out []int64
		for _, e := range es {
			out = append(out, e.Seq)
		}
		return out
	}
	tests := []struct {
		name string
		q    Query
		want []int64
	}{
		{"grant.issued ascending", Query{Action: ActionGrantIssued}, []int64{4, 12, 20, 28}},
		{"grant.issued descending", Query{Action: ActionGrantIssued, Descending: true}, []int64{28, 20, 12, 4}},
		{"limit", Query{Action: ActionGrantIssued, Limit: 2}, []int64{4, 12}},
		{"second page ascending", Query{Action: ActionGrantIssued, Limit: 2, AfterSeq: 12}, []int64{20, 28}},
		{"second page descending", Query{Action: ActionGrantIssued, Limit: 2, AfterSeq: 20, Descending: true}, []int64{12, 4}},
		{"pagerduty actor by email", Query{Actor: "oncall@example.com", Until: makeEvent(12).Time}, []int64{3, 7, 11}},
		{"time window", Query{Since: makeEvent(5).Time, Until: makeEvent(8).Time}, []int64{5, 6, 7}},
		{"nothing", Query{GrantID: "grt_none"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := tc.q.Select(events)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, seqs(got)); diff != "" {
				t.Errorf("Select seqs (-want +got):\n%s", diff)
			}
		})
	}
}
