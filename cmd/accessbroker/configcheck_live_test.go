package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigCheckRefusesDroppingAResourceWithLiveGrants: renaming or removing a resource while
// grants of it are live is refused by config check with the grants listed (issue #15: they
// would fail revocation as needs-operator with their sessions open); the store is only read.
func TestConfigCheckRefusesDroppingAResourceWithLiveGrants(t *testing.T) {
	p := newInProcess(t)
	out := p.mustRun("grants", "issue", "--config", p.config, "--resource", "prod-db", "--slack-user", "U0ALICE",
		"--duration", "1h", "--reason", "live while the config changes", "--operator", "tester")
	id := strings.Fields(out)[1][:len("g_")+16]

	if _, errOut, code := p.run("config", "check", "--config", p.config); code != exitOK {
		t.Fatalf("unchanged config: exit %d: %s", code, errOut)
	}
	base, err := os.ReadFile(p.config)
	if err != nil {
		t.Fatal(err)
	}
	renamed := filepath.Join(p.dir, "renamed.yaml")
	if err := os.WriteFile(renamed, bytes.Replace(base, []byte("- name: prod-db"), []byte("- name: prod-database"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(p.dir, "ab.db")
	before, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	stdout, errOut, code := p.run("config", "check", "--config", renamed)
	if code != exitUsage || !strings.Contains(errOut, `"prod-db" has 1 live grant (`+id+`)`) || strings.Contains(stdout, "config OK") {
		t.Fatalf("renamed resource with a live grant: exit %d\nstdout: %s\nstderr: %s", code, stdout, errOut)
	}
	if after, err := os.Stat(db); err != nil || !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() {
		t.Errorf("config check changed the store (%v)", err)
	}

	p.mustRun("grants", "revoke", id, "--config", p.config, "--reason", "before the rename", "--operator", "tester")
	if _, errOut, code := p.run("config", "check", "--config", renamed); code != exitOK {
		t.Fatalf("renamed resource once its grant ended: exit %d: %s", code, errOut)
	}
}
