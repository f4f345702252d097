package slack

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	slackgo "github.com/slack-go/slack"

	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/fixtures/slackfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
)

const (
	testToken = "xoxb-123-456-abcdef"
	testTeam  = "T0TEAM"
)

// newFakeSlack starts the fake Slack and a real slack-go client pointed at it through the
// retrying HTTP client, with retry waits short enough for tests.
func newFakeSlack(t testing.TB, now func() time.Time) (*slackfake.Server, *slackgo.Client, *http.Client) {
	t.Helper()
	fake := slackfake.New(slackfake.Options{Token: testToken, TeamID: testTeam, Now: now})
	t.Cleanup(fake.Close)
	hc := httpclient.New(httpclient.Options{RetryMax: 3, WaitMin: time.Millisecond, WaitMax: 5 * time.Millisecond, MaxRetryAfter: 10 * time.Millisecond})
	api, err := NewClient(ClientOptions{Token: testToken, APIURL: fake.APIURL(), HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	return fake, api, hc
}

func TestNewClientValidates(t *testing.T) {
	t.Parallel()
	hc := &http.Client{}
	for name, o := range map[string]ClientOptions{
		"user token":  {Token: "xoxp-1", HTTPClient: hc},
		"no client":   {Token: testToken},
		"bad url":     {Token: testToken, APIURL: "slack.com/api", HTTPClient: hc},
		"ftp url":     {Token: testToken, APIURL: "ftp://slack.com/api/", HTTPClient: hc},
		"http remote": {Token: testToken, APIURL: "http://slack.example.com/api/", HTTPClient: hc},
		"credentials": {Token: testToken, APIURL: "https://u:p@slack.com/api/", HTTPClient: hc},
		"empty token": {HTTPClient: hc},
	} {
		if _, err := NewClient(o); err == nil {
			t.Errorf("%s: NewClient accepted %+v", name, o)
		}
	}
}

func TestAuthTeam(t *testing.T) {
	t.Parallel()
	_, api, _ := newFakeSlack(t, nil)
	team, err := AuthTeam(t.Context(), api)
	if err != nil || team != testTeam {
		t.Fatalf("AuthTeam = %q, %v", team, err)
	}
}

func TestDirectoryResolve(t *testing.T) {
	t.Parallel()
	fake, api, _ := newFakeSlack(t, nil)
	for _, u := range []slackfake.User{
		{ID: "U0ERIN", Name: "erin", Email: "Erin@Example.com"},
		{ID: "U0UNCONF", Email: "unconfirmed@example.com", EmailUnconfirmed: true},
		{ID: "U0CYRIL", Email: "erin@exаmple.com"},  // Cyrillic а in the domain
		{ID: "U0WIDE", Email: "ｅrin2@example.com"},  // fullwidth ｅ, NFKC-equal to ASCII e
		{ID: "U0KELVIN", Email: "Kate@example.com"}, // Kelvin sign, folds to k
		{ID: "U0GONE", Email: "gone@example.com", Deleted: true},
		{ID: "U0BOTTY", Email: "bot@example.com", IsBot: true},
		{ID: "U0APP", Email: "app@example.com", IsAppUser: true},
		{ID: "U0GUEST", Email: "guest@example.com", IsRestricted: true},
		{ID: "U0SINGLE", Email: "single@example.com", IsUltraRestricted: true},
		{ID: "U0OTHER", Email: "other@example.com", TeamID: "T0ELSEWHERE"},
		{ID: "U0NOMAIL"},
		// The config entry wins over Slack's data for a linked user.
		{ID: "U0ALICE", Email: "alice-in-slack@example.com"},
	} {
		fake.AddUser(u)
	}
	dir, err := NewDirectory(api, testTeam, []Identity{{SlackUserID: "U0ALICE", Email: "alice@example.com", GitHubLogin: "alice"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ok := []struct {
		user string
		want grants.Person
	}{
		{"U0ALICE", grants.Person{SlackTeamID: testTeam, SlackUserID: "U0ALICE", Email: "alice@example.com", GitHubLogin: "alice", ResolvedBy: "config"}},
		{"U0ERIN", grants.Person{SlackTeamID: testTeam, SlackUserID: "U0ERIN", Email: "erin@example.com", ResolvedBy: "slack_users_info"}},
	}
	for _, tc := range ok {
		got, err := dir.Resolve(t.Context(), testTeam, tc.user)
		if err != nil {
			t.Fatalf("Resolve(%s): %v", tc.user, err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Resolve(%s) (-want +got):\n%s", tc.user, diff)
		}
	}
	refused := map[string]string{
		"U0GONE":    "deactivated",
		"U0BOTTY":   "bots and apps",
		"U0APP":     "bots and apps",
		"U0GUEST":   "guest accounts",
		"U0SINGLE":  "guest accounts",
		"U0OTHER":   "belongs to Slack workspace T0ELSEWHERE",
		"U0NOMAIL":  "did not share an email",
		"U0UNCONF":  "has not confirmed the email address",
		"U0CYRIL":   "outside ASCII",
		"U0WIDE":    "outside ASCII",
		"U0KELVIN":  "outside ASCII",
		"U0UNKNOWN": "does not know user U0UNKNOWN",
	}
	for user, want := range refused {
		_, err := dir.Resolve(t.Context(), testTeam, user)
		if !errors.Is(err, broker.ErrUnknownPerson) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "identities list") {
			t.Errorf("Resolve(%s) = %v, want ErrUnknownPerson mentioning %q and how to get linked", user, err, want)
		}
	}
	// Another workspace is refused before anything is looked up, even a configured user.
	before := len(fake.Calls("users.info"))
	if _, err := dir.Resolve(t.Context(), "T0ELSEWHERE", "U0ALICE"); !errors.Is(err, broker.ErrUnknownPerson) {
		t.Errorf("other team: %v", err)
	}
	if len(fake.Calls("users.info")) != before {
		t.Error("other team triggered a users.info call")
	}
	// Slack trouble is not "unknown person".
	fake.FailNext("users.info", slackfake.Fault{Status: 500}, slackfake.Fault{Status: 500}, slackfake.Fault{Status: 500}, slackfake.Fault{Status: 500})
	if _, err := dir.Resolve(t.Context(), testTeam, "U0ERIN"); err == nil || errors.Is(err, broker.ErrUnknownPerson) {
		t.Errorf("Slack down: %v, want a lookup error", err)
	}
}

func TestNewDirectoryValidates(t *testing.T) {
	t.Parallel()
	cases := map[string][]Identity{
		"no slack id":         {{Email: "a@example.com"}},
		"duplicate":           {{SlackUserID: "U1", Email: "a@example.com"}, {SlackUserID: "U1", Email: "b@example.com"}},
		"no email":            {{SlackUserID: "U1"}},
		"same email in case":  {{SlackUserID: "U1", Email: "a@example.com"}, {SlackUserID: "U2", Email: "A@Example.COM"}},
		"same email by NFKC":  {{SlackUserID: "U1", Email: "a@example.com"}, {SlackUserID: "U2", Email: "ａ@example.com"}},
		"non-ASCII email":     {{SlackUserID: "U1", Email: "аlice@example.com"}}, // Cyrillic а
		"not an address":      {{SlackUserID: "U1", Email: "alice"}},
		"two @":               {{SlackUserID: "U1", Email: "a@b@example.com"}},
		"same email, 2 teams": {{SlackUserID: "U1", Email: "a@example.com"}, {SlackTeamID: "T0OTHER", SlackUserID: "U2", Email: "a@example.com"}},
	}
	for name, ids := range cases {
		if _, err := NewDirectory(nil, testTeam, ids, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewDirectory(nil, "", nil, nil); err == nil {
		t.Error("empty team accepted")
	}
}

func TestUsergroups(t *testing.T) {
	t.Parallel()
	fake, api, _ := newFakeSlack(t, nil)
	fake.SetUsergroup("S0DBA", "U0BOB", "U0CAROL")
	g := NewUsergroups(api)
	m, err := g.Members(t.Context(), "S0DBA")
	if err != nil || !cmp.Equal(m, []string{"U0BOB", "U0CAROL"}) {
		t.Fatalf("Members = %v, %v", m, err)
	}
	if _, err := g.Members(t.Context(), "S0NOPE"); err == nil || !strings.Contains(err.Error(), "no_such_subteam") {
		t.Errorf("unknown group: %v", err)
	}
}
