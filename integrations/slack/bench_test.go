package slack

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/fixtures/slackfake"
)

// BenchmarkCommandAck measures how long Slack waits for the acknowledgement of a slash
// command when 200 signed /access requests arrive at once: verify, parse, record the request
// in SQLite, answer. The background work (on-call check, issue, delivery through the fake
// Slack) runs concurrently, as in production, and is awaited between batches. Each iteration
// is one batch of 200; p50 and p99 are over every request of every batch.
//
//	go test -run '^$' -bench BenchmarkCommandAck -benchtime 5x ./integrations/slack/
func BenchmarkCommandAck(b *testing.B) {
	e := newE2E(b)
	benchBatch(b, e, "prod-db 1h benchmarking the ack path")
	if got := len(e.allGrants(b)); got != 200*b.N {
		b.Fatalf("grants = %d, want %d", got, 200*b.N)
	}
}

// BenchmarkHelpAck is the floor of BenchmarkCommandAck: 200 concurrent signed "/access help"
// commands, verified, parsed and answered without any database write.
func BenchmarkHelpAck(b *testing.B) {
	benchBatch(b, newE2E(b), "help")
}

func benchBatch(b *testing.B, e *e2e, text string) {
	const concurrent = 200
	// Slack keeps connections to the app alive; so does this client.
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: concurrent, MaxIdleConnsPerHost: concurrent}}
	defer client.CloseIdleConnections()
	var all []time.Duration
	n := 0
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		reqs := make([]*http.Request, concurrent)
		for i := range reqs {
			// A distinct on-call user each: one requester's pending requests are capped.
			n++
			user := fmt.Sprintf("U0BENCH%06d", n)
			e.fake.AddUser(slackfake.User{ID: user, Name: strings.ToLower(user), Email: strings.ToLower(user) + "@example.com"})
			e.onCall(user)
			reqs[i] = e.signed(CommandsPath, e.commandBody(user, text), e.clock.Now())
		}
		lat := make([]time.Duration, concurrent)
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for i, r := range reqs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				start := time.Now()
				resp, err := client.Do(r)
				lat[i] = time.Since(start)
				if err != nil {
					b.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("status %d", resp.StatusCode)
				}
			}()
		}
		b.StartTimer()
		close(gate)
		wg.Wait()
		b.StopTimer()
		e.settle(b)
		all = append(all, lat...)
		b.StartTimer()
	}
	b.StopTimer()
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) float64 {
		return float64(all[int(p*float64(len(all)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(all[len(all)-1])/float64(time.Millisecond), "max-ms")
}
