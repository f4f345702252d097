package sqlstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// BenchmarkAckBatch is the transaction of a Slack burst's acknowledgements: one Apply with
// the requests of 200 people (each under the default pending cap of 1, as Broker.Submit
// writes them) and their request.created events, which is what the group commit merges the
// commands arriving together into. cpu-us/request is the process's CPU time per request.
//
//	go test -run '^$' -bench BenchmarkAckBatch -benchtime 50x -cpu 1 ./grants/sqlstore/
func BenchmarkAckBatch(b *testing.B) {
	const batch = 200
	s, err := sqlstore.Open(context.Background(), "sqlite", "file:"+filepath.Join(b.TempDir(), "ab.db"), grants.RealClock{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	now := time.Now().UTC()
	n := 0
	change := func() *grants.Change {
		c := &grants.Change{}
		for range batch {
			n++
			user := fmt.Sprintf("U%07d", n)
			r := &grants.Request{ID: grants.NewID("r"), Requester: grants.Person{SlackTeamID: "T1", SlackUserID: user}, Resource: "prod-db",
				Duration: time.Hour, Reason: "benchmarking the ack path", Source: grants.SourceSlack, State: grants.RequestPending,
				ExternalKey: "slack:" + grants.NewID("t"), Notify: `{"response_url":"https://hooks.slack.com/commands/T1/1/x"}`,
				CreatedAt: now, ExpiresAt: now.Add(time.Hour), Evidence: map[string]string{}}
			c.Requests = append(c.Requests, grants.RequestWrite{Request: r, Create: true, MaxPending: 1})
			c.Events = append(c.Events, &audit.Event{ID: grants.NewID("e"), Time: now, Action: audit.ActionRequestCreated,
				Actor: audit.Actor{Kind: audit.ActorUser, ID: user}, RequestID: r.ID, Resource: r.Resource, Reason: r.Reason,
				Evidence: map[string]string{"duration": "1h0m0s", "source": "slack"}})
		}
		return c
	}
	for range 3 { // statements prepared, pages cached
		if err := s.Apply(context.Background(), change()); err != nil {
			b.Fatal(err)
		}
	}
	changes := make([]*grants.Change, b.N)
	for i := range changes {
		changes[i] = change()
	}
	b.ResetTimer()
	cpu := cpuTime()
	for _, c := range changes {
		if err := s.Apply(context.Background(), c); err != nil {
			b.Fatal(err)
		}
	}
	done := len(changes)
	b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(done*batch), "cpu-us/request")
}
