package witness_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/fixtures/witnessfake"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
	"github.com/accessbroker/accessbroker/integrations/witness"
)

const witnessToken = "witness-token-0123456789"

func newHTTPWitness(t *testing.T, token string) (*witness.HTTP, *witnessfake.Server) {
	t.Helper()
	fake := witnessfake.New(witnessToken)
	t.Cleanup(fake.Close)
	hc := httpclient.New(httpclient.Options{RetryMax: 2, WaitMin: time.Millisecond, WaitMax: 5 * time.Millisecond, MaxRetryAfter: 10 * time.Millisecond})
	w, err := witness.NewHTTP(witness.HTTPConfig{URL: fake.URL(), BearerToken: token, Client: hc})
	if err != nil {
		t.Fatal(err)
	}
	return w, fake
}

func TestHTTPPublishAndReadBack(t *testing.T) {
	ctx := context.Background()
	w, fake := newHTTPWitness(t, witnessToken)
	want := checkpoints(t, 3)
	fake.RateLimit(1, 0)                        // 429 with Retry-After, then stored
	fake.Fail(1, http.StatusServiceUnavailable) // a 503 once, retried
	for _, c := range want {
		if err := w.Publish(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	got, err := w.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("read back (-want +got):\n%s", d)
	}
	for _, c := range fake.Calls() {
		if !c.Authorized {
			t.Errorf("call %+v sent no valid bearer token", c)
		}
	}
	if strings.Contains(w.Name(), witnessToken) {
		t.Error("the witness name contains the token")
	}
}

func TestHTTPFailures(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		token string
		setup func(*witnessfake.Server)
		want  string
	}{
		{"wrong token", "wrong", func(*witnessfake.Server) {}, "401"},
		{"server keeps failing", witnessToken, func(f *witnessfake.Server) { f.Fail(10, http.StatusInternalServerError) }, "500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, fake := newHTTPWitness(t, tt.token)
			tt.setup(fake)
			err := w.Publish(ctx, checkpoints(t, 1)[0])
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Publish: %v, want an error with %q", err, tt.want)
			}
			if strings.Contains(err.Error(), witnessToken) {
				t.Fatal("the error contains the token")
			}
			if len(fake.Stored()) != 0 {
				t.Fatal("a failed publication was stored")
			}
		})
	}
}

func TestHTTPReadsJSONLines(t *testing.T) {
	w, fake := newHTTPWitness(t, witnessToken)
	b, err := os.ReadFile(filepath.Join("testdata", "three.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var bodies [][]byte
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		bodies = append(bodies, []byte(l))
	}
	fake.Replace(bodies)
	fake.AnswerJSONLines(true)
	got, err := w.Checkpoints(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(checkpoints(t, 3), got); d != "" {
		t.Fatalf("JSON lines answer (-want +got):\n%s", d)
	}
}

// TestHTTPRefusesAnswersItCannotReadWhole: data after the JSON array, or an answer over the
// size limit, is an error rather than a partial list that would pass for what the witness
// holds.
func TestHTTPRefusesAnswersItCannotReadWhole(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "three.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	array := "[" + strings.Join(strings.Split(strings.TrimSpace(string(b)), "\n"), ",") + "]"
	for _, tc := range []struct {
		name, body, want string
	}{
		{"an array", array, ""},
		{"an array, then more", array + ` {"seq": 99}`, "has more after its JSON array"},
		{"over the limit", array + strings.Repeat(" ", 64<<20), "is over 64 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			w, err := witness.NewHTTP(witness.HTTPConfig{URL: srv.URL, Client: srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			got, err := w.Checkpoints(context.Background())
			switch {
			case tc.want == "" && (err != nil || len(got) != 3):
				t.Fatalf("Checkpoints = %d, %v; want 3", len(got), err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Checkpoints = %d, %v; want an error naming %q", len(got), err, tc.want)
			}
		})
	}
}
