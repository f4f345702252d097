package console_test

import (
	"encoding/csv"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/fixtures/oidcfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/console"
)

// TestSignInWithSlack: the whole OpenID Connect flow against the fake provider (discovery,
// authorize, token exchange, JWKS) ends signed in, with a session cookie that is HttpOnly
// and SameSite, and every page carries the strict Content-Security-Policy.
func TestSignInWithSlack(t *testing.T) {
	e := newEnv(t)
	u := e.browser(t).signIn(alice)
	u.mustStatus(http.StatusOK).mustSee("Your access", "alice (U0ALICE)")
	if u.url.Path != "/ui/" {
		t.Errorf("landed on %s; want /ui/", u.url.Path)
	}
	base, _ := url.Parse(e.srv.URL)
	var session *http.Cookie
	for _, ck := range u.client.Jar.Cookies(base) {
		if ck.Name == "ab_console" {
			session = ck
		}
	}
	if session == nil {
		t.Fatal("no session cookie")
	}
	// The jar hides attributes: read them from a fresh sign-in's Set-Cookie.
	paths := map[string]int{}
	for _, c := range e.idp.Calls() {
		paths[c.Path]++
	}
	for _, p := range []string{oidcfake.DiscoveryPath, oidcfake.TokenPath, oidcfake.KeysPath, oidcfake.ApprovePath} {
		if paths[p] == 0 {
			t.Errorf("the provider's %s was never called: %v", p, paths)
		}
	}
	resp, err := http.Get(e.srv.URL + "/ui/signin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "script-src") {
		t.Errorf("Content-Security-Policy %q allows scripts", csp)
	}
}

// TestSessionCookieAttributes: the Set-Cookie of a sign-in is HttpOnly, SameSite=Lax,
// Path=/, bounded, and Secure with a __Host- name when the base URL is https.
func TestSessionCookieAttributes(t *testing.T) {
	e := newEnv(t)
	u := e.browser(t)
	u.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := u.client.Get(e.srv.URL + "/ui/signin/slack")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	authz, _ := url.Parse(resp.Header.Get("Location"))
	q := authz.Query()
	if q.Get("state") == "" || q.Get("nonce") == "" || q.Get("client_id") != clientID || !strings.Contains(q.Get("scope"), "openid") {
		t.Fatalf("authorize URL %s lacks state, nonce, client id or the openid scope", authz)
	}
	q.Set("team", team)
	q.Set("user", alice)
	resp, err = u.client.Get(e.idp.URL + oidcfake.ApprovePath + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = u.client.Get(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var found bool
	for _, ck := range resp.Cookies() {
		if ck.Name != "ab_console" || ck.Value == "" {
			continue
		}
		found = true
		if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.MaxAge <= 0 || ck.MaxAge > 8*3600 {
			t.Errorf("session cookie %+v: want HttpOnly, SameSite=Lax, Path=/, Max-Age ≤ 8h", ck)
		}
		if ck.Secure {
			t.Errorf("an http base URL gets no Secure cookie (browsers would drop it); got %+v", ck)
		}
	}
	if !found {
		t.Fatalf("the callback (%d) set no session cookie", resp.StatusCode)
	}
}

// TestSignInRefusals: the same identity rules as slash commands, and a verified ID token:
// anything else is refused with an explanation, no session, and (for a person Slack did
// identify) a request.rejected audit event.
func TestSignInRefusals(t *testing.T) {
	tests := []struct {
		name    string
		user    string
		fault   oidcfake.Fault
		want    string
		audited string // evidence "refused" of the audit event; "" when none is expected
	}{
		{name: "other workspace", user: eve, want: "accessbroker serves workspace T0TEAM only", audited: "other_workspace"},
		{name: "unknown user", user: mallory, want: "You could not be identified", audited: "unknown_person"},
		{name: "token from another issuer", user: alice, fault: oidcfake.FaultWrongIssuer, want: "does not verify"},
		{name: "token for another client", user: alice, fault: oidcfake.FaultWrongAud, want: "does not verify"},
		{name: "expired token", user: alice, fault: oidcfake.FaultExpired, want: "expired"},
		{name: "token signed with an unknown key", user: alice, fault: oidcfake.FaultForeignKey, want: "does not verify"},
		{name: "replayed nonce", user: alice, fault: oidcfake.FaultBadNonce, want: "nonce"},
		{name: "token endpoint refuses", user: alice, fault: oidcfake.FaultNotOK, want: "refused the sign-in"},
		{name: "token endpoint down", user: alice, fault: oidcfake.FaultServerError, want: "Sign in with Slack failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.idp.SetFault(tt.fault)
			u := e.browser(t).signIn(tt.user)
			if u.status < 400 {
				t.Fatalf("status %d; want a refusal:\n%s", u.status, u.body)
			}
			u.mustSee(tt.want)
			if strings.Contains(u.body, clientSecret) {
				t.Fatal("the page shows the client secret")
			}
			// No session: the console sends the browser to sign in.
			u.get("/ui/grants")
			if u.url.Path != "/ui/signin" {
				t.Fatalf("after a refused sign-in /ui/grants ended at %s; want the sign-in page", u.url)
			}
			evs := e.events(t, audit.Query{Action: audit.ActionRequestRejected})
			if tt.audited == "" {
				if len(evs) != 0 {
					t.Errorf("audit events %+v; want none for an unverified sign-in", evs)
				}
				return
			}
			if len(evs) != 1 || evs[0].Evidence["refused"] != tt.audited || evs[0].Actor.ID != tt.user || evs[0].Evidence["via"] != "console_signin" {
				t.Fatalf("audit events %+v; want one request.rejected (%s) by %s", evs, tt.audited, tt.user)
			}
		})
	}
}

// TestSignInStateMismatch: a callback that this browser did not start (login CSRF) is
// refused before the code is used.
func TestSignInStateMismatch(t *testing.T) {
	e := newEnv(t)
	u := e.browser(t)
	code := e.idp.Code(oidcfake.User{TeamID: team, UserID: alice}, e.srv.URL+"/ui/signin/callback", "n")
	u.get("/ui/signin/callback?code=" + code + "&state=forged").mustStatus(http.StatusBadRequest).mustSee("not started here")
	u.get("/ui/signin/slack") // starts one, then answers it with another state
	u.get("/ui/signin/callback?code=" + code + "&state=forged").mustStatus(http.StatusBadRequest).mustSee("state mismatch")
	for _, c := range e.idp.Calls() {
		if c.Path == oidcfake.TokenPath {
			t.Fatal("the code was exchanged despite the state mismatch")
		}
	}
}

// TestExpiredSession: after the session's lifetime the console asks to sign in again and
// refuses changes.
func TestExpiredSession(t *testing.T) {
	e := newEnv(t)
	g := e.aliceGrant(t)
	u := e.browser(t).signIn(alice)
	token := u.csrf()
	u.get("/ui/grants").mustStatus(http.StatusOK).mustSee(g.ID)
	e.clock.Advance(8*time.Hour + time.Minute)
	u.get("/ui/grants/" + g.ID)
	if u.url.Path != "/ui/signin" || !strings.Contains(u.body, "Your session expired") {
		t.Fatalf("expired session: at %s:\n%s", u.url, u.body)
	}
	u.post("/ui/grants/"+g.ID+"/end", url.Values{"csrf": {token}}).mustStatus(http.StatusUnauthorized).mustSee("Nothing was changed")
	got, _ := e.store.GetGrant(t.Context(), g.ID)
	if got.RevokeCause == grants.CauseManual {
		t.Fatal("an expired session ended the grant")
	}
}

// TestCSRFRefused: a cross-origin POST (CrossOriginProtection) and a same-origin POST
// without the session's token are both refused and change nothing; the token makes it work.
func TestCSRFRefused(t *testing.T) {
	e := newEnv(t)
	g := e.aliceGrant(t)
	u := e.browser(t).signIn(alice)
	token := u.csrf()

	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/ui/grants/"+g.ID+"/end", strings.NewReader(url.Values{"csrf": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	u.do(req).mustStatus(http.StatusForbidden).mustSee("another site")

	u.post("/ui/grants/"+g.ID+"/end", url.Values{"csrf": {"forged"}}).mustStatus(http.StatusForbidden).mustSee("security token")
	if got, _ := e.store.GetGrant(t.Context(), g.ID); got.State != grants.StateActive || got.RevokeCause != "" {
		t.Fatalf("grant after refused posts: %s %s; want active", got.State, got.RevokeCause)
	}
	if evs := e.events(t, audit.Query{Action: audit.ActionRequestRejected}); len(evs) != 1 || evs[0].Evidence["refused"] != "csrf_token" {
		t.Fatalf("refusals recorded: %+v; want the token refusal", evs)
	}
	u.post("/ui/grants/"+g.ID+"/end", url.Values{"csrf": {token}}).mustStatus(http.StatusOK).mustSee("being ended now")
	if got, _ := e.store.GetGrant(t.Context(), g.ID); got.RevokeCause != grants.CauseManual {
		t.Fatalf("grant after a valid end: %+v; want revocation queued", got)
	}
}

// TestEngineerRefusedAnotherGrant: an engineer can neither see nor change someone else's
// grant; each refusal is explained and recorded.
func TestEngineerRefusedAnotherGrant(t *testing.T) {
	e := newEnv(t)
	g := e.aliceGrant(t)
	u := e.browser(t).signIn(erin)
	u.get("/ui/grants").mustStatus(http.StatusOK)
	if strings.Contains(u.body, g.ID) {
		t.Fatal("erin's grant list shows alice's grant")
	}
	u.get("/ui/grants/" + g.ID).mustStatus(http.StatusForbidden).mustSee("is not yours")
	if strings.Contains(u.body, "checking replication lag") {
		t.Fatal("the refusal page shows the grant's reason")
	}
	for _, action := range []string{"end", "extend", "revoke"} {
		u.post("/ui/grants/"+g.ID+"/"+action, url.Values{"by": {"30m"}, "reason": {"mine now please"}}).mustStatus(http.StatusForbidden)
	}
	if got, _ := e.store.GetGrant(t.Context(), g.ID); got.State != grants.StateActive || got.RevokeCause != "" || !got.ExpiresAt.Equal(g.ExpiresAt) {
		t.Fatalf("grant changed by another engineer: %+v", got)
	}
	evs := e.events(t, audit.Query{Action: audit.ActionRequestRejected, Actor: erin})
	if len(evs) != 4 {
		t.Fatalf("refusals recorded for erin: %d; want 4 (view, end, extend, revoke)", len(evs))
	}
	for _, ev := range evs {
		if ev.GrantID != g.ID {
			t.Errorf("refusal %+v does not name the grant", ev)
		}
	}
	u.get("/ui/audit").mustStatus(http.StatusForbidden).mustSee("Only auditors")
}

// TestAuditorReadOnly: an auditor reads any grant's story but may change nothing except
// revoking with a reason, which goes through the manager with the auditor as actor.
func TestAuditorReadOnly(t *testing.T) {
	e := newEnv(t)
	g := e.aliceGrant(t)
	// A request waiting for approval (erin is not on call).
	r, err := e.b.Submit(t.Context(), brokerInput(erin, "read the slow query log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.b.Process(t.Context(), r.ID); err != nil {
		t.Fatal(err)
	}
	u := e.browser(t).signIn(carol)
	u.get("/ui/grants?all=1").mustStatus(http.StatusOK).mustSee(g.ID)
	u.get("/ui/grants/"+g.ID).mustStatus(http.StatusOK).mustSee("grant.issued", "request.approved", "Reason for revoking")
	if strings.Contains(u.body, `id="end-now"`) {
		t.Fatal("an auditor is offered End now on another person's grant")
	}
	u.post("/ui/grants/"+g.ID+"/end", nil).mustStatus(http.StatusForbidden).mustSee("Auditors have read-only access")
	u.post("/ui/grants/"+g.ID+"/extend", url.Values{"by": {"30m"}, "reason": {"more"}}).mustStatus(http.StatusForbidden).mustSee("read-only")
	u.post("/ui/requests/"+r.ID+"/decide", url.Values{"decision": {"approve"}}).mustStatus(http.StatusForbidden).mustSee("read-only")
	if got, _ := e.store.GetRequest(t.Context(), r.ID); got.State != grants.RequestPending || len(got.Approvals) != 0 {
		t.Fatalf("request after an auditor's approve: %+v", got)
	}
	u.post("/ui/grants/"+g.ID+"/revoke", url.Values{"reason": {""}}).mustStatus(http.StatusForbidden).mustSee("reason of 5 to 500")
	if got, _ := e.store.GetGrant(t.Context(), g.ID); got.RevokeCause != "" {
		t.Fatalf("grant changed by refused auditor actions: %+v", got)
	}
	if lines := auditLines(e, g.ID); len(lines) != 0 {
		t.Fatalf("audit channel told of refused actions: %q", lines)
	}
	u.post("/ui/grants/"+g.ID+"/revoke", url.Values{"reason": {"left the company today " + broker.Mention(bob)}}).mustStatus(http.StatusOK).mustSee("Revocation requested")
	// The audit channel is told, as /access revoke tells it: who asked, and why (the
	// reason's mention mark removed, so it pings nobody).
	if lines := auditLines(e, g.ID); len(lines) != 1 || !strings.Contains(lines[0], "requested by "+broker.Mention(carol)) ||
		!strings.Contains(lines[0], "left the company today") || strings.Contains(lines[0], broker.Mention(bob)) {
		t.Fatalf("audit channel lines about %s: %q; want one naming carol and her reason, mentioning nobody else", g.ID, lines)
	}
	got, _ := e.store.GetGrant(t.Context(), g.ID)
	if got.RevokeCause != grants.CauseManual {
		t.Fatalf("grant after the auditor's revoke: %+v", got)
	}
	evs := e.events(t, audit.Query{GrantID: g.ID, Action: audit.ActionGrantRevokeQueued})
	if len(evs) != 1 || evs[0].Actor.ID != carol || !strings.Contains(evs[0].Reason, "left the company today") {
		t.Fatalf("revocation events: %+v; want one by carol with her reason", evs)
	}
}

// TestRequestDryRunApproveStory: the form's dry run says where a request would go and
// records nothing; the request then goes to the approver's inbox, is approved there (never
// by the requester), and the grant's story shows the approval and the issue with their seqs
// and chain marks.
func TestRequestDryRunApproveStory(t *testing.T) {
	e := newEnv(t)
	er := e.browser(t).signIn(erin)
	er.get("/ui/request").mustStatus(http.StatusOK)
	er.post("/ui/request", url.Values{"action": {"dry-run"}, "resource": {"prod-db"}, "duration": {"1h"}, "reason": {"read the slow query log"}}).
		mustStatus(http.StatusOK).mustSee("would be sent for approval", "ot on call for prod-db", "It would be sent to: "+bob)
	if evs := e.events(t, audit.Query{}); len(evs) != 0 {
		t.Fatalf("the dry run recorded %d events", len(evs))
	}
	al := e.browser(t).signIn(alice)
	al.post("/ui/request", url.Values{"action": {"dry-run"}, "resource": {"prod-db"}, "duration": {"1h"}, "reason": {"lag"}}).mustSee("would be granted at once")
	al.post("/ui/request", url.Values{"action": {"dry-run"}, "resource": {"prod-db"}, "duration": {"9h"}, "reason": {"lag"}}).mustSee("would be refused", "maximum")

	er.post("/ui/request", url.Values{"action": {"submit"}, "resource": {"prod-db"}, "duration": {"1h"}, "reason": {"read the slow query log"}}).
		mustStatus(http.StatusOK).mustSee("Request recorded", "pending")
	reqID := strings.TrimPrefix(er.url.Path, "/ui/requests/")
	if strings.Contains(er.body, `id="approve"`) {
		t.Fatal("the requester is offered Approve on her own request")
	}
	er.post("/ui/requests/"+reqID+"/decide", url.Values{"decision": {"approve"}}).mustStatus(http.StatusForbidden).mustSee("your own request")
	// While it waits, a second request would be refused by the pending-request limit
	// (policy.max_pending_per_person, default 1): the dry run says so, naming it, and
	// records nothing.
	before := len(e.events(t, audit.Query{}))
	er.post("/ui/request", url.Values{"action": {"dry-run"}, "resource": {"prod-db"}, "duration": {"1h"}, "reason": {"again"}}).
		mustStatus(http.StatusOK).mustSee("would be refused", "already have a pending request for prod-db", reqID)
	if after := len(e.events(t, audit.Query{})); after != before {
		t.Fatalf("the dry run recorded %d events", after-before)
	}

	b := e.browser(t).signIn(bob)
	b.get("/ui/approvals").mustStatus(http.StatusOK).mustSee(reqID, "read the slow query log")
	b.post("/ui/requests/"+reqID+"/decide", url.Values{"decision": {"approve"}}).mustStatus(http.StatusOK).mustSee("decision was recorded", "approved")
	gs, err := e.store.ListGrants(t.Context(), grants.GrantFilter{RequestID: reqID})
	if err != nil || len(gs) != 1 {
		t.Fatalf("grants of the approved request: %v %v", gs, err)
	}
	if err := e.c.Chain().Step(t.Context()); err != nil {
		t.Fatal(err)
	}
	er.get("/ui/grants/"+gs[0].ID).mustStatus(http.StatusOK).mustSee("request.approved", "grant.issued", "oncall.checked", "by user "+bob, "✓ verified")
	issued := e.events(t, audit.Query{GrantID: gs[0].ID, Action: audit.ActionGrantIssued})
	if len(issued) != 1 || !strings.Contains(er.body, `id="seq-`+itoa(issued[0].Seq)+`"`) {
		t.Fatalf("the story does not show grant.issued with its seq %v", issued)
	}
	if strings.Contains(er.body, "secret") || strings.Contains(er.body, "password") {
		t.Fatal("the story shows a credential field")
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func brokerInput(user, reason string) broker.RequestInput {
	return broker.RequestInput{TeamID: team, UserID: user, Resource: "prod-db", Duration: time.Hour, Reason: reason}
}

func callerOf(user string) broker.Caller { return broker.Caller{TeamID: team, UserID: user} }

// TestAuditSearchPagesAndExports: the CLI's filters, keyset pages (each next page starts
// after the last seq shown) and CSV/JSONL exports of everything matching.
func TestAuditSearchPagesAndExports(t *testing.T) {
	e := newEnv(t)
	for range 3 {
		e.aliceGrant(t)
		g, _ := e.store.ListGrants(t.Context(), grants.GrantFilter{SlackUser: alice, States: []grants.State{grants.StateActive}, Limit: 1})
		if _, err := e.b.Done(t.Context(), callerOf(alice), g[0].ID); err != nil {
			t.Fatal(err)
		}
	}
	created := e.events(t, audit.Query{Action: audit.ActionRequestCreated})
	if len(created) != 3 {
		t.Fatalf("%d request.created events", len(created))
	}
	u := e.browser(t).signIn(carol)
	u.get("/ui/audit?action=request.created&limit=2").mustStatus(http.StatusOK).mustSee("#"+itoa(created[2].Seq), "#"+itoa(created[1].Seq), "Next page")
	if strings.Contains(u.body, "#"+itoa(created[0].Seq)+"<") {
		t.Fatal("the first page shows the third event")
	}
	u.get("/ui/audit?action=request.created&limit=2&after=" + itoa(created[1].Seq)).mustStatus(http.StatusOK).mustSee("#" + itoa(created[0].Seq))
	if strings.Contains(u.body, "Next page") {
		t.Fatal("the last page offers a next page")
	}
	u.get("/ui/audit?since=yesterday").mustStatus(http.StatusBadRequest).mustSee("neither an RFC 3339 time")

	u.get("/ui/audit/export?format=csv&action=request.created").mustStatus(http.StatusOK)
	rows, err := csv.NewReader(strings.NewReader(u.body)).ReadAll()
	if err != nil || len(rows) != 4 {
		t.Fatalf("CSV export: %d rows, %v; want a header and 3 rows:\n%s", len(rows), err, u.body)
	}
	u.get("/ui/audit/export?format=jsonl&actor=" + alice).mustStatus(http.StatusOK)
	evs, err := audit.ReadJSONL(strings.NewReader(u.body))
	if err != nil || len(evs) != len(e.events(t, audit.Query{Actor: alice, Limit: 1000})) {
		t.Fatalf("JSONL export: %d events, %v", len(evs), err)
	}
	u.get("/ui/audit/export?format=xml").mustStatus(http.StatusBadRequest).mustSee("use csv or jsonl")
}

// TestReportAndChainPages: the weekly report with its pictures, and the chain state.
func TestReportAndChainPages(t *testing.T) {
	e := newEnv(t)
	e.aliceGrant(t)
	e.clock.Advance(7 * 24 * time.Hour)
	if err := e.c.Chain().Step(t.Context()); err != nil {
		t.Fatal(err)
	}
	u := e.browser(t).signIn(carol)
	u.get("/ui/report").mustStatus(http.StatusOK).mustSee("<svg", "Grants per day by resource", "Time from request to grant", "Revocation lag", "prod-db")
	u.get("/ui/chain").mustStatus(http.StatusOK).mustSee("from genesis up to seq", "none found")
	u.get("/ui/report?week=last").mustStatus(http.StatusBadRequest)
	a := e.browser(t).signIn(alice)
	a.get("/ui/report").mustStatus(http.StatusForbidden)
	a.get("/ui/chain").mustStatus(http.StatusForbidden)
}

// TestStandInSignIn: the demo's stand-in sign-in goes through the same identity rules and
// session as Sign in with Slack, and offers only its people.
func TestStandInSignIn(t *testing.T) {
	e := newEnv(t, envOpts{standIn: []console.StandInUser{{Name: "alice", TeamID: team, UserID: alice, Role: "engineer"},
		{Name: "mallory", TeamID: team, UserID: mallory, Role: "not linked"}}})
	u := e.browser(t)
	u.get("/ui/signin").mustStatus(http.StatusOK).mustSee("Sign in as alice", "Demo sign-in")
	if strings.Contains(u.body, `id="signin-slack"`) {
		t.Error("the stand-in page offers Sign in with Slack")
	}
	form := func(user string) url.Values {
		return url.Values{"user": {user}, "return": {"/ui/grants"}, "csrf": {""}}
	}
	u.post("/ui/signin/standin", form(mallory)).mustStatus(http.StatusForbidden).mustSee("could not be identified")
	u.post("/ui/signin/standin", form(bob)).mustStatus(http.StatusBadRequest).mustSee("Choose one of the people listed")
	u.post("/ui/signin/standin", form(alice)).mustStatus(http.StatusOK).mustSee("alice (U0ALICE)", "Your live grants")
	u.get("/ui/signin/slack")
	if u.url.Path != "/ui/signin" {
		t.Errorf("Sign in with Slack is reachable in stand-in mode: %s", u.url)
	}
}

// TestHTTPSCookiesAreSecure: with an https base URL the session cookie is a __Host- cookie,
// Secure, HttpOnly and SameSite, and a plain-named cookie is not accepted in its place.
func TestHTTPSCookiesAreSecure(t *testing.T) {
	e := newEnv(t, envOpts{baseURL: "https://access.example.com", standIn: []console.StandInUser{{Name: "alice", TeamID: team, UserID: alice}}})
	req := httptest.NewRequest(http.MethodPost, "https://access.example.com/ui/signin/standin", strings.NewReader("user="+alice))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	e.c.ServeHTTP(rec, req)
	cks := rec.Result().Cookies()
	if rec.Code != http.StatusSeeOther || len(cks) != 1 {
		t.Fatalf("stand-in sign-in: %d %v", rec.Code, cks)
	}
	ck := cks[0]
	if ck.Name != "__Host-ab_console" || !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Domain != "" {
		t.Fatalf("session cookie %+v: want __Host-ab_console, Secure, HttpOnly, SameSite=Lax, Path=/, no Domain", ck)
	}
	for name, wantSignedIn := range map[string]bool{"__Host-ab_console": true, "ab_console": false} {
		req := httptest.NewRequest(http.MethodGet, "https://access.example.com/ui/", nil)
		req.AddCookie(&http.Cookie{Name: name, Value: ck.Value})
		rec := httptest.NewRecorder()
		e.c.ServeHTTP(rec, req)
		if got := rec.Code == http.StatusOK; got != wantSignedIn {
			t.Errorf("cookie %s: status %d; signed in = %v, want %v", name, rec.Code, got, wantSignedIn)
		}
	}
	// A tampered cookie is refused.
	req = httptest.NewRequest(http.MethodGet, "https://access.example.com/ui/", nil)
	req.AddCookie(&http.Cookie{Name: ck.Name, Value: "x" + ck.Value})
	rec = httptest.NewRecorder()
	e.c.ServeHTTP(rec, req)
	if rec.Code != http.StatusSeeOther {
		t.Errorf("a tampered session cookie got %d; want a redirect to sign in", rec.Code)
	}
}

// TestTwoApprovalsInTheInbox: a resource that needs two approvers (N of M) stays pending after
// the first approval, leaves the first approver's inbox, and is granted by the second.
func TestTwoApprovalsInTheInbox(t *testing.T) {
	e := newEnv(t)
	er := e.browser(t).signIn(erin)
	er.post("/ui/request", url.Values{"action": {"dry-run"}, "resource": {"prod-keys"}, "duration": {"1h"}, "reason": {"rotate the signing keys"}}).
		mustSee("It needs 2 approval(s)", bob, frank)
	er.post("/ui/request", url.Values{"action": {"submit"}, "resource": {"prod-keys"}, "duration": {"1h"}, "reason": {"rotate the signing keys"}}).mustSee("pending")
	reqID := strings.TrimPrefix(er.url.Path, "/ui/requests/")

	b := e.browser(t).signIn(bob)
	b.get("/ui/approvals").mustSee(reqID, "0 of 2")
	b.post("/ui/requests/"+reqID+"/decide", url.Values{"decision": {"approve"}}).mustStatus(http.StatusOK).mustSee("Approvals: 1 of 2 needed", "pending")
	b.get("/ui/approvals").mustSee("Nothing waits for you")
	if gs, _ := e.store.ListGrants(t.Context(), grants.GrantFilter{RequestID: reqID}); len(gs) != 0 {
		t.Fatalf("one approval of two issued %v", gs)
	}
	f := e.browser(t).signIn(frank)
	f.get("/ui/approvals").mustSee(reqID, "1 of 2")
	f.post("/ui/requests/"+reqID+"/decide", url.Values{"decision": {"approve"}}).mustStatus(http.StatusOK).mustSee("approved")
	if gs, _ := e.store.ListGrants(t.Context(), grants.GrantFilter{RequestID: reqID}); len(gs) != 1 || gs[0].State != grants.StateActive {
		t.Fatalf("after the second approval: %+v; want one active grant", gs)
	}
}

// auditLines are the audit channel's lines about a revocation of grant id.
func auditLines(e *env, id string) []string {
	var out []string
	for _, n := range e.notes.Notes("") {
		if n.Kind == "audit" && strings.Contains(n.Text, "Revocation of grant "+id) {
			out = append(out, n.Text)
		}
	}
	return out
}
