package sqlstore

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// openWALStore opens a SQLite store in a new directory with the checkpointer's limits lim.
func openWALStore(t *testing.T, lim walLimits) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ab.db")
	s, err := openSQLiteWith(t.Context(), "file:"+path, grants.RealClock{}, slog.New(slog.DiscardHandler), lim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// walFileFrames is the number of frames the -wal file of the database at path has room for.
func walFileFrames(t *testing.T, s *Store, path string) int {
	t.Helper()
	var pageSize int
	if err := s.r.QueryRowContext(t.Context(), `PRAGMA page_size`).Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path + "-wal")
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	const walHeader, frameHeader = 32, 24
	return max(int(fi.Size())-walHeader, 0) / (pageSize + frameHeader)
}

// walChange is n audit events of change i, whose ids name them.
func walChange(i, n int) *grants.Change {
	c := &grants.Change{}
	now := time.Now().UTC().Truncate(time.Millisecond)
	for j := range n {
		c.Events = append(c.Events, &audit.Event{ID: fmt.Sprintf("e_wal_%d_%d", i, j), Time: now,
			Actor: audit.Actor{Kind: audit.ActorUser, ID: fmt.Sprintf("U%05d", (i*n+j)%997)}, Action: audit.ActionGrantIssued,
			GrantID: grants.NewID("g"), RequestID: grants.NewID("r"), Resource: fmt.Sprintf("res-%d", j%7),
			Reason: strings.Repeat("checking replication lag ", 8)})
	}
	return c
}

// TestWALStaysBoundedUnderSustainedWrites: with the writer's automatic checkpoint off, the
// checkpointer keeps the WAL file under twice its hard cap (plus a transaction) however much
// one writer appends without a pause.
func TestWALStaysBoundedUnderSustainedWrites(t *testing.T) {
	t.Parallel()
	lim := walLimits{soft: 40, hard: 160}
	s, path := openWALStore(t, lim)
	const slack = 100 // more than one change of walChange(i, 20) writes
	most := 0
	for i := 0; s.ckpt.written.Load() < int64(20*(2*lim.hard+slack)); i++ {
		if i == 5000 {
			t.Fatalf("5000 changes wrote only %d pages", s.ckpt.written.Load())
		}
		if err := s.Apply(t.Context(), walChange(i, 20)); err != nil {
			t.Fatal(err)
		}
		most = max(most, walFileFrames(t, s, path))
		if most > 2*lim.hard+slack {
			t.Fatalf("after change %d the WAL has room for %d frames, more than 2 × %d + %d (%d pages written; checkpoints: %d passive, %d restarting, %d truncating)",
				i, most, lim.hard, slack, s.ckpt.written.Load(), s.ckpt.passive.Load(), s.ckpt.restart.Load(), s.ckpt.truncate.Load())
		}
	}
	if s.ckpt.passive.Load() == 0 || s.ckpt.restart.Load()+s.ckpt.truncate.Load() == 0 {
		t.Fatalf("checkpoints: %d passive, %d restarting, %d truncating; want passive ones and the WAL started over",
			s.ckpt.passive.Load(), s.ckpt.restart.Load(), s.ckpt.truncate.Load())
	}
	t.Logf("%d pages written; WAL at most %d frames; checkpoints: %d passive, %d restarting, %d truncating",
		s.ckpt.written.Load(), most, s.ckpt.passive.Load(), s.ckpt.restart.Load(), s.ckpt.truncate.Load())
}

// TestWriterDoesNotCheckpoint: the writer's own commits never checkpoint (SQLite's automatic
// checkpoint at 1000 pages is off): without the checkpointer the WAL keeps every page.
func TestWriterDoesNotCheckpoint(t *testing.T) {
	t.Parallel()
	s, path := openWALStore(t, walLimits{}) // no checkpointer
	for i := 0; walFileFrames(t, s, path) < 3*walSoftPages; i++ {
		if i == 5000 {
			t.Fatalf("after 5000 changes the WAL has %d frames: something checkpoints it", walFileFrames(t, s, path))
		}
		if err := s.Apply(t.Context(), walChange(i, 20)); err != nil {
			t.Fatal(err)
		}
	}
	var busy, log, copied int
	if err := s.r.QueryRowContext(t.Context(), `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &log, &copied); err != nil {
		t.Fatal(err)
	}
	if log < 3*walSoftPages || copied != log {
		t.Errorf("checkpoint of %d frames copied %d; want all of at least %d", log, copied, 3*walSoftPages)
	}
}

// crashEnv names the database the crash helper writes to.
const crashEnv = "ACCESSBROKER_TEST_CRASH_DB"

// TestCommittedChangesSurviveAKill: a process killed (SIGKILL) while it writes and the
// checkpointer copies the WAL (small limits: checkpoints all the time, passive and
// truncating) loses none of the changes Apply had returned for, and the store and its audit
// chain are intact.
func TestCommittedChangesSurviveAKill(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ab.db")
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := -1
	sc := bufio.NewScanner(out)
	for acked < 300 && sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "committed "); ok {
			if acked, err = strconv.Atoi(n); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if acked < 300 {
		t.Fatalf("the helper stopped after change %d", acked)
	}
	s, err := Open(t.Context(), "sqlite", "file:"+path, grants.RealClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var check string
	if err := s.r.QueryRowContext(t.Context(), `PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check: %q, %v", check, err)
	}
	for i := 0; i <= acked; i++ {
		var n int
		if err := s.r.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM audit_events WHERE id > ? AND id < ?`, fmt.Sprintf("e_wal_%d_", i), fmt.Sprintf("e_wal_%d_~", i)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 10 {
			t.Fatalf("change %d was committed before the kill; %d of its 10 events are in the store", i, n)
		}
	}
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := audit.Verify(t.Context(), s, pub, audit.VerifyOptions{})
	if err != nil || !res.OK || res.Events < int64(10*(acked+1)) {
		t.Fatalf("verify after the kill: %+v, %v", res, err)
	}
}

// TestCrashHelper is TestCommittedChangesSurviveAKill's writer, run in its own process:
// it applies changes of 10 events and prints "committed N" once change N is applied, until
// it is killed.
func TestCrashHelper(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("run by TestCommittedChangesSurviveAKill")
	}
	s, err := openSQLiteWith(context.Background(), "file:"+path, grants.RealClock{}, slog.New(slog.DiscardHandler), walLimits{soft: 20, hard: 80})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100_000 {
		if err := s.Apply(context.Background(), walChange(i, 10)); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(os.Stdout, "committed %d\n", i)
	}
	t.Fatal("not killed")
}
