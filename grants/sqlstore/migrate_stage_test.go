package sqlstore_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// v1Requests are requests as schema v1 stored them, with the stage in the evidence map.
var v1Requests = []struct {
	id, evidence string
	want         grants.RequestStage
}{
	{"r_recorded", `{"on_call":"false"}`, grants.StageRecorded},
	{"r_asked", `{"on_call":"false","stage":"awaiting_approval"}`, grants.StageAwaitingApproval},
	{"r_done", `{"path":"approval","stage":"decided"}`, grants.StageDecided},
}

const v1InsertRequest = `INSERT INTO requests (id, requester, slack_user, resource, duration_ms, reason, source, state,
	approvals, incident_id, evidence, external_key, notify, created_at, decided_at, expires_at, version, updated_at)
	VALUES ($1, '{"slack_user_id":"U0ALICE"}', 'U0ALICE', 'prod-db', 3600000, 'checking replication lag', 'slack', 'pending',
	'[]', '', $2, NULL, '', 1, 0, 2, 1, 1)`

// checkStagesMigrated opens the store (which migrates), and checks each request's stage moved
// from its evidence into the field.
func checkStagesMigrated(t *testing.T, open func() *sqlstore.Store) {
	t.Helper()
	s := open()
	for _, v := range v1Requests {
		r, err := s.GetRequest(context.Background(), v.id)
		if err != nil {
			t.Fatalf("get %s: %v", v.id, err)
		}
		if r.Stage != v.want {
			t.Errorf("%s: stage %q, want %q", v.id, r.Stage, v.want)
		}
		if _, ok := r.Evidence["stage"]; ok {
			t.Errorf("%s: evidence still holds the stage: %v", v.id, r.Evidence)
		}
	}
}

// TestMigrationMovesStageOutOfEvidence: a database written by schema v1 keeps each pending
// request's stage after the upgrade (a restarted broker must not ask the approvers again).
func TestMigrationMovesStageOutOfEvidence(t *testing.T) {
	t.Parallel()
	init, err := os.ReadFile("migrations/sqlite/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	initPG, err := os.ReadFile("migrations/postgres/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	clock := clocktest.New(time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC))

	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "v1.db")
		db, err := sql.Open("sqlite", "file:"+path)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{string(init),
			`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`,
			`INSERT INTO schema_migrations VALUES (1, 1)`} {
			if _, err := db.Exec(q); err != nil {
				t.Fatalf("make a v1 database: %v", err)
			}
		}
		for _, v := range v1Requests {
			if _, err := db.Exec(v1InsertRequest, v.id, v.evidence); err != nil {
				t.Fatalf("insert v1 request: %v", err)
			}
		}
		db.Close()
		checkStagesMigrated(t, func() *sqlstore.Store {
			s, err := sqlstore.Open(context.Background(), "sqlite", "file:"+path, clock, nil)
			if err != nil {
				t.Fatalf("open the v1 database: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})
	})

	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		dsn := newPGSchema(t) // skips without the test server
		c := pgConn(t, dsn)
		ctx := context.Background()
		for _, q := range []string{string(initPG),
			`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`,
			`INSERT INTO schema_migrations VALUES (1, 1)`} {
			if _, err := c.Exec(ctx, q); err != nil {
				t.Fatalf("make a v1 schema: %v", err)
			}
		}
		for _, v := range v1Requests {
			if _, err := c.Exec(ctx, v1InsertRequest, v.id, v.evidence); err != nil {
				t.Fatalf("insert v1 request: %v", err)
			}
		}
		checkStagesMigrated(t, func() *sqlstore.Store { return openPG(t, dsn, clock) })
	})
}
