package health

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
)

var start = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func ok(context.Context) error { return nil }

func failWith(msg string) Func {
	return func(context.Context) error { return errors.New(msg) }
}

func mustNew(t *testing.T, clock grants.Clock, checks []Check, opts Options) *Registry {
	t.Helper()
	r, err := New(clock, checks, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func serve(t *testing.T, h http.Handler, target string) (int, string, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, rec.Header().Get("Content-Type"), string(b)
}

func TestNewRefusesBadChecks(t *testing.T) {
	clock := clocktest.New(start)
	for name, checks := range map[string][]Check{
		"duplicate": {{Name: "slack", Run: ok}, {Name: "slack", Run: ok}},
		"no name":   {{Run: ok}},
		"no func":   {{Name: "slack"}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(clock, checks, Options{}); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
	if _, err := New(nil, nil, Options{}); err == nil {
		t.Fatal("New accepted a nil clock")
	}
}

// TestReadyz: 200 only when the store and every check pass; otherwise 503 naming each failing
// dependency and why, never a secret.
func TestReadyz(t *testing.T) {
	const secret = "hunter2-admin-password"
	storeDown := func(context.Context) error { return errors.New("database is locked") }
	tests := []struct {
		name     string
		checks   []Check
		store    Func
		run      bool // run a round before asking
		wantCode int
		want     []string // substrings of the body
		notWant  []string
	}{
		{name: "no dependencies", store: ok, run: true, wantCode: 200, want: []string{"ready\n"}},
		{name: "all pass", checks: []Check{{"slack", ok}, {"postgres:prod-db", ok}}, store: ok, run: true, wantCode: 200, want: []string{"ready\n"}},
		{name: "one provider failing", checks: []Check{{"slack", ok}, {"postgres:prod-db", failWith("connect: connection refused")}}, store: ok, run: true,
			wantCode: 503, want: []string{"not ready: postgres:prod-db: connect: connection refused\n"}, notWant: []string{"slack"}},
		{name: "two failing, named in order", checks: []Check{{"slack", failWith("slack auth.test: invalid_auth")}, {"github-team:infra-admins", failWith("team acme/infra-admins\ndoes not exist")}}, store: ok, run: true,
			wantCode: 503, want: []string{"not ready: slack: slack auth.test: invalid_auth; github-team:infra-admins: team acme/infra-admins does not exist\n"}},
		{name: "store down", checks: []Check{{"slack", ok}}, store: storeDown, run: true, wantCode: 503, want: []string{"not ready: store: database is locked"}},
		{name: "before the first round", checks: []Check{{"slack", ok}}, store: ok, wantCode: 503, want: []string{"slack: not checked yet"}},
		{name: "secret scrubbed", checks: []Check{{"postgres:prod-db", failWith("auth failed for password " + secret)}}, store: ok, run: true,
			wantCode: 503, want: []string{"[REDACTED]"}, notWant: []string{secret}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustNew(t, clocktest.New(start), tt.checks, Options{Secrets: []string{secret}})
			if tt.run {
				r.RunOnce(t.Context())
			}
			code, ctype, body := serve(t, r.Handler(tt.store, time.Second), "/readyz")
			if code != tt.wantCode || !strings.HasPrefix(ctype, "text/plain") {
				t.Errorf("code %d (%s), want %d text/plain; body %q", code, ctype, tt.wantCode, body)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("body %q lacks %q", body, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(body, w) {
					t.Errorf("body %q has %q", body, w)
				}
			}
		})
	}
}

func TestReadyzVerbose(t *testing.T) {
	const secret = "s3cret-dsn-password"
	r := mustNew(t, clocktest.New(start), []Check{
		{"slack", ok},
		{"postgres:prod-db", failWith("dial tcp 127.0.0.1:1: connect: connection refused (password " + secret + ")")},
	}, Options{Secrets: []string{secret}})
	r.RunOnce(t.Context())
	code, ctype, body := serve(t, r.Handler(ok, time.Second), "/readyz?verbose")
	if code != 503 || ctype != "application/json" {
		t.Fatalf("code %d %s", code, ctype)
	}
	want, err := os.ReadFile(filepath.Join("testdata", "verbose-failing.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got, wantV any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if err := json.Unmarshal(want, &wantV); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantV, got); diff != "" {
		t.Errorf("verbose body (-want +got):\n%s", diff)
	}

	r = mustNew(t, clocktest.New(start), []Check{{"slack", ok}}, Options{})
	r.RunOnce(t.Context())
	if code, _, body := serve(t, r.Handler(ok, time.Second), "/readyz?verbose=1"); code != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Errorf("healthy verbose = %d %s", code, body)
	}
}

// TestRunOnceParallelAndBounded: checks run at once (a round takes as long as its slowest
// check, not the sum), and one that never answers is cut off by the timeout and named.
func TestRunOnceParallelAndBounded(t *testing.T) {
	var mu sync.Mutex
	started := 0
	all := make(chan struct{})
	barrier := func(ctx context.Context) error {
		mu.Lock()
		started++
		if started == 3 {
			close(all)
		}
		mu.Unlock()
		select { // passes only once every check is running at the same time
		case <-all:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r := mustNew(t, clocktest.New(start), []Check{{"a", barrier}, {"b", barrier}, {"c", barrier}}, Options{Timeout: time.Minute})
	for _, x := range r.RunOnce(t.Context()) {
		if !x.OK {
			t.Errorf("%s: %s (checks did not run in parallel)", x.Name, x.Error)
		}
	}

	returned := make(chan struct{})
	release := make(chan struct{})
	calls := 0
	hang := func(context.Context) error { // ignores its context until released
		mu.Lock()
		calls++
		mu.Unlock()
		defer close(returned) // a second start would close it twice
		<-release
		return nil
	}
	r = mustNew(t, clocktest.New(start), []Check{{"hang", hang}}, Options{Timeout: 50 * time.Millisecond})
	if h := r.RunOnce(t.Context())[0]; h.OK || !strings.Contains(h.Error, "no answer within the check timeout") || !errors.Is(h.Err, context.DeadlineExceeded) {
		t.Errorf("hung check: %+v", h)
	}
	// While it still hangs it is not started again: one goroutine, not one per round.
	if h := r.RunOnce(t.Context())[0]; h.OK || !strings.Contains(h.Error, "previous check has not returned") {
		t.Errorf("second round of a hung check: %+v", h)
	}
	mu.Lock()
	n := calls
	mu.Unlock()
	if n != 1 {
		t.Errorf("the hung check was started %d times, want 1", n)
	}
	close(release)
	<-returned
}

// TestRunRechecksOnTheClock: after the interval the checks run again, so a dependency that
// comes back turns /readyz green without a restart, and the metric hook follows.
func TestRunRechecksOnTheClock(t *testing.T) {
	clock := clocktest.New(start)
	var mu sync.Mutex
	down := true
	observed := map[string][]bool{}
	db := func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return errors.New("connection refused")
		}
		return nil
	}
	r := mustNew(t, clock, []Check{{"postgres:prod-db", db}}, Options{Interval: 30 * time.Second, Observe: func(name string, ok bool) {
		mu.Lock()
		observed[name] = append(observed[name], ok)
		mu.Unlock()
	}})
	r.RunOnce(t.Context())
	h := r.Handler(ok, time.Second)
	if code, _, _ := serve(t, h, "/readyz"); code != 503 {
		t.Fatalf("down: %d", code)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	mu.Lock()
	down = false
	mu.Unlock()
	if err := clock.BlockUntil(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * time.Second)
	if err := clock.BlockUntil(t.Context(), 1); err != nil { // the next round's timer: this one is done
		t.Fatal(err)
	}
	if code, _, body := serve(t, h, "/readyz"); code != 200 {
		t.Errorf("after recovery: %d %s", code, body)
	}
	if got := r.Results()[0]; !got.OK || !got.CheckedAt.Equal(start.Add(30*time.Second)) {
		t.Errorf("result %+v", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(map[string][]bool{"postgres:prod-db": {false, true}}, observed); diff != "" {
		t.Errorf("observed (-want +got):\n%s", diff)
	}
}
