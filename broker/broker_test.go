package broker_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/broker/brokertest"
	"github.com/accessbroker/accessbroker/grants"
)

func TestOnCallRequesterIsAutoApproved(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setOnCall(alice, start.Add(8*time.Hour))
	r := e.submit(t, broker.RequestInput{ResponseURL: "https://hooks.example/cmd", ChannelID: "C0OPS", ExternalKey: "trigger-1"})
	e.process(t, r)

	gs := e.grantsFor(t, r.ID)
	if len(gs) != 1 || gs[0].State != grants.StateActive {
		t.Fatalf("grants = %+v, want one active", gs)
	}
	g := gs[0]
	if g.ExpiresAt != start.Add(time.Hour) || g.Person.Email != "alice@example.com" || g.Person.ResolvedBy != "config" {
		t.Errorf("grant = %+v", g)
	}
	got := e.request(t, r.ID)
	if got.State != grants.RequestApproved || got.Evidence["on_call"] != "true" || got.Evidence["path"] != "auto_approve" {
		t.Errorf("request = %+v", got)
	}
	d := e.notes.Notes("deliver")
	if len(d) != 1 || d[0].Grant.ID != g.ID || d[0].To.ResponseURL != "https://hooks.example/cmd" || d[0].To.Person.SlackUserID != alice {
		t.Fatalf("deliveries = %+v", d)
	}
	if diff := cmp.Diff([]string{"connection_string", "user", "password"}, d[0].CredentialFields); diff != "" {
		t.Errorf("credential fields (-want +got):\n%s", diff)
	}
	if n := len(e.notes.Notes("ask")); n != 0 {
		t.Errorf("asked approvers %d times", n)
	}
	for _, a := range []audit.Action{audit.ActionRequestCreated, audit.ActionOnCallChecked, audit.ActionRequestApproved, audit.ActionGrantIssuing, audit.ActionGrantIssued} {
		if e.countAction(t, a) != 1 {
			t.Errorf("want one %s event, got %d", a, e.countAction(t, a))
		}
	}
	if lines := e.notes.Notes("audit"); len(lines) != 1 || !strings.Contains(lines[0].Text, g.ID) {
		t.Errorf("audit lines = %+v", lines)
	}
	e.assertNoSecrets(t)
}

func TestCapToShift(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setOnCall(alice, start.Add(20*time.Minute))
	r := e.submit(t, broker.RequestInput{Duration: 2 * time.Hour})
	e.process(t, r)
	gs := e.grantsFor(t, r.ID)
	if len(gs) != 1 || !gs[0].ExpiresAt.Equal(start.Add(20*time.Minute)) {
		t.Fatalf("grant expiry = %v, want the shift end %v", gs, start.Add(20*time.Minute))
	}
}

func TestOffCallNeedsApprovalThenApproved(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.submit(t, broker.RequestInput{ResponseURL: "https://hooks.example/cmd"})
	e.process(t, r)
	if len(e.grantsFor(t, r.ID)) != 0 {
		t.Fatal("issued without approval")
	}
	asks := e.notes.Notes("ask")
	if len(asks) != 1 || asks[0].Request.ID != r.ID || asks[0].Request.Evidence["on_call"] != "false" {
		t.Fatalf("asks = %+v", asks)
	}
	if tells := e.notes.Notes("tell"); len(tells) != 1 || !strings.Contains(tells[0].Text, "needs 1 approval") {
		t.Errorf("requester told %+v", tells)
	}
	// Processing again (a recovery) does not ask twice.
	e.process(t, r)
	if n := len(e.notes.Notes("ask")); n != 1 {
		t.Errorf("asked %d times after reprocessing", n)
	}

	if err := e.decide(t, bob, r.ID, true); err != nil {
		t.Fatalf("Decide: %v", err)
	}
	gs := e.grantsFor(t, r.ID)
	if len(gs) != 1 || gs[0].State != grants.StateActive {
		t.Fatalf("grants = %+v", gs)
	}
	// The approval names its approver as requests name requesters: Slack id and email.
	recs, err := e.store.Search(t.Context(), audit.Query{Action: audit.ActionApprovalRecorded, Limit: 5})
	if err != nil || len(recs) != 1 || recs[0].Actor.ID != bob || recs[0].Actor.Email != "bob@example.com" {
		t.Errorf("request.approval_recorded actors: %+v (%v); want %s with bob@example.com", recs, err, bob)
	}
	d := e.notes.Notes("deliver")
	if len(d) != 1 || d[0].To.ResponseURL != "" || d[0].To.Person.SlackUserID != alice {
		t.Fatalf("credential must go by DM to the requester: %+v", d)
	}
	ups := e.notes.Notes("update")
	if len(ups) != 1 || ups[0].Outcome.State != grants.RequestApproved || !cmp.Equal(ups[0].Outcome.By, []string{bob}) || ups[0].Outcome.GrantID != gs[0].ID {
		t.Errorf("updates = %+v", ups)
	}
	got := e.request(t, r.ID)
	if got.State != grants.RequestApproved || len(got.Approvals) != 1 || got.Approvals[0].By != bob {
		t.Errorf("request = %+v", got)
	}
	e.assertNoSecrets(t)
}

func TestSelfApprovalRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func() grants.Resource { r := prodDB(); r.Policy.ApproverSlackUsers = []string{alice, bob}; return r }())
	r := e.submit(t, broker.RequestInput{})
	e.process(t, r)
	err := e.decide(t, alice, r.ID, true)
	if !errors.Is(err, broker.ErrRefused) || !strings.Contains(err.Error(), "your own request") {
		t.Fatalf("self-approval: %v", err)
	}
	if len(e.allGrants(t)) != 0 || e.request(t, r.ID).State != grants.RequestPending {
		t.Fatal("self-approval changed something")
	}
	evs, err := e.store.Search(t.Context(), audit.Query{Action: audit.ActionRequestRejected, Limit: 5})
	if err != nil || len(evs) != 1 {
		t.Fatalf("want one request.rejected event: %v, %v", evs, err)
	}
	// A refused click, not a rejected request: the report counts it apart.
	if got := evs[0].Evidence[audit.EvidenceRefusedClick]; got != "approve" {
		t.Errorf("the refusal's evidence %s = %q, want approve: %v", audit.EvidenceRefusedClick, got, evs[0].Evidence)
	}
}

func TestNonApproverRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.submit(t, broker.RequestInput{})
	e.process(t, r)
	for _, approve := range []bool{true, false} {
		err := e.decide(t, dave, r.ID, approve)
		if !errors.Is(err, broker.ErrRefused) || !strings.Contains(err.Error(), "not an approver for prod-db") {
			t.Fatalf("non-approver (approve=%v): %v", approve, err)
		}
	}
	if len(e.allGrants(t)) != 0 || e.request(t, r.ID).State != grants.RequestPending {
		t.Fatal("a non-approver changed something")
	}
	if tells := e.notes.Notes("tell"); !strings.Contains(tells[len(tells)-1].Text, "not an approver") || tells[len(tells)-1].To.Person.SlackUserID != dave {
		t.Errorf("clicker not told: %+v", tells[len(tells)-1])
	}
	if n := e.countAction(t, audit.ActionRequestRejected); n != 2 {
		t.Errorf("request.rejected events = %d, want 2", n)
	}
}

func TestUsergroupMembershipCheckedAtClickTime(t *testing.T) {
	t.Parallel()
	res := prodDB()
	res.Policy.ApproverSlackUsers = nil
	res.Policy.ApproverSlackUsergroup = "S0DBA"
	e := newEnv(t, res)
	e.groups.Set("S0DBA", carol)
	r := e.submit(t, broker.RequestInput{})
	e.process(t, r)
	e.groups.Set("S0DBA", dave) // carol left the group after the request was posted
	if err := e.decide(t, carol, r.ID, true); !errors.Is(err, broker.ErrRefused) {
		t.Fatalf("former member approved: %v", err)
	}
	e.groups.Fail(errors.New("slack down"))
	if err := e.decide(t, dave, r.ID, true); !errors.Is(err, broker.ErrRefused) {
		t.Fatalf("lookup failure must refuse: %v", err)
	}
	e.groups.Fail(nil)
	if err := e.decide(t, dave, r.ID, true); err != nil {
		t.Fatalf("current member: %v", err)
	}
	if len(e.grantsFor(t, r.ID)) != 1 {
		t.Fatal("no grant after a member approved")
	}
}

func TestEmptyApproverConfigDenies(t *testing.T) {
	t.Parallel()
	res := prodDB()
	res.Policy.ApproverSlackUsers = nil
	e := newEnv(t, res)
	r := e.submit(t, broker.RequestInput{})
	e.process(t, r)
	got := e.request(t, r.ID)
	if got.State != grants.RequestRejected || len(e.notes.Notes("ask")) != 0 {
		t.Fatalf("request = %s, asks = %d; want rejected without asking", got.State, len(e.notes.Notes("ask")))
	}
	if tells := e.notes.Notes("tell"); len(tells) != 1 || !strings.Contains(tells[0].Text, "no approvers configured") {
		t.Errorf("tells = %+v", tells)
	}
	if err := e.decide(t, bob, r.ID, true); err != nil || len(e.allGrants(t)) != 0 {
		t.Fatalf("click on a rejected request: %v, grants %d", err, len(e.allGrants(t)))
	}
}

func TestTwoOfTwoApprovals(t *testing.T) {
	t.Parallel()
	res := prodDB()
	res.Policy.MinApprovals = 2
	e := newEnv(t, res)
	r := e.submit(t, broker.RequestInput{})
	e.process(t, r)
	if err := e.decide(t, bob, r.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := e.decide(t, bob, r.ID, true); err != nil { // the same approver again counts once
		t.Fatal(err)
	}
	if len(e.allGrants(t)) != 0 {
		t.Fatal("issued after one distinct approval of two")
	}
	if ups := e.notes.Notes("update"); len(ups) != 1 || ups[0].Outcome.State != grants.RequestPending {
		t.Errorf("progress update = %+v", ups)
	}
	if err := e.decide(t, carol, r.ID, true); err != nil {
		t.Fatal(err)
	}
	if gs := e.grantsFor(t, r.ID); len(gs) != 1 {
		t.Fatalf("grants = %d, want 1", len(gs))
	}
	if got := e.request(t, r.ID); len(got.Approvals) != 2 {
		t.Errorf("approvals = %+v", got.Approvals)
	}
	if e.countAction(t, audit.ActionApprovalRecorded) != 2 {
		t.Errorf("approval_recorded events = %d", e.countAction(t, audit.ActionApprovalRecorded))
	}
}

// TestConcurrentClicksOneGrant: two approvers and a double click, all at once, with the
// provider slow enough for the clicks to overlap: exactly one grant and one credential.
func TestConcurrentClicksOneGrant(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.prov.Delay = 20 * time.Millisecond
	r := e.submit(t, broker.RequestInput{})
	e.process(t, r)
	var wg sync.WaitGroup
	for _, u := range []string{bob, carol, bob, carol, bob} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.decide(t, u, r.ID, true); err != nil {
				t.Errorf("Decide(%s): %v", u, err)
			}
		}()
	}
	wg.Wait()
	if gs := e.allGrants(t); len(gs) != 1 {
		t.Fatalf("grants = %d, want exactly 1", len(gs))
	}
	if n := len(e.prov.Issued()); n != 1 {
		t.Fatalf("provider issued %d times", n)
	}
	if n := len(e.notes.Notes("deliver")); n != 1 {
		t.Fatalf("credential delivered %d times", n)
	}
	already := 0
	for _, n := range e.notes.Notes("tell") {
		if strings.Contains(n.Text, "already decided") || strings.Contains(n.Text, "already approved") {
			already++
		}
	}
	if already != 4 {
		t.Errorf("%d clickers told it was already decided, want 4", already)
	}
}

func TestDenyNoGrant(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.submit(t, broker.RequestInput{})
	e.process(t, r)
	if err := e.decide(t, bob, r.ID, false); err != nil {
		t.Fatal(err)
	}
	if got := e.request(t, r.ID); got.State != grants.RequestDenied {
		t.Fatalf("state = %s", got.State)
	}
	if err := e.decide(t, carol, r.ID, true); err != nil { // too late
		t.Fatal(err)
	}
	if len(e.allGrants(t)) != 0 {
		t.Fatal("grant after deny")
	}
	var toldRequester bool
	for _, n := range e.notes.Notes("tell") {
		if n.To.Person.SlackUserID == alice && strings.Contains(n.Text, "was denied by") {
			toldRequester = true
		}
	}
	if !toldRequester {
		t.Error("requester not told of the denial")
	}
	if ups := e.notes.Notes("update"); len(ups) != 1 || ups[0].Outcome.State != grants.RequestDenied {
		t.Errorf("updates = %+v", ups)
	}
	if e.countAction(t, audit.ActionRequestDenied) != 1 {
		t.Error("no request.denied event")
	}
}

func TestPendingRequestExpires(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.submit(t, broker.RequestInput{})
	e.process(t, r)
	ctx := waitCtx(t)
	done := make(chan error, 1)
	go func() { done <- e.b.Run(ctx) }()
	t.Cleanup(func() { <-done }) // stopped (t.Context ended) before the store closes
	if err := e.clock.BlockUntil(ctx, 1); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour + time.Second)
	if err := e.notes.WaitFor(ctx, func(ns []brokertest.Note) bool {
		for _, n := range ns {
			if n.Kind == "update" && n.Outcome.State == grants.RequestExpired {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("no expiry update: %v", err)
	}
	if got := e.request(t, r.ID); got.State != grants.RequestExpired {
		t.Fatalf("state = %s", got.State)
	}
	if err := e.decide(t, bob, r.ID, true); err != nil || len(e.allGrants(t)) != 0 {
		t.Fatalf("approval after expiry: %v, grants %d", err, len(e.allGrants(t)))
	}
	var told bool
	for _, n := range e.notes.Notes("tell") {
		told = told || (n.To.Person.SlackUserID == alice && strings.Contains(n.Text, "expired"))
	}
	if !told {
		t.Error("requester not told of the expiry")
	}
}

func TestDeliveryFailureRevokes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setOnCall(alice, time.Time{})
	e.notes.DeliverErr = errors.New("conversations.open: user_not_found")
	r := e.submit(t, broker.RequestInput{ResponseURL: "https://hooks.example/cmd"})
	e.process(t, r)
	gs := e.grantsFor(t, r.ID)
	if len(gs) != 1 || gs[0].State != grants.StateRevoking || gs[0].RevokeCause != grants.CauseDeliveryFailed {
		t.Fatalf("grant = %+v, want revoking with cause delivery_failed", gs)
	}
	tells := e.notes.Notes("tell")
	if len(tells) != 1 || !strings.Contains(tells[0].Text, "was revoked right away") || tells[0].To.Person.SlackUserID != alice {
		t.Fatalf("tells = %+v", tells)
	}
}

func TestUnknownPersonRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.submit(t, broker.RequestInput{UserID: "U0STRANGER"})
	e.process(t, r)
	if got := e.request(t, r.ID); got.State != grants.RequestRejected {
		t.Fatalf("state = %s", got.State)
	}
	tells := e.notes.Notes("tell")
	if len(tells) != 1 || !strings.Contains(tells[0].Text, "identities") {
		t.Errorf("tells = %+v", tells)
	}
	if len(e.allGrants(t)) != 0 || e.countAction(t, audit.ActionRequestRejected) != 1 {
		t.Error("unknown person: want no grant and one rejection event")
	}
}

func TestSubmitRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := []struct {
		name string
		in   broker.RequestInput
		want string
	}{
		{"unknown resource", broker.RequestInput{Resource: "prod-nope"}, `no resource named "prod-nope"`},
		{"over max", broker.RequestInput{Duration: 5 * time.Hour}, "over prod-db's maximum of 4h; ask for 4h or less"},
		{"below min", broker.RequestInput{Duration: 30 * time.Second}, "below the minimum"},
		{"break-glass forbidden", broker.RequestInput{BreakGlass: true}, "Break-glass access is not allowed"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.TeamID, tc.in.UserID, tc.in.Reason = team, alice, "a valid reason here"
			if tc.in.Resource == "" {
				tc.in.Resource = "prod-db"
			}
			if tc.in.Duration == 0 {
				tc.in.Duration = time.Hour
			}
			_, err := e.b.Submit(t.Context(), tc.in)
			if !errors.Is(err, broker.ErrRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a refusal containing %q", err, tc.want)
			}
			if n := e.countAction(t, audit.ActionRequestRejected); n != i+1 {
				t.Errorf("rejection events = %d, want %d", n, i+1)
			}
		})
	}
	if rs, _ := e.store.ListRequests(t.Context(), grants.RequestFilter{}); len(rs) != 0 {
		t.Errorf("refused submissions recorded %d requests", len(rs))
	}
}

func TestDuplicateExternalKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.submit(t, broker.RequestInput{ExternalKey: "slack:trigger:1"})
	_, err := e.b.Submit(t.Context(), broker.RequestInput{TeamID: team, UserID: alice, Resource: "prod-db", Duration: time.Hour, Reason: "again again", ExternalKey: "slack:trigger:1"})
	if !errors.Is(err, broker.ErrDuplicate) {
		t.Fatalf("err = %v, want ErrDuplicate", err)
	}
}

func TestBreakGlass(t *testing.T) {
	t.Parallel()
	res := prodDB()
	res.Policy.BreakGlass = true
	e := newEnv(t, res)
	r := e.submit(t, broker.RequestInput{BreakGlass: true, Reason: "primary is down, nobody answers"})
	e.process(t, r)
	if gs := e.grantsFor(t, r.ID); len(gs) != 1 {
		t.Fatalf("break-glass grants = %d", len(gs))
	}
	var loud bool
	for _, n := range e.notes.Notes("audit") {
		loud = loud || strings.HasPrefix(n.Text, "BREAK-GLASS")
	}
	if !loud {
		t.Error("break-glass not announced in the audit channel")
	}
}

func TestRecoverFinishesUndecidedRequests(t *testing.T) {
	t.Parallel()
	res := prodDB()
	res.Policy.MaxPendingPerPerson = 2 // alice has both requests pending when the "crash" comes
	e := newEnv(t, res)
	e.setOnCall(alice, time.Time{})
	r1 := e.submit(t, broker.RequestInput{ExternalKey: "k1"})
	r2 := e.submit(t, broker.RequestInput{ExternalKey: "k2", UserID: alice})
	e.process(t, r2) // r1 was recorded before a crash and never processed
	n, err := e.b.Recover(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v; want 1", n, err)
	}
	if len(e.grantsFor(t, r1.ID)) != 1 || len(e.allGrants(t)) != 2 {
		t.Fatal("recovered request not issued exactly once")
	}
	if n, _ := e.b.Recover(t.Context()); n != 0 {
		t.Errorf("second Recover did %d", n)
	}
}

func TestExtendDoneRevoke(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setOnCall(alice, time.Time{})
	r := e.submit(t, broker.RequestInput{})
	e.process(t, r)
	g := e.grantsFor(t, r.ID)[0]
	me := broker.Caller{TeamID: team, UserID: alice}
	ctx := t.Context()

	extend := func(user string, by time.Duration, reason string) error {
		r, err := e.b.SubmitExtension(ctx, broker.ExtensionInput{TeamID: team, UserID: user, GrantID: g.ID, By: by, Reason: reason})
		if err != nil {
			return err
		}
		return e.b.Process(ctx, r.ID)
	}
	if err := extend(alice, 30*time.Minute, "still debugging the lag"); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.store.GetGrant(ctx, g.ID); !got.ExpiresAt.Equal(g.ExpiresAt.Add(30 * time.Minute)) {
		t.Fatalf("after Extend: expires %v", got.ExpiresAt)
	}
	if err := extend(alice, 3*time.Hour, "much longer please"); !errors.Is(err, broker.ErrRefused) || !strings.Contains(err.Error(), "maximum of 4h") {
		t.Fatalf("Extend past max: %v", err)
	}
	if err := extend(bob, 30*time.Minute, "not mine to extend"); !errors.Is(err, broker.ErrRefused) {
		t.Fatalf("Extend by another: %v", err)
	}
	if _, err := e.b.Done(ctx, broker.Caller{TeamID: team, UserID: dave}, g.ID); !errors.Is(err, broker.ErrRefused) {
		t.Fatalf("Done by another: %v", err)
	}
	if _, err := e.b.Revoke(ctx, broker.Caller{TeamID: team, UserID: dave}, g.ID); !errors.Is(err, broker.ErrRefused) {
		t.Fatalf("Revoke by non-approver: %v", err)
	}
	if _, err := e.b.Revoke(ctx, broker.Caller{TeamID: team, UserID: alice}, "g_aaaaaaaaaaaaaaaa"); !errors.Is(err, broker.ErrRefused) {
		t.Fatalf("Revoke unknown: %v", err)
	}
	l, err := e.b.List(ctx, me)
	if err != nil || len(l.Grants) != 1 || l.Grants[0].ID != g.ID {
		t.Fatalf("List = %+v, %v", l, err)
	}
	out, err := e.b.Done(ctx, me, g.ID)
	if err != nil || out.State != grants.StateRevoking || out.RevokeCause != grants.CauseManual {
		t.Fatalf("Done = %+v, %v", out, err)
	}
	// An approver may revoke someone else's grant.
	r2 := e.submit(t, broker.RequestInput{})
	e.process(t, r2)
	g2 := e.grantsFor(t, r2.ID)[0]
	if out, err := e.b.Revoke(ctx, broker.Caller{TeamID: team, UserID: bob}, g2.ID); err != nil || out.State != grants.StateRevoking {
		t.Fatalf("approver Revoke = %+v, %v", out, err)
	}
	if n := e.countAction(t, audit.ActionRequestRejected); n != 5 {
		t.Errorf("rejections = %d, want 5", n)
	}
}

func TestReminderBeforeExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setOnCall(alice, time.Time{})
	r := e.submit(t, broker.RequestInput{})
	e.process(t, r)
	g := e.grantsFor(t, r.ID)[0]
	ctx := waitCtx(t)
	done := make(chan struct{})
	go func() { _ = e.b.Run(ctx); close(done) }()
	// The scheduler must have stopped before the store closes and its directory is removed
	// (t.Context is cancelled before cleanups run, and this cleanup runs before the store's).
	t.Cleanup(func() { <-done })
	if err := e.clock.BlockUntil(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// Step through the idle waits until five minutes before the end.
	for e.clock.Now().Before(g.ExpiresAt.Add(-5 * time.Minute)) {
		e.clock.Advance(time.Minute)
		if err := e.clock.BlockUntil(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.notes.WaitFor(ctx, func(ns []brokertest.Note) bool {
		for _, n := range ns {
			if n.Kind == "remind" {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	rem := e.notes.Notes("remind")
	if len(rem) != 1 || rem[0].Grant.ID != g.ID || rem[0].ExtendBy != 30*time.Minute || rem[0].Offer.Kind != broker.OfferExtend {
		t.Fatalf("reminders = %+v", rem)
	}
	// The button extends by the step; a second reminder comes for the new expiry only.
	if _, err := e.b.ExtendFromReminder(ctx, broker.ExtensionInput{TeamID: team, UserID: alice, GrantID: g.ID}); err != nil {
		t.Fatal(err)
	}
	if ng, _ := e.store.GetGrant(ctx, g.ID); !ng.ExpiresAt.Equal(g.ExpiresAt.Add(30 * time.Minute)) {
		t.Errorf("expiry after Extend button = %v", ng.ExpiresAt)
	}
}

func TestDecidePolicy(t *testing.T) {
	t.Parallel()
	end := start.Add(2 * time.Hour)
	on := broker.OnCallStatus{OnCall: true, Shifts: []broker.Shift{{EscalationPolicyID: "PABC123", End: end}}}
	off := broker.OnCallStatus{}
	mk := func(f func(*grants.Policy)) grants.Resource { r := prodDB(); f(&r.Policy); return r }
	cases := []struct {
		name      string
		res       grants.Resource
		st        broker.OnCallStatus
		err       error
		bg        bool
		want      broker.Path
		needed    int
		capAtWant time.Time
	}{
		{"on call auto", prodDB(), on, nil, false, broker.PathAutoApprove, 0, end},
		{"on call no cap", mk(func(p *grants.Policy) { p.CapToShift = false }), on, nil, false, broker.PathAutoApprove, 0, time.Time{}},
		{"off call", prodDB(), off, nil, false, broker.PathApproval, 1, time.Time{}},
		{"unknown is not on call", prodDB(), on, errors.New("pd down"), false, broker.PathApproval, 1, time.Time{}},
		{"on call without auto", mk(func(p *grants.Policy) { p.AutoApproveOnCall = false; p.MinApprovals = 2 }), on, nil, false, broker.PathApproval, 2, end},
		{"no approvers", mk(func(p *grants.Policy) { p.ApproverSlackUsers = nil }), off, nil, false, broker.PathReject, 0, time.Time{}},
		{"usergroup counts", mk(func(p *grants.Policy) { p.ApproverSlackUsers = nil; p.ApproverSlackUsergroup = "S1" }), off, nil, false, broker.PathApproval, 1, time.Time{}},
		{"break-glass forbidden", prodDB(), off, nil, true, broker.PathReject, 0, time.Time{}},
		{"break-glass allowed", mk(func(p *grants.Policy) { p.BreakGlass = true }), off, nil, true, broker.PathBreakGlass, 0, time.Time{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := broker.Decide(tc.res, tc.st, tc.err, tc.bg)
			if d.Path != tc.want || d.Needed != tc.needed || !d.CapAt.Equal(tc.capAtWant) || d.Reason == "" {
				t.Fatalf("Decide = %+v, want path %s needed %d cap %v", d, tc.want, tc.needed, tc.capAtWant)
			}
		})
	}
}

func TestCheckPolicy(t *testing.T) {
	t.Parallel()
	r := prodDB()
	r.Policy.MinApprovals = 3
	if err := broker.CheckPolicy(r); err == nil || !strings.Contains(err.Error(), "only 2 approvers") {
		t.Fatalf("CheckPolicy = %v", err)
	}
	r.Policy.ApproverSlackUsergroup = "S1"
	if err := broker.CheckPolicy(r); err != nil {
		t.Fatalf("with usergroup: %v", err)
	}
}

func TestStaticOnCallHonoursPolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.oncall.Set(alice,
		broker.Shift{EscalationPolicyID: "POTHER", Level: 1, Start: start.Add(-time.Hour)},
		broker.Shift{EscalationPolicyID: "PABC123", Level: 3, Start: start.Add(-time.Hour)},
		broker.Shift{EscalationPolicyID: "PABC123", Level: 1, Start: start.Add(time.Hour)},
	)
	pol := prodDB().Policy
	pol.OnCallLevels = []int{1, 2}
	st, err := e.oncall.Check(ctx, grants.Person{SlackUserID: alice}, pol)
	if err != nil || st.OnCall {
		t.Fatalf("other policy, wrong level or future shift counted: %+v %v", st, err)
	}
	e.oncall.Set(alice, broker.Shift{EscalationPolicyID: "PABC123", Level: 2, Start: start.Add(-time.Hour)})
	if st, _ := e.oncall.Check(ctx, grants.Person{SlackUserID: alice}, pol); !st.OnCall {
		t.Fatal("matching shift not counted")
	}
}

// TestConcurrentSubmitsGroupCommit: submissions that share transactions still get their own
// answers; a duplicate key in a batch fails only the duplicate.
func TestConcurrentSubmitsGroupCommit(t *testing.T) {
	t.Parallel()
	const keys = 40
	res := prodDB()
	res.Policy.MaxPendingPerPerson = 2 * keys // every distinct key (k… and u… below) is a new pending request of alice's
	e := newEnv(t, res)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, dup := 0, 0
	for i := range 2 * keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.b.Submit(t.Context(), broker.RequestInput{TeamID: team, UserID: alice, Resource: "prod-db",
				Duration: time.Hour, Reason: "load testing the group commit", ExternalKey: fmt.Sprintf("k%d", i%keys)})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, broker.ErrDuplicate):
				dup++
			default:
				t.Errorf("Submit: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok != keys || dup != keys {
		t.Fatalf("ok = %d, duplicates = %d; want %d each", ok, dup, keys)
	}
	rs, err := e.store.ListRequests(t.Context(), grants.RequestFilter{})
	if err != nil || len(rs) != keys {
		t.Fatalf("requests = %d, %v", len(rs), err)
	}
	if n := e.countAction(t, audit.ActionRequestCreated); n != keys {
		t.Errorf("request.created events = %d, want %d", n, keys)
	}
	// Without duplicates every batch commits whole.
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.b.Submit(t.Context(), broker.RequestInput{TeamID: team, UserID: alice, Resource: "prod-db",
				Duration: time.Hour, Reason: "load testing the group commit", ExternalKey: fmt.Sprintf("u%d", i)}); err != nil {
				t.Errorf("Submit: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := e.countAction(t, audit.ActionRequestCreated); n != 2*keys {
		t.Errorf("request.created events = %d, want %d", n, 2*keys)
	}
}

func TestRecoverRejectsStaleRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setOnCall(alice, time.Time{})
	r := e.submit(t, broker.RequestInput{})
	e.clock.Advance(11 * time.Minute)
	if n, err := e.b.Recover(t.Context()); err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v", n, err)
	}
	if got := e.request(t, r.ID); got.State != grants.RequestRejected || len(e.allGrants(t)) != 0 {
		t.Fatalf("stale request: state %s, %d grants; want rejected, none", got.State, len(e.allGrants(t)))
	}
	if tells := e.notes.Notes("tell"); len(tells) != 1 || !strings.Contains(tells[0].Text, "please ask again") {
		t.Errorf("tells = %+v", tells)
	}
}

func TestShiftEndingNowRejectsInsteadOfLingering(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setOnCall(alice, start.Add(30*time.Second)) // the cap leaves less than a minute
	r := e.submit(t, broker.RequestInput{})
	e.process(t, r)
	if got := e.request(t, r.ID); got.State != grants.RequestRejected || len(e.allGrants(t)) != 0 {
		t.Fatalf("state %s, %d grants; want rejected without a grant", got.State, len(e.allGrants(t)))
	}
	tells := e.notes.Notes("tell")
	if len(tells) != 1 || !strings.Contains(tells[0].Text, "could not be issued") {
		t.Errorf("tells = %+v", tells)
	}
	if n, _ := e.b.Recover(t.Context()); n != 0 {
		t.Errorf("Recover redid %d requests", n)
	}
}

func TestProviderFailureToldAndQueuedForRevocation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setOnCall(alice, time.Time{})
	e.prov.IssueErr = brokertest.ErrDown
	r := e.submit(t, broker.RequestInput{})
	e.process(t, r)
	gs := e.grantsFor(t, r.ID)
	if len(gs) != 1 || gs[0].State != grants.StateRevoking || gs[0].RevokeCause != grants.CauseIssueFailed {
		t.Fatalf("grants = %+v, want one revoking with cause issue_failed", gs)
	}
	if tells := e.notes.Notes("tell"); len(tells) != 1 || !strings.Contains(tells[0].Text, "could not be issued") {
		t.Errorf("tells = %+v", tells)
	}
	if len(e.notes.Notes("deliver")) != 0 {
		t.Error("delivered after a provider failure")
	}
}
