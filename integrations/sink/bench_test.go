package sink_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/integrations/sink"
)

// BenchmarkFileSinkDeliver measures one Deliver of a batch (encode, append, fsync) per
// iteration, for the batch sizes a file sink is configured with; events/s is the sink's
// ceiling on this disk.
func BenchmarkFileSinkDeliver(b *testing.B) {
	for _, format := range audit.EventFormats {
		for _, batch := range []int{1, 100, 500} {
			b.Run(fmt.Sprintf("%s/batch=%d", format, batch), func(b *testing.B) {
				f, err := sink.NewFile(sink.FileConfig{Path: filepath.Join(b.TempDir(), "audit.jsonl"), Format: format})
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				evs := make([]audit.Event, batch)
				at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
				seq := int64(0)
				b.ResetTimer()
				for b.Loop() {
					for i := range evs {
						seq++
						evs[i] = audit.Event{Seq: seq, ID: fmt.Sprintf("e%d", seq), Time: at, Actor: audit.Actor{Kind: audit.ActorUser, ID: "U0ALICE", Email: "alice@example.com"},
							Action: audit.ActionGrantIssued, GrantID: "g_0123456789abcdef", Resource: "prod-db", Reason: "incident #4211: replication lag",
							Evidence: map[string]string{"person": "alice@example.com", "expires_at": "2026-03-02T10:00:00.000Z"}}
					}
					if err := f.Deliver(b.Context(), evs); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}
