package sqlstore_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/grants/storetest"
)

// packedEvents are events whose text holds what the packed read (three columns, the text
// joined with U+001F) must not confuse: the separator itself in several fields, empty
// fields next to each other, escapes and non-ASCII text in evidence.
func packedEvents() []*audit.Event {
	at := storetest.Start.Add(time.Minute)
	ev := func(e audit.Event) *audit.Event {
		e.ID, e.Time = grants.NewID("e"), at
		if e.Actor.Kind == "" {
			e.Actor = audit.Actor{Kind: audit.ActorUser, ID: "U1", Email: "u1@example.com"}
		}
		if e.Action == "" {
			e.Action = audit.ActionGrantIssued
		}
		return &e
	}
	return []*audit.Event{
		ev(audit.Event{Resource: "prod-db", Reason: "plain", Evidence: map[string]string{"k": "v"}}),
		ev(audit.Event{Reason: "one\x1ftwo", GrantID: "g_1"}),
		ev(audit.Event{Actor: audit.Actor{Kind: audit.ActorUser, ID: "U\x1f2", Email: "\x1f"}, Resource: "r\x1f"}),
		ev(audit.Event{Evidence: map[string]string{"sep\x1fkey": "a\x1fb", "quote": `"\`, "é": "ü\u2028"}}),
		ev(audit.Event{}), // every optional field empty
		ev(audit.Event{RequestID: "req_1", Reason: "\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f"}),
	}
}

// TestPackedReadsKeepEveryField: ReadEvents and Search return each event exactly as it was
// appended, whatever its text holds (the rows with a separator in a field are read again
// column by column), and the log verifies.
func TestPackedReadsKeepEveryField(t *testing.T) {
	forEachBackend(t, func(t *testing.T, clock *clocktest.Fake, replica replicaFactory) {
		s := replica()
		evs := packedEvents()
		storetest.MustApply(t, s, &grants.Change{Events: evs})
		want := make([]audit.Event, len(evs))
		for i, e := range evs {
			want[i] = *e
		}
		if diff := cmp.Diff(want, readAll(t, s)); diff != "" {
			t.Errorf("ReadEvents (-appended +read):\n%s", diff)
		}
		got, err := s.Search(context.Background(), audit.Query{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Search (-appended +read):\n%s", diff)
		}
		// Pages of one event each: the re-read of an ambiguous row must not disturb paging.
		var paged []audit.Event
		for after := int64(0); ; {
			page, err := s.ReadEvents(context.Background(), after, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			paged = append(paged, page...)
			after = page[0].Seq
		}
		if diff := cmp.Diff(want, paged); diff != "" {
			t.Errorf("ReadEvents one by one (-appended +read):\n%s", diff)
		}
		mustVerify(t, s, int64(len(evs)))
	})
}

// TestVerifyCatchesSeparatorEdits: edits that move text across a column boundary with the
// packed read's separator (so that the joined text stays the same length, or even the same
// bytes) are still seen as edits of that row.
func TestVerifyCatchesSeparatorEdits(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit string // applied to seq 3, whose resource is "prod-db" and reason "checking"
	}{
		// The boundary moved: the reason's text now sits in the resource, after a separator.
		{"boundary moved", `UPDATE audit_events SET resource = 'prod-db' || char(31) || 'checking', reason = '' WHERE seq = 3`},
		{"field split", `UPDATE audit_events SET resource = 'prod', reason = 'db' || char(31) || 'checking' WHERE seq = 3`},
		{"separator added", `UPDATE audit_events SET reason = 'check' || char(31) || 'ing' WHERE seq = 3`},
		{"hash with separator", `UPDATE audit_events SET hash = substr(hash, 1, 10) || char(31) || substr(hash, 12) WHERE seq = 3`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := clocktest.New(storetest.Start)
			path := t.TempDir() + "/ab.db"
			s, err := sqlstore.Open(context.Background(), "sqlite", "file:"+path, clock, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			c := &grants.Change{}
			for range 5 {
				c.Events = append(c.Events, &audit.Event{ID: grants.NewID("e"), Time: storetest.Start, Actor: audit.Actor{Kind: audit.ActorSystem, ID: "t"},
					Action: audit.ActionGrantIssued, Resource: "prod-db", Reason: "checking"})
			}
			storetest.MustApply(t, s, c)
			key, _ := audit.GenerateKey(nil)
			ctx := context.Background()
			seq, head, _, _ := s.Head(ctx)
			if err := s.AppendCheckpoint(ctx, audit.SignCheckpoint(key, seq, head, storetest.Start.Add(time.Hour))); err != nil {
				t.Fatal(err)
			}
			db, err := sql.Open("sqlite", "file:"+path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for _, q := range []string{`DROP TRIGGER audit_events_no_update`, tc.edit} {
				if _, err := db.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			res, err := audit.Verify(ctx, s, audit.PublicKeyOf(key), audit.VerifyOptions{RequireCheckpoint: true})
			if tc.name == "hash with separator" {
				// Not a hash any more: reading the row fails, which verify reports as an
				// error naming the seq (as it did before reads were packed).
				if err == nil {
					t.Fatalf("verify = %s, nil error; want an error for seq 3's hash", res)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.OK || res.Damage != audit.DamageHashMismatch || res.FirstBad != 3 {
				t.Fatalf("verify = %s; want hash_mismatch at seq 3", res)
			}
		})
	}
}
