package console_test

import (
	"context"
	"database/sql"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/console"
)

// countingLog counts the audit events a console reads.
type countingLog struct {
	console.AuditLog
	read atomic.Int64
}

func (l *countingLog) Search(ctx context.Context, q audit.Query) ([]audit.Event, error) {
	evs, err := l.AuditLog.Search(ctx, q)
	l.read.Add(int64(len(evs)))
	return evs, err
}

// appendEvent records one event on the grant (and its request), as an activity collector
// would after the grant's story was read.
func (e *env) appendEvent(t *testing.T, g grants.Grant, reason string) {
	t.Helper()
	ev := grants.NewGrantEvent(e.clock.Now(), audit.Actor{Kind: audit.ActorSystem, ID: "accessbroker"}, audit.ActionAWSActivity, &g, reason, map[string]string{"event_name": "GetObject"})
	if err := e.store.Apply(t.Context(), &grants.Change{Events: []*audit.Event{ev}}); err != nil {
		t.Fatal(err)
	}
}

// TestStoryCache: a grant's or request's story seen again is the same page, read from the
// cache with one probe per grant and request (no event read again); an event appended to
// the grant or its request since shows at the next view; damage the chain watcher finds
// after the story was cached marks the cached events broken at once; and a row altered in
// the database file after the story was cached is read again, and shown broken, once the
// cache's minute is over.
func TestStoryCache(t *testing.T) {
	var log *countingLog
	e := newEnv(t, envOpts{audit: func(a console.AuditLog) console.AuditLog { log = &countingLog{AuditLog: a}; return log }})
	g := e.aliceGrant(t)
	if err := e.c.Chain().Step(t.Context()); err != nil {
		t.Fatal(err)
	}
	ca := e.browser(t).signIn(carol)
	pages := map[string]string{"grant": "/ui/grants/" + g.ID, "request": "/ui/requests/" + g.RequestID}

	for name, path := range pages {
		t.Run(name+" seen again", func(t *testing.T) {
			first := ca.get(path).mustStatus(http.StatusOK).mustSee("grant.issued", "✓ verified").body
			n := log.read.Load()
			again := ca.get(path).mustStatus(http.StatusOK).body
			if again != first {
				t.Errorf("the cached story differs from the one read:\n%s\n---\n%s", first, again)
			}
			if read := log.read.Load() - n; read != 0 {
				t.Errorf("seen again, the page read %d events; want none (only probes that find nothing)", read)
			}
		})
	}

	t.Run("an appended event shows", func(t *testing.T) {
		e.clock.Advance(time.Second)
		e.appendEvent(t, g, "read a bucket after the story was cached")
		for _, path := range pages {
			ca.get(path).mustStatus(http.StatusOK).mustSee("aws.activity", "read a bucket after the story was cached")
		}
	})

	t.Run("damage found later marks the cached story", func(t *testing.T) {
		for _, path := range pages {
			ca.get(path).mustStatus(http.StatusOK) // cached now
		}
		issued := e.events(t, audit.Query{GrantID: g.ID, Action: audit.ActionGrantIssued})
		if len(issued) != 1 {
			t.Fatalf("grant.issued events: %+v", issued)
		}
		// Append an event, then alter it in the file before the watcher's next pass reads
		// it: the pass finds the damage. The story pages must say so at once, cached or not.
		e.clock.Advance(time.Second)
		e.appendEvent(t, g, "collected later")
		ca.get(pages["grant"]).mustSee("collected later", "… not yet verified") // cached again, with the new event
		last := e.events(t, audit.Query{GrantID: g.ID, Descending: true, Limit: 1})[0]
		alterRow(t, e.path, last.Seq, "rewritten in the file")
		if err := e.c.Chain().Step(t.Context()); err != nil {
			t.Fatal(err)
		}
		if st := e.c.Chain().State(); st.FirstBad != last.Seq {
			t.Fatalf("chain state %+v; want damage at seq %d", st, last.Seq)
		}
		n := log.read.Load()
		ca.get(pages["grant"]).mustStatus(http.StatusOK).mustSee("✗ broken", "after the chain&#39;s first damage at seq")
		if read := log.read.Load() - n; read != 0 {
			t.Errorf("the page read %d events; want the cached story", read)
		}
		// The row as altered is shown (and marked) once the cached story is older than a minute.
		e.clock.Advance(time.Minute)
		ca.get(pages["grant"]).mustStatus(http.StatusOK).mustSee("rewritten in the file", "does not hash to its stored hash")
	})
}

// alterRow rewrites the reason of the event at seq in the SQLite file, as someone with the
// file (not the broker: the table refuses UPDATE) could.
func alterRow(t *testing.T, path string, seq int64, reason string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(t.Context(), `SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_events'`)
	if err != nil {
		t.Fatal(err)
	}
	var triggers []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		triggers = append(triggers, n)
	}
	rows.Close()
	for _, n := range triggers {
		if _, err := db.ExecContext(t.Context(), `DROP TRIGGER "`+strings.ReplaceAll(n, `"`, `""`)+`"`); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ExecContext(t.Context(), `UPDATE audit_events SET reason = ? WHERE seq = ?`, reason, seq); err != nil {
		t.Fatal(err)
	}
}
