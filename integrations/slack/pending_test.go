package slack

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// withMaxPending sets prod-db's policy.max_pending_per_person and adds prod-aws (approvers
// Bob and Carol, default cap).
func withMaxPending(n int) func(*e2eOptions) {
	return func(o *e2eOptions) {
		db := prodDBResource()
		db.Policy.MaxPendingPerPerson = n
		aws := grants.Resource{Name: "prod-aws", Provider: "postgres", DefaultDuration: 30 * time.Minute, MaxDuration: 4 * time.Hour,
			Policy: grants.Policy{ApproverSlackUsers: []string{bob, carol}, MinApprovals: 1}}
		o.resources = []grants.Resource{db, aws}
	}
}

// pendingRejections returns the request.rejected events that refused a request for too many
// pending ones.
func (e *e2e) pendingRejections(t *testing.T) []audit.Event {
	t.Helper()
	evs, err := e.store.Search(context.Background(), audit.Query{Action: audit.ActionRequestRejected, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Event
	for _, ev := range evs {
		if ev.Evidence["pending_requests"] != "" {
			out = append(out, ev)
		}
	}
	return out
}

// approvalMessages counts the approval requests posted in the approvals channel.
func (e *e2e) approvalMessages() int { return len(e.messages(inChannel(approvalsChannel))) }

func TestPendingRequestCapped(t *testing.T) {
	t.Parallel()
	e := newE2E(t) // prod-db with the default cap: one pending request per person
	if a := e.command(t, alice, "prod-db 1h investigating slow queries"); !strings.Contains(a.text, "received") {
		t.Fatalf("first request ack = %q", a.text)
	}
	first := e.allRequests(t)[0]
	if e.approvalMessages() != 1 {
		t.Fatalf("approval messages after the first request = %d, want 1", e.approvalMessages())
	}
	second := e.command(t, alice, "prod-db 2h investigating slow queries again")
	if second.status != http.StatusOK {
		t.Fatalf("second request status = %d", second.status)
	}
	containsAll(t, "second request's answer", second.text, "already have a pending request for prod-db", first.ID)
	if n := len(e.allRequests(t)); n != 1 {
		t.Errorf("requests recorded = %d, want 1 (the refused one changes nothing)", n)
	}
	if e.approvalMessages() != 1 {
		t.Errorf("approval messages = %d, want 1: the refused request must ask nobody", e.approvalMessages())
	}
	rej := e.pendingRejections(t)
	if len(rej) != 1 {
		t.Fatalf("request.rejected events for the pending cap = %d, want 1", len(rej))
	}
	if rej[0].Evidence["pending_requests"] != first.ID || rej[0].Actor.ID != alice || rej[0].Resource != "prod-db" {
		t.Errorf("rejection event = %+v, want alice's, for prod-db, naming %s", rej[0], first.ID)
	}
}

func TestPendingCapRace(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	const n = 12
	acks := make([]ack, n)
	var wg sync.WaitGroup
	for i := range n {
		req := e.signed(CommandsPath, e.commandBody(alice, "prod-db 1h investigating slow queries"), e.clock.Now())
		wg.Add(1)
		go func() {
			defer wg.Done()
			acks[i] = e.do(t, req)
		}()
	}
	wg.Wait()
	e.settle(t)
	rs := e.allRequests(t)
	if len(rs) != 1 {
		t.Fatalf("%d concurrent requests under a cap of 1 recorded %d, want exactly 1", n, len(rs))
	}
	received, refused := 0, 0
	for _, a := range acks {
		switch {
		case strings.Contains(a.text, "received"):
			received++
		case strings.Contains(a.text, "already have a pending request") && strings.Contains(a.text, rs[0].ID):
			refused++
		default:
			t.Errorf("unexpected answer %q", a.text)
		}
	}
	if received != 1 || refused != n-1 {
		t.Errorf("answers: %d received, %d refused naming %s; want 1 and %d", received, refused, rs[0].ID, n-1)
	}
	if e.approvalMessages() != 1 {
		t.Errorf("approval messages = %d, want 1", e.approvalMessages())
	}
	if got := len(e.pendingRejections(t)); got != n-1 {
		t.Errorf("pending-cap rejection events = %d, want %d", got, n-1)
	}
}

func TestPendingCapConfigured(t *testing.T) {
	t.Parallel()
	e := newE2E(t, withMaxPending(3))
	for i := range 3 {
		if a := e.command(t, alice, "prod-db 1h investigating slow queries"); !strings.Contains(a.text, "received") {
			t.Fatalf("request %d of 3 ack = %q", i+1, a.text)
		}
	}
	var ids []string
	for _, r := range e.allRequests(t) {
		ids = append(ids, r.ID)
	}
	fourth := e.command(t, alice, "prod-db 1h investigating slow queries")
	containsAll(t, "fourth request's answer", fourth.text, append([]string{"already have 3 pending requests for prod-db", "at most 3"}, ids...)...)
	if n := len(e.allRequests(t)); n != 3 {
		t.Errorf("requests recorded = %d, want 3", n)
	}
	if e.approvalMessages() != 3 {
		t.Errorf("approval messages = %d, want 3", e.approvalMessages())
	}
	if rej := e.pendingRejections(t); len(rej) != 1 || len(strings.Split(rej[0].Evidence["pending_requests"], ",")) != 3 {
		t.Errorf("rejections = %+v, want one naming the 3 pending requests", rej)
	}
}

func TestPendingCapScope(t *testing.T) {
	t.Parallel()
	e := newE2E(t, withMaxPending(1))
	e.command(t, alice, "prod-db 1h investigating slow queries")
	first := e.allRequests(t)[0]
	if a := e.command(t, alice, "prod-db 1h investigating slow queries"); !strings.Contains(a.text, first.ID) {
		t.Fatalf("alice's second prod-db request = %q, want a refusal naming %s", a.text, first.ID)
	}
	// Another resource, and another person, are not blocked by alice's pending prod-db request.
	if a := e.command(t, alice, "prod-aws 30m reading the deploy logs"); !strings.Contains(a.text, "received") {
		t.Fatalf("alice's prod-aws request was blocked by her prod-db one: %q", a.text)
	}
	if a := e.command(t, bob, "prod-db 1h investigating slow queries"); !strings.Contains(a.text, "received") {
		t.Fatalf("bob's prod-db request was blocked by alice's: %q", a.text)
	}
	if e.approvalMessages() != 3 {
		t.Fatalf("approval messages = %d, want 3", e.approvalMessages())
	}
	// Once the first is decided, a new one is allowed.
	msgs := e.messages(inChannel(approvalsChannel))
	e.click(t, bob, ActionDeny, first.ID, e.fakeRef(msgs[0]))
	if r, _ := e.store.GetRequest(context.Background(), first.ID); r.State != grants.RequestDenied {
		t.Fatalf("first request state = %s, want denied", r.State)
	}
	if a := e.command(t, alice, "prod-db 1h investigating slow queries, take two"); !strings.Contains(a.text, "received") {
		t.Fatalf("after the first was decided, alice's new request = %q", a.text)
	}
	if e.approvalMessages() != 4 {
		t.Errorf("approval messages = %d, want 4", e.approvalMessages())
	}
}
