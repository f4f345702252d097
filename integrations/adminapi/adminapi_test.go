package adminapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/integrations/adminapi"
)

const token = "api-token-0123456789abcdef0123456789"

type nopProvider struct{}

func (nopProvider) Kind() string { return "nop" }
func (nopProvider) Issue(context.Context, grants.IssueRequest) (grants.Issued, error) {
	return grants.Issued{Credential: grants.NewCredential("nop", "password", "canary")}, nil
}
func (nopProvider) Revoke(context.Context, grants.RevokeRequest) error { return nil }

type fixture struct {
	srv   *httptest.Server
	store *sqlstore.Store
	mgr   *grants.Manager
	clock *clocktest.Fake
	api   *adminapi.API
	ids   []string
}

func setup(t *testing.T) *fixture {
	t.Helper()
	clock := clocktest.New(time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC))
	st, err := sqlstore.Open(context.Background(), "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	res := []grants.Resource{{Name: "prod-db", Provider: "nop", MaxDuration: 4 * time.Hour}, {Name: "prod-aws", Provider: "nop", MaxDuration: 4 * time.Hour}}
	mgr := grants.NewManager(st, map[string]grants.Provider{"prod-db": nopProvider{}, "prod-aws": nopProvider{}}, res, clock, nil, grants.ManagerOptions{})
	f := &fixture{store: st, mgr: mgr, clock: clock}
	for i, r := range []string{"prod-db", "prod-aws", "prod-db"} {
		g, _, err := mgr.Issue(context.Background(), grants.IssueInput{Resource: r, Duration: time.Hour, Reason: "test",
			Person: grants.Person{SlackUserID: []string{"U0ALICE", "U0BOB", "U0BOB"}[i]}, Actor: audit.Actor{Kind: audit.ActorOperator, ID: "t"}})
		if err != nil {
			t.Fatal(err)
		}
		f.ids = append(f.ids, g.ID)
		clock.Advance(time.Minute)
	}
	f.api = adminapi.New(adminapi.Config{Token: token, Grants: st, Revoker: mgr, Searcher: st, Recorder: mgr, Clock: clock})
	f.srv = httptest.NewServer(f.api)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) do(t *testing.T, method, path, tok, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAuth(t *testing.T) {
	f := setup(t)
	for _, tc := range []struct{ name, tok string }{{"missing", ""}, {"wrong", "nope"}, {"prefix of the real one", token[:10]}} {
		code, body := f.do(t, "POST", "/api/v1/grants/"+f.ids[0]+"/revoke", tc.tok, `{"reason":"x","operator":"y"}`)
		if code != http.StatusUnauthorized {
			t.Errorf("%s token: %d %s", tc.name, code, body)
		}
	}
	if g, _ := f.store.GetGrant(context.Background(), f.ids[0]); g.State != grants.StateActive {
		t.Fatalf("an unauthenticated call changed the grant: %s", g.State)
	}
	evs, _ := f.store.Search(context.Background(), audit.Query{Action: audit.ActionRequestRejected, Limit: 10})
	if len(evs) != 1 {
		t.Fatalf("request.rejected events = %d, want 1 (rate-limited per source per minute)", len(evs))
	}
	f.clock.Advance(time.Minute)
	f.do(t, "GET", "/api/v1/grants", "", "")
	if evs, _ := f.store.Search(context.Background(), audit.Query{Action: audit.ActionRequestRejected, Limit: 10}); len(evs) != 2 {
		t.Fatalf("after a minute, rejected events = %d, want 2", len(evs))
	}
}

func TestListAndFilters(t *testing.T) {
	f := setup(t)
	for _, tc := range []struct {
		query string
		want  int
	}{{"", 3}, {"?resource=prod-db", 2}, {"?slack_user=U0BOB", 2}, {"?state=revoked", 0}, {"?limit=1", 1}} {
		code, body := f.do(t, "GET", "/api/v1/grants"+tc.query, token, "")
		var out struct{ Grants []adminapi.GrantJSON }
		if code != 200 || json.Unmarshal([]byte(body), &out) != nil || len(out.Grants) != tc.want {
			t.Errorf("GET /grants%s = %d, %d grants, want %d: %s", tc.query, code, len(out.Grants), tc.want, body)
		}
	}
	for _, q := range []string{"?state=bogus", "?limit=0", "?limit=abc"} {
		if code, _ := f.do(t, "GET", "/api/v1/grants"+q, token, ""); code != 400 {
			t.Errorf("GET /grants%s = %d, want 400", q, code)
		}
	}
}

func TestRevokeIsAudited(t *testing.T) {
	f := setup(t)
	for _, body := range []string{`{}`, `{"reason":"x"}`, `not json`, `{"reason":"x","operator":"y","extra":1}`} {
		if code, _ := f.do(t, "POST", "/api/v1/grants/"+f.ids[1]+"/revoke", token, body); code != 400 {
			t.Errorf("body %s: %d, want 400", body, code)
		}
	}
	if code, _ := f.do(t, "POST", "/api/v1/grants/g_aaaaaaaaaaaaaaaa/revoke", token, `{"reason":"x","operator":"y"}`); code != 404 {
		t.Errorf("unknown grant: %d", code)
	}
	if code, _ := f.do(t, "POST", "/api/v1/grants/../../etc/revoke", token, `{"reason":"x","operator":"y"}`); code == 202 {
		t.Error("path traversal id accepted")
	}
	code, body := f.do(t, "POST", "/api/v1/grants/"+f.ids[1]+"/revoke", token, `{"reason":"incident over","operator":"carol"}`)
	if code != http.StatusAccepted || !strings.Contains(body, `"state": "revoking"`) {
		t.Fatalf("revoke = %d %s", code, body)
	}
	evs, _ := f.store.Search(context.Background(), audit.Query{GrantID: f.ids[1], Action: audit.ActionGrantRevokeQueued, Limit: 10})
	if len(evs) != 1 || evs[0].Actor.ID != "api:carol" || evs[0].Reason != "incident over" {
		t.Fatalf("revoke audit = %+v", evs)
	}
}

func TestAuditPagination(t *testing.T) {
	f := setup(t)
	var seqs []int64
	after := ""
	for page := 0; page < 10; page++ {
		path := "/api/v1/audit?limit=2&action=grant.issued"
		if after != "" {
			path += "&after=" + after
		}
		code, body := f.do(t, "GET", path, token, "")
		if code != 200 {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		var p adminapi.AuditPage
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Events {
			seqs = append(seqs, e.Seq)
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	if len(seqs) != 3 || !(seqs[0] < seqs[1] && seqs[1] < seqs[2]) {
		t.Fatalf("paged seqs = %v, want 3 increasing", seqs)
	}
	for _, q := range []string{"?since=yesterday", "?limit=5000", "?order=sideways", "?after=-1"} {
		if code, _ := f.do(t, "GET", "/api/v1/audit"+q, token, ""); code != 400 {
			t.Errorf("GET /audit%s = %d, want 400", q, code)
		}
	}
}

// rejectedEvents returns the request.rejected events recorded so far.
func (f *fixture) rejectedEvents(t *testing.T) []audit.Event {
	t.Helper()
	evs, err := f.store.Search(context.Background(), audit.Query{Action: audit.ActionRequestRejected, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// unauthenticated sends GET /api/v1/grants without a token over a new connection made by
// dial, and fails the test unless it is answered 401.
func unauthenticated(t *testing.T, url string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true, DialContext: dial}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(url + "/api/v1/grants")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unauthenticated call: status %d, want 401", resp.StatusCode)
	}
}

func TestRejectionsIPv6(t *testing.T) {
	f := setup(t)
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback on this machine: %v", err)
	}
	srv := httptest.NewUnstartedServer(f.api)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)

	var d net.Dialer
	for range 10 { // each call on a new connection, so from a new port of [::1]
		unauthenticated(t, srv.URL, d.DialContext)
	}
	evs := f.rejectedEvents(t)
	if len(evs) != 1 {
		t.Fatalf("request.rejected events after 10 calls from [::1] = %d, want 1 (one caller: keyed by host, not host and port)", len(evs))
	}
	if evs[0].Actor.ID != "::1" {
		t.Errorf("rejected actor id = %q, want the host ::1", evs[0].Actor.ID)
	}
	f.clock.Advance(time.Minute)
	unauthenticated(t, srv.URL, d.DialContext)
	if n := len(f.rejectedEvents(t)); n != 2 {
		t.Fatalf("after a minute, request.rejected events = %d, want 2", n)
	}
}

func TestRejectionsGlobalCap(t *testing.T) {
	f := setup(t)
	const hosts = 45 // more than the cap of 30 a minute
	for i := range hosts {
		// Every 127.0.0.0/8 address is loopback on Linux: each call comes from another host.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(i+1))}}
		unauthenticated(t, f.srv.URL, d.DialContext)
	}
	evs := f.rejectedEvents(t)
	if len(evs) != 30 {
		t.Fatalf("request.rejected events from %d hosts in a minute = %d, want the global cap 30", hosts, len(evs))
	}
	seen := map[string]bool{}
	for _, ev := range evs {
		if seen[ev.Actor.ID] {
			t.Errorf("host %s recorded twice", ev.Actor.ID)
		}
		seen[ev.Actor.ID] = true
	}
	if g, _ := f.store.GetGrant(context.Background(), f.ids[0]); g.State != grants.StateActive {
		t.Fatalf("unauthenticated calls changed a grant: %s", g.State)
	}
	f.clock.Advance(time.Minute)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, 1)}}
	unauthenticated(t, f.srv.URL, d.DialContext)
	if n := len(f.rejectedEvents(t)); n != 31 {
		t.Fatalf("in the next minute, request.rejected events = %d, want 31", n)
	}
}

// TestSessions: /api/v1/sessions lists the proxied sessions the audit log records, and
// /api/v1/sessions/{id} shows one with its statements in order.
func TestSessions(t *testing.T) {
	f := setup(t)
	sid := grants.NewID("s")
	actor := audit.Actor{Kind: audit.ActorUser, ID: "U0ALICE"}
	ev := func(a audit.Action, ev map[string]string) *audit.Event {
		ev["session_id"] = sid
		return &audit.Event{Actor: actor, Action: a, GrantID: f.ids[0], Resource: "prod-db", Evidence: ev}
	}
	if err := f.mgr.Record(context.Background(),
		ev(audit.ActionSessionStarted, map[string]string{"role": "ab_alice_x", "client_addr": "10.0.0.7:5000"}),
		ev(audit.ActionSessionStatement, map[string]string{"order": "1", "text": "SELECT 1", "tag": "SELECT 1", "rows": "1"}),
	); err != nil {
		t.Fatal(err)
	}
	code, body := f.do(t, "GET", "/api/v1/sessions?active=true&grant="+f.ids[0], token, "")
	var page adminapi.SessionsPage
	if code != 200 || json.Unmarshal([]byte(body), &page) != nil || len(page.Sessions) != 1 || page.Sessions[0].ID != sid || page.Sessions[0].Ended != nil {
		t.Fatalf("GET /sessions = %d %s", code, body)
	}
	if code, body := f.do(t, "GET", "/api/v1/sessions?grant="+f.ids[1], token, ""); code != 200 || !strings.Contains(body, `"sessions": []`) {
		t.Errorf("another grant's sessions = %d %s, want none", code, body)
	}
	code, body = f.do(t, "GET", "/api/v1/sessions/"+sid, token, "")
	var s audit.Session
	if code != 200 || json.Unmarshal([]byte(body), &s) != nil || len(s.Statements) != 1 || s.Statements[0].Text != "SELECT 1" || s.Role != "ab_alice_x" {
		t.Fatalf("GET /sessions/%s = %d %s", sid, code, body)
	}
	for path, want := range map[string]int{
		"/api/v1/sessions/" + grants.NewID("s"): 404,
		"/api/v1/sessions/nope":                 400,
		"/api/v1/sessions?grant=nope":           400,
		"/api/v1/sessions?active=maybe":         400,
		"/api/v1/sessions?limit=0":              400,
	} {
		if code, body := f.do(t, "GET", path, token, ""); code != want {
			t.Errorf("GET %s = %d %s, want %d", path, code, body, want)
		}
	}
	if code, _ := f.do(t, "GET", "/api/v1/sessions", "", ""); code != 401 {
		t.Errorf("without the token: %d, want 401", code)
	}
}
