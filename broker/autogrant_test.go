package broker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

// pagePeople maps PagerDuty users to people.
type pagePeople map[string]grants.Person

func (p pagePeople) ByPagerDuty(_ context.Context, id, _ string) (grants.Person, error) {
	if person, ok := p[id]; ok {
		return person, nil
	}
	return grants.Person{}, fmt.Errorf("%w: no such PagerDuty user %s", broker.ErrUnknownPerson, id)
}

const pdAlice = "PALICE1"

func newPages(e *env, rules ...broker.AutoGrantRule) *broker.Pages {
	if len(rules) == 0 {
		rules = []broker.AutoGrantRule{{PagerDutyServices: []string{"PSVC123"}, Resources: []string{"prod-db"}, Duration: 2 * time.Hour, RevokeOnResolve: true}}
	}
	people := pagePeople{pdAlice: {SlackTeamID: team, SlackUserID: alice, Email: "alice@example.com", ResolvedBy: "config"}}
	return broker.NewPages(e.b, rules, people, e.mgr)
}

func ack(event string) broker.PageAck {
	return broker.PageAck{EventID: event, IncidentID: "PINC1", IncidentNumber: 42, Title: "DB replication lag", URL: "https://acme.pagerduty.com/incidents/PINC1",
		ServiceID: "PSVC123", AcknowledgerPDUserID: pdAlice, AcknowledgerEmail: "alice@example.com", OccurredAt: start}
}

func TestPageAckGrantsOnCallEngineerAndDMs(t *testing.T) {
	e := newEnv(t)
	e.setOnCall(alice, start.Add(90*time.Minute))
	p := newPages(e)
	for range 3 { // redeliveries, and a second ack event for the same incident
		if err := p.Acknowledged(t.Context(), ack("EV1")); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Acknowledged(t.Context(), ack("EV2")); err != nil {
		t.Fatal(err)
	}
	gs, _ := e.store.ListGrants(t.Context(), grants.GrantFilter{IncidentID: "PINC1"})
	if len(gs) != 1 {
		t.Fatalf("grants for the incident = %d, want exactly 1", len(gs))
	}
	g := gs[0]
	if g.Reason != "PagerDuty incident #42: DB replication lag (https://acme.pagerduty.com/incidents/PINC1)" {
		t.Errorf("reason %q", g.Reason)
	}
	if want := start.Add(90 * time.Minute); !g.ExpiresAt.Equal(want) {
		t.Errorf("expires %s, want the shift end %s (cap_to_shift) rather than the rule's 2h", g.ExpiresAt, want)
	}
	d := e.notes.Notes("deliver")
	if len(d) != 1 || d[0].To.Person.SlackUserID != alice || d[0].To.ResponseURL != "" {
		t.Fatalf("deliveries = %+v, want one DM to alice", d)
	}
	evs, _ := e.store.Search(t.Context(), audit.Query{GrantID: g.ID, Action: audit.ActionGrantIssuing, Limit: 5})
	if len(evs) != 1 || evs[0].Evidence["incident"] != "PINC1" || evs[0].Evidence["on_call"] != "true" || evs[0].Evidence["path"] != "page_ack" {
		t.Fatalf("issuing evidence = %+v", evs)
	}
}

func TestPageAckRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(e *env)
		mutate func(a *broker.PageAck)
		want   string
	}{
		{"service without rule", nil, func(a *broker.PageAck) { a.ServiceID = "POTHER" }, "no auto_grant rule"},
		{"unknown person", nil, func(a *broker.PageAck) { a.AcknowledgerPDUserID = "PNOBODY" }, "cannot identify"},
		{"not on call", nil, nil, "not on call"},
		{"pagerduty down", func(e *env) { e.oncall.Fail(fmt.Errorf("pagerduty: 503")) }, nil, "could not be confirmed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if tc.setup != nil {
				tc.setup(e)
			}
			a := ack("EV1")
			if tc.mutate != nil {
				tc.mutate(&a)
			}
			if err := newPages(e).Acknowledged(t.Context(), a); err != nil {
				t.Fatal(err)
			}
			if gs, _ := e.store.ListGrants(t.Context(), grants.GrantFilter{}); len(gs) != 0 {
				t.Fatalf("granted %d", len(gs))
			}
			evs, _ := e.store.Search(t.Context(), audit.Query{Action: audit.ActionRequestRejected, Limit: 5})
			if len(evs) != 1 || !strings.Contains(evs[0].Reason, tc.want) {
				t.Fatalf("rejections = %+v, want one mentioning %q", evs, tc.want)
			}
		})
	}
}

func TestPageResolvedRevokesAfterGrace(t *testing.T) {
	e := newEnv(t)
	e.setOnCall(alice, time.Time{})
	p := newPages(e, broker.AutoGrantRule{PagerDutyServices: []string{"PSVC123"}, Resources: []string{"prod-db"}, Duration: 2 * time.Hour, RevokeOnResolve: true, GracePeriod: 10 * time.Minute})
	if err := p.Acknowledged(t.Context(), ack("EV1")); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(30 * time.Minute)
	if err := p.Resolved(t.Context(), broker.PageResolved{EventID: "EV3", IncidentID: "PINC1", ServiceID: "PSVC123", OccurredAt: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	gs, _ := e.store.ListGrants(t.Context(), grants.GrantFilter{IncidentID: "PINC1"})
	if len(gs) != 1 || !gs[0].ExpiresAt.Equal(e.clock.Now().Add(10*time.Minute)) || gs[0].RevokeCause != grants.CauseIncidentResolved {
		t.Fatalf("after resolve: %+v", gs)
	}
	r := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": e.prov}, e.clock, nil, grants.RevokerOptions{})
	e.clock.Advance(10 * time.Minute)
	if err := r.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	g, _ := e.store.GetGrant(t.Context(), gs[0].ID)
	if g.State != grants.StateRevoked || g.RevokeCause != grants.CauseIncidentResolved || e.prov.Live(g.ID) {
		t.Fatalf("grant %s cause %s live %v", g.State, g.RevokeCause, e.prov.Live(g.ID))
	}
}

func TestPageResolvedLeavesGrantsOfRulesWithoutRevokeOnResolve(t *testing.T) {
	e := newEnv(t)
	e.setOnCall(alice, time.Time{})
	p := newPages(e, broker.AutoGrantRule{PagerDutyServices: []string{"PSVC123"}, Resources: []string{"prod-db"}, Duration: time.Hour})
	if err := p.Acknowledged(t.Context(), ack("EV1")); err != nil {
		t.Fatal(err)
	}
	if err := p.Resolved(t.Context(), broker.PageResolved{EventID: "EV3", IncidentID: "PINC1", ServiceID: "PSVC123"}); err != nil {
		t.Fatal(err)
	}
	gs, _ := e.store.ListGrants(t.Context(), grants.GrantFilter{IncidentID: "PINC1"})
	if len(gs) != 1 || gs[0].RevokeCause != "" || !gs[0].ExpiresAt.Equal(start.Add(time.Hour)) {
		t.Fatalf("grant changed by resolve without revoke_on_resolve: %+v", gs)
	}
}

// TestReminderSentOnceAcrossReplicas: two brokers on one store (two replicas) remind the
// owner once between them.
func TestReminderSentOnceAcrossReplicas(t *testing.T) {
	e := newEnv(t)
	e.setOnCall(alice, time.Time{})
	e.process(t, e.submit(t, broker.RequestInput{}))
	other := broker.New(broker.Deps{Manager: e.mgr, Store: e.store, Clock: e.clock, Leases: e.store, Once: e.store, OnCall: e.oncall, Directory: e.dir, Notifier: e.notes, Groups: e.groups})
	e.clock.Advance(56 * time.Minute) // inside the 5-minute reminder window
	for _, b := range []*broker.Broker{e.b, other, e.b} {
		if _, err := b.Tick(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.notes.Notes("remind")); n != 1 {
		t.Fatalf("reminders = %d, want 1", n)
	}
}

// TestConcurrentAcknowledgementEventsGrantOnce: several acknowledgement events of one incident
// (a re-acknowledgement, deliveries racing on replicas) handled at the same moment give one
// grant; the losers ask for a redelivery, and a redelivery then finds the grant.
func TestConcurrentAcknowledgementEventsGrantOnce(t *testing.T) {
	e := newEnv(t)
	e.setOnCall(alice, time.Time{})
	p := newPages(e)
	const n = 6
	errs := make(chan error, n)
	gate := make(chan struct{})
	for i := range n {
		go func() {
			<-gate
			errs <- p.Acknowledged(t.Context(), ack(fmt.Sprintf("EVRACE%d", i)))
		}()
	}
	close(gate)
	var retry []int
	for i := range n {
		if err := <-errs; err != nil {
			retry = append(retry, i)
		}
	}
	for range retry { // PagerDuty redelivers what got a 5xx
		if err := p.Acknowledged(t.Context(), ack("EVRACE-redelivered")); err != nil {
			t.Fatalf("redelivery: %v", err)
		}
	}
	if gs, _ := e.store.ListGrants(t.Context(), grants.GrantFilter{IncidentID: "PINC1"}); len(gs) != 1 {
		t.Fatalf("grants for one incident = %d, want 1", len(gs))
	}
	if d := e.notes.Notes("deliver"); len(d) != 1 {
		t.Fatalf("credentials delivered %d times, want 1", len(d))
	}
}
