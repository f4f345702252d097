package httpclient

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"testing"
)

// levelsLogged returns how many lines were logged at each level.
func levelsLogged(t *testing.T, out []byte) map[string]int {
	t.Helper()
	n := map[string]int{}
	for line := range bytes.Lines(out) {
		var rec struct{ Level string }
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		n[rec.Level]++
	}
	return n
}

// TestRetriesWarnFinalFailureErrorOnce: each retry is a WARN; a request that fails for good is
// one ERROR line; one that succeeds after retries logs no ERROR at all.
func TestRetriesWarnFinalFailureErrorOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		steps      []step
		flaky      int // connection errors before the server is reached
		returnLast bool
		wantErr    bool
		wantWarn   bool
		wantError  int
	}{
		{name: "503 then 200", steps: []step{{status: 503}, {status: 200}}, wantWarn: true},
		{name: "connection reset then 200", steps: []step{{status: 200}}, flaky: 1, wantWarn: true},
		{name: "always 503", steps: []step{{status: 503}}, wantErr: true, wantWarn: true, wantError: 1},
		{name: "always 503, last response returned", steps: []step{{status: 503}}, returnLast: true, wantWarn: true, wantError: 1},
		{name: "always unreachable", steps: []step{{status: 200}}, flaky: 100, wantErr: true, wantWarn: true, wantError: 1},
		{name: "404 is an answer, not a failure", steps: []step{{status: 404}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			var mu sync.Mutex
			opts := fastOptions()
			opts.Logger = slog.New(slog.NewJSONHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
			opts.ReturnLastResponse = tc.returnLast
			opts.RetryMax = 3
			_, url := newScript(t, tc.steps...)
			if tc.flaky > 0 {
				opts.Transport = &flakyTransport{n: tc.flaky, next: http.DefaultTransport}
			}
			_, err := get(t, New(opts), url)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tc.wantErr)
			}
			mu.Lock()
			out := append([]byte(nil), buf.Bytes()...)
			mu.Unlock()
			levels := levelsLogged(t, out)
			if levels["ERROR"] != tc.wantError || (levels["WARN"] > 0) != tc.wantWarn {
				t.Errorf("levels logged = %v; want %d ERROR and WARN lines: %v\n%s", levels, tc.wantError, tc.wantWarn, out)
			}
		})
	}
}
