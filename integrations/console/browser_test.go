package console_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/accessbroker/accessbroker/grants"
)

// chromiumPath finds Debian's chromium. CI installs it (.ci/run), so there a missing browser
// fails the test; elsewhere the test skips and says why.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed; .ci/run installs it (apt-get install -y chromium)")
	}
	t.Skip("chromium is not installed (apt-get install -y chromium); the browser test needs it")
	return ""
}

// browserCtx starts headless Chromium with a fresh profile and returns a tab's context.
func browserCtx(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "profile")),
		chromedp.WindowSize(1280, 1000),
	}
	// A generous bound for the whole flow on a loaded 2-core machine; each step waits on
	// what the page shows, never on time.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(bcancel)
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// TestBrowserFlow drives the console in headless Chromium: sign in with Slack (the fake
// provider's consent page), request access and see the dry run first, approve it as another
// person, open the grant's story and find the approval and the issue there, and search the
// audit log as an auditor. Screenshots of each step go to the test's artifact directory.
func TestBrowserFlow(t *testing.T) {
	e := newEnv(t)
	ctx := browserCtx(t)
	shots := t.ArtifactDir()
	t.Logf("screenshots in %s", shots)
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			buf, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return chromedp.Void{}, err
			}
			return chromedp.Void{}, os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644)
		}
	}
	run := func(step string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			body, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
			t.Fatalf("%s: %v\npage:\n%s", step, err, body)
		}
	}
	// read stores what an action returns into *dst, as a step.
	text := func(sel string, dst *string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			v, err := chromedp.Text(chromedp.ID(sel))(ctx, tg)
			*dst = v
			return chromedp.Void{}, err
		}
	}
	location := func(dst *string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			v, err := chromedp.Location()(ctx, tg)
			*dst = v
			return chromedp.Void{}, err
		}
	}
	signIn := func(user string) {
		t.Helper()
		run("sign in as "+user,
			chromedp.Navigate(e.srv.URL+"/ui/signin"),
			chromedp.Click(chromedp.ID("signin-slack")),
			chromedp.WaitVisible(chromedp.ID("as-"+user)), // the provider's consent page
			chromedp.Click(chromedp.ID("as-"+user)),
			chromedp.WaitVisible(chromedp.Search(`//span[@class="who"][contains(., "`+user+`")]`)),
		)
	}
	signOut := func() {
		t.Helper()
		run("sign out", chromedp.Click(chromedp.Search(`//button[text()="Sign out"]`)), chromedp.WaitVisible(chromedp.Search(`//p[contains(., "You are signed out")]`)))
	}

	signIn(erin)
	var preview, state, reqURL string
	run("dry run",
		chromedp.Navigate(e.srv.URL+"/ui/request"),
		chromedp.SetValue(chromedp.ID("duration"), "1h"),
		chromedp.SendKeys(chromedp.ID("reason"), "read the slow query log"),
		chromedp.Click(chromedp.ID("dry-run")),
		chromedp.WaitVisible(chromedp.ID("preview")),
		text("preview", &preview),
		shot("1-dry-run"),
	)
	if !strings.Contains(preview, "would be sent for approval") || !strings.Contains(preview, bob) {
		t.Fatalf("dry run says %q; want sent for approval to %s", preview, bob)
	}
	run("submit",
		chromedp.Click(chromedp.ID("submit")),
		chromedp.WaitVisible(chromedp.ID("request-state")),
		text("request-state", &state),
		location(&reqURL),
		shot("2-request-pending"),
	)
	if state != "pending" {
		t.Fatalf("request state %q; want pending", state)
	}
	reqID := reqURL[strings.LastIndex(reqURL, "/")+1:]
	if i := strings.IndexByte(reqID, '?'); i >= 0 {
		reqID = reqID[:i]
	}
	if !grants.ValidID("r", reqID) {
		t.Fatalf("request page %s names no request", reqURL)
	}
	signOut()

	signIn(bob)
	run("approve",
		chromedp.Navigate(e.srv.URL+"/ui/approvals"),
		chromedp.WaitVisible(chromedp.ID("inbox")),
		shot("3-inbox"),
		chromedp.Click(chromedp.Search(`//button[@aria-label="Approve request `+reqID+`"]`)),
		chromedp.WaitVisible(chromedp.Search(`//p[contains(., "decision was recorded")]`)),
		text("request-state", &state),
	)
	if state != "approved" {
		t.Fatalf("after bob's approval the request is %q", state)
	}
	if err := e.c.Chain().Step(t.Context()); err != nil {
		t.Fatal(err)
	}
	signOut()

	signIn(erin)
	var story, grantURL string
	run("story",
		chromedp.Navigate(e.srv.URL+"/ui/requests/"+reqID),
		chromedp.Click(chromedp.ID("grant-link")),
		chromedp.WaitVisible(chromedp.ID("grant-state")), // only on the grant's page: the request's page has a story too
		chromedp.WaitVisible(chromedp.ID("story")),
		text("story", &story),
		location(&grantURL),
		shot("4-story"),
	)
	for _, want := range []string{"request.approved", "by user " + bob, "grant.issued", "✓ verified"} {
		if !strings.Contains(story, want) {
			t.Errorf("the grant's story lacks %q:\n%s", want, story)
		}
	}
	grantID := grantURL[strings.LastIndex(grantURL, "/")+1:]
	signOut()

	signIn(carol)
	var results string
	run("audit search",
		chromedp.Navigate(e.srv.URL+"/ui/audit"),
		chromedp.SendKeys(chromedp.ID("grant"), grantID),
		chromedp.Click(chromedp.ID("search")),
		// The answer's form carries the filter as its value attribute; the page typed into
		// (which lists the newest events already) has it only as a property.
		chromedp.WaitVisible(chromedp.Search(`//input[@id="grant"][@value="`+grantID+`"]`)),
		chromedp.WaitVisible(chromedp.ID("results")),
		text("results", &results),
		shot("5-audit-search"),
	)
	for _, want := range []string{"grant.issued", "grant.issuing", grantID} {
		if !strings.Contains(results, want) {
			t.Errorf("the audit search for %s lacks %q:\n%s", grantID, want, results)
		}
	}
	for _, n := range []string{"1-dry-run", "2-request-pending", "3-inbox", "4-story", "5-audit-search"} {
		if fi, err := os.Stat(filepath.Join(shots, n+".png")); err != nil || fi.Size() == 0 {
			t.Errorf("screenshot %s: %v", n, err)
		}
	}
}
