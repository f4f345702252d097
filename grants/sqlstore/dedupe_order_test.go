package sqlstore_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
)

// TestReplayedKeysInOppositeOrder: two replicas record the same two deduplicated requests (a
// replayed slash command on each) in opposite orders at the same moment. One change wins and
// the other is a clean ErrConflict: never a deadlock surfacing as an internal error.
func TestReplayedKeysInOppositeOrder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, clock *clocktest.Fake, replica replicaFactory) {
		a, b := replica(), replica()
		for round := range 30 {
			keys := []string{fmt.Sprintf("slack:%d:x", round), fmt.Sprintf("slack:%d:y", round)}
			change := func(order []string) *grants.Change {
				c := &grants.Change{}
				for _, k := range order {
					r := &grants.Request{ID: grants.NewID("r"), Resource: "prod-db", Reason: "replay", Source: grants.SourceSlack,
						State: grants.RequestPending, ExternalKey: k, CreatedAt: clock.Now()}
					c.Requests = append(c.Requests, grants.RequestWrite{Request: r, Create: true})
					c.Events = append(c.Events, &audit.Event{ID: grants.NewID("e"), Time: clock.Now(),
						Actor: audit.Actor{Kind: audit.ActorUser, ID: "U1"}, Action: audit.ActionRequestCreated, RequestID: r.ID})
				}
				return c
			}
			var wg sync.WaitGroup
			errs := make([]error, 2)
			wg.Go(func() { errs[0] = a.Apply(t.Context(), change(keys)) })
			wg.Go(func() { errs[1] = b.Apply(t.Context(), change([]string{keys[1], keys[0]})) })
			wg.Wait()
			ok := 0
			for _, err := range errs {
				switch {
				case err == nil:
					ok++
				case !errors.Is(err, grants.ErrConflict):
					t.Fatalf("round %d: %v (want success or ErrConflict)", round, err)
				}
			}
			if ok != 1 {
				t.Fatalf("round %d: %d changes succeeded, want exactly 1 (%v)", round, ok, errs)
			}
		}
	})
}
