package awsprov

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/fixtures/awsfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

const sinkBucket = "acme-audit-archive"

// sinkSeqs reads every event object of the bucket, in key order, and returns the seqs of
// their lines in that order.
func sinkSeqs(t *testing.T, e *env, format audit.EventFormat) []int64 {
	t.Helper()
	var out []int64
	for _, key := range e.fake.Keys(sinkBucket) {
		o, _ := e.fake.Object(sinkBucket, key)
		if o.ContentType != "application/x-ndjson" {
			t.Fatalf("%s has Content-Type %q", key, o.ContentType)
		}
		sc := bufio.NewScanner(bytes.NewReader(o.Body))
		for sc.Scan() {
			seq, _, err := format.Locate(sc.Bytes())
			if err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			out = append(out, seq)
		}
	}
	return out
}

func appendTestEvents(t *testing.T, st *sqlstore.Store, clock grants.Clock, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		ev := &audit.Event{ID: fmt.Sprintf("e-s3-%d", i), Time: clock.Now(), Actor: audit.Actor{Kind: audit.ActorSystem, ID: "revoker"},
			Action: audit.ActionGrantRevoked, GrantID: fmt.Sprintf("g-%d", i), Resource: "prod-aws", Evidence: map[string]string{"person": "alice@example.com"}}
		if err := st.Apply(context.Background(), &grants.Change{Events: []*audit.Event{ev}}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestS3SinkCatchesUpAfterOutage: S3 answering 503 SlowDown beyond the SDK's retries fails
// deliveries, which the Streamer retries; afterwards the bucket holds every event once, in
// key (= seq) order, each object signed and checksummed as S3 requires.
func TestS3SinkCatchesUpAfterOutage(t *testing.T) {
	for _, format := range audit.EventFormats {
		t.Run(string(format), func(t *testing.T) {
			e := newEnv(t, awsfake.Options{})
			e.fake.CreateBucket(sinkBucket, false)
			st, err := sqlstore.Open(t.Context(), "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), e.clock, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			s, err := NewS3Sink(S3SinkConfig{Bucket: sinkBucket, Prefix: "prod/audit", Format: format}, e.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if s.Name() != "s3 s3://"+sinkBucket+"/prod/audit/" {
				t.Fatalf("Name() = %q", s.Name())
			}
			appendTestEvents(t, st, e.clock, 1, 23)
			remove := e.fake.Fail5xx(awsfake.ServiceS3, "PutObject", http.StatusServiceUnavailable, 1000)
			str := grants.NewStreamer(st, []grants.StreamSink{{Sink: s, BatchSize: 10}}, e.clock,
				grants.StreamerOptions{Poll: time.Second, BackoffBase: time.Second, BackoffMax: 4 * time.Second, Jitter: func() float64 { return 0 }})
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() { str.Run(ctx) })
			t.Cleanup(func() { cancel(); wg.Wait() })

			drive := func(what string, cond func() bool) {
				t.Helper()
				hctx, hcancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer hcancel()
				for !cond() {
					if err := e.clock.BlockUntil(hctx, 1); err != nil {
						t.Fatalf("gave up waiting for %s", what)
					}
					if !cond() {
						e.clock.Advance(4 * time.Second)
					}
				}
			}
			drive("three failed deliveries", func() bool { return len(e.fake.CallsTo(awsfake.ServiceS3, "PutObject")) >= 3*5 })
			if keys := e.fake.Keys(sinkBucket); len(keys) != 0 {
				t.Fatalf("objects written while S3 failed: %v", keys)
			}
			remove()
			appendTestEvents(t, st, e.clock, 24, 4)
			drive("every event in the bucket", func() bool { return len(sinkSeqs(t, e, format)) >= 27 })
			var want []int64
			for i := int64(1); i <= 27; i++ {
				want = append(want, i)
			}
			if d := cmp.Diff(want, sinkSeqs(t, e, format)); d != "" {
				t.Fatalf("events in the bucket (-want +got):\n%s", d)
			}
			keys := e.fake.Keys(sinkBucket)
			ext := ".jsonl"
			if format == audit.EventOCSF {
				ext = ".ocsf.jsonl"
			}
			if keys[0] != "prod/audit/events/00000000000000000001-00000000000000000010"+ext {
				t.Fatalf("first key %q", keys[0])
			}
			if c, err := st.SinkCursor(t.Context(), s.Name()); err != nil || c != 27 {
				t.Fatalf("cursor %d, %v; want 27", c, err)
			}
		})
	}
}

// TestS3SinkRedelivery: delivering a batch again (a crash before the cursor was saved) finds
// the same object and succeeds without rewriting it; an object of that key with other
// content is an error and is not overwritten.
func TestS3SinkRedelivery(t *testing.T) {
	e := newEnv(t, awsfake.Options{})
	e.fake.CreateBucket(sinkBucket, false)
	s, err := NewS3Sink(S3SinkConfig{Bucket: sinkBucket}, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	evs := []audit.Event{{Seq: 1, ID: "e1", Time: t0, Actor: audit.Actor{Kind: audit.ActorSystem, ID: "x"}, Action: audit.ActionGrantIssued},
		{Seq: 2, ID: "e2", Time: t0, Actor: audit.Actor{Kind: audit.ActorSystem, ID: "x"}, Action: audit.ActionGrantRevoked}}
	if err := s.Deliver(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver(t.Context(), evs); err != nil {
		t.Fatalf("redelivery of the same batch: %v", err)
	}
	if n := len(e.fake.Keys(sinkBucket)); n != 1 {
		t.Fatalf("%d objects after a redelivery, want 1", n)
	}
	other := append([]audit.Event(nil), evs...)
	other[1].Reason = "tampered"
	err = s.Deliver(t.Context(), other)
	if err == nil || !strings.Contains(err.Error(), "already holds other content") {
		t.Fatalf("a different batch under the same key: %v", err)
	}
	o, _ := e.fake.Object(sinkBucket, s.Key(1, 2))
	if bytes.Contains(o.Body, []byte("tampered")) {
		t.Fatal("the object was overwritten")
	}
}
