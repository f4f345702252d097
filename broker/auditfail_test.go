package broker_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// downStore is the store with its writes failing while down is set (the disk full, the
// database gone): nothing is written, as a failed transaction writes nothing.
type downStore struct {
	*sqlstore.Store
	down atomic.Bool
}

func (s *downStore) Apply(ctx context.Context, c *grants.Change) error {
	if s.down.Load() {
		return errors.New("disk I/O error")
	}
	return s.Store.Apply(ctx, c)
}

// TestApprovalWhileTheAuditLogIsDown: an approval that cannot be recorded grants nothing, the
// approver and the requester are told the request is still open and how to go on, and the
// same click once the log is back grants it (issue #15: approved but not issued).
func TestApprovalWhileTheAuditLogIsDown(t *testing.T) {
	e := newEnv(t)
	ds := &downStore{Store: e.store}
	e.mgr = grants.NewManager(ds, map[string]grants.Provider{"prod-db": e.prov}, []grants.Resource{prodDB()}, e.clock, nil, grants.ManagerOptions{})
	e.b = broker.New(broker.Deps{Manager: e.mgr, Store: ds, Clock: e.clock, Leases: e.store, Once: e.store, OnCall: e.oncall,
		Directory: e.dir, Notifier: e.notes, Groups: e.groups, Logger: testLogger(t)})
	r := e.submit(t, broker.RequestInput{})
	e.process(t, r)

	ds.down.Store(true)
	if err := e.decide(t, bob, r.ID, true); err != nil {
		t.Fatalf("Decide while the log is down: %v", err)
	}
	if got := e.request(t, r.ID); got.State != grants.RequestPending || len(e.allGrants(t)) != 0 {
		t.Fatalf("after a failed approval: request %s, %d grants; want pending, none", got.State, len(e.allGrants(t)))
	}
	told := 0
	for _, n := range e.notes.Notes("tell") {
		if strings.Contains(n.Text, "still open") && strings.Contains(n.Text, "click Approve again") {
			told++
		}
	}
	if told < 2 {
		t.Fatalf("the approver and the requester were not both told the request is still open: %+v", e.notes.Notes("tell"))
	}

	ds.down.Store(false)
	if err := e.decide(t, bob, r.ID, true); err != nil {
		t.Fatalf("Decide once the log is back: %v", err)
	}
	if got := e.request(t, r.ID); got.State != grants.RequestApproved || len(e.grantsFor(t, r.ID)) != 1 {
		t.Fatalf("after the second click: request %s, %d grants; want approved, one", got.State, len(e.grantsFor(t, r.ID)))
	}
}
