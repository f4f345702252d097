package httpclient

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// script is an httptest handler that answers each call with the next scripted response and
// records what it received.
type script struct {
	mu     sync.Mutex
	steps  []step
	calls  int
	bodies []string
	seen   chan struct{} // receives (without blocking) after each call is recorded
}

type step struct {
	status  int
	headers map[string]string
	body    string
	hang    bool // wait for the client to give up before answering
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	st := s.steps[min(s.calls, len(s.steps)-1)]
	s.calls++
	s.bodies = append(s.bodies, string(b))
	s.mu.Unlock()
	select {
	case s.seen <- struct{}{}:
	default:
	}
	if st.hang {
		<-r.Context().Done()
		return
	}
	for k, v := range st.headers {
		w.Header().Set(k, v)
	}
	w.WriteHeader(st.status)
	_, _ = io.WriteString(w, st.body)
}

func (s *script) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func newScript(t *testing.T, steps ...step) (*script, string) {
	t.Helper()
	s := &script{steps: steps, seen: make(chan struct{}, 1)}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.URL
}

func fastOptions() Options {
	return Options{WaitMin: time.Millisecond, WaitMax: 5 * time.Millisecond, MaxRetryAfter: 10 * time.Millisecond}
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err == nil {
		t.Cleanup(func() { resp.Body.Close() })
	}
	return resp, err
}

func TestRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		steps      []step
		wantStatus int // final status seen by the caller; 0 means an error is expected
		wantCalls  int
		wantErr    string
	}{
		{name: "500 then 200", steps: []step{{status: 500}, {status: 200, body: "ok"}}, wantStatus: 200, wantCalls: 2},
		{name: "502 503 504 then 200", steps: []step{{status: 502}, {status: 503}, {status: 504}, {status: 200}}, wantStatus: 200, wantCalls: 4},
		{name: "429 Retry-After 1 capped", steps: []step{{status: 429, headers: map[string]string{"Retry-After": "1"}}, {status: 200}}, wantStatus: 200, wantCalls: 2},
		// An hour-long Retry-After would blow the test's 10s deadline if it were not capped.
		{name: "429 Retry-After 3600 capped", steps: []step{{status: 429, headers: map[string]string{"Retry-After": "3600"}}, {status: 200}}, wantStatus: 200, wantCalls: 2},
		{name: "429 Retry-After HTTP date", steps: []step{{status: 429, headers: map[string]string{"Retry-After": time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}}, {status: 200}}, wantStatus: 200, wantCalls: 2},
		{name: "github secondary limit 403 with Retry-After", steps: []step{{status: 403, headers: map[string]string{"Retry-After": "60"}}, {status: 200}}, wantStatus: 200, wantCalls: 2},
		{name: "github primary limit 403 remaining 0", steps: []step{{status: 403, headers: map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "4102444800"}}, {status: 200}}, wantStatus: 200, wantCalls: 2},
		{name: "plain 403 not retried", steps: []step{{status: 403, headers: map[string]string{"X-RateLimit-Remaining": "4999"}}, {status: 200}}, wantStatus: 403, wantCalls: 1},
		{name: "501 not retried", steps: []step{{status: 501}, {status: 200}}, wantStatus: 501, wantCalls: 1},
		{name: "400 not retried", steps: []step{{status: 400}, {status: 200}}, wantStatus: 400, wantCalls: 1},
		{name: "404 not retried", steps: []step{{status: 404}, {status: 200}}, wantStatus: 404, wantCalls: 1},
		{name: "exhausted 503", steps: []step{{status: 503}}, wantCalls: 5, wantErr: "giving up after 5 attempt(s): server answered 503 Service Unavailable"},
		{name: "exhausted 429", steps: []step{{status: 429, headers: map[string]string{"Retry-After": "1"}}}, wantCalls: 5, wantErr: "server answered 429 Too Many Requests"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, url := newScript(t, tc.steps...)
			resp, err := get(t, New(fastOptions()), url)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("got status %d, want error %q", resp.StatusCode, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q does not contain %q", err, tc.wantErr)
				}
			} else {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if resp.StatusCode != tc.wantStatus {
					t.Fatalf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
				}
			}
			if got := s.Calls(); got != tc.wantCalls {
				t.Fatalf("server saw %d calls, want %d", got, tc.wantCalls)
			}
		})
	}
}

func TestExhaustedErrorIsStatusError(t *testing.T) {
	t.Parallel()
	_, url := newScript(t, step{status: 500})
	opts := fastOptions()
	opts.RetryMax = 2
	_, err := get(t, New(opts), url)
	if !IsStatus(err, 500) {
		t.Fatalf("IsStatus(err, 500) = false for %v", err)
	}
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 500 {
		t.Fatalf("errors.As StatusError failed for %v", err)
	}
}

func TestReturnLastResponse(t *testing.T) {
	t.Parallel()
	s, url := newScript(t, step{status: 429, headers: map[string]string{"Retry-After": "1"}, body: `{"error":"ratelimited"}`})
	opts := fastOptions()
	opts.RetryMax = 2
	opts.ReturnLastResponse = true
	resp, err := get(t, New(opts), url)
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 429 || string(body) != `{"error":"ratelimited"}` {
		t.Fatalf("got %d %q, want the last 429 with its body", resp.StatusCode, body)
	}
	if s.Calls() != 3 {
		t.Fatalf("server saw %d calls, want 3", s.Calls())
	}
}

func TestBodyResentIntact(t *testing.T) {
	t.Parallel()
	s, url := newScript(t, step{status: 502}, step{status: 500}, step{status: 200})
	const form = "token=xoxb-secret&channel=C1&text=hello+world"
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := New(fastOptions()).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if diff := cmp.Diff([]string{form, form, form}, s.bodies); diff != "" {
		t.Fatalf("bodies received (-want +got):\n%s", diff)
	}
}

// flakyTransport fails the first n round trips with a connection error.
type flakyTransport struct {
	mu   sync.Mutex
	n    int
	next http.RoundTripper
}

func (f *flakyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	fail := f.n > 0
	f.n--
	f.mu.Unlock()
	if fail {
		return nil, errors.New("connection reset by peer")
	}
	return f.next.RoundTrip(r)
}

func TestConnectionErrorRetried(t *testing.T) {
	t.Parallel()
	s, url := newScript(t, step{status: 200})
	opts := fastOptions()
	opts.Transport = &flakyTransport{n: 2, next: http.DefaultTransport}
	resp, err := get(t, New(opts), url)
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if resp.StatusCode != 200 || s.Calls() != 1 {
		t.Fatalf("status %d after %d server calls, want 200 after 1", resp.StatusCode, s.Calls())
	}
}

func TestPerAttemptTimeout(t *testing.T) {
	t.Parallel()
	s, url := newScript(t, step{hang: true}, step{status: 200})
	opts := fastOptions()
	// Long enough for a loopback answer on a loaded machine, so that only the hanging first
	// attempt is abandoned; the assertion counts attempts, not time.
	opts.Timeout = time.Second
	resp, err := get(t, New(opts), url)
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if resp.StatusCode != 200 || s.Calls() != 2 {
		t.Fatalf("status %d after %d calls, want 200 after 2", resp.StatusCode, s.Calls())
	}
}

func TestContextCancelStopsRetrying(t *testing.T) {
	t.Parallel()
	s, url := newScript(t, step{status: 503, headers: map[string]string{"Retry-After": "3600"}})
	opts := fastOptions()
	opts.MaxRetryAfter = time.Hour
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	done := make(chan error, 1)
	go func() {
		_, err := New(opts).Do(req)
		done <- err
	}()
	<-s.seen // the first attempt arrived; the client is now waiting an hour to retry
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if s.Calls() != 1 {
		t.Fatalf("server saw %d calls after cancel, want 1", s.Calls())
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { return now }
	resp := func(code int, h map[string]string) *http.Response {
		r := &http.Response{StatusCode: code, Header: http.Header{}}
		for k, v := range h {
			r.Header.Set(k, v)
		}
		return r
	}
	tests := []struct {
		name string
		resp *http.Response
		cap  time.Duration
		want time.Duration
	}{
		{"retry-after seconds under cap", resp(429, map[string]string{"Retry-After": "2"}), 30 * time.Second, 2 * time.Second},
		{"retry-after seconds capped", resp(429, map[string]string{"Retry-After": "1"}), 10 * time.Millisecond, 10 * time.Millisecond},
		{"retry-after date", resp(503, map[string]string{"Retry-After": now.Add(7 * time.Second).Format(http.TimeFormat)}), time.Minute, 7 * time.Second},
		{"retry-after date in the past", resp(503, map[string]string{"Retry-After": now.Add(-time.Hour).Format(http.TimeFormat)}), time.Minute, 0},
		{"github reset", resp(403, map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1735787065"}), time.Hour, 20 * time.Second},
		{"github reset capped", resp(403, map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1735790645"}), 30 * time.Second, 30 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := backoff(tc.cap, clock)(time.Millisecond, time.Second, 0, tc.resp); got != tc.want {
				t.Fatalf("backoff = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("jittered exponential within bounds", func(t *testing.T) {
		min, max := 100*time.Millisecond, 2*time.Second
		for attempt := range 8 {
			ceiling := min * time.Duration(1<<attempt)
			if ceiling > max {
				ceiling = max
			}
			for range 50 {
				got := backoff(time.Minute, clock)(min, max, attempt, resp(500, nil))
				if got < ceiling/2 || got > ceiling {
					t.Fatalf("attempt %d: wait %v outside [%v, %v]", attempt, got, ceiling/2, ceiling)
				}
			}
		}
	})
}

func TestLogsNeverCarrySecrets(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	_, url := newScript(t, step{status: 500}, step{status: 200})
	opts := fastOptions()
	opts.Logger = logger
	opts.Transport = &flakyTransport{n: 1, next: http.DefaultTransport}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/api/chat.postMessage?token=QUERYSECRET", strings.NewReader("token=BODYSECRET"))
	req.Header.Set("Authorization", "Bearer HEADERSECRET")
	resp, err := New(opts).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	for _, secret := range []string{"QUERYSECRET", "BODYSECRET", "HEADERSECRET"} {
		if strings.Contains(out, secret) {
			t.Errorf("log output contains %s:\n%s", secret, out)
		}
	}
	for _, want := range []string{"retrying request", "request failed", "/api/chat.postMessage?[REDACTED]"} {
		if !strings.Contains(out, want) {
			t.Errorf("log output lacks %q:\n%s", want, out)
		}
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestRedactQuery(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"GET https://slack.com/api/x?token=abc (status: 500)": "GET https://slack.com/api/x?[REDACTED] (status: 500)",
		`Post "http://127.0.0.1:1/p?a=1&b=2": EOF`:            `Post "http://127.0.0.1:1/p?[REDACTED]": EOF`,
		"no url here?really":                                  "no url here?really",
		"https://example.com/path":                            "https://example.com/path",
	}
	for in, want := range tests {
		if got := RedactQuery(in); got != want {
			t.Errorf("RedactQuery(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	o := Options{}.withDefaults()
	got := []time.Duration{time.Duration(o.RetryMax), o.WaitMin, o.WaitMax, o.MaxRetryAfter}
	want := []time.Duration{4, 200 * time.Millisecond, 5 * time.Second, 30 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("defaults (-want +got):\n%s", diff)
	}
	if o.Transport == nil || o.Clock == nil {
		t.Fatal("default transport or clock missing")
	}
	if (Options{RetryMax: -1}).withDefaults().RetryMax != 0 {
		t.Fatal("RetryMax -1 should disable retries")
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

// TestLoggedValuesKeepTheirKind: retryablehttp's durations, counts and flags reach slog as
// themselves (a time.Duration is a fmt.Stringer, and was once turned into a string by the
// Stringer case before its own case could match); text of every kind has its URL queries
// redacted.
func TestLoggedValuesKeepTheirKind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   any
		want any
	}{
		{"duration", 1500 * time.Millisecond, 1500 * time.Millisecond},
		{"int", 3, 3},
		{"int64", int64(4), int64(4)},
		{"bool", true, true},
		{"string", "https://x.example/p?token=S", "https://x.example/p?[REDACTED]"},
		{"error", errors.New(`Post "https://x.example/p?token=S": EOF`), `Post "https://x.example/p?[REDACTED]": EOF`},
		{"stringer", stringer("https://x.example/p?token=S"), "https://x.example/p?[REDACTED]"},
		{"other", []string{"https://x.example/p?token=S", "end"}, "[https://x.example/p?[REDACTED] end]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, scrubValue(tc.in)); diff != "" {
				t.Fatalf("scrubValue(%#v) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}
