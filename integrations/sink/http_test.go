package sink_test

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/fixtures/sinkfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
	"github.com/accessbroker/accessbroker/integrations/sink"
)

const testSecret = "sink-hmac-secret-0123456789abcdef0123" // not a secret: test only

func newHTTPSink(t *testing.T, e *env, url string, format audit.EventFormat) *sink.HTTP {
	t.Helper()
	h, err := sink.NewHTTP(sink.HTTPConfig{URL: url, Secret: testSecret, Format: format,
		Client: httpclient.New(httpclient.Options{RetryMax: -1, ReturnLastResponse: true}), Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

type countingMetrics struct {
	mu                sync.Mutex
	delivered, failed int
	lag               int64
}

func (m *countingMetrics) SinkDelivered(_ string, n int) {
	m.mu.Lock()
	m.delivered += n
	m.mu.Unlock()
}
func (m *countingMetrics) SinkFailed(string) { m.mu.Lock(); m.failed++; m.mu.Unlock() }
func (m *countingMetrics) SinkLag(_ string, events int64) {
	m.mu.Lock()
	m.lag = events
	m.mu.Unlock()
}

// get returns delivered, failed and lag.
func (m *countingMetrics) get() (int, int, int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.delivered, m.failed, m.lag
}

func noJitter() float64 { return 0 }
func streamerOpts(m grants.SinkMetrics) grants.StreamerOptions {
	return grants.StreamerOptions{Poll: time.Second, BackoffBase: time.Second, BackoffMax: 8 * time.Second, Jitter: noJitter, Metrics: m}
}

// TestHTTPSinkDownCatchesUpExactlyOnce is the "must show": a receiver that is down
// for a while (503 on every request, through several backoffs, while grants go on being
// recorded) receives every event after it recovers, in seq order and exactly once; a
// restarted streamer continues from the store's cursor without sending anything again.
func TestHTTPSinkDownCatchesUpExactlyOnce(t *testing.T) {
	e := newEnv(t)
	fake := sinkfake.New(testSecret, e.clock.Now)
	t.Cleanup(fake.Close)
	h := newHTTPSink(t, e, fake.URL(), audit.EventJSON)
	metrics := &countingMetrics{}
	newStreamer := func() *grants.Streamer {
		return grants.NewStreamer(e.store, []grants.StreamSink{{Sink: h, BatchSize: 25}}, e.clock, streamerOpts(metrics))
	}

	fake.Down(true)
	e.appendEvents(40)
	r := start(t, newStreamer())
	// Several failed attempts, with grants recorded in between: appending never waits on the sink.
	e.driveUntil("five refused deliveries", 8*time.Second, func() bool { return len(fake.Calls()) >= 5 })
	e.appendEvents(35)
	e.driveUntil("three more refused deliveries", 8*time.Second, func() bool { return len(fake.Calls()) >= 8 })
	if got := fake.Received(); len(got) != 0 {
		t.Fatalf("a down receiver stored %d events", len(got))
	}
	if _, failed, lag := metrics.get(); failed < 8 || lag != 75 {
		t.Fatalf("metrics while down: %d failures (want ≥ 8), lag %d (want 75)", failed, lag)
	}

	fake.Down(false)
	e.driveUntil("every event delivered after the recovery", 8*time.Second, func() bool { return len(fake.Received()) == 75 })
	if d := cmp.Diff(seqs(1, 75), fake.Received()); d != "" {
		t.Fatalf("events received out of seq order or missing (-want +got):\n%s", d)
	}
	if dup := fake.Duplicates(); len(dup) != 0 {
		t.Fatalf("seqs received more than once: %v", dup)
	}
	for _, c := range fake.Calls() {
		if c.Status == http.StatusOK && !c.Signed {
			t.Fatalf("an unsigned batch was accepted: %+v", c)
		}
		if c.Events > 25 {
			t.Fatalf("a batch of %d events, over batch_size 25", c.Events)
		}
	}
	if c, err := e.store.SinkCursor(t.Context(), h.Name()); err != nil || c != 75 {
		t.Fatalf("store cursor = %d, %v; want 75", c, err)
	}
	if delivered, _, lag := metrics.get(); delivered != 75 || lag != 0 {
		t.Fatalf("metrics after catching up: delivered %d (want 75), lag %d (want 0)", delivered, lag)
	}

	// A restart continues after the cursor.
	r.stop()
	e.appendEvents(10)
	start(t, newStreamer())
	e.driveUntil("the events after the restart", time.Second, func() bool { return len(fake.Received()) == 85 })
	if d := cmp.Diff(seqs(1, 85), fake.Received()); d != "" {
		t.Fatalf("after restart (-want +got):\n%s", d)
	}
	if dup := fake.Duplicates(); len(dup) != 0 {
		t.Fatalf("a restart sent seqs again: %v", dup)
	}
	// What the receiver holds is the log's own export form.
	got, _ := fake.Event(80)
	evs, err := e.store.ReadEvents(t.Context(), 79, 1)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := evs[0].MarshalJSON()
	if !bytes.Equal(got, want) {
		t.Fatalf("seq 80 stored as\n%s\nwant\n%s", got, want)
	}
}

// TestHTTPSinkHonoursRetryAfter: after a 429 with Retry-After: 120 the next attempt waits
// the full 120 s (not the 1 s backoff) on the clock, and then delivers.
func TestHTTPSinkHonoursRetryAfter(t *testing.T) {
	cases := map[string]func(now time.Time) string{
		"seconds":   func(time.Time) string { return "120" },
		"http date": func(now time.Time) string { return now.Add(120 * time.Second).Format(http.TimeFormat) },
	}
	for name, retryAfter := range cases {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			fake := sinkfake.New(testSecret, e.clock.Now)
			t.Cleanup(fake.Close)
			fake.RateLimit(1, retryAfter(e.clock.Now()))
			e.appendEvents(3)
			start(t, grants.NewStreamer(e.store, []grants.StreamSink{{Sink: newHTTPSink(t, e, fake.URL(), audit.EventJSON)}}, e.clock, streamerOpts(nil)))
			ctx := t.Context()
			e.driveUntil("the 429", time.Second, func() bool { return len(fake.Calls()) == 1 })
			if err := e.clock.BlockUntil(ctx, 1); err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(119 * time.Second)
			if err := e.clock.BlockUntil(ctx, 1); err != nil {
				t.Fatal(err)
			}
			if n := len(fake.Calls()); n != 1 {
				t.Fatalf("retried after 119 s of a 120 s Retry-After (%d calls: %+v)", n, fake.Calls())
			}
			e.clock.Advance(time.Second)
			e.driveUntil("the delivery after Retry-After", time.Second, func() bool { return len(fake.Received()) == 3 })
		})
	}
}

// TestHTTPSinkSignature: the receiver's check (docs/audit.md) accepts what the sink signs
// and refuses a wrong secret; a refused batch is not counted as delivered and is retried.
func TestHTTPSinkSignature(t *testing.T) {
	e := newEnv(t)
	fake := sinkfake.New("another-secret-0123456789abcdef0123456", e.clock.Now)
	t.Cleanup(fake.Close)
	e.appendEvents(2)
	st := grants.NewStreamer(e.store, []grants.StreamSink{{Sink: newHTTPSink(t, e, fake.URL(), audit.EventOCSF)}}, e.clock, streamerOpts(nil))
	start(t, st)
	e.driveUntil("two refused batches", time.Second, func() bool { return len(fake.Calls()) >= 2 })
	for _, c := range fake.Calls() {
		if c.Signed || c.Status != http.StatusUnauthorized {
			t.Fatalf("a batch signed with the wrong secret was accepted: %+v", c)
		}
	}
	if st.Delivered(0) != 0 {
		t.Fatalf("cursor moved to %d on refused batches", st.Delivered(0))
	}
	// The right secret's signature over the same bytes is what a receiver recomputes.
	sig := sink.Sign([]byte(testSecret), "1772442000", []byte("{\"seq\":1}\n"))
	if !strings.HasPrefix(sig, "v1=") || len(sig) != 3+64 {
		t.Fatalf("signature %q is not v1= and 64 hex digits", sig)
	}
}
