package main

import (
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/accessbroker/accessbroker/fixtures/oidcfake"
	"github.com/accessbroker/accessbroker/fixtures/slackfake"
)

// TestServeConsoleSignIn runs serve with the console section: Sign in with Slack against
// fixtures/oidcfake and the Slack directory against fixtures/slackfake. A listed person
// signs in and sees the console under /ui/; a person of another workspace and an unlisted
// one are refused with the reason and a request.rejected audit event.
func TestServeConsoleSignIn(t *testing.T) {
	p := newInProcess(t)
	p.config = filepath.Join("testdata", "e2e", "console.yaml")
	const botToken, signing, secret = "xoxb-console-test-0123456789", "console-signing-secret-0123456789", "console-client-secret-0123456789"
	sl := slackfake.New(slackfake.Options{Token: botToken, TeamID: "T0ACME"})
	t.Cleanup(sl.Close)
	sl.AddChannel("C0AUDIT")
	sl.AddChannel("C0APPROVALS", "U0LEAD")
	for _, u := range []slackfake.User{{ID: "U0ALICE", Name: "alice", Email: "alice@example.com"}, {ID: "U0LEAD", Name: "lead", Email: "lead@example.com"}} {
		sl.AddUser(u)
	}
	idp, err := oidcfake.New(oidcfake.Options{ClientID: "1234.5678", ClientSecret: secret, Users: []oidcfake.User{
		{TeamID: "T0ACME", UserID: "U0ALICE", Email: "alice@example.com", Name: "alice"},
		{TeamID: "T0ACME", UserID: "U0MALLORY", Email: "mallory@example.com", Name: "mallory"},
		{TeamID: "T0OTHER", UserID: "U0EVE", Email: "eve@other.example", Name: "eve"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	t.Setenv("AB_PORT", port)
	t.Setenv("AB_SLACK_API_URL", sl.APIURL())
	t.Setenv("AB_SLACK_BOT_TOKEN", botToken)
	t.Setenv("AB_SLACK_SIGNING_SECRET", signing)
	t.Setenv("AB_CONSOLE_SECRET", secret)
	t.Setenv("AB_ISSUER", idp.Issuer())
	base, logs := startServer(t, p)

	signIn := func(user string) (int, string) {
		t.Helper()
		jar, _ := cookiejar.New(nil)
		hc := &http.Client{Jar: jar}
		body := func(resp *http.Response) string {
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return string(b)
		}
		resp, err := hc.Get(base + "/ui/signin/slack")
		if err != nil {
			t.Fatal(err)
		}
		page := body(resp)
		m := regexp.MustCompile(`id="as-` + user + `" href="([^"]+)"`).FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("no consent link for %s:\n%s", user, page)
		}
		resp, err = hc.Get(idp.URL + html.UnescapeString(m[1]))
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body(resp)
	}
	if code, page := signIn("U0ALICE"); code != http.StatusOK || !strings.Contains(page, "alice (U0ALICE)") {
		t.Fatalf("alice: %d\n%s", code, page)
	}
	if code, page := signIn("U0EVE"); code != http.StatusForbidden || !strings.Contains(page, "serves workspace T0ACME only") {
		t.Fatalf("eve: %d\n%s", code, page)
	}
	if code, page := signIn("U0MALLORY"); code != http.StatusForbidden || !strings.Contains(page, "could not be identified") {
		t.Fatalf("mallory: %d\n%s", code, page)
	}
	out := p.mustRun("audit", "search", "--config", p.config, "--action", "request.rejected", "--format", "json")
	for _, want := range []string{"U0EVE", "other_workspace", "U0MALLORY", "unknown_person", "console_signin"} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusals' audit events lack %s:\n%s", want, out)
		}
	}
	if strings.Contains(logs.String(), secret) {
		t.Error("the log contains the client secret")
	}
}
