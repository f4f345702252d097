package slack

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

// Issue #11 part 2: an extension is a decision under the same policy as a request. These
// tests drive the real slack-go client against slackfake and the real PagerDuty client
// against pdfake, through signed slash commands and button clicks.

// grant returns the grant as stored now.
func (e *e2e) grant(t testing.TB, id string) grants.Grant {
	t.Helper()
	g, err := e.store.GetGrant(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// lastEvent returns the newest audit event with action a.
func (e *e2e) lastEvent(t testing.TB, a audit.Action) audit.Event {
	t.Helper()
	evs, err := e.store.ReadEvents(context.Background(), 0, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Action == a {
			return evs[i]
		}
	}
	t.Fatalf("no %s event", a)
	return audit.Event{}
}

// extensions returns the recorded extension requests, newest first.
func (e *e2e) extensions(t testing.TB) []grants.Request {
	t.Helper()
	var out []grants.Request
	for _, r := range e.allRequests(t) {
		if _, ok := broker.ExtensionOf(r); ok {
			out = append(out, r)
		}
	}
	return out
}

// lastEphemeral is the newest private answer to user.
func (e *e2e) lastEphemeral(t testing.TB, user string) string {
	t.Helper()
	eph := e.ephemerals(user)
	if len(eph) == 0 {
		t.Fatalf("%s got no private answer", user)
	}
	return content(eph[len(eph)-1])
}

// issueOnCall gives alice a 1h prod-db grant while she is on call until shiftEnd.
func (e *e2e) issueOnCall(t testing.TB, shiftEnd time.Time, text string) grants.Grant {
	t.Helper()
	e.shiftUntil(alice, shiftEnd)
	e.command(t, alice, text)
	gs := e.allGrants(t)
	if len(gs) != 1 || gs[0].State != grants.StateActive {
		t.Fatalf("grants = %+v", gs)
	}
	return gs[0]
}

// TestExtendOnCallCappedToShiftEnd: an on-call owner is auto-approved and the extension stops
// at the end of the shift (cap_to_shift); once the grant reaches it, a further extension is
// refused with the reason. Before the fix the owner got the full hour, past the shift.
func TestExtendOnCallCappedToShiftEnd(t *testing.T) {
	t.Parallel()
	e := newE2E(t, withPagerDuty)
	shiftEnd := t0.Add(90 * time.Minute) // 14:30
	g := e.issueOnCall(t, shiftEnd, "prod-db 1h checking replication lag")
	if !g.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("grant ends %s", g.ExpiresAt)
	}
	e.pd.ResetCalls()

	a := e.command(t, alice, "extend "+g.ID+" 1h still chasing the lag")
	containsAll(t, "ack", a.text, "to extend grant", g.ID)
	if got := e.grant(t, g.ID); !got.ExpiresAt.Equal(shiftEnd) {
		t.Fatalf("extended to %s, want the shift end %s", got.ExpiresAt, shiftEnd)
	}
	if n := e.pd.CallCount(http.MethodGet, "/oncalls"); n == 0 {
		t.Error("the extension was decided without asking PagerDuty who is on call")
	}
	containsAll(t, "owner's answer", e.lastEphemeral(t, alice), "now ends at 14:30 UTC", "capped at the end of your on-call shift")
	ev := e.lastEvent(t, audit.ActionGrantExtended)
	for k, want := range map[string]string{"kind": "extend", "path": string(broker.PathAutoApprove), "on_call": "true",
		"not_after": "2026-03-02T14:30:00.000Z", "old_expires_at": "2026-03-02T14:00:00.000Z", "expires_at": "2026-03-02T14:30:00.000Z"} {
		if ev.Evidence[k] != want {
			t.Errorf("grant.extended evidence %s = %q, want %q (all: %v)", k, ev.Evidence[k], want, ev.Evidence)
		}
	}
	if ext := e.extensions(t); len(ext) != 1 || ext[0].State != grants.RequestApproved || ev.Evidence["extension_request"] != ext[0].ID || ev.RequestID != g.RequestID {
		t.Fatalf("extension requests = %+v (event request %s)", ext, ev.RequestID)
	}

	// At the shift end already: refused, recorded, nothing changes.
	e.command(t, alice, "extend "+g.ID+" 30m still chasing the lag")
	containsAll(t, "second answer", e.lastEphemeral(t, alice), "caps grants to the end of your on-call shift", "cannot be extended")
	if got := e.grant(t, g.ID); !got.ExpiresAt.Equal(shiftEnd) {
		t.Fatalf("refused extension moved the end to %s", got.ExpiresAt)
	}
	states := map[grants.RequestState]int{}
	for _, r := range e.extensions(t) {
		states[r.State]++
	}
	if states[grants.RequestApproved] != 1 || states[grants.RequestRejected] != 1 || len(states) != 2 {
		t.Fatalf("extension request states = %v, want one approved and one rejected", states)
	}
}

// TestOffCallExtensionNeedsApprovers: off call, the extension goes to the approvers with the
// same buttons and rules as a request (N-of-M, never the owner, only approvers) and applies
// only when the last approval is in. Before the fix the owner turned a 30-minute grant into
// 3.5 hours with nobody's approval.
func TestOffCallExtensionNeedsApprovers(t *testing.T) {
	t.Parallel()
	res := prodDBResource()
	res.Policy.MinApprovals = 2
	e := newE2E(t, withPagerDuty, func(o *e2eOptions) { o.resources = []grants.Resource{res} })
	g := e.issueOnCall(t, t0.Add(8*time.Hour), "prod-db 30m checking replication lag")
	e.shiftUntil(alice, time.Time{}) // the shift was handed over
	end := g.ExpiresAt

	e.command(t, alice, "extend "+g.ID+" 3h need much longer now")
	if got := e.grant(t, g.ID); !got.ExpiresAt.Equal(end) {
		t.Fatalf("extended to %s without approval", got.ExpiresAt)
	}
	containsAll(t, "owner's answer", e.lastEphemeral(t, alice), "needs 2 approval(s)", "extend grant "+g.ID)
	ref := e.approvalRef(t)
	ask := e.messages(inChannel(approvalsChannel))[0]
	containsAll(t, "approval request", content(ask), "Extension request: prod-db", "Extends grant `"+g.ID+"`", "*Extend by*\\n3h",
		"need much longer now", "Not on call", `"action_id":"approve"`, `"action_id":"deny"`)
	ext := e.extensions(t)
	if len(ext) != 1 || ext[0].State != grants.RequestPending {
		t.Fatalf("extension requests = %+v", ext)
	}
	id := ext[0].ID

	rejected := e.count(t, audit.ActionRequestRejected)
	e.click(t, alice, ActionApprove, id, ref) // no self-approval
	e.click(t, dave, ActionApprove, id, ref)  // not an approver
	if n := e.count(t, audit.ActionRequestRejected); n != rejected+2 {
		t.Errorf("rejections = %d, want %d", n, rejected+2)
	}
	e.click(t, bob, ActionApprove, id, ref)
	if got := e.grant(t, g.ID); !got.ExpiresAt.Equal(end) {
		t.Fatalf("extended after 1 of 2 approvals: %s", got.ExpiresAt)
	}
	containsAll(t, "progress", content(e.messages(inChannel(approvalsChannel))[0]), "Approved so far by <@U0BOB> (1 of 2)")

	e.click(t, carol, ActionApprove, id, ref)
	got := e.grant(t, g.ID)
	if want := end.Add(3 * time.Hour); !got.ExpiresAt.Equal(want) {
		t.Fatalf("after 2 of 2: ends %s, want %s", got.ExpiresAt, want)
	}
	containsAll(t, "decided approval message", content(e.messages(inChannel(approvalsChannel))[0]), "Approved", "<@U0BOB>, <@U0CAROL>", g.ID, "16:30 UTC")
	dm := e.dms(alice)
	containsAll(t, "owner's DM", content(dm[len(dm)-1]), "now ends at 16:30 UTC", "approved by <@U0BOB>, <@U0CAROL>")
	ev := e.lastEvent(t, audit.ActionGrantExtended)
	if ev.Evidence["approvers"] != "U0BOB,U0CAROL" || ev.Evidence["path"] != string(broker.PathApproval) || ev.Actor.ID != carol || ev.Evidence["extension_request"] != id {
		t.Errorf("grant.extended = %+v", ev)
	}
	checked := e.lastEvent(t, audit.ActionOnCallChecked)
	if checked.RequestID != id || checked.Evidence["on_call"] != "false" || checked.GrantID != g.ID {
		t.Errorf("on-call evidence of the extension = %+v", checked)
	}
	// A second approval click after the decision extends nothing more.
	e.click(t, carol, ActionApprove, id, ref)
	if again := e.grant(t, g.ID); !again.ExpiresAt.Equal(got.ExpiresAt) {
		t.Errorf("a late click moved the end to %s", again.ExpiresAt)
	}
}

// TestScheduledEarlyEndOnlyApproversUndo: once the incident is resolved and the grant's end
// brought forward, the owner (even on call) cannot undo it: the reminder offers nothing and
// says why, the owner's extension waits for an approver, and the approver's decision is
// recorded as an override. Before the fix the owner's extension silently cancelled the
// scheduled end.
func TestScheduledEarlyEndOnlyApproversUndo(t *testing.T) {
	t.Parallel()
	e := newE2E(t, withPagerDuty)
	g := e.issueOnCall(t, t0.Add(8*time.Hour), "prod-db 1h checking replication lag")
	ctx := t.Context()
	e.clock.Set(t0.Add(20 * time.Minute))
	early := t0.Add(30 * time.Minute)
	if _, err := e.mgr.EndBy(ctx, g.ID, early, grants.CauseIncidentResolved, grants.SystemActor(), "incident #42 resolved; access ends after a 10m grace period"); err != nil {
		t.Fatal(err)
	}

	e.clock.Set(early.Add(-5 * time.Minute))
	if _, err := e.b.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	dm := e.dms(alice)
	if len(dm) != 1 {
		t.Fatalf("reminders = %d", len(dm))
	}
	containsAll(t, "reminder", content(dm[0]), "ends at *13:30 UTC*", "ends early because the incident it was granted for was resolved", "only an approver can extend it")
	if strings.Contains(content(dm[0]), `"action_id":"extend"`) {
		t.Error("the reminder offers an extension the owner may not have")
	}

	e.command(t, alice, "extend "+g.ID+" 30m the incident reopened")
	if got := e.grant(t, g.ID); !got.ExpiresAt.Equal(early) || got.RevokeCause != grants.CauseIncidentResolved {
		t.Fatalf("the owner undid the scheduled end: ends %s cause %q", got.ExpiresAt, got.RevokeCause)
	}
	containsAll(t, "owner's answer", e.lastEphemeral(t, alice), "needs 1 approval(s)", "scheduled to end early")
	ask := e.messages(inChannel(approvalsChannel))
	if len(ask) != 1 {
		t.Fatalf("approval messages = %d", len(ask))
	}
	containsAll(t, "approval request", content(ask[0]), "Extension request: prod-db", "*Override*", "incident it was granted for was resolved", "On call")
	ext := e.extensions(t)
	if len(ext) != 1 || ext[0].Evidence["scheduled_end"] != string(grants.CauseIncidentResolved) {
		t.Fatalf("extension requests = %+v", ext)
	}

	e.click(t, bob, ActionApprove, ext[0].ID, e.fakeRef(ask[0]))
	got := e.grant(t, g.ID)
	if want := early.Add(30 * time.Minute); !got.ExpiresAt.Equal(want) || got.RevokeCause != "" {
		t.Fatalf("after the approver's override: ends %s cause %q, want %s and no cause", got.ExpiresAt, got.RevokeCause, want)
	}
	ev := e.lastEvent(t, audit.ActionGrantExtended)
	if ev.Evidence["override"] != string(grants.CauseIncidentResolved) || ev.Evidence["approvers"] != bob || ev.Actor.ID != bob {
		t.Errorf("grant.extended = %+v", ev)
	}
	audits := e.messages(inChannel(auditChannel))
	containsAll(t, "audit channel", content(audits[len(audits)-1]), "OVERRIDE", "incident_resolved", g.ID)
}

// TestReminderOffersWhatThePolicyAllows: the reminder's button is what the policy would
// decide (on call: the step, capped to the shift end; off call: a request to the approvers),
// and clicking it is decided again under the policy. Before the fix every reminder offered
// "Extend by 30m" and the click extended at once.
func TestReminderOffersWhatThePolicyAllows(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		shiftEnd  time.Time // at reminder and click time; zero: off call
		button    string
		note      string
		extendsTo time.Time // zero: not extended, asked the approvers
	}{
		"on call":            {shiftEnd: t0.Add(8 * time.Hour), button: "Extend by 30m", note: "You are on call", extendsTo: t0.Add(90 * time.Minute)},
		"shift ends soon":    {shiftEnd: t0.Add(80 * time.Minute), button: "Extend by 20m", note: "up to the end of your shift at 14:20 UTC", extendsTo: t0.Add(80 * time.Minute)},
		"off call":           {button: "Request 30m more", note: "More time needs 1 approval(s)"},
		"shift ends with it": {shiftEnd: t0.Add(time.Hour), note: "caps grants to the end of your on-call shift (14:00 UTC)"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newE2E(t, withPagerDuty)
			g := e.issueOnCall(t, t0.Add(8*time.Hour), "prod-db 1h checking replication lag")
			e.clock.Set(g.ExpiresAt.Add(-5 * time.Minute))
			e.shiftUntil(alice, tc.shiftEnd)
			if _, err := e.b.Tick(t.Context()); err != nil {
				t.Fatal(err)
			}
			dm := e.dms(alice)
			if len(dm) != 1 {
				t.Fatalf("reminders = %d", len(dm))
			}
			rem := content(dm[0])
			containsAll(t, "reminder", rem, tc.note)
			if tc.button == "" {
				if strings.Contains(rem, `"action_id":"extend"`) {
					t.Fatalf("reminder offers an extension: %s", rem)
				}
				return
			}
			containsAll(t, "reminder", rem, tc.button, `"action_id":"extend"`)
			e.click(t, alice, ActionExtend, g.ID, e.fakeRef(dm[0]))
			got := e.grant(t, g.ID)
			if tc.extendsTo.IsZero() {
				if !got.ExpiresAt.Equal(g.ExpiresAt) {
					t.Fatalf("off-call click extended to %s without approval", got.ExpiresAt)
				}
				containsAll(t, "approval request", content(e.messages(inChannel(approvalsChannel))[0]), "Extension request", "Extend by*\\n30m")
				return
			}
			if !got.ExpiresAt.Equal(tc.extendsTo) {
				t.Fatalf("after the click: ends %s, want %s", got.ExpiresAt, tc.extendsTo)
			}
		})
	}
}

// TestExtendBadInputChangesNothing: each mistake gets a clear answer in the acknowledgement,
// records a request.rejected event, and changes neither the grant nor the requests.
func TestExtendBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	e := newE2E(t, withPagerDuty)
	g := e.issueOnCall(t, t0.Add(8*time.Hour), "prod-db 1h checking replication lag")
	other := e.issueOther(t)
	cases := []struct {
		name, user, text, want string
	}{
		{"unknown grant", alice, "extend g_aaaaaaaaaaaaaaaa 30m still chasing the lag", "There is no grant g_aaaaaaaaaaaaaaaa"},
		{"not the owner", bob, "extend " + g.ID + " 30m still chasing the lag", "is not yours; only its owner may ask to extend it"},
		{"past the maximum", alice, "extend " + g.ID + " 4h still chasing the lag", "would pass prod-db's maximum of 4h counted from its start (latest end 17:00 UTC); ask for 3h or less"},
		{"zero duration", alice, "extend " + g.ID + " 0m still chasing the lag", "is zero"},
		{"reason too short", alice, "extend " + g.ID + " 30m lag", "too short"},
		{"grant ended", alice, "extend " + other + " 30m still chasing the lag", "is revoking and can no longer be extended"},
	}
	for i, tc := range cases {
		before := e.count(t, audit.ActionRequestRejected)
		a := e.command(t, tc.user, tc.text)
		if !strings.Contains(a.text, ":no_entry:") || !strings.Contains(a.text, tc.want) {
			t.Errorf("%s: ack = %q, want it to say %q", tc.name, a.text, tc.want)
		}
		if n := e.count(t, audit.ActionRequestRejected); n != before+1 {
			t.Errorf("%s: rejections %d → %d, want one more", tc.name, before, n)
		}
		if got := e.grant(t, g.ID); !got.ExpiresAt.Equal(g.ExpiresAt) || got.State != grants.StateActive {
			t.Fatalf("%s (case %d) changed the grant: %+v", tc.name, i, got)
		}
		if ext := e.extensions(t); len(ext) != 0 {
			t.Fatalf("%s recorded an extension request: %+v", tc.name, ext)
		}
	}
}

// issueOther gives alice a second grant and ends it, returning its id.
func (e *e2e) issueOther(t testing.TB) string {
	t.Helper()
	e.command(t, alice, "prod-db 30m second look at the replica")
	var id string
	for _, g := range e.allGrants(t) {
		if g.Reason == "second look at the replica" {
			id = g.ID
		}
	}
	if id == "" {
		t.Fatal("no second grant")
	}
	e.command(t, alice, "done "+id)
	return id
}
