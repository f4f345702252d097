package broker_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

// TestRequestAndEventIDsFollowTime: the broker's request ids and event ids sort as they were
// made (so that their rows go to the end of the id indexes of requests and audit_events,
// not each to a random page), and request ids keep NewID's shape, which the Slack buttons
// and the console check (grants.ValidID).
func TestRequestAndEventIDsFollowTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var reqIDs []string
	for i := range 20 {
		r := e.submit(t, broker.RequestInput{UserID: fmt.Sprintf("U0ID%04d", i)})
		if !grants.ValidID("r", r.ID) {
			t.Fatalf("request id %q is not a valid request id", r.ID)
		}
		reqIDs = append(reqIDs, r.ID)
		e.clock.Advance(time.Millisecond) // request ids are ordered to the millisecond
	}
	if !slices.IsSorted(reqIDs) {
		t.Errorf("request ids do not sort as they were made: %v", reqIDs)
	}
	var evIDs []string
	for _, ev := range e.events(t) { // in chain order
		evIDs = append(evIDs, ev.ID)
	}
	if len(evIDs) != 20 {
		t.Fatalf("%d events, want 20 request.created", len(evIDs))
	}
	if !slices.IsSorted(evIDs) {
		t.Errorf("event ids do not sort in chain order: %v", evIDs)
	}
}
