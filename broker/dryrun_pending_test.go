package broker_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

// TestDryRunPendingLimit: the dry run says that a request would be refused when the
// requester's pending requests for the resource already reach policy.max_pending_per_person
// (naming them), as Submit would refuse it, and it writes nothing; expired requests, other
// resources and a higher cap leave room.
func TestDryRunPendingLimit(t *testing.T) {
	other := prodDB()
	other.Name = "prod-aws"
	tests := []struct {
		name     string
		cap      int           // policy.max_pending_per_person (0: the default, 1)
		pending  int           // bob's pending requests for prod-db before the dry run
		advance  time.Duration // clock moved after they were recorded
		resource string
		refused  bool
	}{
		{name: "one pending, default cap of 1", pending: 1, resource: "prod-db", refused: true},
		{name: "two pending, cap of 2", cap: 2, pending: 2, resource: "prod-db", refused: true},
		{name: "one pending, cap of 2", cap: 2, pending: 1, resource: "prod-db"},
		{name: "the pending one has expired", pending: 1, advance: 2 * time.Hour, resource: "prod-db"},
		{name: "pending for another resource", pending: 1, resource: "prod-aws"},
		{name: "nothing pending", resource: "prod-db"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := prodDB()
			db.Policy.MaxPendingPerPerson = tt.cap
			e := newEnv(t, db, other)
			var ids []string
			for range tt.pending {
				r := e.submit(t, broker.RequestInput{UserID: bob, Resource: "prod-db"})
				e.process(t, r) // bob is not on call: it waits for approval
				if got := e.request(t, r.ID); got.State != grants.RequestPending {
					t.Fatalf("request %s is %s; want pending", r.ID, got.State)
				}
				ids = append(ids, r.ID)
				e.clock.Advance(time.Second) // "oldest first" needs distinct creation times
			}
			e.clock.Advance(tt.advance)
			before := len(e.events(t))
			in := broker.RequestInput{TeamID: team, UserID: bob, Resource: tt.resource, Duration: time.Hour, Reason: "lag"}
			p, err := e.b.DryRun(t.Context(), in)
			if err != nil {
				t.Fatal(err)
			}
			if after := len(e.events(t)); after != before {
				t.Errorf("dry run wrote %d audit events; want none", after-before)
			}
			if !tt.refused {
				if p.Refused != "" || p.Path != broker.PathApproval {
					t.Fatalf("preview = %+v; want sent for approval, not refused", p)
				}
				return
			}
			if p.Path != broker.PathReject || !strings.Contains(p.Refused, "pending") {
				t.Fatalf("preview = %+v; want refused for the pending-request limit", p)
			}
			for _, id := range ids {
				if !strings.Contains(p.Refused, id) {
					t.Errorf("Refused = %q; want it to name pending request %s", p.Refused, id)
				}
			}
			if strings.Join(p.Pending, ",") != strings.Join(ids, ",") {
				t.Errorf("Pending = %v; want %v (oldest first)", p.Pending, ids)
			}
			// Submit refuses it the same way: the dry run told the truth.
			_, err = e.b.Submit(t.Context(), in)
			var rf *broker.Refusal
			if !errors.As(err, &rf) || !strings.Contains(rf.Message, ids[0]) {
				t.Fatalf("Submit after the dry run = %v; want the pending-limit refusal", err)
			}
		})
	}
}
