package broker_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// issuedDownStore fails the next n changes that record grant.issued (n < 0: all of them),
// the moment after the provider created the access.
type issuedDownStore struct {
	*sqlstore.Store
	n atomic.Int64
}

func (s *issuedDownStore) Apply(ctx context.Context, c *grants.Change) error {
	for _, e := range c.Events {
		if e.Action == audit.ActionGrantIssued {
			if n := s.n.Load(); n != 0 {
				if n > 0 {
					s.n.Add(-1)
				}
				return errors.New("disk I/O error")
			}
		}
	}
	return s.Store.Apply(ctx, c)
}

func (e *env) withStore(t *testing.T, st grants.Store) {
	t.Helper()
	e.mgr = grants.NewManager(st, map[string]grants.Provider{"prod-db": e.prov}, []grants.Resource{prodDB()}, e.clock, nil, grants.ManagerOptions{})
	e.b = broker.New(broker.Deps{Manager: e.mgr, Store: st, Clock: e.clock, Leases: e.store, Once: e.store, OnCall: e.oncall,
		Directory: e.dir, Notifier: e.notes, Groups: e.groups, Logger: testLogger(t)})
}

// TestApprovedButIssuedRecordFailedOnce (issue #15.6): the approval is recorded, the provider
// issues, the grant.issued record fails once and the store recovers: the grant is recorded
// on the retry and the requester gets the credential, without asking again.
func TestApprovedButIssuedRecordFailedOnce(t *testing.T) {
	e := newEnv(t)
	ds := &issuedDownStore{Store: e.store}
	e.withStore(t, ds)
	r := e.submit(t, broker.RequestInput{})
	e.process(t, r)
	ds.n.Store(1)
	if err := e.decide(t, bob, r.ID, true); err != nil {
		t.Fatalf("Decide: %v", err)
	}
	gs := e.grantsFor(t, r.ID)
	if len(gs) != 1 || gs[0].State != grants.StateActive {
		t.Fatalf("grants of the request: %+v, want one active", gs)
	}
	if n := len(e.notes.Notes("deliver")); n != 1 {
		t.Fatalf("%d credentials delivered, want 1", n)
	}
}

// TestApprovedButNotIssuedTellsHowToAskAgain: when the record keeps failing until the
// issue lease ends, the credential is withheld and the requester is told the request is
// finished and which command asks again.
func TestApprovedButNotIssuedTellsHowToAskAgain(t *testing.T) {
	e := newEnv(t)
	ds := &issuedDownStore{Store: e.store}
	e.withStore(t, ds)
	r := e.submit(t, broker.RequestInput{})
	e.process(t, r)
	ds.n.Store(-1)
	done := make(chan error, 1)
	go func() { done <- e.decide(t, bob, r.ID, true) }()
	advanceUntil(t, e, done)
	if n := len(e.notes.Notes("deliver")); n != 0 {
		t.Fatalf("%d credentials delivered for an unrecorded grant", n)
	}
	want := "ask again with `/access prod-db 1h checking replication lag`"
	told := 0
	for _, n := range e.notes.Notes("tell") {
		if strings.Contains(n.Text, want) && strings.Contains(n.Text, "withheld") {
			told++
		}
	}
	if told == 0 {
		t.Fatalf("nobody was told %q: %+v", want, e.notes.Notes("tell"))
	}
}

// advanceUntil moves the fake clock a second each time the code under test waits on it,
// until done delivers (the Decide call's result, which must be nil).
func advanceUntil(t *testing.T, e *env, done <-chan error) {
	t.Helper()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // hang guard, not a timing assertion
		blocked := make(chan error, 1)
		go func() { blocked <- e.clock.BlockUntil(ctx, 1) }()
		select {
		case err := <-done:
			cancel()
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			return
		case err := <-blocked:
			if err != nil {
				cancel()
				t.Fatalf("neither waiting nor done: %v", err)
			}
			e.clock.Advance(time.Second)
		}
		cancel()
	}
}
