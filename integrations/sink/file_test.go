package sink_test

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/sink"
)

func newFileSink(t *testing.T, cfg sink.FileConfig) *sink.File {
	t.Helper()
	f, err := sink.NewFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// fileSeqs reads the seq of every line of path in the format.
func fileSeqs(t *testing.T, path string, format audit.EventFormat) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		seq, _, err := format.Locate(sc.Bytes())
		if err != nil {
			t.Fatalf("%s: line %q: %v", path, sc.Text(), err)
		}
		out = append(out, seq)
	}
	return out
}

// TestFileSinkTornLineAndRestart: a line torn by a crash is cut off and written again, and
// a new process continues after the last whole line: no gap, no duplicate.
func TestFileSinkTornLineAndRestart(t *testing.T) {
	for _, format := range audit.EventFormats {
		t.Run(string(format), func(t *testing.T) {
			e := newEnv(t)
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			e.appendEvents(30)
			f := newFileSink(t, sink.FileConfig{Path: path, Format: format})
			r := start(t, grants.NewStreamer(e.store, []grants.StreamSink{{Sink: f, BatchSize: 7}}, e.clock, streamerOpts(nil)))
			e.driveUntil("30 lines", time.Second, func() bool { return len(fileSeqs(t, path, format)) == 30 })
			r.stop()
			f.Close()

			// A crash in the middle of the next write: half a line at the end.
			evs, err := e.store.ReadEvents(t.Context(), 30, 1)
			if err != nil || len(evs) != 0 {
				t.Fatalf("setup: %v %d", err, len(evs))
			}
			e.appendEvents(12)
			evs, _ = e.store.ReadEvents(t.Context(), 30, 1)
			line, _ := format.Encode(evs[0])
			fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			fh.Write(line[:len(line)/2])
			fh.Close()

			f2 := newFileSink(t, sink.FileConfig{Path: path, Format: format})
			seq, hash, err := f2.Tail(t.Context())
			if err != nil || seq != 30 {
				t.Fatalf("Tail after a torn line = %d, %v; want 30", seq, err)
			}
			last, _ := e.store.ReadEvents(t.Context(), 29, 1)
			if hash != last[0].Hash {
				t.Fatalf("Tail hash %s, want the log's %s", hash, last[0].Hash)
			}
			start(t, grants.NewStreamer(e.store, []grants.StreamSink{{Sink: f2, BatchSize: 7}}, e.clock, streamerOpts(nil)))
			e.driveUntil("42 lines", time.Second, func() bool { return len(fileSeqs(t, path, format)) == 42 })
			if d := cmp.Diff(seqs(1, 42), fileSeqs(t, path, format)); d != "" {
				t.Fatalf("file after the torn line (-want +got):\n%s", d)
			}
		})
	}
}

// TestFileSinkRotation: a file over MaxBytes is renamed after its last seq and the stream
// continues in a new file, also after a restart that finds the new file empty.
func TestFileSinkRotation(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	e.appendEvents(10)
	f := newFileSink(t, sink.FileConfig{Path: path, MaxBytes: 1})
	r := start(t, grants.NewStreamer(e.store, []grants.StreamSink{{Sink: f, BatchSize: 4}}, e.clock, streamerOpts(nil)))
	rotated := filepath.Join(dir, "audit.jsonl.00000000000000000010")
	e.driveUntil("the third rotation", time.Second, func() bool { _, err := os.Stat(rotated); return err == nil })
	r.stop()
	f.Close()
	if d := cmp.Diff(seqs(9, 10), fileSeqs(t, rotated, audit.EventJSON)); d != "" {
		t.Fatalf("newest rotated file (-want +got):\n%s", d)
	}
	if got := fileSeqs(t, path, audit.EventJSON); len(got) != 0 {
		t.Fatalf("the current file holds %v after rotating", got)
	}
	e.appendEvents(2)
	f2 := newFileSink(t, sink.FileConfig{Path: path})
	start(t, grants.NewStreamer(e.store, []grants.StreamSink{{Sink: f2}}, e.clock, streamerOpts(nil)))
	e.driveUntil("the events after the restart", time.Second, func() bool { return len(fileSeqs(t, path, audit.EventJSON)) == 2 })
	if d := cmp.Diff(seqs(11, 12), fileSeqs(t, path, audit.EventJSON)); d != "" {
		t.Fatalf("new file after restart (-want +got):\n%s", d)
	}
}

// TestFileSinkLockedByAnotherWriter: a second writer of the same file is refused with an
// error saying why (it would interleave lines).
func TestFileSinkLockedByAnotherWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a := newFileSink(t, sink.FileConfig{Path: path})
	if _, _, err := a.Tail(t.Context()); err != nil {
		t.Fatal(err)
	}
	b := newFileSink(t, sink.FileConfig{Path: path})
	_, _, err := b.Tail(t.Context())
	if err == nil || !strings.Contains(err.Error(), "another process writes this file") {
		t.Fatalf("second writer: %v", err)
	}
}

// TestFileSinkDiverged: a file whose last line is not the log's event of that seq (another
// database's file) gets nothing more, and the failure is counted.
func TestFileSinkDiverged(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	e.appendEvents(3)
	evs, _ := e.store.ReadEvents(t.Context(), 0, 3)
	evs[2].Hash[0] ^= 0xff
	var buf bytes.Buffer
	if err := audit.WriteJSONL(&buf, evs); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	e.appendEvents(2)
	m := &countingMetrics{}
	start(t, grants.NewStreamer(e.store, []grants.StreamSink{{Sink: newFileSink(t, sink.FileConfig{Path: path})}}, e.clock, streamerOpts(m)))
	e.driveUntil("two failures", time.Second, func() bool { _, failed, _ := m.get(); return failed >= 2 })
	if got := fileSeqs(t, path, audit.EventJSON); len(got) != 3 {
		t.Fatalf("events appended to a diverged file: %v", got)
	}
}
