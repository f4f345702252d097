package witness_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/witness"
)

// testKey signs the checkpoints of these tests (and of testdata/*.jsonl). Not a secret.
func testKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("witness testdata key (not a secret)"))
	return ed25519.NewKeyFromSeed(seed[:])
}

// checkpoints returns n checkpoints at seq 0, 10, 20, … an hour apart, as testdata has them.
func checkpoints(t *testing.T, n int) []audit.Checkpoint {
	t.Helper()
	base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	var out []audit.Checkpoint
	for i := range int64(n) {
		h := sha256.Sum256([]byte(strconv.FormatInt(i, 10)))
		out = append(out, audit.SignCheckpoint(testKey(), i*10, audit.Hash(h), base.Add(time.Duration(i)*time.Hour)))
	}
	return out
}

func copyTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestFilePublishAppendsAndReadsBack(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "checkpoints.jsonl")
	w, err := witness.NewFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := w.Checkpoints(ctx); err != nil || len(got) != 0 {
		t.Fatalf("missing file: %v, %v; want no checkpoints and no error", got, err)
	}
	want := checkpoints(t, 3)
	for _, c := range want {
		if err := w.Publish(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	got, err := w.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("read back (-want +got):\n%s", d)
	}
	for _, c := range got {
		if !c.Verify(audit.PublicKeyOf(testKey())) {
			t.Errorf("checkpoint seq %d no longer verifies after the round trip", c.Seq)
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		t.Errorf("witness file mode %o, want 600", perm)
	}
	b, _ := os.ReadFile(path)
	if lines := strings.Count(string(b), "\n"); lines != 3 {
		t.Errorf("file has %d lines, want one per checkpoint (3):\n%s", lines, b)
	}
	testdata, _ := os.ReadFile(filepath.Join("testdata", "three.jsonl"))
	if string(b) != string(testdata) {
		t.Errorf("file is not the documented JSON-lines form:\n%s\nwant:\n%s", b, testdata)
	}
}

func TestFileReadsTestdata(t *testing.T) {
	all := checkpoints(t, 3)
	tests := []struct {
		file      string
		want      []audit.Checkpoint
		errSubstr string // "" = no error
		partial   bool   // the error wraps grants.ErrWitnessIncomplete
	}{
		{file: "three.jsonl", want: all},
		{file: "no-final-newline.jsonl", want: all},
		{file: "torn.jsonl", want: all[:2], errSubstr: "skipped line 3 (90 bytes): a write torn by a crash", partial: true},
		{file: "corrupt-middle.jsonl", errSubstr: "line 2 is not a checkpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			w, _ := witness.NewFile(filepath.Join("testdata", tt.file))
			got, err := w.Checkpoints(context.Background())
			switch {
			case tt.errSubstr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.errSubstr != "" && (err == nil || !strings.Contains(err.Error(), tt.errSubstr)):
				t.Fatalf("error %v, want one saying %q", err, tt.errSubstr)
			case errors.Is(err, grants.ErrWitnessIncomplete) != tt.partial:
				t.Fatalf("error %v: wraps ErrWitnessIncomplete = %v, want %v", err, !tt.partial, tt.partial)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Fatalf("checkpoints (-want +got):\n%s", d)
			}
		})
	}
}

// TestFilePublishAfterTornLine: a crash mid-write leaves a torn last line; the next
// publication must still be readable rather than glued onto it.
func TestFilePublishAfterTornLine(t *testing.T) {
	ctx := context.Background()
	path := copyTestdata(t, "torn.jsonl")
	w, _ := witness.NewFile(path)
	next := checkpoints(t, 4)[3]
	if err := w.Publish(ctx, next); err != nil {
		t.Fatal(err)
	}
	got, err := w.Checkpoints(ctx)
	if !errors.Is(err, grants.ErrWitnessIncomplete) || !strings.Contains(err.Error(), "skipped line 3") {
		t.Fatalf("after publishing past a torn line: %v, want line 3 reported as torn", err)
	}
	if want := append(checkpoints(t, 2), next); !cmp.Equal(want, got) {
		t.Fatalf("checkpoints %v, want the two before the torn line and the new one", got)
	}
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[3], `{"seq":30,`) {
		t.Fatalf("new checkpoint not on a line of its own:\n%s", b)
	}
}
