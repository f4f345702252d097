package pagerduty_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/fixtures/pdfake"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
	"github.com/accessbroker/accessbroker/integrations/pagerduty"
)

const (
	apiToken = "u+testtoken-Zx81"
	// retries is the HTTP client's RetryMax in these tests: 1 + retries attempts per call.
	retries = 2
)

// t0 is "now" for the on-call tests.
var t0 = time.Date(2025, 3, 6, 15, 0, 0, 0, time.UTC)

type env struct {
	fake   *pdfake.Server
	clock  *clocktest.Fake
	client *pagerduty.Client
	logs   *syncBuffer
	logger *slog.Logger
}

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newEnv starts a fake PagerDuty whose "now" is a fake clock set to start, and a Client on the
// project's retrying HTTP client (fast waits, `retries` retries) pointed at it.
func newEnv(t testing.TB, start time.Time) *env {
	t.Helper()
	clk := clocktest.New(start)
	fake := pdfake.New(pdfake.Options{Token: apiToken, Now: clk.Now})
	t.Cleanup(fake.Close)
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	hc := httpclient.New(httpclient.Options{
		RetryMax: retries, WaitMin: time.Millisecond, WaitMax: 2 * time.Millisecond, MaxRetryAfter: 5 * time.Millisecond,
		ReturnLastResponse: true, Clock: clk, Logger: logger,
	})
	c, err := pagerduty.New(pagerduty.Config{APIURL: fake.URL + "/", Token: apiToken, HTTP: hc, Clock: clk, Logger: logger})
	if err != nil {
		t.Fatalf("pagerduty.New: %v", err)
	}
	return &env{fake: fake, clock: clk, client: c, logs: logs, logger: logger}
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "fixtures", "pagerduty", name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

// recorder is a pagerduty.Recorder that keeps the events.
type recorder struct {
	mu     sync.Mutex
	events []audit.Event
	fail   error
}

func (r *recorder) Record(_ context.Context, e audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.events = append(r.events, e)
	return nil
}

func (r *recorder) all() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]audit.Event(nil), r.events...)
}

func (r *recorder) actions() []audit.Action {
	var out []audit.Action
	for _, e := range r.all() {
		out = append(out, e.Action)
	}
	return out
}

// pages is a pagerduty.Pages that records calls; failAcks makes that many Acknowledged calls
// fail first.
type pages struct {
	mu       sync.Mutex
	acks     []broker.PageAck
	resolved []broker.PageResolved
	failAcks int
	attempts int
}

var errBrokerDown = errors.New("broker store unavailable")

func (p *pages) Acknowledged(_ context.Context, a broker.PageAck) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts++
	if p.failAcks > 0 {
		p.failAcks--
		return errBrokerDown
	}
	p.acks = append(p.acks, a)
	return nil
}

func (p *pages) Resolved(_ context.Context, r broker.PageResolved) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resolved = append(p.resolved, r)
	return nil
}

func (p *pages) snapshot() ([]broker.PageAck, []broker.PageResolved) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]broker.PageAck(nil), p.acks...), append([]broker.PageResolved(nil), p.resolved...)
}
