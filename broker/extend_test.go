package broker_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

// offCallGrant gives alice a 1h grant while on call, then takes her off call.
func (e *env) offCallGrant(t *testing.T) grants.Grant {
	t.Helper()
	e.setOnCall(alice, time.Time{})
	r := e.submit(t, broker.RequestInput{})
	e.process(t, r)
	gs := e.grantsFor(t, r.ID)
	if len(gs) != 1 {
		t.Fatalf("grants = %+v", gs)
	}
	e.oncall.Set(alice) // no shifts: off call
	return gs[0]
}

// askExtension submits and processes alice's extension of g by 30m, which must go to the
// approvers, and returns the request.
func (e *env) askExtension(t *testing.T, g grants.Grant) grants.Request {
	t.Helper()
	r, err := e.b.SubmitExtension(t.Context(), broker.ExtensionInput{TeamID: team, UserID: alice, GrantID: g.ID, By: 30 * time.Minute, Reason: "need a little longer"})
	if err != nil {
		t.Fatal(err)
	}
	e.process(t, r)
	if got := e.request(t, r.ID); got.State != grants.RequestPending || got.Stage != grants.StageAwaitingApproval {
		t.Fatalf("extension %s is %s (%v), want it waiting for approval", r.ID, got.State, got.Evidence)
	}
	return r
}

func (e *env) expiry(t *testing.T, id string) time.Time {
	t.Helper()
	g, err := e.store.GetGrant(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return g.ExpiresAt
}

// TestConcurrentApprovalsExtendOnce: approvers clicking at once on one extension give one
// extension (the request is written in the extension's transaction), not one each.
func TestConcurrentApprovalsExtendOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.offCallGrant(t)
	r := e.askExtension(t, g)
	var wg sync.WaitGroup
	for _, u := range []string{bob, carol, bob, carol} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.decide(t, u, r.ID, true); err != nil {
				t.Errorf("Decide(%s): %v", u, err)
			}
		}()
	}
	wg.Wait()
	if got, want := e.expiry(t, g.ID), g.ExpiresAt.Add(30*time.Minute); !got.Equal(want) {
		t.Fatalf("expiry %s, want %s (extended once)", got, want)
	}
	if n := e.countAction(t, audit.ActionGrantExtended); n != 1 {
		t.Fatalf("grant.extended events = %d, want 1", n)
	}
	if got := e.request(t, r.ID); got.State != grants.RequestApproved {
		t.Fatalf("extension request is %s", got.State)
	}
}

// TestExtensionDeniedOrStaleChangesNothing: a denial leaves the grant as it was; an approval
// that arrives after the grant ended ends the request with the reason and extends nothing.
func TestExtensionDeniedOrStaleChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.offCallGrant(t)
	r := e.askExtension(t, g)
	if err := e.decide(t, bob, r.ID, false); err != nil {
		t.Fatal(err)
	}
	if got := e.expiry(t, g.ID); !got.Equal(g.ExpiresAt) || e.request(t, r.ID).State != grants.RequestDenied {
		t.Fatalf("after a denial: expiry %s, request %s", got, e.request(t, r.ID).State)
	}

	r2 := e.askExtension(t, g)
	if _, err := e.b.Done(t.Context(), broker.Caller{TeamID: team, UserID: alice}, g.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.decide(t, bob, r2.ID, true); err != nil {
		t.Fatal(err)
	}
	if got := e.request(t, r2.ID); got.State != grants.RequestRejected {
		t.Fatalf("stale extension is %s, want rejected", got.State)
	}
	if n := e.countAction(t, audit.ActionGrantExtended); n != 0 {
		t.Fatalf("grant.extended events = %d", n)
	}
	told := false
	for _, n := range e.notes.Notes("tell") {
		if n.To.Person.SlackUserID == bob && strings.Contains(n.Text, "was not extended") && strings.Contains(n.Text, "can no longer be extended") {
			told = true
		}
	}
	if !told {
		t.Errorf("the approver was not told why nothing happened: %+v", e.notes.Notes("tell"))
	}
}

// TestExtensionRecordedBeforeAckIsDecidedOnStart: an extension recorded before the process
// stopped is decided by Recover under the policy, like a request.
func TestExtensionRecordedBeforeAckIsDecidedOnStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setOnCall(alice, start.Add(8*time.Hour))
	r := e.submit(t, broker.RequestInput{})
	e.process(t, r)
	g := e.grantsFor(t, r.ID)[0]
	ext, err := e.b.SubmitExtension(t.Context(), broker.ExtensionInput{TeamID: team, UserID: alice, GrantID: g.ID, By: 30 * time.Minute, Reason: "need a little longer"})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.expiry(t, g.ID); !got.Equal(g.ExpiresAt) {
		t.Fatalf("SubmitExtension alone extended to %s", got)
	}
	if n, err := e.b.Recover(t.Context()); err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v", n, err)
	}
	if got, want := e.expiry(t, g.ID), g.ExpiresAt.Add(30*time.Minute); !got.Equal(want) {
		t.Fatalf("after Recover: expiry %s, want %s", got, want)
	}
	if got := e.request(t, ext.ID); got.State != grants.RequestApproved || got.Evidence["path"] != string(broker.PathAutoApprove) {
		t.Fatalf("recovered extension = %s %v", got.State, got.Evidence)
	}
}

// TestApprovalDoesNotCoverALaterEarlyEnd: when the grant's end is brought forward after the
// approvers were asked, their approval does not undo it (they never saw it): the request ends
// with the reason, and the scheduled end stands.
func TestApprovalDoesNotCoverALaterEarlyEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.offCallGrant(t)
	r := e.askExtension(t, g)
	early := start.Add(20 * time.Minute)
	if _, err := e.mgr.EndBy(t.Context(), g.ID, early, grants.CauseIncidentResolved, grants.SystemActor(), "incident resolved"); err != nil {
		t.Fatal(err)
	}
	if err := e.decide(t, bob, r.ID, true); err != nil {
		t.Fatal(err)
	}
	got, _ := e.store.GetGrant(t.Context(), g.ID)
	if !got.ExpiresAt.Equal(early) || got.RevokeCause != grants.CauseIncidentResolved {
		t.Fatalf("approval undid a later early end: expires %s cause %q", got.ExpiresAt, got.RevokeCause)
	}
	if st := e.request(t, r.ID).State; st != grants.RequestRejected {
		t.Fatalf("request is %s", st)
	}
	told := false
	for _, n := range e.notes.Notes("tell") {
		told = told || (n.To.Person.SlackUserID == bob && strings.Contains(n.Text, "which the approval did not cover"))
	}
	if !told {
		t.Errorf("approver not told why: %+v", e.notes.Notes("tell"))
	}
}

// TestPendingExtensionExpires: an extension nobody decides expires like a request, and the
// owner is told the grant was not extended.
func TestPendingExtensionExpires(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.offCallGrant(t)
	r := e.askExtension(t, g)
	e.clock.Advance(time.Hour + time.Minute)
	if _, err := e.b.Tick(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := e.request(t, r.ID).State; st != grants.RequestExpired {
		t.Fatalf("request is %s", st)
	}
	told := false
	for _, n := range e.notes.Notes("tell") {
		told = told || strings.Contains(n.Text, "to extend grant "+g.ID) && strings.Contains(n.Text, "was not extended")
	}
	if !told {
		t.Errorf("owner not told: %+v", e.notes.Notes("tell"))
	}
	if n := e.countAction(t, audit.ActionGrantExtended); n != 0 {
		t.Errorf("grant.extended events = %d", n)
	}
}

// TestScheduledEndWithoutApproversRefused: a grant scheduled to end early on a resource with
// no approvers cannot be extended by anyone: the owner is told why at once, the refusal is
// recorded, and nothing else is written.
func TestScheduledEndWithoutApproversRefused(t *testing.T) {
	t.Parallel()
	res := prodDB()
	res.Policy.ApproverSlackUsers = nil
	e := newEnv(t, res)
	e.setOnCall(alice, time.Time{})
	r := e.submit(t, broker.RequestInput{})
	e.process(t, r)
	g := e.grantsFor(t, r.ID)[0]
	early := start.Add(20 * time.Minute)
	if _, err := e.mgr.EndBy(t.Context(), g.ID, early, grants.CauseIncidentResolved, grants.SystemActor(), "incident resolved"); err != nil {
		t.Fatal(err)
	}
	rejected := e.countAction(t, audit.ActionRequestRejected)
	_, err := e.b.SubmitExtension(t.Context(), broker.ExtensionInput{TeamID: team, UserID: alice, GrantID: g.ID, By: 30 * time.Minute, Reason: "the incident reopened"})
	if !errors.Is(err, broker.ErrRefused) || !strings.Contains(err.Error(), "Only an approver can extend it, and prod-db has no approvers configured") {
		t.Fatalf("SubmitExtension = %v", err)
	}
	if n := e.countAction(t, audit.ActionRequestRejected); n != rejected+1 {
		t.Errorf("rejections = %d, want %d", n, rejected+1)
	}
	if got := e.expiry(t, g.ID); !got.Equal(early) {
		t.Errorf("expiry moved to %s", got)
	}
	rs, _ := e.store.ListRequests(t.Context(), grants.RequestFilter{})
	if len(rs) != 1 {
		t.Errorf("requests = %d, want only the original", len(rs))
	}
}

// TestPendingCapCoversExtensions: an extension waiting for its approvers is a pending request
// for the resource; a second extension (or a new request) while it waits is refused, naming
// it, and recorded as request.rejected with evidence pending_requests.
func TestPendingCapCoversExtensions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.offCallGrant(t)
	first := e.askExtension(t, g)
	_, err := e.b.SubmitExtension(t.Context(), broker.ExtensionInput{TeamID: team, UserID: alice, GrantID: g.ID, By: 30 * time.Minute, Reason: "and a little more"})
	var ref *broker.Refusal
	if !errors.As(err, &ref) || !strings.Contains(ref.Message, first.ID) {
		t.Fatalf("second extension while %s waits = %v, want a refusal naming it", first.ID, err)
	}
	_, err = e.b.Submit(t.Context(), broker.RequestInput{TeamID: team, UserID: alice, Resource: g.Resource, Duration: time.Hour, Reason: "a fresh grant instead"})
	if !errors.As(err, &ref) || !strings.Contains(ref.Message, first.ID) {
		t.Fatalf("new request while extension %s waits = %v, want a refusal naming it", first.ID, err)
	}
	evs, err := e.store.Search(t.Context(), audit.Query{Action: audit.ActionRequestRejected, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Evidence["pending_requests"] == first.ID {
			n++
		}
	}
	if n != 2 {
		t.Errorf("rejections naming %s = %d, want 2", first.ID, n)
	}
}
