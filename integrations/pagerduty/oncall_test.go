package pagerduty_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/fixtures/pdfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/pagerduty"
)

const (
	epEng   = "PENG001"
	epOther = "POTHER1"
	schPrim = "SPRIM01"
	schSec  = "SSEC001"
	schOth  = "SOTHER1"
)

// seedOnCall puts a small organisation into the fake:
//
//	alice  PENG level 1 via SPRIM, t0-2h … t0+6h
//	bob    PENG level 2 via SSEC,  t0-1h … t0+1h
//	carol  POTHER level 1 via SOTHER (another team's escalation policy)
//	dave   PENG level 1 via SPRIM, starting in an hour
//	frank  PENG level 3, direct target, permanent
//	erin   nothing
func seedOnCall(f *pdfake.Server) {
	for _, u := range []pdfake.User{
		{ID: "PALICE1", Name: "Alice", Email: "alice@example.com"},
		{ID: "PMALICE", Name: "Malice", Email: "malice@example.com"},
		{ID: "PBOB001", Name: "Bob", Email: "bob@example.com"},
		{ID: "PCAROL1", Name: "Carol", Email: "carol@example.com"},
		{ID: "PDAVE01", Name: "Dave", Email: "dave@example.com"},
		{ID: "PERIN01", Name: "Erin", Email: "erin@example.com"},
		{ID: "PFRANK1", Name: "Frank", Email: "frank@example.com"},
		{ID: "PDUP001", Name: "Dup One", Email: "dup@example.com"},
		{ID: "PDUP002", Name: "Dup Two", Email: "DUP@example.com"},
	} {
		f.AddUser(u)
	}
	f.SetOnCalls(
		pdfake.OnCall{UserID: "PALICE1", EscalationPolicyID: epEng, EscalationPolicyName: "Engineering", ScheduleID: schPrim, ScheduleName: "Primary",
			Level: 1, Start: t0.Add(-2 * time.Hour), End: t0.Add(6 * time.Hour)},
		pdfake.OnCall{UserID: "PBOB001", EscalationPolicyID: epEng, EscalationPolicyName: "Engineering", ScheduleID: schSec, ScheduleName: "Secondary",
			Level: 2, Start: t0.Add(-time.Hour), End: t0.Add(time.Hour)},
		pdfake.OnCall{UserID: "PCAROL1", EscalationPolicyID: epOther, EscalationPolicyName: "Other team", ScheduleID: schOth, ScheduleName: "Other",
			Level: 1, Start: t0.Add(-time.Hour), End: t0.Add(time.Hour)},
		pdfake.OnCall{UserID: "PDAVE01", EscalationPolicyID: epEng, EscalationPolicyName: "Engineering", ScheduleID: schPrim, ScheduleName: "Primary",
			Level: 1, Start: t0.Add(time.Hour), End: t0.Add(9 * time.Hour)},
		pdfake.OnCall{UserID: "PFRANK1", EscalationPolicyID: epEng, EscalationPolicyName: "Engineering", Level: 3},
	)
}

func TestCheck(t *testing.T) {
	t.Parallel()
	aliceShift := broker.Shift{EscalationPolicyID: epEng, EscalationPolicyName: "Engineering", ScheduleID: schPrim, ScheduleName: "Primary",
		Level: 1, Start: t0.Add(-2 * time.Hour), End: t0.Add(6 * time.Hour)}
	bobShift := broker.Shift{EscalationPolicyID: epEng, EscalationPolicyName: "Engineering", ScheduleID: schSec, ScheduleName: "Secondary",
		Level: 2, Start: t0.Add(-time.Hour), End: t0.Add(time.Hour)}
	tests := []struct {
		name      string
		person    grants.Person
		policy    grants.Policy
		want      broker.OnCallStatus
		wantCalls map[string]int // path → GET count
	}{
		{"on call with evidence", grants.Person{Email: "alice@example.com"}, grants.Policy{OnCallEscalationPolicies: []string{epEng}},
			broker.OnCallStatus{OnCall: true, Shifts: []broker.Shift{aliceShift}}, map[string]int{"/users": 1, "/oncalls": 1}},
		{"email matched ignoring case", grants.Person{Email: "ALICE@Example.COM"}, grants.Policy{OnCallEscalationPolicies: []string{epEng}},
			broker.OnCallStatus{OnCall: true, Shifts: []broker.Shift{aliceShift}}, nil},
		{"identities map id used without a user lookup", grants.Person{Email: "alice@example.com", PagerDutyID: "PALICE1"},
			grants.Policy{OnCallEscalationPolicies: []string{epEng}},
			broker.OnCallStatus{OnCall: true, Shifts: []broker.Shift{aliceShift}}, map[string]int{"/users": 0, "/oncalls": 1}},
		{"allowed level", grants.Person{Email: "alice@example.com"}, grants.Policy{OnCallEscalationPolicies: []string{epEng}, OnCallLevels: []int{1}},
			broker.OnCallStatus{OnCall: true, Shifts: []broker.Shift{aliceShift}}, nil},
		{"disallowed level is not on call", grants.Person{Email: "bob@example.com"}, grants.Policy{OnCallEscalationPolicies: []string{epEng}, OnCallLevels: []int{1}},
			broker.OnCallStatus{}, nil},
		{"second level when allowed", grants.Person{Email: "bob@example.com"}, grants.Policy{OnCallEscalationPolicies: []string{epEng}, OnCallLevels: []int{1, 2}},
			broker.OnCallStatus{OnCall: true, Shifts: []broker.Shift{bobShift}}, nil},
		{"on call for another escalation policy does not count", grants.Person{Email: "carol@example.com"}, grants.Policy{OnCallEscalationPolicies: []string{epEng}},
			broker.OnCallStatus{}, nil},
		{"schedule policy: own schedule", grants.Person{Email: "alice@example.com"}, grants.Policy{OnCallSchedules: []string{schPrim}},
			broker.OnCallStatus{OnCall: true, Shifts: []broker.Shift{aliceShift}}, map[string]int{"/oncalls": 1}},
		{"schedule policy: another schedule of the same escalation policy does not count", grants.Person{Email: "bob@example.com"},
			grants.Policy{OnCallSchedules: []string{schPrim}}, broker.OnCallStatus{}, nil},
		{"both named: either counts, asked separately", grants.Person{Email: "alice@example.com"},
			grants.Policy{OnCallEscalationPolicies: []string{epOther}, OnCallSchedules: []string{schPrim}},
			broker.OnCallStatus{OnCall: true, Shifts: []broker.Shift{aliceShift}}, map[string]int{"/oncalls": 2}},
		{"both named and both match: one shift", grants.Person{Email: "alice@example.com"},
			grants.Policy{OnCallEscalationPolicies: []string{epEng}, OnCallSchedules: []string{schPrim}},
			broker.OnCallStatus{OnCall: true, Shifts: []broker.Shift{aliceShift}}, map[string]int{"/oncalls": 2}},
		{"shift not started", grants.Person{Email: "dave@example.com"}, grants.Policy{OnCallEscalationPolicies: []string{epEng}}, broker.OnCallStatus{}, nil},
		{"not on call", grants.Person{Email: "erin@example.com"}, grants.Policy{OnCallEscalationPolicies: []string{epEng}}, broker.OnCallStatus{}, nil},
		{"permanent direct target: no start or end", grants.Person{Email: "frank@example.com"}, grants.Policy{OnCallEscalationPolicies: []string{epEng}},
			broker.OnCallStatus{OnCall: true, Shifts: []broker.Shift{{EscalationPolicyID: epEng, EscalationPolicyName: "Engineering", Level: 3}}}, nil},
		{"policy naming nothing: nobody, PagerDuty not asked", grants.Person{Email: "alice@example.com"}, grants.Policy{OnCallLevels: []int{1}},
			broker.OnCallStatus{}, map[string]int{"/users": 0, "/oncalls": 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, t0)
			seedOnCall(e.fake)
			got, err := e.client.Check(t.Context(), tt.person, tt.policy)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
			for path, n := range tt.wantCalls {
				if c := e.fake.CallCount(http.MethodGet, path); c != n {
					t.Errorf("GET %s called %d times, want %d", path, c, n)
				}
			}
			for _, c := range e.fake.Calls() {
				if c.Path != "/oncalls" {
					continue
				}
				// The question is asked for the injected clock's now, for this user only.
				if c.Query.Get("since") != "2025-03-06T15:00:00Z" || c.Query.Get("until") != "2025-03-06T15:00:00Z" || len(c.Query["user_ids[]"]) != 1 {
					t.Errorf("on-call query %v", c.Query)
				}
			}
		})
	}
}

func TestCheckShiftEndFollowsTheClock(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	seedOnCall(e.fake)
	pol := grants.Policy{OnCallEscalationPolicies: []string{epEng}}
	st, err := e.client.Check(t.Context(), grants.Person{Email: "bob@example.com"}, pol)
	if err != nil || !st.OnCall || !st.ShiftEnd().Equal(t0.Add(time.Hour)) {
		t.Fatalf("before the end: %+v, %v", st, err)
	}
	e.clock.Advance(time.Hour) // bob's shift ends exactly now
	st, err = e.client.Check(t.Context(), grants.Person{Email: "bob@example.com"}, pol)
	if err != nil || st.OnCall {
		t.Fatalf("at the end: %+v, %v", st, err)
	}
}

func TestCheckFailsClosed(t *testing.T) {
	t.Parallel()
	pol := grants.Policy{OnCallEscalationPolicies: []string{epEng}}
	tests := []struct {
		name      string
		faults    []pdfake.Fault
		latency   time.Duration
		timeout   time.Duration
		wantErr   string
		wantCalls map[string]int
	}{
		{"500 on oncalls after retries", []pdfake.Fault{{PathPrefix: "/oncalls", Status: 500}}, 0, 0,
			"status code 500", map[string]int{"/oncalls": 1 + retries}},
		{"429 on oncalls after retries", []pdfake.Fault{{PathPrefix: "/oncalls", Status: 429, RateLimitReset: 1}}, 0, 0,
			"status code 429", map[string]int{"/oncalls": 1 + retries}},
		{"429 with Retry-After after retries", []pdfake.Fault{{PathPrefix: "/oncalls", Status: 429, RetryAfter: "1"}}, 0, 0,
			"status code 429", map[string]int{"/oncalls": 1 + retries}},
		{"503 on users lookup", []pdfake.Fault{{PathPrefix: "/users", Status: 503}}, 0, 0,
			"look up PagerDuty user alice@example.com", map[string]int{"/users": 1 + retries, "/oncalls": 0}},
		{"PagerDuty too slow", nil, time.Second, 50 * time.Millisecond, "context deadline exceeded", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, t0)
			seedOnCall(e.fake)
			for _, f := range tt.faults {
				e.fake.InjectFault(f)
			}
			e.fake.SetLatency(tt.latency)
			ctx := t.Context()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			st, err := e.client.Check(ctx, grants.Person{Email: "alice@example.com"}, pol)
			if err == nil {
				t.Fatalf("Check succeeded with %+v; want an error (never assume on call)", st)
			}
			if st.OnCall || len(st.Shifts) > 0 {
				t.Errorf("status %+v returned with an error", st)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "alice@example.com") {
				t.Errorf("error %q should mention %q and the person", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), apiToken) || strings.Contains(e.logs.String(), apiToken) {
				t.Error("the API token leaked into an error or the logs")
			}
			for path, n := range tt.wantCalls {
				if c := e.fake.CallCount(http.MethodGet, path); c != n {
					t.Errorf("GET %s called %d times, want %d", path, c, n)
				}
			}
		})
	}
}

func TestCheckRetriesThenSucceeds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	seedOnCall(e.fake)
	e.fake.InjectFault(pdfake.Fault{PathPrefix: "/oncalls", Status: 429, RetryAfter: "0", Times: 1})
	e.fake.InjectFault(pdfake.Fault{PathPrefix: "/oncalls", Status: 502, Times: 1})
	st, err := e.client.Check(t.Context(), grants.Person{Email: "alice@example.com"}, grants.Policy{OnCallEscalationPolicies: []string{epEng}})
	if err != nil || !st.OnCall {
		t.Fatalf("Check = %+v, %v; want on call after two retried failures", st, err)
	}
	if c := e.fake.CallCount(http.MethodGet, "/oncalls"); c != 3 {
		t.Errorf("GET /oncalls called %d times, want 3", c)
	}
}

func TestCheckWrongTokenIsAnError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	seedOnCall(e.fake)
	c, err := pagerduty.New(pagerduty.Config{APIURL: e.fake.URL, Token: "wrong-token", Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Check(t.Context(), grants.Person{PagerDutyID: "PALICE1"}, grants.Policy{OnCallEscalationPolicies: []string{epEng}})
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("err = %v, want the 401 reported", err)
	}
	if strings.Contains(err.Error(), "wrong-token") {
		t.Error("the token leaked into the error")
	}
}

func TestUserIDByEmail(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, email, wantID string
		wantMatches         int // for a *NoUserError
	}{
		{"exact among substring matches", "alice@example.com", "PALICE1", 0},
		{"case-insensitive", "Alice@EXAMPLE.com", "PALICE1", 0},
		{"surrounding spaces", "  alice@example.com ", "PALICE1", 0},
		{"ambiguous", "dup@example.com", "", 2},
		{"missing", "nobody@example.com", "", 0},
		{"only a substring matches", "lice@example.com", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, t0)
			seedOnCall(e.fake)
			id, err := e.client.UserIDByEmail(t.Context(), tt.email)
			if tt.wantID != "" {
				if err != nil || id != tt.wantID {
					t.Fatalf("= %q, %v; want %q", id, err, tt.wantID)
				}
				return
			}
			if err == nil {
				t.Fatalf("= %q; want no user, never a guess", id)
			}
			var nu *pagerduty.NoUserError
			if !errors.Is(err, pagerduty.ErrNoUser) || !errors.As(err, &nu) || nu.Matches != tt.wantMatches {
				t.Fatalf("err = %#v; want a NoUserError with %d matches", err, tt.wantMatches)
			}
			if want := "no PagerDuty user for " + strings.TrimSpace(tt.email); !strings.HasPrefix(err.Error(), want) {
				t.Errorf("err %q should start with %q", err, want)
			}
		})
	}
}

func TestCheckUnknownPersonIsAnError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	seedOnCall(e.fake)
	pol := grants.Policy{OnCallEscalationPolicies: []string{epEng}}
	_, err := e.client.Check(t.Context(), grants.Person{SlackUserID: "U0DUP", Email: "dup@example.com"}, pol)
	if !errors.Is(err, pagerduty.ErrNoUser) {
		t.Errorf("ambiguous email: err %v, want ErrNoUser", err)
	}
	_, err = e.client.Check(t.Context(), grants.Person{SlackUserID: "U0NOMAIL"}, pol)
	if err == nil || !strings.Contains(err.Error(), "without an email") {
		t.Errorf("no email: err %v", err)
	}
	if c := e.fake.CallCount(http.MethodGet, "/oncalls"); c != 0 {
		t.Errorf("on-call asked %d times for an unresolved person", c)
	}
}

func TestUserIDByEmailIsCachedForTheTTL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	seedOnCall(e.fake)
	ctx := t.Context()
	lookup := func(want string) {
		t.Helper()
		if id, err := e.client.UserIDByEmail(ctx, "alice@example.com"); err != nil || id != want {
			t.Fatalf("= %q, %v; want %q", id, err, want)
		}
	}
	lookup("PALICE1")
	lookup("PALICE1")
	if c := e.fake.CallCount(http.MethodGet, "/users"); c != 1 {
		t.Fatalf("GET /users called %d times within the TTL, want 1", c)
	}
	// Alice's PagerDuty account is replaced; the cache keeps the old id until the TTL passes.
	e.fake.AddUser(pdfake.User{ID: "PALICE1", Name: "Alice (old)", Email: "alice-old@example.com"})
	e.fake.AddUser(pdfake.User{ID: "PALICE2", Name: "Alice", Email: "alice@example.com"})
	e.clock.Advance(pagerduty.DefaultUserCacheTTL - time.Second)
	lookup("PALICE1")
	e.clock.Advance(time.Second)
	lookup("PALICE2")
	if c := e.fake.CallCount(http.MethodGet, "/users"); c != 2 {
		t.Errorf("GET /users called %d times, want 2", c)
	}
	// Failures are not cached.
	e.fake.InjectFault(pdfake.Fault{PathPrefix: "/users", Status: 500, Times: 1 + retries})
	if _, err := e.client.UserIDByEmail(ctx, "bob@example.com"); err == nil {
		t.Fatal("lookup during an outage succeeded")
	}
	if id, err := e.client.UserIDByEmail(ctx, "bob@example.com"); err != nil || id != "PBOB001" {
		t.Errorf("after the outage: %q, %v", id, err)
	}
}

func TestUserByID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	seedOnCall(e.fake)
	u, err := e.client.UserByID(t.Context(), "PBOB001")
	if diff := cmp.Diff(pagerduty.User{ID: "PBOB001", Name: "Bob", Email: "bob@example.com"}, u); err != nil || diff != "" {
		t.Errorf("UserByID: %v (-want +got):\n%s", err, diff)
	}
	if _, err := e.client.UserByID(t.Context(), "PNOSUCH"); !errors.Is(err, pagerduty.ErrNotFound) {
		t.Errorf("unknown id: err %v, want ErrNotFound", err)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	clk := newEnv(t, t0).clock
	tests := []struct {
		name    string
		cfg     pagerduty.Config
		wantErr string
	}{
		{"no token", pagerduty.Config{Clock: clk}, "pagerduty.token is empty"},
		{"token with newline", pagerduty.Config{Token: "abc\n", Clock: clk}, "pagerduty.token contains whitespace"},
		{"http to a remote host", pagerduty.Config{APIURL: "http://api.pagerduty.com", Token: "x", Clock: clk}, "use https"},
		{"ftp", pagerduty.Config{APIURL: "ftp://api.pagerduty.com", Token: "x", Clock: clk}, "must be an absolute https:// URL"},
		{"relative", pagerduty.Config{APIURL: "api.pagerduty.com", Token: "x", Clock: clk}, "must be an absolute https:// URL"},
		{"query", pagerduty.Config{APIURL: "https://api.pagerduty.com/?x=1", Token: "x", Clock: clk}, "must not carry a query"},
		{"no clock", pagerduty.Config{Token: "x"}, "clock is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pagerduty.New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err %v, want %q", err, tt.wantErr)
			}
		})
	}
	for _, ok := range []string{"", "https://api.pagerduty.com", "https://api.eu.pagerduty.com/", "http://127.0.0.1:8080", "http://[::1]:1", "http://localhost:9"} {
		if _, err := pagerduty.ValidateAPIURL(ok); err != nil {
			t.Errorf("ValidateAPIURL(%q): %v", ok, err)
		}
	}
}

// BenchmarkCheck measures one on-call check (cached user, one GET /oncalls) against the fake
// over loopback HTTP.
func BenchmarkCheck(b *testing.B) {
	e := newEnv(b, t0)
	seedOnCall(e.fake)
	pol := grants.Policy{OnCallEscalationPolicies: []string{epEng}, OnCallLevels: []int{1}}
	p := grants.Person{Email: "alice@example.com"}
	b.ReportAllocs()
	for b.Loop() {
		if st, err := e.client.Check(b.Context(), p, pol); err != nil || !st.OnCall {
			b.Fatal(st, err)
		}
	}
}

// TestUserIDByEmailRefusesLookalikes: a non-ASCII look-alike is refused before PagerDuty is
// asked, and a PagerDuty user whose own email is a look-alike of the person's never matches
// (issue #11: compared after NFKC and case folding, look-alikes refused, not matched).
func TestUserIDByEmailRefusesLookalikes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	e.fake.AddUser(pdfake.User{ID: "PKELVIN", Name: "Kate", Email: "\u212aate@example.com"}) // Kelvin sign
	for _, email := range []string{"\u0430lice@example.com", "\uff41lice@example.com"} {
		if _, err := e.client.UserIDByEmail(t.Context(), email); !errors.Is(err, broker.ErrEmailRefused) {
			t.Errorf("UserIDByEmail(%q) = %v, want a look-alike refusal", email, err)
		}
	}
	if c := e.fake.CallCount(http.MethodGet, "/users"); c != 0 {
		t.Errorf("PagerDuty was asked %d times about look-alikes", c)
	}
	_, err := e.client.UserIDByEmail(t.Context(), "kate@example.com")
	var nu *pagerduty.NoUserError
	if !errors.As(err, &nu) || nu.Matches != 0 {
		t.Errorf("kate@example.com matched a look-alike PagerDuty user: %v", err)
	}
}
