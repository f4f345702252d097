package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestTruncatedLogStopsGrantsUntilCleared: after the witness attack (newest checkpoint and the
// events after the previous one deleted), `grants issue` refuses with the damage named and
// calls no provider; `audit clear-suspect` needs a reason, records a signed clearance and a new
// checkpoint; then grants are issued again (issue #15: a damaged log stops new grants).
func TestTruncatedLogStopsGrantsUntilCleared(t *testing.T) {
	p, _ := newWitnessed(t)
	p.history()
	older := p.checkpointAndPublish()
	p.mustRun("grants", "issue", "--config", p.config, "--resource", "prod-db", "--slack-user", "U0ALICE",
		"--duration", "30m", "--reason", "the grant the attacker hides", "--operator", "mallory")
	p.checkpointAndPublish()

	db := rawDB(t, filepath.Join(p.dir, "ab.db"))
	for _, trg := range []string{"audit_events_no_delete", "audit_checkpoints_no_delete"} {
		mustExec(t, db, `DROP TRIGGER `+trg)
	}
	mustExec(t, db, `DELETE FROM audit_checkpoints WHERE seq > ?`, older.Seq)
	mustExec(t, db, `DELETE FROM audit_events WHERE seq > ?`, older.Seq)
	db.Close()

	calls := len(p.fake.Calls())
	out, errOut, code := p.run("grants", "issue", "--config", p.config, "--resource", "prod-db", "--slack-user", "U0ALICE",
		"--duration", "30m", "--reason", "needs access after the tampering", "--operator", "tester")
	if code != exitFailure || !strings.Contains(errOut, "audit log failed verification") || !strings.Contains(errOut, "behind published checkpoint") {
		t.Fatalf("grants issue on a truncated log: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if n := len(p.fake.Calls()); n != calls {
		t.Fatalf("the provider was called %d times while the log is suspect", n-calls)
	}
	if events := p.mustRun("audit", "search", "--config", p.config, "--action", "audit.suspect", "--format", "json"); !strings.Contains(events, "behind published checkpoint") {
		t.Errorf("entering the suspect state is not in the audit log:\n%s", events)
	}

	for _, bad := range [][]string{{}, {"--reason", strings.Repeat("x", 1001)}} {
		if _, _, code := p.run(append([]string{"audit", "clear-suspect", "--config", p.config}, bad...)...); code != exitUsage {
			t.Errorf("clear-suspect %v: exit %d, want 2", bad, code)
		}
	}
	out = p.mustRun("audit", "clear-suspect", "--config", p.config, "--reason", "restored from backup; lost seqs listed in INC-1042", "--operator", "ops")
	if !strings.Contains(out, "behind published checkpoint") || !strings.Contains(out, "cleared by ops") {
		t.Fatalf("clear-suspect: %s", out)
	}
	if events := p.mustRun("audit", "search", "--config", p.config, "--action", "audit.suspect_cleared", "--format", "json"); !strings.Contains(events, "INC-1042") || !strings.Contains(events, `"signature"`) {
		t.Errorf("the clearance is not in the audit log with its signature:\n%s", events)
	}
	out = p.mustRun("grants", "issue", "--config", p.config, "--resource", "prod-db", "--slack-user", "U0ALICE",
		"--duration", "30m", "--reason", "needs access after the clearance", "--operator", "tester")
	if !strings.Contains(out, "access to prod-db") {
		t.Fatalf("grants issue after the clearance: %s", out)
	}
	if out := p.mustRun("audit", "clear-suspect", "--config", p.config, "--reason", "nothing wrong"); !strings.Contains(out, "nothing to clear") {
		t.Errorf("clear-suspect on a log that verifies: %s", out)
	}
}
