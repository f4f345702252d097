package slack

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/fixtures/slackfake"
	"github.com/accessbroker/accessbroker/grants"
)

func containsAll(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q:\n%s", what, sub, s)
		}
	}
}

func TestOnCallRequesterGetsCredential(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.onCall(alice)
	a := e.command(t, alice, "prod-db 1h checking replication lag")
	if a.status != http.StatusOK || !strings.Contains(a.text, "received") {
		t.Fatalf("ack = %+v", a)
	}
	gs := e.allGrants(t)
	if len(gs) != 1 || gs[0].State != grants.StateActive || gs[0].Person.SlackUserID != alice {
		t.Fatalf("grants = %+v", gs)
	}
	eph := e.ephemerals(alice)
	if len(eph) != 1 {
		t.Fatalf("ephemeral replies to alice = %d, want 1 (the credential)", len(eph))
	}
	containsAll(t, "credential message", content(eph[0]), "postgres://ab_", "secret-"+gs[0].ID, gs[0].ID, "14:00 UTC")
	if strings.Contains(eph[0].Text, "secret-") {
		t.Error("the notification fallback text holds the secret")
	}
	audits := e.messages(inChannel(auditChannel))
	if len(audits) != 1 || !strings.Contains(audits[0].Text, "Granted prod-db to alice@example.com") {
		t.Errorf("audit channel = %+v", audits)
	}
	if len(e.messages(inChannel(approvalsChannel))) != 0 {
		t.Error("an on-call request was sent to the approvers")
	}
	e.noSecretOutsideOwner(t, alice)
}

func TestOffCallApprovalThenCredential(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.command(t, alice, "prod-db 2h investigating slow queries")
	if len(e.allGrants(t)) != 0 {
		t.Fatal("granted without approval")
	}
	ref := e.approvalRef(t)
	ask := e.messages(inChannel(approvalsChannel))[0]
	containsAll(t, "approval request", content(ask), "<@U0ALICE>", "alice@example.com", "prod-db", "2h", "investigating slow queries",
		"Not on call", `"action_id":"approve"`, `"action_id":"deny"`, `"confirm"`)
	if eph := e.ephemerals(alice); len(eph) != 1 || !strings.Contains(eph[0].Text, "needs 1 approval") {
		t.Errorf("requester not told it waits for approval: %+v", eph)
	}

	if a := e.click(t, bob, ActionApprove, e.allRequests(t)[0].ID, ref); a.status != http.StatusOK {
		t.Fatalf("click ack = %+v", a)
	}
	gs := e.allGrants(t)
	if len(gs) != 1 || gs[0].State != grants.StateActive {
		t.Fatalf("grants after approval = %+v", gs)
	}
	updated := e.messages(inChannel(approvalsChannel))[0]
	if updated.Updates != 1 {
		t.Errorf("approval message updated %d times", updated.Updates)
	}
	containsAll(t, "updated approval message", content(updated), "Approved", "<@U0BOB>", gs[0].ID)
	if strings.Contains(string(updated.Blocks), `"action_id":"approve"`) {
		t.Error("decided message still has buttons")
	}
	dm := e.dms(alice)
	if len(dm) != 1 {
		t.Fatalf("alice DMs = %d, want the credential", len(dm))
	}
	containsAll(t, "credential DM", content(dm[0]), "secret-"+gs[0].ID)
	e.noSecretOutsideOwner(t, alice)
}

func TestSelfApprovalRefused(t *testing.T) {
	t.Parallel()
	e := newE2E(t, func(o *e2eOptions) {
		r := prodDBResource()
		r.Policy.ApproverSlackUsers = []string{alice, bob}
		o.resources = []grants.Resource{r}
	})
	e.command(t, alice, "prod-db 1h investigating slow queries")
	ref := e.approvalRef(t)
	e.click(t, alice, ActionApprove, e.allRequests(t)[0].ID, ref)
	if len(e.allGrants(t)) != 0 {
		t.Fatal("self-approval granted access")
	}
	eph := e.ephemerals(alice)
	if !strings.Contains(content(eph[len(eph)-1]), "cannot approve or deny your own request") {
		t.Errorf("alice not told: %+v", eph[len(eph)-1])
	}
	if e.messages(inChannel(approvalsChannel))[0].Updates != 0 {
		t.Error("a refused click updated the approval message")
	}
	if e.count(t, audit.ActionRequestRejected) != 1 {
		t.Error("no request.rejected event for self-approval")
	}
}

func TestNonApproverRefused(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.command(t, alice, "prod-db 1h investigating slow queries")
	ref := e.approvalRef(t)
	id := e.allRequests(t)[0].ID
	for _, action := range []string{ActionApprove, ActionDeny} {
		e.click(t, dave, action, id, ref)
	}
	if len(e.allGrants(t)) != 0 || e.allRequests(t)[0].State != grants.RequestPending {
		t.Fatal("a non-approver changed the request")
	}
	eph := e.ephemerals(dave)
	if len(eph) != 2 || !strings.Contains(content(eph[0]), "not an approver for prod-db") {
		t.Errorf("dave's replies = %+v", eph)
	}
}

func TestUsergroupApproverLookedUpLive(t *testing.T) {
	t.Parallel()
	e := newE2E(t, func(o *e2eOptions) {
		r := prodDBResource()
		r.Policy.ApproverSlackUsers = nil
		r.Policy.ApproverSlackUsergroup = "S0DBA"
		o.resources = []grants.Resource{r}
	})
	e.fake.SetUsergroup("S0DBA", dave)
	e.command(t, alice, "prod-db 1h investigating slow queries")
	ref := e.approvalRef(t)
	if !strings.Contains(content(e.messages(inChannel(approvalsChannel))[0]), "<!subteam^S0DBA>") {
		t.Error("approval request does not mention the usergroup")
	}
	e.fake.SetUsergroup("S0DBA", carol) // dave left the group
	e.click(t, dave, ActionApprove, e.allRequests(t)[0].ID, ref)
	if len(e.allGrants(t)) != 0 {
		t.Fatal("a former group member approved")
	}
	e.click(t, carol, ActionApprove, e.allRequests(t)[0].ID, ref)
	if len(e.allGrants(t)) != 1 {
		t.Fatal("a current group member could not approve")
	}
}

func TestDoubleClickOneGrant(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.prov.Delay = 20 * time.Millisecond // widen the race window
	e.command(t, alice, "prod-db 1h investigating slow queries")
	ref := e.approvalRef(t)
	id := e.allRequests(t)[0].ID
	var wg sync.WaitGroup
	for _, u := range []string{bob, bob, carol, carol} {
		body := e.clickBody(u, ActionApprove, id, ref)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if a := e.do(t, e.signed(InteractionsPath, body, e.clock.Now())); a.status != http.StatusOK {
				t.Errorf("click ack = %+v", a)
			}
		}()
	}
	wg.Wait()
	e.settle(t)
	if gs := e.allGrants(t); len(gs) != 1 {
		t.Fatalf("grants = %d, want exactly 1", len(gs))
	}
	if n := len(e.prov.Issued()); n != 1 {
		t.Fatalf("provider issued %d times", n)
	}
	var creds int
	for _, m := range e.dms(alice) {
		if strings.Contains(content(m), "secret-") {
			creds++
		}
	}
	if creds != 1 {
		t.Fatalf("credential DMs = %d, want 1", creds)
	}
	e.noSecretOutsideOwner(t, alice)
}

func TestDenyNoGrantRequesterTold(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.command(t, alice, "prod-db 1h investigating slow queries")
	ref := e.approvalRef(t)
	e.click(t, bob, ActionDeny, e.allRequests(t)[0].ID, ref)
	if len(e.allGrants(t)) != 0 || e.allRequests(t)[0].State != grants.RequestDenied {
		t.Fatal("deny did not end the request without a grant")
	}
	dm := e.dms(alice)
	if len(dm) != 1 || !strings.Contains(content(dm[0]), "was denied by <@U0BOB>") {
		t.Fatalf("alice DMs = %+v", dm)
	}
	containsAll(t, "updated approval message", content(e.messages(inChannel(approvalsChannel))[0]), "Denied", "<@U0BOB>")
	e.click(t, carol, ActionApprove, e.allRequests(t)[0].ID, ref)
	if len(e.allGrants(t)) != 0 {
		t.Fatal("approval after a denial granted access")
	}
	if eph := e.ephemerals(carol); len(eph) != 1 || !strings.Contains(content(eph[0]), "already decided: denied by <@U0BOB>") {
		t.Errorf("carol's reply = %+v", eph)
	}
}

func TestPendingRequestExpires(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.command(t, alice, "prod-db 1h investigating slow queries")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { _ = e.b.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done }) // stopped before the store closes
	if err := e.clock.BlockUntil(ctx, 1); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(61 * time.Minute)
	if _, err := e.fake.WaitFor(ctx, func(ms []slackfake.Message) bool {
		for _, m := range ms {
			if m.Channel == approvalsChannel && m.Updates > 0 && strings.Contains(content(m), "Expired") {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.fake.WaitFor(ctx, func([]slackfake.Message) bool {
		for _, m := range e.dms(alice) {
			if strings.Contains(content(m), "expired") {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal("requester not told of the expiry")
	}
	if st := e.allRequests(t)[0].State; st != grants.RequestExpired {
		t.Fatalf("state = %s", st)
	}
}

// TestGrammarErrors: each malformed command gets an ephemeral answer naming the problem and
// showing the usage, a request.rejected event, and nothing else.
func TestGrammarErrors(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.onCall(alice)
	cases := []struct{ text, want string }{
		{"prod-db", "missing duration"},
		{"prod-db 1h", "a reason is required"},
		{"prod-db 1h fix", "too short"},
		{"prod-db 0m checking replication lag", "is zero"},
		{"prod-db -30m checking replication lag", "is negative"},
		{"prod-db 30s checking replication lag", "below the minimum of 1m"},
		{"prod-db 2d checking replication lag", `unknown unit &quot;d&quot;`},
		{"prod-db 1.5h checking replication lag", "has a fraction"},
		{"prod-db 9999999h checking replication lag", "is absurd"},
		{"prod-db 5h checking replication lag", "over prod-db&#39;s maximum of 4h"},
		{"no-such-db 1h checking replication lag", "no resource named"},
		{"<!channel> 1h checking replication lag", "&lt;!channel&gt;"},
		{"revoke 42", "is not a grant id"},
		{"extend g_abcdefghijklmnop 30m", "a reason is required"},
		{"list all of it", "list takes no arguments"},
	}
	for i, tc := range cases {
		t.Run(tc.text, func(t *testing.T) {
			a := e.command(t, alice, tc.text)
			if a.status != http.StatusOK {
				t.Fatalf("status %d", a.status)
			}
			want := strings.NewReplacer("&quot;", `"`, "&#39;", "'").Replace(tc.want)
			if !strings.Contains(a.text, want) {
				t.Errorf("ack %q does not contain %q", a.text, want)
			}
			if !strings.Contains(a.text, "Usage") && !strings.Contains(a.text, "Commands:") {
				t.Errorf("ack shows no usage: %q", a.text)
			}
			if strings.Contains(a.text, "<!channel>") {
				t.Errorf("user text echoed unescaped: %q", a.text)
			}
			if n := e.count(t, audit.ActionRequestRejected); n != i+1 {
				t.Errorf("request.rejected events = %d, want %d", n, i+1)
			}
		})
	}
	if len(e.allGrants(t)) != 0 || len(e.allRequests(t)) != 0 || len(e.fake.Messages()) != 0 {
		t.Fatalf("malformed commands had effects: %d grants, %d requests, %d messages", len(e.allGrants(t)), len(e.allRequests(t)), len(e.fake.Messages()))
	}
}

func TestHelpListResources(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	containsAll(t, "help", e.command(t, alice, "help").text, "/access &lt;resource&gt; &lt;duration&gt; &lt;reason…&gt;", "Durations look like")
	containsAll(t, "resources", e.command(t, alice, "resources").text, "`prod-db`", "at most 4h", "<@U0BOB>")
	containsAll(t, "empty list", e.command(t, alice, "list").text, "no live grants")
	e.onCall(alice)
	e.command(t, alice, "prod-db 1h checking replication lag")
	g := e.allGrants(t)[0]
	containsAll(t, "list", e.command(t, alice, "list").text, g.ID, "prod-db", "until 14:00 UTC")
}

func TestUnauthenticatedRequestsRefused(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.onCall(alice)
	body := e.commandBody(alice, "prod-db 1h checking replication lag")
	now := e.clock.Now()
	unsigned := func() *http.Request {
		r, _ := http.NewRequest(http.MethodPost, e.srv.URL+CommandsPath, bytes.NewReader(body))
		return r
	}
	cases := map[string]*http.Request{
		"bad signature": func() *http.Request {
			r := e.signed(CommandsPath, body, now)
			r.Header.Set(HeaderSignature, SignatureHeader("wrong-secret", strconv.FormatInt(now.Unix(), 10), body))
			return r
		}(),
		"stale timestamp":  e.signed(CommandsPath, body, now.Add(-6*time.Minute)),
		"future timestamp": e.signed(CommandsPath, body, now.Add(6*time.Minute)),
		"missing headers":  unsigned(),
		"missing signature": func() *http.Request {
			r := e.signed(CommandsPath, body, now)
			r.Header.Del(HeaderSignature)
			return r
		}(),
		"body tampered": func() *http.Request {
			r := e.signed(CommandsPath, body, now)
			r.Body = http.NoBody
			r.ContentLength = 0
			return r
		}(),
		"oversized body": e.signed(CommandsPath, append(body, bytes.Repeat([]byte("&x=y"), DefaultMaxBody/4)...), now),
		"interaction bad signature": func() *http.Request {
			r := e.signed(InteractionsPath, body, now)
			r.Header.Set(HeaderSignature, "v0="+strings.Repeat("00", 32))
			return r
		}(),
	}
	for name, r := range cases {
		t.Run(name, func(t *testing.T) {
			a := e.do(t, r)
			if a.status != http.StatusUnauthorized {
				t.Fatalf("status = %d, want 401 (%s)", a.status, a.text)
			}
		})
	}
	e.settle(t)
	if len(e.allRequests(t)) != 0 || len(e.allGrants(t)) != 0 || len(e.fake.Messages()) != 0 || len(e.fake.Calls("")) != 0 {
		t.Fatal("an unauthenticated request had an effect")
	}
	// All from one address within a minute: one audit event, not one per request.
	if n := e.count(t, audit.ActionRequestRejected); n != 1 {
		t.Errorf("request.rejected events = %d, want 1 (rate-limited per source)", n)
	}
	e.clock.Advance(time.Minute)
	e.do(t, unsigned())
	if n := e.count(t, audit.ActionRequestRejected); n != 2 {
		t.Errorf("after a minute: request.rejected events = %d, want 2", n)
	}
}

func TestReplayCreatesNoSecondGrant(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.onCall(alice)
	body := e.commandBody(alice, "prod-db 1h checking replication lag")
	first := e.do(t, e.signed(CommandsPath, body, e.clock.Now()))
	e.settle(t)
	e.clock.Advance(2 * time.Minute) // still inside the 5-minute window
	again := e.signed(CommandsPath, body, e.clock.Now().Add(-2*time.Minute))
	second := e.do(t, again)
	e.settle(t)
	if !strings.Contains(first.text, "received") || !strings.Contains(second.text, "already received") {
		t.Fatalf("acks = %q, %q", first.text, second.text)
	}
	if len(e.allRequests(t)) != 1 || len(e.allGrants(t)) != 1 || len(e.prov.Issued()) != 1 {
		t.Fatalf("replay: %d requests, %d grants", len(e.allRequests(t)), len(e.allGrants(t)))
	}
}

// TestSlackRetriesDeliverOnce: Slack answers 429 with Retry-After, then 500, then accepts;
// the credential arrives exactly once, by response_url and by DM.
func TestSlackRetriesDeliverOnce(t *testing.T) {
	t.Parallel()
	t.Run("response_url", func(t *testing.T) {
		e := newE2E(t)
		e.onCall(alice)
		e.fake.FailNext(slackfake.ResponseURLMethod, slackfake.Fault{Status: 429, RetryAfter: 1}, slackfake.Fault{Status: 500})
		e.command(t, alice, "prod-db 1h checking replication lag")
		var creds int
		for _, m := range e.ephemerals(alice) {
			if strings.Contains(content(m), "secret-") {
				creds++
			}
		}
		if creds != 1 || len(e.fake.Calls(slackfake.ResponseURLMethod)) != 3 {
			t.Fatalf("credential ephemerals = %d after %d calls, want 1 after 3", creds, len(e.fake.Calls(slackfake.ResponseURLMethod)))
		}
		if g := e.allGrants(t)[0]; g.State != grants.StateActive {
			t.Fatalf("grant state = %s", g.State)
		}
	})
	t.Run("direct message", func(t *testing.T) {
		e := newE2E(t)
		e.command(t, alice, "prod-db 1h investigating slow queries")
		ref := e.approvalRef(t)
		calls := len(e.fake.Calls("chat.postMessage"))
		e.fake.FailNext("chat.postMessage", slackfake.Fault{Status: 429, RetryAfter: 1}, slackfake.Fault{Status: 500})
		e.click(t, bob, ActionApprove, e.allRequests(t)[0].ID, ref)
		var creds int
		for _, m := range e.dms(alice) {
			if strings.Contains(content(m), "secret-") {
				creds++
			}
		}
		if creds != 1 {
			t.Fatalf("credential DMs = %d, want 1", creds)
		}
		if got := len(e.fake.Calls("chat.postMessage")) - calls; got < 3 {
			t.Errorf("chat.postMessage calls = %d, want the 2 failures and the success", got)
		}
		if g := e.allGrants(t)[0]; g.State != grants.StateActive {
			t.Fatalf("grant state = %s", g.State)
		}
	})
}

func TestDMFailureRevokesWithoutChannelLeak(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.command(t, alice, "prod-db 1h investigating slow queries")
	ref := e.approvalRef(t)
	e.fake.FailNext("conversations.open", slackfake.Fault{Error: "user_not_found"})
	e.click(t, bob, ActionApprove, e.allRequests(t)[0].ID, ref)
	gs := e.allGrants(t)
	if len(gs) != 1 || gs[0].State != grants.StateRevoking || gs[0].RevokeCause != grants.CauseDeliveryFailed {
		t.Fatalf("grant = %+v, want revoking, cause delivery_failed", gs)
	}
	eph := e.ephemerals(alice)
	if last := eph[len(eph)-1]; !strings.Contains(content(last), "was revoked right away because the credential could not be delivered") {
		t.Errorf("alice not told why: %+v", last)
	}
	for _, m := range e.fake.Messages() {
		if strings.Contains(content(m), "secret-") {
			t.Errorf("credential posted somewhere after a failed DM: %+v", m)
		}
	}
	e.noSecretOutsideOwner(t, alice)
	containsAll(t, "audit channel", content(e.messages(inChannel(auditChannel))[len(e.messages(inChannel(auditChannel)))-1]), "could not be delivered")
}

func TestRevokedOwnerToldAndReminderExtends(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.onCall(alice)
	e.command(t, alice, "prod-db 1h checking replication lag")
	g := e.allGrants(t)[0]
	ctx := t.Context()

	// The reminder five minutes before the end, with an Extend button that works.
	e.clock.Set(g.ExpiresAt.Add(-5 * time.Minute))
	if _, err := e.b.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	dm := e.dms(alice)
	if len(dm) != 1 {
		t.Fatalf("reminder DMs = %d", len(dm))
	}
	containsAll(t, "reminder", content(dm[0]), "ends at *14:00 UTC*", `"action_id":"extend"`, "Extend by 30m")
	e.click(t, alice, ActionExtend, g.ID, e.fakeRef(dm[0]))
	ng, _ := e.store.GetGrant(ctx, g.ID)
	if !ng.ExpiresAt.Equal(g.ExpiresAt.Add(30 * time.Minute)) {
		t.Fatalf("expiry after Extend = %v", ng.ExpiresAt)
	}

	// The revoker ends it at expiry and the owner hears why.
	rev := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": e.prov}, e.clock, nil, grants.RevokerOptions{Observer: e.n})
	e.clock.Set(ng.ExpiresAt.Add(time.Second))
	if err := rev.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	final, _ := e.store.GetGrant(ctx, g.ID)
	if final.State != grants.StateRevoked {
		t.Fatalf("state = %s", final.State)
	}
	dm = e.dms(alice)
	containsAll(t, "revocation DM", content(dm[len(dm)-1]), "was revoked: it expired")
	audits := e.messages(inChannel(auditChannel))
	containsAll(t, "audit channel", content(audits[len(audits)-1]), "Revoked grant "+g.ID, "it expired")
}

func (e *e2e) fakeRef(m slackfake.Message) broker.MessageRef {
	return broker.MessageRef{Channel: m.Channel, TS: m.TS}
}

// crashAfterAck records requests but dies before deciding them.
type crashAfterAck struct{ Service }

func (crashAfterAck) Process(context.Context, string) error { return nil }

// TestRequestRecordedBeforeAckIsFinishedOnStart: the process stops right after answering
// Slack; on start, Recover decides the recorded request and delivers to the requester.
func TestRequestRecordedBeforeAckIsFinishedOnStart(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.onCall(alice)
	e.h.o.Service = crashAfterAck{e.b}
	a := e.command(t, alice, "prod-db 1h checking replication lag")
	if !strings.Contains(a.text, "received") {
		t.Fatalf("ack = %q", a.text)
	}
	rs := e.allRequests(t)
	if len(rs) != 1 || rs[0].State != grants.RequestPending || len(e.allGrants(t)) != 0 {
		t.Fatalf("before restart: %d requests (%v), %d grants", len(rs), rs, len(e.allGrants(t)))
	}
	restarted := broker.New(broker.Deps{Manager: e.mgr, Store: e.store, Clock: e.clock, Leases: e.store, Once: e.store, OnCall: e.oncall, Directory: mustDirectory(t, e), Notifier: e.n})
	n, err := restarted.Recover(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v", n, err)
	}
	gs := e.allGrants(t)
	if len(gs) != 1 || gs[0].RequestID != rs[0].ID || gs[0].State != grants.StateActive {
		t.Fatalf("after restart: grants %+v", gs)
	}
	eph := e.ephemerals(alice)
	if len(eph) != 1 || !strings.Contains(content(eph[0]), "secret-"+gs[0].ID) {
		t.Fatalf("credential not delivered after recovery: %+v", eph)
	}
}

func mustDirectory(t *testing.T, e *e2e) *Directory {
	t.Helper()
	api, err := NewClient(ClientOptions{Token: testToken, APIURL: e.fake.APIURL(), HTTPClient: http.DefaultClient})
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDirectory(api, testTeam, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestObserverAlertsAndSkipsOwnerlessCauses(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	g := grants.Grant{ID: "g_abcdefghijklmnop", Resource: "prod-db", Person: grants.Person{SlackTeamID: testTeam, SlackUserID: alice, Email: "alice@example.com"}, Attempts: 3}
	e.n.RevokeFailed(t.Context(), g, errors.New("postgres: connection refused"))
	audits := e.messages(inChannel(auditChannel))
	if len(audits) != 1 {
		t.Fatalf("audit messages = %d", len(audits))
	}
	containsAll(t, "alert", audits[0].Text, "ALERT", g.ID, "attempt 3", "connection refused")
	g.RevokeCause = grants.CauseDeliveryFailed
	e.n.GrantRevoked(t.Context(), g)
	if len(e.dms(alice)) != 0 {
		t.Error("owner DMed about a grant whose credential never reached them")
	}
	if len(e.messages(inChannel(auditChannel))) != 2 {
		t.Error("revocation not posted to the audit channel")
	}
}
