// Package storetest is the conformance suite every grants.Store implementation must pass.
// Run it from the implementation's tests:
//
//	storetest.Run(t, func(t *testing.T, clock *clocktest.Fake) grants.Store { … })
package storetest

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
)

// Factory returns a new, empty store that takes its time from clock. It registers its own
// cleanup with t.
type Factory func(t *testing.T, clock *clocktest.Fake) grants.Store

// Start is the fake clock's start time in every case.
var Start = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// Run runs every conformance case as a subtest.
func Run(t *testing.T, newStore Factory) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s grants.Store, clock *clocktest.Fake)
	}{
		{"GrantRoundTrip", testGrantRoundTrip},
		{"RequestRoundTrip", testRequestRoundTrip},
		{"StaleVersionConflicts", testStaleVersion},
		{"DuplicateIDConflicts", testDuplicateID},
		{"ExternalKeyUnique", testExternalKeyUnique},
		{"ChangeIsAtomic", testAtomic},
		{"ChangeWithoutEventRefused", testNoEvent},
		{"EventsAreChained", testChained},
		{"ListGrantsFilters", testListFilters},
		{"ClaimDueOrderAndLease", testClaimDue},
		{"ConcurrentClaimsDisjoint", testConcurrentClaims},
		{"RenewClaimsKeepsOnlyLiveOwnClaims", testRenewClaims},
		{"NextDueHonoursClaims", testNextDue},
		{"ManyUpdatesInOneChange", testManyUpdates},
		{"PendingCap", testPendingCap},
		{"PendingCapConcurrent", testPendingCapConcurrent},
		{"ConcurrentChangesEachGetTheirOwnAnswer", testConcurrentChanges},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock := clocktest.New(Start)
			s := newStore(t, clock)
			c.fn(t, s, clock)
		})
	}
}

// NewGrant returns an active grant for tests, expiring after d.
func NewGrant(now time.Time, resource string, d time.Duration) *grants.Grant {
	return &grants.Grant{
		ID: grants.NewID("g"), RequestID: grants.NewID("r"), Resource: resource, Provider: "fake",
		Person: grants.Person{SlackTeamID: "T1", SlackUserID: "U0ALICE", Email: "alice@example.com", ResolvedBy: "config"},
		State:  grants.StateActive, Reason: "checking replication lag",
		CreatedAt: now, IssuedAt: now, ExpiresAt: now.Add(d), DueAt: now.Add(d),
		Handle: grants.Handle{Key: "fake:" + resource + ":alice", Data: map[string]string{"role": "ab_alice"}},
	}
}

// Event returns an audit event for g.
func Event(now time.Time, action audit.Action, g *grants.Grant) *audit.Event {
	return grants.NewGrantEvent(now, audit.Actor{Kind: audit.ActorSystem, ID: "test"}, action, g, "test", nil)
}

// MustApply applies c or fails the test.
func MustApply(t *testing.T, s grants.Store, c *grants.Change) {
	t.Helper()
	if err := s.Apply(context.Background(), c); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// MustCreate writes g with a grant.issued event.
func MustCreate(t *testing.T, s grants.Store, now time.Time, g *grants.Grant) {
	t.Helper()
	MustApply(t, s, &grants.Change{Grants: []grants.GrantWrite{{Grant: g, Create: true}}, Events: []*audit.Event{Event(now, audit.ActionGrantIssued, g)}})
}

var grantCmp = cmp.Options{cmpopts.EquateEmpty()}

func testGrantRoundTrip(t *testing.T, s grants.Store, clock *clocktest.Fake) {
	ctx := context.Background()
	g := NewGrant(clock.Now(), "prod-db", time.Hour)
	g.IncidentID = "PINC1"
	MustCreate(t, s, clock.Now(), g)
	if g.Version != 1 {
		t.Fatalf("after create Version = %d, want 1", g.Version)
	}
	got, err := s.GetGrant(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(*g, got, grantCmp); diff != "" {
		t.Errorf("GetGrant mismatch (-want +got):\n%s", diff)
	}
	clock.Advance(time.Minute)
	got.State, got.RevokedAt, got.RevokeCause, got.Attempts, got.LastError = grants.StateRevoked, clock.Now(), grants.CauseManual, 2, "boom"
	got.AccessMissingAt = clock.Now().Add(-time.Second) // the drift mark is stored like every other column
	MustApply(t, s, &grants.Change{Grants: []grants.GrantWrite{{Grant: &got}}, Events: []*audit.Event{Event(clock.Now(), audit.ActionGrantRevoked, &got)}})
	again, err := s.GetGrant(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, again, grantCmp); diff != "" {
		t.Errorf("after update (-want +got):\n%s", diff)
	}
	if _, err := s.GetGrant(ctx, "g_missing"); !errors.Is(err, grants.ErrNotFound) {
		t.Errorf("GetGrant(missing) = %v, want ErrNotFound", err)
	}
}

func testRequestRoundTrip(t *testing.T, s grants.Store, clock *clocktest.Fake) {
	ctx := context.Background()
	now := clock.Now()
	r := &grants.Request{
		ID: grants.NewID("r"), Requester: grants.Person{SlackTeamID: "T1", SlackUserID: "U0BOB", Email: "bob@example.com"},
		Resource: "prod-db", Duration: 90 * time.Minute, Reason: "deploy rollback", Source: grants.SourceSlack,
		State: grants.RequestPending, Stage: grants.StageAwaitingApproval, Evidence: map[string]string{"on_call": "false"},
		ExternalKey: "slack:trigger:1", Notify: "https://hooks.slack.com/commands/T1/1/abc", CreatedAt: now, ExpiresAt: now.Add(time.Hour),
	}
	ev := &audit.Event{ID: grants.NewID("e"), Time: now, Actor: audit.Actor{Kind: audit.ActorUser, ID: "U0BOB"}, Action: audit.ActionRequestCreated, RequestID: r.ID}
	MustApply(t, s, &grants.Change{Requests: []grants.RequestWrite{{Request: r, Create: true}}, Events: []*audit.Event{ev}})
	got, err := s.GetRequest(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(*r, got, grantCmp); diff != "" {
		t.Errorf("GetRequest (-want +got):\n%s", diff)
	}
	got.Approvals = append(got.Approvals, grants.Approval{By: "U0LEAD", At: now, Approved: true})
	if err := got.Transition(grants.RequestApproved); err != nil {
		t.Fatal(err)
	}
	if err := got.Advance(grants.StageDecided); err != nil {
		t.Fatal(err)
	}
	got.DecidedAt = now
	ev2 := &audit.Event{ID: grants.NewID("e"), Time: now, Actor: audit.Actor{Kind: audit.ActorUser, ID: "U0LEAD"}, Action: audit.ActionRequestApproved, RequestID: r.ID}
	MustApply(t, s, &grants.Change{Requests: []grants.RequestWrite{{Request: &got}}, Events: []*audit.Event{ev2}})
	list, err := s.ListRequests(ctx, grants.RequestFilter{States: []grants.RequestState{grants.RequestApproved}})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != r.ID || len(list[0].Approvals) != 1 || list[0].Stage != grants.StageDecided {
		t.Errorf("ListRequests(approved) = %+v", list)
	}
}

func testStaleVersion(t *testing.T, s grants.Store, clock *clocktest.Fake) {
	ctx := context.Background()
	g := NewGrant(clock.Now(), "prod-db", time.Hour)
	MustCreate(t, s, clock.Now(), g)
	a, _ := s.GetGrant(ctx, g.ID)
	b, _ := s.GetGrant(ctx, g.ID)
	a.LastError = "first writer"
	MustApply(t, s, &grants.Change{Grants: []grants.GrantWrite{{Grant: &a}}, Events: []*audit.Event{Event(clock.Now(), audit.ActionGrantExtended, &a)}})
	b.LastError = "second writer"
	err := s.Apply(ctx, &grants.Change{Grants: []grants.GrantWrite{{Grant: &b}}, Events: []*audit.Event{Event(clock.Now(), audit.ActionGrantExtended, &b)}})
	if !errors.Is(err, grants.ErrConflict) {
		t.Fatalf("stale update = %v, want ErrConflict", err)
	}
	got, _ := s.GetGrant(ctx, g.ID)
	if got.LastError != "first writer" {
		t.Errorf("last error = %q, want the first writer's", got.LastError)
	}
	if n := countEvents(t, s); n != 2 {
		t.Errorf("events = %d, want 2 (the refused change must append none)", n)
	}
}

func testDuplicateID(t *testing.T, s grants.Store, clock *clocktest.Fake) {
	g := NewGrant(clock.Now(), "prod-db", time.Hour)
	MustCreate(t, s, clock.Now(), g)
	dup := *g
	dup.Version = 0
	err := s.Apply(context.Background(), &grants.Change{Grants: []grants.GrantWrite{{Grant: &dup, Create: true}}, Events: []*audit.Event{Event(clock.Now(), audit.ActionGrantIssued, &dup)}})
	if !errors.Is(err, grants.ErrConflict) {
		t.Fatalf("duplicate create = %v, want ErrConflict", err)
	}
}

func testExternalKeyUnique(t *testing.T, s grants.Store, clock *clocktest.Fake) {
	mk := func() *grants.Request {
		return &grants.Request{ID: grants.NewID("r"), Resource: "prod-db", Duration: time.Hour, Reason: "x", Source: grants.SourceSlack,
			State: grants.RequestPending, ExternalKey: "pagerduty:event:01ABC", CreatedAt: clock.Now()}
	}
	ev := func(r *grants.Request) []*audit.Event {
		return []*audit.Event{{ID: grants.NewID("e"), Time: clock.Now(), Actor: audit.Actor{Kind: audit.ActorPagerDuty, ID: "P1"}, Action: audit.ActionRequestCreated, RequestID: r.ID}}
	}
	r1 := mk()
	MustApply(t, s, &grants.Change{Requests: []grants.RequestWrite{{Request: r1, Create: true}}, Events: ev(r1)})
	r2 := mk()
	err := s.Apply(context.Background(), &grants.Change{Requests: []grants.RequestWrite{{Request: r2, Create: true}}, Events: ev(r2)})
	if !errors.Is(err, grants.ErrConflict) {
		t.Fatalf("second request with the same external key = %v, want ErrConflict", err)
	}
	// Requests without a key never collide.
	for range 2 {
		r := mk()
		r.ExternalKey = ""
		MustApply(t, s, &grants.Change{Requests: []grants.RequestWrite{{Request: r, Create: true}}, Events: ev(r)})
	}
}

func testAtomic(t *testing.T, s grants.Store, clock *clocktest.Fake) {
	ctx := context.Background()
	g := NewGrant(clock.Now(), "prod-db", time.Hour)
	MustCreate(t, s, clock.Now(), g)
	stale := *g
	stale.Version = 0
	fresh := NewGrant(clock.Now(), "prod-db", time.Hour)
	err := s.Apply(ctx, &grants.Change{
		Grants: []grants.GrantWrite{{Grant: fresh, Create: true}, {Grant: &stale}},
		Events: []*audit.Event{Event(clock.Now(), audit.ActionGrantIssued, fresh), Event(clock.Now(), audit.ActionGrantRevoked, &stale)},
	})
	if !errors.Is(err, grants.ErrConflict) {
		t.Fatalf("Apply = %v, want ErrConflict", err)
	}
	if _, err := s.GetGrant(ctx, fresh.ID); !errors.Is(err, grants.ErrNotFound) {
		t.Errorf("grant from the failed change exists (err=%v): the change was not atomic", err)
	}
	if fresh.Version != 0 {
		t.Errorf("failed Apply bumped Version to %d", fresh.Version)
	}
	if n := countEvents(t, s); n != 1 {
		t.Errorf("events = %d, want 1", n)
	}
}

func testNoEvent(t *testing.T, s grants.Store, clock *clocktest.Fake) {
	g := NewGrant(clock.Now(), "prod-db", time.Hour)
	if err := s.Apply(context.Background(), &grants.Change{Grants: []grants.GrantWrite{{Grant: g, Create: true}}}); err == nil {
		t.Fatal("Apply without audit events succeeded; want refusal")
	}
	if _, err := s.GetGrant(context.Background(), g.ID); !errors.Is(err, grants.ErrNotFound) {
		t.Errorf("grant written without its audit event")
	}
}

func testChained(t *testing.T, s grants.Store, clock *clocktest.Fake) {
	var all []*audit.Event
	for i := range 5 {
		g := NewGrant(clock.Now(), fmt.Sprintf("r%d", i), time.Hour)
		e1, e2 := Event(clock.Now(), audit.ActionGrantIssuing, g), Event(clock.Now(), audit.ActionGrantIssued, g)
		MustApply(t, s, &grants.Change{Grants: []grants.GrantWrite{{Grant: g, Create: true}}, Events: []*audit.Event{e1, e2}})
		all = append(all, e1, e2)
		clock.Advance(time.Second)
	}
	prev := audit.Genesis
	for i, e := range all {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d Seq = %d", i, e.Seq)
		}
		want, err := audit.Next(prev, *e)
		if err != nil {
			t.Fatal(err)
		}
		if e.PrevHash != prev || e.Hash != want {
			t.Fatalf("event %d not chained: prev %s hash %s want %s", e.Seq, e.PrevHash, e.Hash, want)
		}
		prev = e.Hash
	}
}

func testListFilters(t *testing.T, s grants.Store, clock *clocktest.Fake) {
	ctx := context.Background()
	a := NewGrant(clock.Now(), "prod-db", time.Hour)
	a.IncidentID = "PINC1"
	clock.Advance(time.Second)
	b := NewGrant(clock.Now(), "prod-aws", time.Hour)
	b.State = grants.StateRevoked
	b.Person.SlackUserID = "U0BOB"
	MustCreate(t, s, clock.Now(), a)
	MustCreate(t, s, clock.Now(), b)
	ids := func(gs []grants.Grant) []string {
		var out []string
		for _, g := range gs {
			out = append(out, g.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    grants.GrantFilter
		want []string
	}{
		{"all newest first", grants.GrantFilter{}, []string{b.ID, a.ID}},
		{"state", grants.GrantFilter{States: []grants.State{grants.StateActive}}, []string{a.ID}},
		{"resource", grants.GrantFilter{Resource: "prod-aws"}, []string{b.ID}},
		{"slack user", grants.GrantFilter{SlackUser: "U0BOB"}, []string{b.ID}},
		{"incident", grants.GrantFilter{IncidentID: "PINC1"}, []string{a.ID}},
		{"handle key", grants.GrantFilter{HandleKey: a.Handle.Key}, []string{a.ID}},
		{"request", grants.GrantFilter{RequestID: b.RequestID}, []string{b.ID}},
		{"limit", grants.GrantFilter{Limit: 1}, []string{b.ID}},
	} {
		got, err := s.ListGrants(ctx, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, ids(got)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

func testClaimDue(t *testing.T, s grants.Store, clock *clocktest.Fake) {
	ctx := context.Background()
	now := clock.Now()
	late := NewGrant(now, "a", 2*time.Minute)
	early := NewGrant(now, "b", time.Minute)
	future := NewGrant(now, "c", time.Hour)
	done := NewGrant(now, "d", time.Minute)
	done.State = grants.StateRevoked
	for _, g := range []*grants.Grant{late, early, future, done} {
		MustCreate(t, s, now, g)
	}
	clock.Advance(3 * time.Minute)
	got, err := s.ClaimDue(ctx, "i1", clock.Now(), 10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != early.ID || got[1].ID != late.ID {
		t.Fatalf("claimed %v, want [early late] oldest first", got)
	}
	if got[0].ClaimedBy != "i1" || !got[0].ClaimedTo.Equal(clock.Now().Add(time.Minute).Truncate(time.Millisecond)) {
		t.Errorf("claim = %s until %s", got[0].ClaimedBy, got[0].ClaimedTo)
	}
	if again, _ := s.ClaimDue(ctx, "i2", clock.Now(), 10, time.Minute); len(again) != 0 {
		t.Errorf("claimed twice while the lease holds: %v", again)
	}
	clock.Advance(time.Minute)
	again, err := s.ClaimDue(ctx, "i2", clock.Now(), 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 1 || again[0].ID != early.ID {
		t.Errorf("after the lease lapsed, claimed %v; want early (limit 1)", again)
	}
	// The claim's version is current: the claimer can write the outcome.
	g := again[0]
	g.State = grants.StateRevoked
	MustApply(t, s, &grants.Change{Grants: []grants.GrantWrite{{Grant: &g}}, Events: []*audit.Event{Event(clock.Now(), audit.ActionGrantRevoked, &g)}})
}

func testRenewClaims(t *testing.T, s grants.Store, clock *clocktest.Fake) {
	ctx := context.Background()
	now := clock.Now()
	mine, lapsed, theirs := NewGrant(now, "a", time.Minute), NewGrant(now, "b", 90*time.Second), NewGrant(now, "c", 100*time.Second)
	for _, g := range []*grants.Grant{mine, lapsed, theirs} {
		MustCreate(t, s, now, g)
	}
	clock.Advance(2 * time.Minute)
	got, err := s.ClaimDue(ctx, "i1", clock.Now(), 2, time.Minute) // mine and lapsed, oldest first
	if err != nil || len(got) != 2 || got[0].ID != mine.ID || got[1].ID != lapsed.ID {
		t.Fatalf("claim: %v, %v", got, err)
	}
	claimedLapsed := got[1]
	if got, err := s.ClaimDue(ctx, "i2", clock.Now(), 1, time.Hour); err != nil || len(got) != 1 || got[0].ID != theirs.ID {
		t.Fatalf("i2 claims theirs: %v, %v", got, err)
	}
	// "lapsed" is let go: its lease runs out before i1 renews.
	clock.Advance(30 * time.Second)
	n, err := s.RenewClaims(ctx, "i1", []string{got[0].ID}, clock.Now(), clock.Now().Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("renew mine = %d, %v; want 1", n, err)
	}
	clock.Advance(45 * time.Second) // 75 s after the claim: mine renewed, lapsed not
	n, err = s.RenewClaims(ctx, "i1", []string{got[0].ID, claimedLapsed.ID, theirs.ID, "g_nonexistent0000"}, clock.Now(), clock.Now().Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("renew mine, lapsed, theirs, unknown = %d, %v; want 1 (mine)", n, err)
	}
	again, err := s.ClaimDue(ctx, "i3", clock.Now(), 10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 1 || again[0].ID != claimedLapsed.ID {
		t.Fatalf("after renewal, another owner claimed %v; want only the lapsed one", again)
	}
	// The renewal kept the claimer's version current: it can write the outcome.
	g := got[0]
	g.State = grants.StateRevoked
	MustApply(t, s, &grants.Change{Grants: []grants.GrantWrite{{Grant: &g}}, Events: []*audit.Event{Event(clock.Now(), audit.ActionGrantRevoked, &g)}})
	if n, err := s.RenewClaims(ctx, "i1", []string{g.ID}, clock.Now(), clock.Now().Add(time.Minute)); err != nil || n != 0 {
		t.Errorf("renewed a revoked grant: %d, %v", n, err)
	}
}

func testConcurrentClaims(t *testing.T, s grants.Store, clock *clocktest.Fake) {
	ctx := context.Background()
	const n = 200
	now := clock.Now()
	c := &grants.Change{}
	for i := range n {
		g := NewGrant(now, fmt.Sprintf("r%d", i), time.Minute)
		c.Grants = append(c.Grants, grants.GrantWrite{Grant: g, Create: true})
		c.Events = append(c.Events, Event(now, audit.ActionGrantIssued, g))
	}
	MustApply(t, s, c)
	clock.Advance(2 * time.Minute)
	var mu sync.Mutex
	seen := map[string]string{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			owner := fmt.Sprintf("w%d", w)
			for {
				got, err := s.ClaimDue(ctx, owner, clock.Now(), 7, time.Hour)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, g := range got {
					if prev, dup := seen[g.ID]; dup {
						t.Errorf("grant %s claimed by %s and %s", g.ID, prev, owner)
					}
					seen[g.ID] = owner
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("claimed %d grants, want %d", len(seen), n)
	}
}

func testNextDue(t *testing.T, s grants.Store, clock *clocktest.Fake) {
	ctx := context.Background()
	if _, ok, err := s.NextDue(ctx); err != nil || ok {
		t.Fatalf("NextDue on empty store = ok %v, err %v", ok, err)
	}
	g := NewGrant(clock.Now(), "a", time.Minute)
	MustCreate(t, s, clock.Now(), g)
	next, ok, err := s.NextDue(ctx)
	if err != nil || !ok || !next.Equal(g.ExpiresAt) {
		t.Fatalf("NextDue = %v %v %v, want %v", next, ok, err, g.ExpiresAt)
	}
	clock.Advance(2 * time.Minute)
	if _, err := s.ClaimDue(ctx, "i1", clock.Now(), 10, 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	next, _, _ = s.NextDue(ctx)
	if want := clock.Now().Add(5 * time.Minute).Truncate(time.Millisecond); !next.Equal(want) {
		t.Errorf("NextDue with a claimed grant = %v, want the lease end %v", next, want)
	}
}

// testManyUpdates writes more grants in one change than a store may batch in one statement,
// with one stale version among them (nothing may be written), then all current.
func testManyUpdates(t *testing.T, s grants.Store, clock *clocktest.Fake) {
	ctx := context.Background()
	const n = 75
	now := clock.Now()
	c := &grants.Change{}
	var gs []*grants.Grant
	for i := range n {
		g := NewGrant(now, fmt.Sprintf("r%d", i), time.Minute)
		gs = append(gs, g)
		c.Grants = append(c.Grants, grants.GrantWrite{Grant: g, Create: true})
		c.Events = append(c.Events, Event(now, audit.ActionGrantIssued, g))
	}
	MustApply(t, s, c)
	update := func(stale int) error {
		c := &grants.Change{}
		for i, g := range gs {
			cp := *g
			cp.State, cp.RevokedAt, cp.RevokeCause, cp.LastError = grants.StateRevoked, clock.Now(), grants.CauseExpired, fmt.Sprintf("done %d", i)
			cp.AccessMissingAt = now.Add(time.Duration(i+1) * time.Millisecond)
			if i == stale {
				cp.Version--
			}
			c.Grants = append(c.Grants, grants.GrantWrite{Grant: &cp})
			c.Events = append(c.Events, Event(clock.Now(), audit.ActionGrantRevoked, &cp))
		}
		return s.Apply(ctx, c)
	}
	for _, stale := range []int{5, 70} { // early in a batch, and among the stragglers
		if err := update(stale); !errors.Is(err, grants.ErrConflict) {
			t.Fatalf("change with grant %d stale among %d = %v, want ErrConflict", stale, n, err)
		}
		if got, _ := s.ListGrants(ctx, grants.GrantFilter{States: []grants.State{grants.StateRevoked}}); len(got) != 0 {
			t.Fatalf("a refused change revoked %d grants", len(got))
		}
	}
	if err := update(-1); err != nil {
		t.Fatal(err)
	}
	got, _ := s.ListGrants(ctx, grants.GrantFilter{States: []grants.State{grants.StateRevoked}})
	if len(got) != n {
		t.Fatalf("revoked %d grants, want %d", len(got), n)
	}
	for _, g := range got {
		if g.Version != 2 || !strings.HasPrefix(g.LastError, "done ") || g.AccessMissingAt.IsZero() {
			t.Fatalf("grant %s: version %d, last error %q, access missing at %v", g.ID, g.Version, g.LastError, g.AccessMissingAt)
		}
	}
	if n := countEvents(t, s); n != 2*75 {
		t.Errorf("events = %d, want %d", n, 2*75)
	}
}

// countEvents counts the audit events through the store's audit reader, when it has one.
func countEvents(t *testing.T, s grants.Store) int {
	t.Helper()
	r, ok := s.(audit.Reader)
	if !ok {
		t.Skip("store does not implement audit.Reader")
	}
	n := 0
	var after int64
	for {
		evs, err := r.ReadEvents(context.Background(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return n
		}
		n += len(evs)
		after = evs[len(evs)-1].Seq
	}
}

// pendingRequest returns a new pending request by team/user for resource, expiring in an hour.
func pendingRequest(now time.Time, team, user, resource string) *grants.Request {
	return &grants.Request{ID: grants.NewID("r"), Requester: grants.Person{SlackTeamID: team, SlackUserID: user},
		Resource: resource, Duration: time.Hour, Reason: "x", Source: grants.SourceSlack, State: grants.RequestPending,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
}

// createCapped creates r under a pending cap of max, with its request.created event.
func createCapped(s grants.Store, now time.Time, max int, rs ...*grants.Request) error {
	c := &grants.Change{}
	for _, r := range rs {
		c.Requests = append(c.Requests, grants.RequestWrite{Request: r, Create: true, MaxPending: max})
		c.Events = append(c.Events, &audit.Event{ID: grants.NewID("e"), Time: now, Actor: audit.Actor{Kind: audit.ActorUser, ID: r.Requester.SlackUserID},
			Action: audit.ActionRequestCreated, RequestID: r.ID, Resource: r.Resource})
	}
	return s.Apply(context.Background(), c)
}

func testPendingCap(t *testing.T, s grants.Store, clock *clocktest.Fake) {
	ctx := context.Background()
	now := clock.Now()
	first, second := pendingRequest(now, "T1", "U0BOB", "prod-db"), pendingRequest(now.Add(time.Millisecond), "T1", "U0BOB", "prod-db")
	for _, r := range []*grants.Request{first, second} {
		if err := createCapped(s, now, 2, r); err != nil {
			t.Fatalf("request within the cap of 2: %v", err)
		}
	}
	third := pendingRequest(now, "T1", "U0BOB", "prod-db")
	err := createCapped(s, now, 2, third)
	var pl *grants.PendingLimitError
	if !errors.As(err, &pl) || !errors.Is(err, grants.ErrPendingLimit) {
		t.Fatalf("third pending request under a cap of 2 = %v, want a *PendingLimitError", err)
	}
	if diff := cmp.Diff([]string{first.ID, second.ID}, pl.Pending); diff != "" {
		t.Errorf("PendingLimitError.Pending (-want +got):\n%s", diff)
	}
	if _, err := s.GetRequest(ctx, third.ID); !errors.Is(err, grants.ErrNotFound) {
		t.Errorf("the refused request was written: %v", err)
	}
	if n := countEvents(t, s); n != 2 {
		t.Errorf("events = %d, want 2 (the refused change appends none)", n)
	}
	// Others are not blocked: another resource, another person, the same user id in another team.
	for _, r := range []*grants.Request{pendingRequest(now, "T1", "U0BOB", "prod-aws"), pendingRequest(now, "T1", "U0ALICE", "prod-db"),
		pendingRequest(now, "T2", "U0BOB", "prod-db")} {
		if err := createCapped(s, now, 2, r); err != nil {
			t.Errorf("request %s/%s for %s blocked by another's pending ones: %v", r.Requester.SlackTeamID, r.Requester.SlackUserID, r.Resource, err)
		}
	}
	// Two new ones in one change count each other.
	if err := createCapped(s, now, 2, pendingRequest(now, "T1", "U0CAROL", "prod-db"), pendingRequest(now, "T1", "U0CAROL", "prod-db"),
		pendingRequest(now, "T1", "U0CAROL", "prod-db")); !errors.Is(err, grants.ErrPendingLimit) {
		t.Errorf("three new pending requests in one change under a cap of 2 = %v, want ErrPendingLimit", err)
	}
	// A decided request no longer counts, nor does one past its expiry.
	got, err := s.GetRequest(ctx, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Transition(grants.RequestDenied); err != nil {
		t.Fatal(err)
	}
	MustApply(t, s, &grants.Change{Requests: []grants.RequestWrite{{Request: &got}}, Events: []*audit.Event{{ID: grants.NewID("e"), Time: now,
		Actor: audit.Actor{Kind: audit.ActorUser, ID: "U0LEAD"}, Action: audit.ActionRequestDenied, RequestID: got.ID}}})
	if err := createCapped(s, now, 2, pendingRequest(now, "T1", "U0BOB", "prod-db")); err != nil {
		t.Fatalf("after one was decided, a new request within the cap = %v", err)
	}
	if err := createCapped(s, now, 2, pendingRequest(now, "T1", "U0BOB", "prod-db")); !errors.Is(err, grants.ErrPendingLimit) {
		t.Fatalf("at the cap again = %v, want ErrPendingLimit", err)
	}
	clock.Advance(time.Hour)
	if err := createCapped(s, clock.Now(), 2, pendingRequest(clock.Now(), "T1", "U0BOB", "prod-db")); err != nil {
		t.Fatalf("once the pending ones are past their expiry, a new request = %v", err)
	}
}

func testPendingCapConcurrent(t *testing.T, s grants.Store, clock *clocktest.Fake) {
	const n, max = 12, 3
	now := clock.Now()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = createCapped(s, now, max, pendingRequest(now, "T1", "U0BOB", "prod-db"))
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, grants.ErrPendingLimit):
			t.Errorf("concurrent capped create: %v", err)
		}
	}
	if ok != max {
		t.Errorf("%d concurrent requests under a cap of %d: %d written, want exactly %d", n, max, ok, max)
	}
	list, err := s.ListRequests(context.Background(), grants.RequestFilter{States: []grants.RequestState{grants.RequestPending}, SlackUser: "U0BOB"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != max {
		t.Errorf("pending requests stored = %d, want %d", len(list), max)
	}
}

// testConcurrentChanges: many callers at once (the store may commit them together), two
// for each grant from the same version: for each grant exactly one wins, the other gets
// ErrConflict and wrote nothing, every winner's copy has the stored version, and the chain
// holds exactly the winners' events, in order.
func testConcurrentChanges(t *testing.T, s grants.Store, clock *clocktest.Fake) {
	ctx := context.Background()
	const n = 24
	gs := make([]*grants.Grant, n)
	for i := range gs {
		gs[i] = NewGrant(clock.Now(), "prod-db", time.Hour)
		MustCreate(t, s, clock.Now(), gs[i])
	}
	type outcome struct {
		g   *grants.Grant
		err error
	}
	out := make([]outcome, 2*n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range out {
		g := *gs[i/2]
		g.LastError = fmt.Sprintf("writer %d", i)
		wg.Go(func() {
			<-start
			err := s.Apply(ctx, &grants.Change{Grants: []grants.GrantWrite{{Grant: &g}}, Events: []*audit.Event{Event(clock.Now(), audit.ActionGrantExtended, &g)}})
			out[i] = outcome{&g, err}
		})
	}
	close(start)
	wg.Wait()
	wins := 0
	for i := 0; i < len(out); i += 2 {
		a, b := out[i], out[i+1]
		if (a.err == nil) == (b.err == nil) {
			t.Errorf("grant %d: errors %v and %v; want exactly one winner", i/2, a.err, b.err)
			continue
		}
		win, lose := a, b
		if a.err != nil {
			win, lose = b, a
		}
		wins++
		if !errors.Is(lose.err, grants.ErrConflict) {
			t.Errorf("grant %d: the loser got %v, want ErrConflict", i/2, lose.err)
		}
		got, err := s.GetGrant(ctx, win.g.ID)
		if err != nil || got.LastError != win.g.LastError || got.Version != win.g.Version {
			t.Errorf("grant %d stored %q v%d (%v); the winner wrote %q and holds v%d", i/2, got.LastError, got.Version, err, win.g.LastError, win.g.Version)
		}
	}
	if want := n + wins; countEvents(t, s) != want {
		t.Errorf("events = %d, want %d (the creations and one per winner)", countEvents(t, s), want)
	}
	if r, ok := s.(audit.Reader); ok {
		pub, _, _ := ed25519.GenerateKey(nil) // no checkpoints: the chain alone is verified
		res, err := audit.Verify(ctx, r, pub, audit.VerifyOptions{})
		if err != nil || !res.OK || res.Events != int64(n+wins) {
			t.Errorf("audit verify: %+v, %v", res, err)
		}
	}
}
