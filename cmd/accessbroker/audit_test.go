package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/fixtures/webhookfake"
)

// inProcess is a broker config in a temp dir, driven through run() in this process.
type inProcess struct {
	t      *testing.T
	dir    string
	config string
	fake   *webhookfake.Server
}

func newInProcess(t *testing.T) *inProcess {
	t.Helper()
	dir := t.TempDir()
	fake := webhookfake.New(e2eToken)
	t.Cleanup(fake.Close)
	t.Setenv("AB_DB", filepath.Join(dir, "ab.db"))
	t.Setenv("AB_KEY", filepath.Join(dir, "audit.key"))
	t.Setenv("AB_WEBHOOK_URL", fake.URL())
	t.Setenv("AB_WEBHOOK_TOKEN", e2eToken)
	p := &inProcess{t: t, dir: dir, config: filepath.Join("testdata", "e2e", "webhook.yaml"), fake: fake}
	p.mustRun("audit", "keygen", "--out", filepath.Join(dir, "audit.key"))
	return p
}

func (p *inProcess) run(args ...string) (stdout, stderr string, code int) {
	p.t.Helper()
	var o, e bytes.Buffer
	code = run(context.Background(), args, &o, &e)
	return o.String(), e.String(), code
}

func (p *inProcess) mustRun(args ...string) string {
	p.t.Helper()
	o, e, code := p.run(args...)
	if code != 0 {
		p.t.Fatalf("accessbroker %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, o, e)
	}
	return o
}

// checkpoint signs a checkpoint of the current head, as serve does.
func (p *inProcess) checkpoint() {
	p.t.Helper()
	cfg, ok := loadConfigFlag(p.config, io.Discard)
	if !ok {
		p.t.Fatal("config")
	}
	s, err := newServer(context.Background(), cfg, appOptions{logOut: io.Discard})
	if err != nil {
		p.t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.checkpointer.MaybeCheckpoint(context.Background()); err != nil {
		p.t.Fatal(err)
	}
}

// history writes a small audit log: three grants issued, one revoked, then a checkpoint.
func (p *inProcess) history() {
	p.t.Helper()
	var ids []string
	for i := range 3 {
		out := p.mustRun("grants", "issue", "--config", p.config, "--resource", "prod-db", "--slack-user", "U0ALICE",
			"--duration", "30m", "--reason", fmt.Sprintf("probe %d", i), "--operator", "tester")
		ids = append(ids, strings.Fields(out)[1][:len("g_")+16])
	}
	p.mustRun("grants", "revoke", ids[0], "--config", p.config, "--reason", "done", "--operator", "tester")
	p.checkpoint()
}

func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func TestAuditTablesRefuseUpdateAndDelete(t *testing.T) {
	p := newInProcess(t)
	p.history()
	db := rawDB(t, filepath.Join(p.dir, "ab.db"))
	for _, q := range []string{
		`UPDATE audit_events SET reason = 'nothing to see' WHERE seq = 2`,
		`DELETE FROM audit_events WHERE seq = 2`,
		`UPDATE audit_checkpoints SET seq = 0`,
		`DELETE FROM audit_checkpoints`,
	} {
		if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: err = %v, want the append-only trigger to refuse it", q, err)
		}
	}
}

// TestAuditVerifyMutationProbes tampers with a real database in each classic way (after
// dropping the triggers, as an attacker with file access would) and checks that
// `audit verify` exits 1 naming the damage and the right sequence number.
func TestAuditVerifyMutationProbes(t *testing.T) {
	p := newInProcess(t)
	p.history()
	if out := p.mustRun("audit", "verify", "--config", p.config); !strings.Contains(out, "intact") {
		t.Fatalf("untouched log: %s", out)
	}
	src := filepath.Join(p.dir, "ab.db")
	var last int64
	if err := rawDB(t, src).QueryRow(`SELECT MAX(seq) FROM audit_events`).Scan(&last); err != nil || last < 8 {
		t.Fatalf("history has %d events (%v), want at least 8", last, err)
	}

	probes := []struct {
		name   string
		tamper func(t *testing.T, db *sql.DB)
		damage audit.Damage
		seq    int64
	}{
		{"edit reason", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE audit_events SET reason = 'routine' WHERE seq = 3`)
		}, audit.DamageHashMismatch, 3},
		{"edit actor", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE audit_events SET actor_id = 'someone-else' WHERE seq = 5`)
		}, audit.DamageHashMismatch, 5},
		{"edit time", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE audit_events SET time_ms = time_ms - 3600000 WHERE seq = 2`)
		}, audit.DamageHashMismatch, 2},
		{"edit evidence", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE audit_events SET evidence = '{"person":"mallory@example.com"}' WHERE seq = 4`)
		}, audit.DamageHashMismatch, 4},
		{"edit stored hash", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE audit_events SET hash = ? WHERE seq = 6`, strings.Repeat("ab", 32))
		}, audit.DamageHashMismatch, 6},
		{"delete middle row", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `DELETE FROM audit_events WHERE seq = 4`)
		}, audit.DamageGap, 4},
		{"swap two rows", func(t *testing.T, db *sql.DB) {
			cols := `id, time_ms, actor_kind, actor_id, actor_email, action, request_id, grant_id, resource, reason, evidence, prev_hash, hash`
			mustExec(t, db, `CREATE TEMP TABLE keep AS SELECT seq, `+cols+` FROM audit_events WHERE seq IN (3, 4)`)
			mustExec(t, db, `DELETE FROM audit_events WHERE seq IN (3, 4)`)
			mustExec(t, db, `INSERT INTO audit_events (seq, `+cols+`) SELECT 7 - seq, `+cols+` FROM keep`)
		}, audit.DamageReorder, 3},
		{"truncate tail", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `DELETE FROM audit_events WHERE seq > ?`, last-2)
		}, audit.DamageTruncated, last - 1},
		{"forged checkpoint", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `INSERT INTO audit_checkpoints (seq, hash, time_ms, key_id, signature)
				SELECT seq, hash, time_ms + 1, key_id, zeroblob(64) FROM audit_checkpoints ORDER BY seq DESC LIMIT 1`)
		}, audit.DamageBadCheckpointSignature, last},
		{"rewritten history with recomputed hashes", func(t *testing.T, db *sql.DB) {
			rewriteFrom(t, db, 3, "routine maintenance")
		}, audit.DamageCheckpointMismatch, 1},
	}
	for i, pr := range probes {
		t.Run(pr.name, func(t *testing.T) {
			dst := filepath.Join(p.dir, fmt.Sprintf("probe%d.db", i))
			copyDB(t, src, dst)
			db := rawDB(t, dst)
			mustExec(t, db, `DROP TRIGGER audit_events_no_update`)
			mustExec(t, db, `DROP TRIGGER audit_events_no_delete`)
			pr.tamper(t, db)
			db.Close()
			t.Setenv("AB_DB", dst)
			out, errOut, code := p.run("audit", "verify", "--config", p.config, "--format", "json")
			if code != exitFailure {
				t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
			}
			want := fmt.Sprintf(`"damage":%q`, pr.damage)
			wantSeq := fmt.Sprintf(`"first_bad":%d`, pr.seq)
			if !strings.Contains(out, want) || !strings.Contains(out, wantSeq) {
				t.Fatalf("verify said %s; want %s and %s", out, want, wantSeq)
			}
		})
	}
}

// rewriteFrom edits row seq's reason and recomputes every hash from there on, as an attacker
// who knows the chain formula would. Only a signed checkpoint can catch this.
func rewriteFrom(t *testing.T, db *sql.DB, seq int64, reason string) {
	t.Helper()
	mustExec(t, db, `UPDATE audit_events SET reason = ? WHERE seq = ?`, reason, seq)
	st := &rawReader{db: db}
	evs, err := st.all()
	if err != nil {
		t.Fatal(err)
	}
	prev := audit.Genesis
	for _, e := range evs {
		if e.Seq >= seq {
			if err := audit.Seal(prev, &e); err != nil {
				t.Fatal(err)
			}
			mustExec(t, db, `UPDATE audit_events SET prev_hash = ?, hash = ? WHERE seq = ?`, e.PrevHash.String(), e.Hash.String(), e.Seq)
		}
		prev = e.Hash
	}
}

func copyDB(t *testing.T, src, dst string) {
	t.Helper()
	// VACUUM INTO writes a consistent copy including anything still in the WAL.
	mustExec(t, rawDB(t, src), `VACUUM INTO ?`, dst)
	if _, err := os.Stat(dst); err != nil {
		t.Fatal(err)
	}
}
