package slack

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/fixtures/pdfake"
	"github.com/accessbroker/accessbroker/fixtures/slackfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
	"github.com/accessbroker/accessbroker/integrations/pagerduty"
)

// Issue #11: a Slack user who is not in identities but whose Slack profile shows a listed
// person's email must never be resolved as that person.

const (
	mallory = "U0MALLORY"
)

// identityFixture is a directory on the real slack-go client against the fake Slack: Alice
// is listed with her PagerDuty id, Bob without one, Zed is listed in another workspace.
func identityFixture(t *testing.T, opts DirectoryOptions) (*slackfake.Server, *Directory) {
	t.Helper()
	fake, api, _ := newFakeSlack(t, nil)
	for _, u := range []slackfake.User{
		{ID: alice, Email: "alice@example.com"},
		{ID: bob, Email: "bob-alt@example.com"}, // Slack has another address than the list
		{ID: "U0ERIN", Email: "erin@example.com"},
		{ID: "U0UNCONF", Email: "unconfirmed@example.com", EmailUnconfirmed: true},
		{ID: "U0ZED", Email: "zed@example.com"},
		{ID: "U0MAL1", Email: "alice@example.com"},
		{ID: "U0MAL2", Email: "ALICE@Example.COM"},
		{ID: "U0MAL3", Email: "\uff41lice@example.com"}, // fullwidth ａ
		{ID: "U0MAL4", Email: "alice@example.com", EmailUnconfirmed: true},
		{ID: "U0MAL5", Email: "Bob@Example.com", Deleted: true},
	} {
		fake.AddUser(u)
	}
	dir, err := NewDirectory(api, testTeam, []Identity{
		{SlackUserID: alice, Email: "Alice@Example.com", PagerDutyID: "PALICE"},
		{SlackUserID: bob, Email: "bob@example.com"},
		{SlackTeamID: "T0OTHER", SlackUserID: "U0ZED", Email: "zed@example.com"},
	}, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	return fake, dir
}

func TestDirectoryNeverLendsAClaimedEmail(t *testing.T) {
	t.Parallel()
	cases := []struct {
		user, email, claimedBy, claimedTeam string
	}{
		{"U0MAL1", "alice@example.com", alice, testTeam},
		{"U0MAL2", "alice@example.com", alice, testTeam}, // other case
		{"U0MAL3", "alice@example.com", alice, testTeam}, // NFKC look-alike
		{"U0MAL4", "alice@example.com", alice, testTeam}, // unconfirmed: refused as a conflict all the same
		{"U0MAL5", "bob@example.com", bob, testTeam},     // deactivated
		// A Slack id is a person only with its team: U0ZED of T0OTHER is not U0ZED here.
		{"U0ZED", "zed@example.com", "U0ZED", "T0OTHER"},
	}
	for _, mode := range []bool{true, false} {
		_, dir := identityFixture(t, DirectoryOptions{ResolveByEmail: mode})
		for _, tc := range cases {
			p, err := dir.Resolve(t.Context(), testTeam, tc.user)
			var c *broker.IdentityConflict
			if !errors.As(err, &c) || !errors.Is(err, broker.ErrUnknownPerson) {
				t.Errorf("resolve_by_email=%v: Resolve(%s) = %+v, %v; want an identity conflict", mode, tc.user, p, err)
				continue
			}
			want := broker.IdentityConflict{Email: tc.email, ClaimedBySlackUser: tc.claimedBy, ClaimedByTeam: tc.claimedTeam,
				SlackUser: tc.user, SlackTeam: testTeam, Via: ResolvedByUsersInfo}
			if diff := cmp.Diff(want, *c); diff != "" {
				t.Errorf("resolve_by_email=%v: Resolve(%s) conflict (-want +got):\n%s", mode, tc.user, diff)
			}
			if !strings.Contains(err.Error(), "fix the identities entry") {
				t.Errorf("conflict does not say how to fix it: %v", err)
			}
		}
	}
}

func TestDirectoryResolveByEmailOff(t *testing.T) {
	t.Parallel()
	fake, dir := identityFixture(t, DirectoryOptions{ResolveByEmail: false})
	// Listed people are served without asking Slack.
	p, err := dir.Resolve(t.Context(), testTeam, alice)
	want := grants.Person{SlackTeamID: testTeam, SlackUserID: alice, Email: "alice@example.com", PagerDutyID: "PALICE", ResolvedBy: ResolvedByConfig}
	if err != nil || !cmp.Equal(p, want) {
		t.Fatalf("Resolve(alice) = %+v, %v", p, err)
	}
	if n := len(fake.Calls("users.info")); n != 0 {
		t.Errorf("a listed person cost %d users.info calls", n)
	}
	// Anyone else is refused, however good their Slack account, and whether Slack answers.
	for _, user := range []string{"U0ERIN", "U0UNCONF", "U0NOSUCH"} {
		_, err := dir.Resolve(t.Context(), testTeam, user)
		if !errors.Is(err, broker.ErrUnknownPerson) || !strings.Contains(err.Error(), "identities list") {
			t.Errorf("Resolve(%s) = %v, want a refusal naming the identities list", user, err)
		}
	}
	fake.FailNext("users.info", slackfake.Fault{Status: 500}, slackfake.Fault{Status: 500}, slackfake.Fault{Status: 500}, slackfake.Fault{Status: 500})
	if _, err := dir.Resolve(t.Context(), testTeam, "U0ERIN"); !errors.Is(err, broker.ErrUnknownPerson) || !strings.Contains(err.Error(), "resolve_by_email is off") {
		t.Errorf("Slack down, email resolution off: %v, want the not-listed refusal", err)
	}
}

func TestDirectoryByPagerDutySameRules(t *testing.T) {
	t.Parallel()
	type result struct {
		person   grants.Person
		conflict *broker.IdentityConflict
		refusal  string // substring of an ErrUnknownPerson refusal
	}
	cases := []struct {
		name          string
		byEmail       bool
		pdUser, email string
		want          result
		lookups       int // users.lookupByEmail calls
	}{
		{"listed PagerDuty id", true, "PALICE", "someone-else@example.com",
			result{person: grants.Person{SlackTeamID: testTeam, SlackUserID: alice, Email: "alice@example.com", PagerDutyID: "PALICE", ResolvedBy: ResolvedByConfig}}, 0},
		{"listed email, entry without PagerDuty id", true, "PBOB", "BOB@example.com",
			result{person: grants.Person{SlackTeamID: testTeam, SlackUserID: bob, Email: "bob@example.com", PagerDutyID: "PBOB", ResolvedBy: ResolvedByConfig}}, 0},
		{"listed email of another PagerDuty user", true, "PEVIL", "alice@example.com",
			result{conflict: &broker.IdentityConflict{Email: "alice@example.com", ClaimedBySlackUser: alice, ClaimedByTeam: testTeam, PagerDutyUser: "PEVIL", Via: "pagerduty"}}, 0},
		{"listed email as a look-alike", true, "PEVIL", "\uff41lice@Example.com",
			result{conflict: &broker.IdentityConflict{Email: "alice@example.com", ClaimedBySlackUser: alice, ClaimedByTeam: testTeam, PagerDutyUser: "PEVIL", Via: "pagerduty"}}, 0},
		{"confirmed Slack email", true, "PERIN", "Erin@Example.com",
			result{person: grants.Person{SlackTeamID: testTeam, SlackUserID: "U0ERIN", Email: "erin@example.com", PagerDutyID: "PERIN", ResolvedBy: ResolvedByEmailLookup}}, 1},
		{"unconfirmed Slack email", true, "PUNCONF", "unconfirmed@example.com", result{refusal: "not confirmed"}, 1},
		{"non-ASCII look-alike", true, "PCYR", "erin@ex\u0430mple.com", result{refusal: "outside ASCII"}, 0},
		{"Slack user listed with another email", true, "PBOBALT", "bob-alt@example.com", result{refusal: "gives the matching Slack user U0BOB the email bob@example.com"}, 1},
		{"nobody", true, "PNOBODY", "nobody@example.com", result{refusal: "no Slack user has the email"}, 1},
		{"no email", true, "PNOMAIL", "", result{refusal: "has no email"}, 0},
		{"off: confirmed Slack email", false, "PERIN", "erin@example.com", result{refusal: "resolve_by_email is off"}, 0},
		{"off: listed PagerDuty id", false, "PALICE", "",
			result{person: grants.Person{SlackTeamID: testTeam, SlackUserID: alice, Email: "alice@example.com", PagerDutyID: "PALICE", ResolvedBy: ResolvedByConfig}}, 0},
		{"off: listed email of another PagerDuty user", false, "PEVIL", "ALICE@example.com",
			result{conflict: &broker.IdentityConflict{Email: "alice@example.com", ClaimedBySlackUser: alice, ClaimedByTeam: testTeam, PagerDutyUser: "PEVIL", Via: "pagerduty"}}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake, dir := identityFixture(t, DirectoryOptions{ResolveByEmail: tc.byEmail})
			p, err := dir.ByPagerDuty(t.Context(), tc.pdUser, tc.email)
			var c *broker.IdentityConflict
			switch {
			case tc.want.conflict != nil:
				if !errors.As(err, &c) || !errors.Is(err, broker.ErrUnknownPerson) {
					t.Fatalf("ByPagerDuty = %+v, %v; want an identity conflict", p, err)
				}
				if diff := cmp.Diff(*tc.want.conflict, *c); diff != "" {
					t.Errorf("conflict (-want +got):\n%s", diff)
				}
			case tc.want.refusal != "":
				if !errors.Is(err, broker.ErrUnknownPerson) || errors.As(err, &c) || !strings.Contains(err.Error(), tc.want.refusal) {
					t.Fatalf("ByPagerDuty = %+v, %v; want a refusal mentioning %q", p, err, tc.want.refusal)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tc.want.person, p); diff != "" {
					t.Errorf("person (-want +got):\n%s", diff)
				}
			}
			if n := len(fake.Calls("users.lookupByEmail")); n != tc.lookups {
				t.Errorf("users.lookupByEmail calls = %d, want %d", n, tc.lookups)
			}
		})
	}
}

// withPagerDutyServer wires the real PagerDuty client, against pdfake, as the on-call port. Alice
// (PALICE, alice@example.com) is on call for PABC123, the policy of prod-db.
func withPagerDutyServer(t *testing.T, pd *pdfake.Server) func(*e2eOptions) {
	t.Helper()
	pd.AddUser(pdfake.User{ID: "PALICE", Name: "Alice", Email: "alice@example.com"})
	pd.SetOnCalls(pdfake.OnCall{UserID: "PALICE", EscalationPolicyID: "PABC123", EscalationPolicyName: "DB primary", Level: 1,
		ScheduleID: "PSCHED1", ScheduleName: "DB weekly", Start: t0.Add(-time.Hour), End: t0.Add(8 * time.Hour)})
	return func(o *e2eOptions) {
		o.oncall = func(clock grants.Clock) broker.OnCall {
			hc := httpclient.New(httpclient.Options{RetryMax: 1, WaitMin: time.Millisecond, WaitMax: time.Millisecond, ReturnLastResponse: true})
			c, err := pagerduty.New(pagerduty.Config{APIURL: pd.URL, Token: pdToken, HTTP: hc, Clock: clock})
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		// Alice is listed without her PagerDuty id: her on-call status is found by email,
		// exactly the lookup the impostor's copied email would have hit.
		o.identities = []Identity{{SlackUserID: alice, Email: "alice@example.com"}}
	}
}

// TestSlashCommandImpostorIsRefusedAndReported drives the whole Slack front door (signed
// slash command, real slack-go against slackfake, real PagerDuty client against pdfake):
// Mallory, unlisted, shows Alice's email in another case. She is refused, the conflict is
// audited with both ids and the email, the audit channel is told, PagerDuty is never asked
// about Alice for her, and nothing is granted; Alice herself is still served.
func TestSlashCommandImpostorIsRefusedAndReported(t *testing.T) {
	t.Parallel()
	for _, mode := range []bool{true, false} {
		pd := pdfake.New(pdfake.Options{Token: pdToken, Now: func() time.Time { return t0 }})
		t.Cleanup(pd.Close)
		opts := DirectoryOptions{ResolveByEmail: mode}
		e := newE2E(t, withPagerDutyServer(t, pd), func(o *e2eOptions) { o.dirOpts = &opts })
		e.fake.AddUser(slackfake.User{ID: mallory, Name: "mallory", Email: "Alice@EXAMPLE.com"})
		e.fake.AddChannel(opsChannel, alice, mallory)

		e.command(t, mallory, "prod-db 1h checking replication lag")
		if gs := e.allGrants(t); len(gs) != 0 {
			t.Fatalf("resolve_by_email=%v: the impostor got grants: %+v", mode, gs)
		}
		if n := pd.CallCount("GET", "/oncalls") + pd.CallCount("GET", "/users"); n != 0 {
			t.Errorf("resolve_by_email=%v: PagerDuty was asked %d times on the impostor's behalf", mode, n)
		}
		rs := e.allRequests(t)
		if len(rs) != 1 || rs[0].State != grants.RequestRejected || rs[0].Requester.Email != "" {
			t.Fatalf("resolve_by_email=%v: requests = %+v, want one rejected request with no email attributed", mode, rs)
		}
		evs, err := e.store.ReadEvents(context.Background(), 0, 1_000_000)
		if err != nil {
			t.Fatal(err)
		}
		var conflicts []audit.Event
		for _, ev := range evs {
			if ev.Action == audit.ActionIdentityConflict {
				conflicts = append(conflicts, ev)
			}
			if ev.Actor.Email == "alice@example.com" || ev.Evidence["person"] == "alice@example.com" {
				t.Errorf("resolve_by_email=%v: event %s (%s) blames Alice", mode, ev.ID, ev.Action)
			}
		}
		if len(conflicts) != 1 {
			t.Fatalf("resolve_by_email=%v: identity.conflict events = %d, want 1", mode, len(conflicts))
		}
		c := conflicts[0]
		wantEv := map[string]string{"email": "alice@example.com", "claimed_by_slack_user": alice, "claimed_by_slack_team": testTeam,
			"slack_user": mallory, "slack_team": testTeam, "via": ResolvedByUsersInfo}
		if diff := cmp.Diff(wantEv, c.Evidence); diff != "" || c.Actor.ID != mallory || c.RequestID != rs[0].ID {
			t.Errorf("resolve_by_email=%v: conflict event actor %+v request %s evidence (-want +got):\n%s", mode, c.Actor, c.RequestID, diff)
		}
		var alert bool
		for _, m := range e.messages(inChannel(auditChannel)) {
			txt := content(m)
			if strings.Contains(txt, "IDENTITY CONFLICT") && strings.Contains(txt, "<@"+mallory+">") && strings.Contains(txt, "<@"+alice+">") && strings.Contains(txt, "alice@example.com") {
				alert = true
			}
		}
		if !alert {
			t.Errorf("resolve_by_email=%v: the audit channel was not told: %+v", mode, e.messages(inChannel(auditChannel)))
		}
		var told bool
		for _, m := range e.fake.Messages() {
			if (m.User == mallory || m.ResponseURL != "") && strings.Contains(m.Text, "could not be identified") {
				told = true
			}
		}
		if !told {
			t.Errorf("resolve_by_email=%v: the impostor got no clear answer", mode)
		}

		// The real Alice is on call in PagerDuty and is served: the setup above would have
		// served the impostor as Alice had she been resolved by her copied email.
		e.command(t, alice, "prod-db 1h checking replication lag")
		gs := e.allGrants(t)
		if len(gs) != 1 || gs[0].Person.SlackUserID != alice {
			t.Fatalf("resolve_by_email=%v: Alice's grants = %+v", mode, gs)
		}
	}
}

// TestPageAckImpostorIsRefusedAndReported: a PagerDuty user who is not Alice's configured
// PagerDuty user but carries her email acknowledges a page (PagerDuty user → Slack user
// through the real Directory on slackfake, on-call through the real PagerDuty client on
// pdfake, where the impostor is on call). Nothing is granted to anyone, Alice is not messaged
// or blamed, the conflict is audited and reported. An unlisted engineer with a confirmed Slack
// email is still served through users.lookupByEmail.
func TestPageAckImpostorIsRefusedAndReported(t *testing.T) {
	t.Parallel()
	pd := pdfake.New(pdfake.Options{Token: pdToken, Now: func() time.Time { return t0 }})
	t.Cleanup(pd.Close)
	e := newE2E(t, withPagerDutyServer(t, pd), func(o *e2eOptions) {
		o.identities = []Identity{{SlackUserID: alice, Email: "alice@example.com", PagerDutyID: "PALICE"}}
	})
	e.fake.AddUser(slackfake.User{ID: "U0ERIN", Name: "erin", Email: "erin@example.com"})
	for _, u := range []pdfake.User{{ID: "PEVIL", Name: "Mallory", Email: "Alice@Example.com"}, {ID: "PERIN", Name: "Erin", Email: "erin@example.com"}} {
		pd.AddUser(u)
		pd.AddOnCall(pdfake.OnCall{UserID: u.ID, EscalationPolicyID: "PABC123", EscalationPolicyName: "DB primary", Level: 1,
			ScheduleID: "PSCHED1", ScheduleName: "DB weekly", Start: t0.Add(-time.Hour), End: t0.Add(8 * time.Hour)})
	}
	pages := broker.NewPages(e.b, []broker.AutoGrantRule{{PagerDutyServices: []string{"PSVC1"}, Resources: []string{"prod-db"}, Duration: time.Hour}}, e.dir, e.mgr)
	ackBy := func(event, pdUser, email string) broker.PageAck {
		return broker.PageAck{EventID: event, IncidentID: "PINC" + event, IncidentNumber: 7, Title: "replication lag", URL: "https://acme.pagerduty.com/incidents/PINC1",
			ServiceID: "PSVC1", AcknowledgerPDUserID: pdUser, AcknowledgerEmail: email, OccurredAt: t0}
	}

	if err := pages.Acknowledged(t.Context(), ackBy("EV1", "PEVIL", "Alice@Example.com")); err != nil {
		t.Fatal(err)
	}
	if gs := e.allGrants(t); len(gs) != 0 {
		t.Fatalf("the impostor's acknowledgement granted %+v", gs)
	}
	if dms := e.dms(alice); len(dms) != 0 {
		t.Errorf("Alice was messaged about someone else's acknowledgement: %+v", dms)
	}
	evs, err := e.store.ReadEvents(context.Background(), 0, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	var conflicts int
	for _, ev := range evs {
		if ev.Action != audit.ActionIdentityConflict {
			continue
		}
		conflicts++
		want := map[string]string{"email": "alice@example.com", "claimed_by_slack_user": alice, "claimed_by_slack_team": testTeam,
			"pagerduty_user": "PEVIL", "via": "pagerduty"}
		if diff := cmp.Diff(want, ev.Evidence); diff != "" || ev.Actor.ID != "PEVIL" {
			t.Errorf("conflict event actor %+v, evidence (-want +got):\n%s", ev.Actor, diff)
		}
	}
	if conflicts != 1 {
		t.Errorf("identity.conflict events = %d, want 1", conflicts)
	}
	var alert bool
	for _, m := range e.messages(inChannel(auditChannel)) {
		if txt := content(m); strings.Contains(txt, "IDENTITY CONFLICT") && strings.Contains(txt, "PagerDuty user PEVIL") && strings.Contains(txt, "<@"+alice+">") {
			alert = true
		}
	}
	if !alert {
		t.Errorf("the audit channel was not told: %+v", e.messages(inChannel(auditChannel)))
	}

	if err := pages.Acknowledged(t.Context(), ackBy("EV2", "PERIN", "erin@example.com")); err != nil {
		t.Fatal(err)
	}
	gs := e.allGrants(t)
	if len(gs) != 1 || gs[0].Person.SlackUserID != "U0ERIN" || gs[0].Person.ResolvedBy != ResolvedByEmailLookup {
		t.Fatalf("Erin's acknowledgement: grants %+v", gs)
	}
}

// TestButtonsMatchApproversByIDNotEmail: buttons follow the same rule. Mallory, whose Slack
// profile shows approver Bob's email, clicks Approve on Alice's request: refused, nothing
// changes; Bob's own click approves it. (This path never looked at emails; the test keeps it
// that way.)
func TestButtonsMatchApproversByIDNotEmail(t *testing.T) {
	t.Parallel()
	e := newE2E(t, func(o *e2eOptions) {
		o.identities = []Identity{{SlackUserID: alice, Email: "alice@example.com"}, {SlackUserID: bob, Email: "bob@example.com"}}
	})
	e.fake.AddUser(slackfake.User{ID: mallory, Name: "mallory", Email: "BOB@example.com"})
	e.fake.AddChannel(approvalsChannel, bob, carol, dave, mallory)
	e.command(t, alice, "prod-db 1h checking replication lag")
	ref := e.approvalRef(t)
	id := e.allRequests(t)[0].ID
	e.click(t, mallory, ActionApprove, id, ref)
	if gs := e.allGrants(t); len(gs) != 0 {
		t.Fatalf("an approval by Bob's email look-alike granted %+v", gs)
	}
	if r := e.allRequests(t)[0]; r.State != grants.RequestPending || len(r.Approvals) != 0 {
		t.Fatalf("request after the refused click: %+v", r)
	}
	e.click(t, bob, ActionApprove, id, ref)
	if gs := e.allGrants(t); len(gs) != 1 || gs[0].Person.SlackUserID != alice {
		t.Fatalf("Bob's approval: grants %+v", gs)
	}
}
