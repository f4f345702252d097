package sqlstore_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/grants/storetest"
)

// storedEvents are packedEvents and events whose evidence json.Marshal writes as its
// canonical encoding (plain text, non-ASCII, '<' which it escapes, U+2028 which it escapes).
func storedEvents() []*audit.Event {
	evs := packedEvents()
	at := storetest.Start.Add(2 * time.Minute)
	for i, ev := range []map[string]string{
		{"k": "v"},
		{"person": "alice@example.com", "expires_at": "2026-11-22T11:00:00.000Z", "": "empty key"},
		{"é": "日本", "z": ""},
		{"html": "<b>&</b>"},
		{"sep": "line\u2028break"},
		{"ctl": "tab\there"},
		nil,
	} {
		evs = append(evs, &audit.Event{ID: grants.NewID("e"), Time: at.Add(time.Duration(i) * time.Millisecond),
			Actor: audit.Actor{Kind: audit.ActorSystem, ID: "t"}, Action: audit.ActionGrantIssued, Resource: "prod-db",
			Reason: fmt.Sprintf("plain %d", i), Evidence: ev})
	}
	return evs
}

// TestReadStoredMatchesReadEvents: ReadStored returns, page for page, the events ReadEvents
// returns (evidence given as text decodes to the same map), whatever the text holds, and
// gives canonical evidence as its stored text.
func TestReadStoredMatchesReadEvents(t *testing.T) {
	forEachBackend(t, func(t *testing.T, clock *clocktest.Fake, replica replicaFactory) {
		s := replica()
		storetest.MustApply(t, s, &grants.Change{Events: storedEvents()})
		ctx := context.Background()
		canonical := 0 // events whose evidence text is canonical
		for _, e := range storedEvents() {
			if b, _ := json.Marshal(e.Evidence); len(e.Evidence) > 0 && audit.CanonicalEvidence(string(b)) {
				canonical++
			}
		}
		for _, size := range []int{1, 2, 3, 100} {
			asText := 0
			var buf []audit.StoredEvent
			for after := int64(0); ; {
				want, err := s.ReadEvents(ctx, after, size)
				if err != nil {
					t.Fatal(err)
				}
				buf, err = s.ReadStored(ctx, after, size, buf)
				if err != nil {
					t.Fatal(err)
				}
				got := make([]audit.Event, len(buf))
				for i, e := range buf {
					got[i] = e.Event
					if e.EvidenceJSON != "" {
						asText++
						if e.Evidence != nil {
							t.Errorf("seq %d: evidence both as text and as a map", e.Seq)
						}
						if err := json.Unmarshal([]byte(e.EvidenceJSON), &got[i].Evidence); err != nil {
							t.Fatalf("seq %d: evidence text %q: %v", e.Seq, e.EvidenceJSON, err)
						}
					}
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("pages of %d after seq %d: ReadStored differs (-ReadEvents +ReadStored):\n%s", size, after, diff)
				}
				if len(want) == 0 {
					break
				}
				after = want[len(want)-1].Seq
			}
			// In pages of one, only the rows with a separator in a column are read again.
			if size == 1 && (canonical == 0 || asText != canonical) {
				t.Errorf("pages of one: %d events had their evidence as text; want the %d whose text is canonical", asText, canonical)
			}
		}
		mustVerify(t, s, int64(len(storedEvents())))
	})
}

// TestVerifyStoredFramingAttack: an attacker who can rebuild the table makes a column NULL
// and puts the separator of the joined read inside another column, so that a joined text
// would read as the intact row (or rows): moving a row's reason into its resource after a
// separator; appending the next row's text to a row's hash. Either is seen, on SQLite also
// when the schema says NOT NULL again afterwards (the NULL check must not be planned away).
func TestVerifyStoredFramingAttack(t *testing.T) {
	attacks := []struct {
		name  string
		edits func(sep string) []string
	}{
		{"reason moved into resource", func(sep string) []string {
			return []string{`UPDATE audit_events SET resource = resource || ` + sep + ` || reason, reason = NULL WHERE seq = 3`}
		}},
		{"next row appended to hash", func(sep string) []string {
			cols := []string{"seq", "time_ms", "id", "actor_kind", "actor_id", "actor_email", "action", "request_id", "grant_id", "resource", "reason", "evidence", "prev_hash", "hash"}
			next := `(SELECT ` + strings.Join(cols, " || "+sep+" || ") + ` FROM audit_events WHERE seq = 4)`
			return []string{`UPDATE audit_events SET hash = hash || ` + sep + ` || ` + next + ` WHERE seq = 3`, `UPDATE audit_events SET reason = NULL WHERE seq = 4`}
		}},
	}
	for _, backend := range []string{"sqlite", "sqlite, NOT NULL again", "postgres"} {
		for _, at := range attacks {
			t.Run(backend+"/"+at.name, func(t *testing.T) {
				clock := clocktest.New(storetest.Start)
				var s *sqlstore.Store
				var tamper func(t *testing.T)
				if backend != "postgres" {
					path := t.TempDir() + "/ab.db"
					var err error
					if s, err = sqlstore.Open(context.Background(), "sqlite", "file:"+path, clock, nil); err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { s.Close() })
					// schema rewrites the table's declaration in place, as an attacker can.
					schema := func(t *testing.T, from, to string) {
						db := rawSQLite(t, path)
						var version int
						if err := db.QueryRow(`PRAGMA schema_version`).Scan(&version); err != nil {
							t.Fatal(err)
						}
						execAll(t, db, `PRAGMA writable_schema = ON`,
							`UPDATE sqlite_schema SET sql = replace(sql, '`+from+`', '`+to+`') WHERE name = 'audit_events'`,
							fmt.Sprintf(`PRAGMA schema_version = %d`, version+1), `PRAGMA writable_schema = OFF`)
					}
					tamper = func(t *testing.T) {
						schema(t, "reason        TEXT NOT NULL", "reason        TEXT")
						execAll(t, rawSQLite(t, path), append([]string{`DROP TRIGGER audit_events_no_update`}, at.edits("char(31)")...)...)
						if backend == "sqlite, NOT NULL again" {
							schema(t, "reason        TEXT", "reason        TEXT NOT NULL")
						}
					}
				} else {
					dsn := newPGSchema(t)
					s = openPG(t, dsn, clock)
					tamper = func(t *testing.T) {
						c := pgConn(t, dsn)
						for _, q := range append([]string{`ALTER TABLE audit_events DISABLE TRIGGER USER`, `ALTER TABLE audit_events ALTER COLUMN reason DROP NOT NULL`}, at.edits("chr(31)")...) {
							if _, err := c.Exec(context.Background(), q); err != nil {
								t.Fatalf("%s: %v", q, err)
							}
						}
					}
				}
				c := &grants.Change{}
				for i := range 6 {
					c.Events = append(c.Events, &audit.Event{ID: grants.NewID("e"), Time: storetest.Start, Actor: audit.Actor{Kind: audit.ActorSystem, ID: "t"},
						Action: audit.ActionGrantIssued, Resource: "prod-db", Reason: fmt.Sprintf("checking %d", i), Evidence: map[string]string{"k": "v"}})
				}
				storetest.MustApply(t, s, c)
				key, _ := audit.GenerateKey(nil)
				ctx := context.Background()
				seq, head, _, _ := s.Head(ctx)
				if err := s.AppendCheckpoint(ctx, audit.SignCheckpoint(key, seq, head, storetest.Start.Add(time.Hour))); err != nil {
					t.Fatal(err)
				}
				if res, err := audit.Verify(ctx, s, audit.PublicKeyOf(key), audit.VerifyOptions{RequireCheckpoint: true}); err != nil || !res.OK {
					t.Fatalf("before the attack: %s, %v", res, err)
				}
				tamper(t)
				res, err := audit.Verify(ctx, s, audit.PublicKeyOf(key), audit.VerifyOptions{RequireCheckpoint: true})
				if err == nil && res.OK {
					t.Fatalf("verify after the attack = %s; want damage or an error", res)
				}
			})
		}
	}
}

// TestReadStoredFollowsColumnTypes: on PostgreSQL ReadStored reads the columns' bytes as
// they come; a column whose type was changed (by a migration gone wrong, or an attacker)
// can come in another form than ReadEvents reads it in (char(n) padded: the case that fails
// without the type check; jsonb, re-spaced by the server), and ReadStored must then return
// what ReadEvents does.
func TestReadStoredFollowsColumnTypes(t *testing.T) {
	for _, alter := range []string{
		`ALTER TABLE audit_events ALTER COLUMN reason TYPE char(40)`,
		`ALTER TABLE audit_events ALTER COLUMN evidence TYPE jsonb USING evidence::jsonb`,
	} {
		t.Run(alter, func(t *testing.T) {
			dsn := newPGSchema(t)
			s := openPG(t, dsn, clocktest.New(storetest.Start))
			c := &grants.Change{}
			for i := range 5 {
				c.Events = append(c.Events, &audit.Event{ID: grants.NewID("e"), Time: storetest.Start, Actor: audit.Actor{Kind: audit.ActorSystem, ID: "t"},
					Action: audit.ActionGrantIssued, Resource: "prod-db", Reason: fmt.Sprintf("checking %d", i), Evidence: map[string]string{"k": "v"}})
			}
			storetest.MustApply(t, s, c)
			ctx := context.Background()
			if _, err := pgConn(t, dsn).Exec(ctx, alter); err != nil {
				t.Fatal(err)
			}
			want, err := s.ReadEvents(ctx, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			buf, err := s.ReadStored(ctx, 0, 10, nil)
			if err != nil {
				t.Fatalf("ReadStored: %v", err)
			}
			sameEvents(t, want, buf)
		})
	}
}

// TestReadStoredOddValuesOnSQLite: a SQLite column holds whatever was written to it, of any
// type (a table rebuilt by hand, an attacker). A value that is not of the column's declared
// type must come out of ReadStored as ReadEvents reads it: the same events, or the same
// error.
func TestReadStoredOddValuesOnSQLite(t *testing.T) {
	for _, edit := range []string{
		`UPDATE audit_events SET reason = CAST(reason AS BLOB) WHERE seq = 2`,
		`UPDATE audit_events SET evidence = CAST(evidence AS BLOB) WHERE seq = 3`,
		`UPDATE audit_events SET time_ms = 1.5 WHERE seq = 2`,
		`UPDATE audit_events SET time_ms = 'soon' WHERE seq = 2`,
	} {
		t.Run(edit, func(t *testing.T) {
			path := t.TempDir() + "/ab.db"
			s, err := sqlstore.Open(context.Background(), "sqlite", "file:"+path, clocktest.New(storetest.Start), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			storetest.MustApply(t, s, &grants.Change{Events: storedEvents()})
			execAll(t, rawSQLite(t, path), `DROP TRIGGER audit_events_no_update`, edit)
			ctx := context.Background()
			want, wantErr := s.ReadEvents(ctx, 0, 100)
			buf, err := s.ReadStored(ctx, 0, 100, nil)
			if fmt.Sprint(err) != fmt.Sprint(wantErr) {
				t.Fatalf("ReadStored error %v; ReadEvents error %v", err, wantErr)
			}
			if err != nil {
				return
			}
			sameEvents(t, want, buf)
		})
	}
}

// sameEvents fails the test unless the stored events are want, their evidence texts decoded.
func sameEvents(t *testing.T, want []audit.Event, stored []audit.StoredEvent) {
	t.Helper()
	got := make([]audit.Event, len(stored))
	for i, e := range stored {
		got[i] = e.Event
		if e.EvidenceJSON != "" {
			if err := json.Unmarshal([]byte(e.EvidenceJSON), &got[i].Evidence); err != nil {
				t.Fatalf("seq %d: evidence text %q: %v", e.Seq, e.EvidenceJSON, err)
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("ReadStored differs (-ReadEvents +ReadStored):\n%s", diff)
	}
}

// rawSQLite opens the database file as an attacker would, closed when the test ends.
func rawSQLite(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func execAll(t *testing.T, db *sql.DB, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}
