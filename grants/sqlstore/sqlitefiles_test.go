//go:build unix

package sqlstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/grants/storetest"
)

// mode returns the permission bits of path.
func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestSQLiteFilesCreatedPrivate: whatever the umask, a new database and its -wal and -shm
// files are 0600 and a missing directory is 0700. Not parallel: the umask is process-wide.
func TestSQLiteFilesCreatedPrivate(t *testing.T) {
	for _, umask := range []int{0, 0o022, 0o277} {
		t.Run(fmt.Sprintf("umask %04o", umask), func(t *testing.T) {
			base := t.TempDir() // before the umask changes
			dir := filepath.Join(base, "state", "accessbroker")
			db := filepath.Join(dir, "ab.db")
			old := syscall.Umask(umask)
			clock := clocktest.New(storetest.Start)
			s, err := sqlstore.Open(context.Background(), "sqlite", "file:"+db, clock, nil)
			syscall.Umask(old)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer s.Close()
			// A write, so that the WAL and its index exist.
			storetest.MustCreate(t, s, clock.Now(), storetest.NewGrant(clock.Now(), "prod-db", time.Hour))
			for _, name := range []string{db, db + "-wal", db + "-shm"} {
				if got := mode(t, name); got != 0o600 {
					t.Errorf("%s: mode %04o, want 0600", filepath.Base(name), got)
				}
			}
			for _, d := range []string{dir, filepath.Dir(dir)} {
				if got := mode(t, d); got != 0o700 {
					t.Errorf("created directory %s: mode %04o, want 0700", d, got)
				}
			}
		})
	}
}

// logRecords is a slog handler's output as records.
func logRecords(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// TestSQLiteWiderFilesWarned: an existing database (or -wal, -shm) that others may read is
// named in a WARN at start with its mode and the chmod fix, and left unchanged; a private
// one gives no warning.
func TestSQLiteWiderFilesWarned(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "ab.db")
	clock := clocktest.New(storetest.Start)
	s, err := sqlstore.Open(context.Background(), "sqlite", "file:"+db, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := &audit.Event{ID: grants.NewID("e"), Time: clock.Now(), Actor: audit.Actor{Kind: audit.ActorSystem, ID: "test"}, Action: audit.ActionRequestRejected}
	storetest.MustApply(t, s, &grants.Change{Events: []*audit.Event{ev}})
	s.Close()

	open := func() []map[string]any {
		t.Helper()
		var buf bytes.Buffer
		s, err := sqlstore.Open(context.Background(), "sqlite", "file:"+db, clock, slog.New(slog.NewJSONHandler(&buf, nil)))
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		var warns []map[string]any
		for _, r := range logRecords(t, &buf) {
			if r["level"] == "WARN" && strings.Contains(fmt.Sprint(r["msg"]), "readable or writable by other users") {
				warns = append(warns, r)
			}
		}
		return warns
	}
	if w := open(); len(w) != 0 {
		t.Fatalf("private database warned: %v", w)
	}
	for _, tc := range []struct {
		name string
		perm fs.FileMode
	}{{"ab.db", 0o644}, {"ab.db-wal", 0o640}} {
		path := filepath.Join(filepath.Dir(db), tc.name)
		if _, err := os.Stat(path); err != nil { // -wal is removed on close; make a stale one
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(path, tc.perm); err != nil {
			t.Fatal(err)
		}
		warns := open()
		var found map[string]any
		for _, w := range warns {
			if w["file"] == path {
				found = w
			}
		}
		if found == nil {
			t.Fatalf("%s at %04o: no warning naming it (warnings: %v)", tc.name, tc.perm, warns)
		}
		if want := fmt.Sprintf("%04o", tc.perm); found["mode"] != want || found["fix"] != "chmod 600 "+path {
			t.Errorf("warning = %v, want mode %s and fix %q", found, want, "chmod 600 "+path)
		}
		if tc.name != "ab.db" {
			continue // SQLite removes the WAL when the last connection closes
		}
		if got := mode(t, path); got != tc.perm {
			t.Errorf("%s changed to %04o; an existing file is left as the operator set it", tc.name, got)
		}
	}
}
