package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/broker/brokertest"
	"github.com/accessbroker/accessbroker/fixtures/pdfake"
	slackfixtures "github.com/accessbroker/accessbroker/fixtures/slack"
	"github.com/accessbroker/accessbroker/fixtures/slackfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
	"github.com/accessbroker/accessbroker/integrations/pagerduty"
)

// Cast: Alice asks; Bob and Carol approve prod-db; Dave is a colleague who may not approve;
// Gus is a guest account.
const (
	alice = "U0ALICE"
	bob   = "U0BOB"
	carol = "U0CAROL"
	dave  = "U0DAVE"
	gus   = "U0GUEST"

	approvalsChannel = "C0APPROVALS"
	auditChannel     = "C0AUDIT"
	opsChannel       = "C0OPS"
	signingSecret    = "8f742231b10e8888abcd99yyyzzz85a5"
)

var t0 = time.Date(2026, 3, 2, 13, 0, 0, 0, time.UTC)

func prodDBResource() grants.Resource {
	return grants.Resource{
		Name: "prod-db", Provider: "postgres", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour,
		Policy: grants.Policy{
			OnCallEscalationPolicies: []string{"PABC123"}, AutoApproveOnCall: true,
			ApproverSlackUsers: []string{bob, carol}, MinApprovals: 1, CapToShift: true,
		},
	}
}

// e2e is the whole Slack front door wired as cmd wires it: the real slack-go client (through
// the retrying HTTP client) against the fake Slack, the broker and grants.Manager on SQLite,
// and the handler behind an httptest server receiving requests signed as Slack signs them.
type e2e struct {
	clock  *clocktest.Fake
	fake   *slackfake.Server
	store  *sqlstore.Store
	mgr    *grants.Manager
	prov   *brokertest.Provider
	oncall *brokertest.StaticOnCall
	pd     *pdfake.Server // with withPagerDuty: the fake PagerDuty the on-call checks ask
	dir    *Directory
	b      *broker.Broker
	n      *Notifier
	h      *Handler
	srv    *httptest.Server
	trig   atomic.Int64
	urls   sync.Map // response_url → the user it was issued to
}

// responseURL returns a fresh response_url issued to user.
func (e *e2e) responseURL(user string) string {
	u := e.fake.NewResponseURL()
	e.urls.Store(u, user)
	return u
}

type e2eOptions struct {
	resources []grants.Resource
	logger    *slog.Logger
	pagerduty bool
	// identities and dirOpts replace the directory's configuration (default: Alice listed,
	// email resolution on).
	identities []Identity
	dirOpts    *DirectoryOptions
	// oncall, given the test's clock, replaces the static on-call table (e.g. with the
	// PagerDuty client against pdfake).
	oncall func(grants.Clock) broker.OnCall
	// reviewers, when set, serve the summary's review button (broker.Reviews, views.open).
	reviewers []string
}

// withPagerDuty checks on-call status with the real PagerDuty client (go-pagerduty through
// the retrying HTTP client) against pdfake, instead of the static on-call table.
func withPagerDuty(o *e2eOptions) { o.pagerduty = true }

// pdToken is the fake PagerDuty's API token.
const pdToken = "u+e2e-pd-token-Q3v"

// pdUsers are the cast's PagerDuty users (found by email, as production does).
var pdUsers = map[string]pdfake.User{
	alice: {ID: "PALICE1", Name: "Alice", Email: "alice@example.com"},
	bob:   {ID: "PBOB001", Name: "Bob", Email: "bob@example.com"},
}

// shiftUntil puts user on call for prod-db's escalation policy in the fake PagerDuty, from an
// hour ago until end, replacing every other on-call entry; a zero end takes them off call.
func (e *e2e) shiftUntil(user string, end time.Time) {
	if end.IsZero() {
		e.pd.SetOnCalls()
		return
	}
	e.pd.SetOnCalls(pdfake.OnCall{UserID: pdUsers[user].ID, EscalationPolicyID: "PABC123", EscalationPolicyName: "DB primary",
		ScheduleID: "PSCHED1", ScheduleName: "DB weekly", Level: 1, Start: e.clock.Now().Add(-time.Hour), End: end})
}

func newE2E(t testing.TB, opts ...func(*e2eOptions)) *e2e {
	t.Helper()
	o := e2eOptions{resources: []grants.Resource{prodDBResource()}}
	for _, f := range opts {
		f(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	e := &e2e{clock: clocktest.New(t0)}
	fake, api, hc := newFakeSlack(t, e.clock.Now)
	e.fake = fake
	for _, u := range []slackfake.User{
		{ID: alice, Name: "alice", RealName: "Alice", Email: "alice@example.com"},
		{ID: bob, Name: "bob", Email: "bob@example.com"},
		{ID: carol, Name: "carol", Email: "carol@example.com"},
		{ID: dave, Name: "dave", Email: "dave@example.com"},
		{ID: gus, Name: "gus", Email: "gus@example.com", IsRestricted: true},
	} {
		fake.AddUser(u)
	}
	fake.AddChannel(approvalsChannel, bob, carol, dave)
	fake.AddChannel(auditChannel)
	fake.AddChannel(opsChannel, alice, bob, carol, dave, gus)

	st, err := sqlstore.Open(context.Background(), "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), e.clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.store = st
	e.prov = brokertest.NewProvider("postgres")
	provs := map[string]grants.Provider{}
	for _, r := range o.resources {
		provs[r.Name] = e.prov
	}
	e.mgr = grants.NewManager(st, provs, o.resources, e.clock, o.logger, grants.ManagerOptions{})
	e.n, err = NewNotifier(NotifierOptions{API: api, HTTPClient: hc, ApprovalChannel: approvalsChannel, AuditChannel: auditChannel,
		ResponseURLPrefix: fake.URL() + "/hooks/", Clock: e.clock, Logger: o.logger})
	if err != nil {
		t.Fatal(err)
	}
	ids := []Identity{{SlackUserID: alice, Email: "alice@example.com", GitHubLogin: "alice"}}
	if o.identities != nil {
		ids = o.identities
	}
	dopts := DirectoryOptions{ResolveByEmail: true}
	if o.dirOpts != nil {
		dopts = *o.dirOpts
	}
	dir, err := NewDirectory(api, testTeam, ids, o.logger, dopts)
	if err != nil {
		t.Fatal(err)
	}
	e.dir = dir
	e.oncall = brokertest.NewStaticOnCall(e.clock)
	var oc broker.OnCall = e.oncall
	if o.pagerduty {
		e.pd = pdfake.New(pdfake.Options{Token: pdToken, Now: e.clock.Now})
		t.Cleanup(e.pd.Close)
		for _, u := range pdUsers {
			e.pd.AddUser(u)
		}
		pdHTTP := httpclient.New(httpclient.Options{RetryMax: 2, WaitMin: time.Millisecond, WaitMax: 2 * time.Millisecond, MaxRetryAfter: 5 * time.Millisecond,
			ReturnLastResponse: true, Clock: e.clock, Logger: o.logger})
		pd, err := pagerduty.New(pagerduty.Config{APIURL: e.pd.URL + "/", Token: pdToken, HTTP: pdHTTP, Clock: e.clock, Logger: o.logger})
		if err != nil {
			t.Fatal(err)
		}
		oc = pd
	}
	if o.oncall != nil {
		oc = o.oncall(e.clock)
	}
	e.b = broker.New(broker.Deps{Manager: e.mgr, Store: e.store, Clock: e.clock, Leases: e.store, Once: e.store, OnCall: oc, Directory: dir, Notifier: e.n, Groups: NewUsergroups(api), Logger: o.logger})
	v, err := NewVerifier(e.clock, 0, signingSecret)
	if err != nil {
		t.Fatal(err)
	}
	ho := HandlerOptions{Verifier: v, Service: e.b, Teller: e.n, Clock: e.clock, Logger: o.logger}
	if o.reviewers != nil {
		ho.Reviews = ReviewsAdapter{R: broker.NewReviews(broker.ReviewDeps{Clock: e.clock, Events: st, Recorder: e.mgr, Directory: dir,
			Reviewers: o.reviewers, Logger: o.logger})}
		ho.Modals = ModalClient{API: api}
	}
	e.h, err = NewHandler(ho)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	e.h.Register(mux)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *e2e) onCall(user string) {
	e.oncall.Set(user, broker.Shift{EscalationPolicyID: "PABC123", EscalationPolicyName: "DB primary", Level: 1,
		ScheduleID: "PSCHED1", ScheduleName: "DB weekly", Start: t0.Add(-time.Hour), End: t0.Add(8 * time.Hour)})
}

// signed builds a POST exactly as Slack sends it: form body, X-Slack-Request-Timestamp and
// the v0 signature over the raw bytes.
func (e *e2e) signed(path string, body []byte, ts time.Time) *http.Request {
	r, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	stamp := strconv.FormatInt(ts.Unix(), 10)
	r.Header.Set(HeaderTimestamp, stamp)
	r.Header.Set(HeaderSignature, SignatureHeader(signingSecret, stamp, body))
	return r
}

// commandBody is the documented slash-command payload with our fields filled in.
func (e *e2e) commandBody(user, text string) []byte {
	v, err := url.ParseQuery(string(slackfixtures.Read("slash-command.txt")))
	if err != nil {
		panic(err)
	}
	v.Set("team_id", testTeam)
	v.Set("team_domain", "acme")
	v.Del("enterprise_id")
	v.Del("enterprise_name")
	v.Set("channel_id", opsChannel)
	v.Set("channel_name", "ops")
	v.Set("user_id", user)
	v.Set("user_name", strings.ToLower(strings.TrimPrefix(user, "U0")))
	v.Set("command", "/access")
	v.Set("text", text)
	v.Set("response_url", e.responseURL(user))
	v.Set("trigger_id", fmt.Sprintf("13345224609.738474920.%032d", e.trig.Add(1)))
	return []byte(v.Encode())
}

// clickBody is the documented block_actions payload for one button click.
func (e *e2e) clickBody(user, actionID, value string, ref broker.MessageRef) []byte {
	var p map[string]any
	if err := json.Unmarshal(slackfixtures.Read("block-actions.json"), &p); err != nil {
		panic(err)
	}
	p["team"] = map[string]any{"id": testTeam, "domain": "acme"}
	p["user"] = map[string]any{"id": user, "username": strings.ToLower(user), "team_id": testTeam}
	p["container"] = map[string]any{"type": "message", "message_ts": ref.TS, "channel_id": ref.Channel, "is_ephemeral": false}
	p["channel"] = map[string]any{"id": ref.Channel, "name": "approvals"}
	p["response_url"] = e.responseURL(user)
	p["trigger_id"] = fmt.Sprintf("12321423423.333649436676.%032d", e.trig.Add(1))
	act := p["actions"].([]any)[0].(map[string]any)
	act["action_id"], act["value"], act["block_id"] = actionID, value, "decide"
	b, _ := json.Marshal(p)
	return []byte(url.Values{"payload": {string(b)}}.Encode())
}

type ack struct {
	status int
	text   string
}

func (e *e2e) do(t testing.TB, r *http.Request) ack {
	t.Helper()
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := ack{status: resp.StatusCode, text: string(b)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		var m struct {
			ResponseType string `json:"response_type"`
			Text         string `json:"text"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("ack is not JSON: %s", b)
		}
		if m.ResponseType != "ephemeral" {
			t.Fatalf("ack response_type = %q, want ephemeral", m.ResponseType)
		}
		a.text = m.Text
	}
	return a
}

// command sends a signed slash command and waits for its background work.
func (e *e2e) command(t testing.TB, user, text string) ack {
	t.Helper()
	a := e.do(t, e.signed(CommandsPath, e.commandBody(user, text), e.clock.Now()))
	e.settle(t)
	return a
}

// click sends a signed button click and waits for its background work.
func (e *e2e) click(t testing.TB, user, actionID, value string, ref broker.MessageRef) ack {
	t.Helper()
	a := e.do(t, e.signed(InteractionsPath, e.clickBody(user, actionID, value, ref), e.clock.Now()))
	e.settle(t)
	return a
}

func (e *e2e) settle(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.h.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// messages returns the fake's messages matching pred.
func (e *e2e) messages(pred func(slackfake.Message) bool) []slackfake.Message {
	var out []slackfake.Message
	for _, m := range e.fake.Messages() {
		if pred(m) {
			out = append(out, m)
		}
	}
	return out
}

func inChannel(ch string) func(slackfake.Message) bool {
	return func(m slackfake.Message) bool { return m.Channel == ch }
}

// content is a message's text and blocks, for searching.
func content(m slackfake.Message) string {
	return m.Text + "\n" + jsonUnescaper.Replace(string(m.Blocks))
}

// jsonUnescaper undoes encoding/json's HTML-safe escapes so tests can search for "<@U…>".
var jsonUnescaper = strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&")

func (e *e2e) dms(user string) []slackfake.Message {
	d := e.fake.DMChannel(user)
	if d == "" {
		return nil
	}
	return e.messages(inChannel(d))
}

func (e *e2e) allRequests(t testing.TB) []grants.Request {
	t.Helper()
	rs, err := e.store.ListRequests(context.Background(), grants.RequestFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func (e *e2e) allGrants(t testing.TB) []grants.Grant {
	t.Helper()
	gs, err := e.store.ListGrants(context.Background(), grants.GrantFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return gs
}

func (e *e2e) count(t testing.TB, a audit.Action) int {
	t.Helper()
	evs, err := e.store.ReadEvents(context.Background(), 0, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Action == a {
			n++
		}
	}
	return n
}

// approvalRef returns the approval message posted in the approvals channel.
func (e *e2e) approvalRef(t testing.TB) broker.MessageRef {
	t.Helper()
	ms := e.messages(inChannel(approvalsChannel))
	if len(ms) != 1 {
		t.Fatalf("approval messages = %d, want 1", len(ms))
	}
	return broker.MessageRef{Channel: ms[0].Channel, TS: ms[0].TS}
}

// noSecretOutsideOwner fails if a credential value appears anywhere but in messages
// delivered privately to owner (its DM or an ephemeral response).
func (e *e2e) noSecretOutsideOwner(t testing.TB, owner string) {
	t.Helper()
	dm := e.fake.DMChannel(owner)
	for _, m := range e.fake.Messages() {
		if !strings.Contains(content(m), "secret-") {
			continue
		}
		urlOwner, _ := e.urls.Load(m.ResponseURL)
		private := (dm != "" && m.Channel == dm) || (m.Via == slackfake.ResponseURLMethod && m.Ephemeral && urlOwner == owner)
		if !private {
			t.Errorf("credential leaked outside %s's private messages: %+v", owner, m)
		}
	}
	evs, _ := e.store.ReadEvents(context.Background(), 0, 1_000_000)
	for _, ev := range evs {
		b, _ := json.Marshal(ev)
		if strings.Contains(string(b), "secret-") {
			t.Errorf("credential in audit event %s", b)
		}
	}
}

// ephemerals returns the response_url messages sent to user.
func (e *e2e) ephemerals(user string) []slackfake.Message {
	return e.messages(func(m slackfake.Message) bool {
		owner, _ := e.urls.Load(m.ResponseURL)
		return m.Via == slackfake.ResponseURLMethod && owner == user
	})
}
