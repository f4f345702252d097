package console_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/broker/brokertest"
	"github.com/accessbroker/accessbroker/fixtures/oidcfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/integrations/console"
)

const (
	team     = "T0TEAM"
	alice    = "U0ALICE" // engineer, on call
	erin     = "U0ERIN"  // engineer, not on call
	bob      = "U0BOB"   // approver of prod-db
	carol    = "U0CAROL" // auditor (not an approver)
	frank    = "U0FRANK" // the second approver of prod-keys
	mallory  = "U0MALLORY"
	eve      = "U0EVE" // in another workspace
	clientID = "1234.5678"
	// clientSecret is a test value, not a real secret.
	clientSecret = "test-client-secret-0123456789"
)

var start = time.Date(2026, 3, 2, 13, 0, 0, 0, time.UTC)

func prodDB() grants.Resource {
	return grants.Resource{
		Name: "prod-db", Provider: "postgres", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour,
		Policy: grants.Policy{
			OnCallEscalationPolicies: []string{"PABC123"}, AutoApproveOnCall: true,
			ApproverSlackUsers: []string{bob}, MinApprovals: 1, CapToShift: true,
		},
	}
}

// env is a console over a real broker, store and manager, with Sign in with Slack at
// fixtures/oidcfake.
type env struct {
	clock  *clocktest.Fake
	store  *sqlstore.Store
	mgr    *grants.Manager
	prov   *brokertest.Provider
	notes  *brokertest.Notifier
	oncall *brokertest.StaticOnCall
	b      *broker.Broker
	idp    *oidcfake.Server
	c      *console.Console
	srv    *httptest.Server
	path   string // the SQLite file
}

type envOpts struct {
	standIn []console.StandInUser
	baseURL string // default: the test server's URL
	// audit, when set, wraps the store as the console's audit log (e.g. to count reads).
	audit func(console.AuditLog) console.AuditLog
}

func newEnv(t *testing.T, o ...envOpts) *env {
	t.Helper()
	var opt envOpts
	if len(o) > 0 {
		opt = o[0]
	}
	e := &env{clock: clocktest.New(start)}
	e.path = filepath.Join(t.TempDir(), "ab.db")
	st, err := sqlstore.Open(t.Context(), "sqlite", "file:"+e.path, e.clock, nil)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	e.store = st
	e.prov = brokertest.NewProvider("postgres")
	res := []grants.Resource{prodDB(), {Name: "prod-keys", Provider: "postgres", DefaultDuration: time.Hour, MaxDuration: 2 * time.Hour,
		Policy: grants.Policy{ApproverSlackUsers: []string{bob, frank}, MinApprovals: 2}}}
	e.mgr = grants.NewManager(st, map[string]grants.Provider{"prod-db": e.prov, "prod-keys": e.prov}, res, e.clock, nil, grants.ManagerOptions{})
	e.notes = brokertest.NewNotifier()
	dir := brokertest.NewDirectory(
		grants.Person{SlackUserID: alice, Email: "alice@example.com"},
		grants.Person{SlackUserID: erin, Email: "erin@example.com"},
		grants.Person{SlackUserID: bob, Email: "bob@example.com"},
		grants.Person{SlackUserID: carol, Email: "carol@example.com"},
		grants.Person{SlackUserID: frank, Email: "frank@example.com"},
	)
	groups := brokertest.NewGroups()
	e.oncall = brokertest.NewStaticOnCall(e.clock)
	e.oncall.Set(alice, broker.Shift{EscalationPolicyID: "PABC123", EscalationPolicyName: "DB on-call", Level: 1, Start: start.Add(-time.Hour), End: start.Add(8 * time.Hour)})
	e.b = broker.New(broker.Deps{Manager: e.mgr, Store: st, Clock: e.clock, Leases: st, Once: st, OnCall: e.oncall, Directory: dir,
		Notifier: e.notes, Groups: groups, Logger: slog.New(slog.DiscardHandler)})
	e.idp, err = oidcfake.New(oidcfake.Options{ClientID: clientID, ClientSecret: clientSecret, Now: e.clock.Now, Users: []oidcfake.User{
		{TeamID: team, UserID: alice, Email: "alice@example.com", Name: "alice"},
		{TeamID: team, UserID: erin, Email: "erin@example.com", Name: "erin"},
		{TeamID: team, UserID: bob, Email: "bob@example.com", Name: "bob"},
		{TeamID: team, UserID: carol, Email: "carol@example.com", Name: "carol"},
		{TeamID: team, UserID: frank, Email: "frank@example.com", Name: "frank"},
		{TeamID: team, UserID: mallory, Email: "mallory@example.com", Name: "mallory"},
		{TeamID: "T0OTHER", UserID: eve, Email: "eve@other.example", Name: "eve"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.idp.Close)
	var h http.Handler = http.NotFoundHandler()
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(e.srv.Close)
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	base := e.srv.URL
	if opt.baseURL != "" {
		base = opt.baseURL
	}
	var auditLog console.AuditLog = st
	if opt.audit != nil {
		auditLog = opt.audit(st)
	}
	cfg := console.Config{BaseURL: base, IssuerURL: e.idp.Issuer(), ClientID: clientID, ClientSecret: clientSecret,
		HTTPClient: e.idp.Client(), TeamID: team, SessionKey: key, AuditorUsers: []string{carol},
		Broker: e.b, Store: st, Audit: auditLog, Revoker: e.mgr, Directory: dir, Groups: groups, PublicKey: pub, Clock: e.clock,
		AuditChannel: e.notes, StandIn: opt.standIn}
	e.c, err = console.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(console.Prefix, e.c)
	h = mux
	return e
}

// user is one browser: a cookie jar and the last page.
type user struct {
	t      *testing.T
	e      *env
	client *http.Client
	body   string
	status int
	url    *url.URL
}

func (e *env) browser(t *testing.T) *user {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &user{t: t, e: e, client: &http.Client{Jar: jar}}
}

func (u *user) do(req *http.Request) *user {
	u.t.Helper()
	resp, err := u.client.Do(req)
	if err != nil {
		u.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	u.body, u.status, u.url = string(b), resp.StatusCode, resp.Request.URL
	return u
}

func (u *user) get(path string) *user {
	u.t.Helper()
	target := path
	if strings.HasPrefix(path, "/") {
		target = u.e.srv.URL + path
	}
	req, _ := http.NewRequest(http.MethodGet, target, nil)
	return u.do(req)
}

// post sends a same-origin form (as a browser does: Origin and Sec-Fetch-Site), with the
// page's CSRF token unless the form sets csrf itself.
func (u *user) post(path string, form url.Values) *user {
	u.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", u.csrf())
	}
	req, _ := http.NewRequest(http.MethodPost, u.e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", u.e.srv.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return u.do(req)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token of the signed-in session (from the home page).
func (u *user) csrf() string {
	u.t.Helper()
	body := u.body
	if m := csrfRE.FindStringSubmatch(body); m != nil {
		return m[1]
	}
	saved := *u
	u.get("/ui/")
	m := csrfRE.FindStringSubmatch(u.body)
	u.body, u.status, u.url = saved.body, saved.status, saved.url
	if m == nil {
		u.t.Fatalf("no CSRF token on the home page")
	}
	return m[1]
}

var consentRE = regexp.MustCompile(`id="as-([A-Z0-9]+)" href="([^"]+)"`)

// signIn goes through Sign in with Slack at the fake as userID and returns the final page.
func (u *user) signIn(userID string) *user {
	u.t.Helper()
	u.get("/ui/signin/slack")
	if u.status != http.StatusOK || !strings.Contains(u.body, "Sign in to the fake workspace") {
		u.t.Fatalf("sign-in start: %d %s; want the fake's consent page", u.status, u.body)
	}
	for _, m := range consentRE.FindAllStringSubmatch(u.body, -1) {
		if m[1] == userID {
			link := html.UnescapeString(m[2])
			return u.get(u.e.idp.URL + link)
		}
	}
	u.t.Fatalf("the consent page has no link for %s", userID)
	return u
}

func (u *user) mustSee(parts ...string) *user {
	u.t.Helper()
	for _, p := range parts {
		if !strings.Contains(u.body, p) {
			u.t.Fatalf("page %s (%d) does not contain %q:\n%s", u.url, u.status, p, u.body)
		}
	}
	return u
}

func (u *user) mustStatus(want int) *user {
	u.t.Helper()
	if u.status != want {
		u.t.Fatalf("page %s: status %d; want %d:\n%s", u.url, u.status, want, u.body)
	}
	return u
}

// events returns the audit events matching q.
func (e *env) events(t *testing.T, q audit.Query) []audit.Event {
	t.Helper()
	evs, err := e.store.Search(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// aliceGrant gives alice (on call) a grant through the broker, as /access would.
func (e *env) aliceGrant(t *testing.T) grants.Grant {
	t.Helper()
	r, err := e.b.Submit(t.Context(), broker.RequestInput{TeamID: team, UserID: alice, Resource: "prod-db", Duration: time.Hour, Reason: "checking replication lag"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.b.Process(t.Context(), r.ID); err != nil {
		t.Fatal(err)
	}
	gs, err := e.store.ListGrants(t.Context(), grants.GrantFilter{RequestID: r.ID})
	if err != nil || len(gs) != 1 || gs[0].State != grants.StateActive {
		t.Fatalf("alice's grant: %v %+v", err, gs)
	}
	return gs[0]
}
