package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

type vectorFile struct {
	Description string   `json:"description"`
	Vectors     []vector `json:"vectors"`
}

type vector struct {
	Name      string          `json:"name"`
	Event     json.RawMessage `json:"event"`
	PrevHash  string          `json:"prev_hash"`
	Canonical string          `json:"canonical"`
	Hash      string          `json:"hash"`
}

func readJSONFile(tb testing.TB, path string, v any) {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
}

func writeJSONFile(tb testing.TB, path string, v any) {
	tb.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		tb.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// TestVectors checks the known-answer vectors in testdata/vectors.json. The expected hash is
// recomputed here with crypto/sha256 over the stored canonical string, independently of
// Next, so a wrong chain formula and a wrong encoding are caught separately.
func TestVectors(t *testing.T) {
	const path = "testdata/vectors.json"
	var f vectorFile
	readJSONFile(t, path, &f)
	if len(f.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	prev := Genesis
	for i := range f.Vectors {
		v := &f.Vectors[i]
		var e Event
		if err := json.Unmarshal(v.Event, &e); err != nil {
			t.Fatalf("vector %q: event: %v", v.Name, err)
		}
		canon, err := Canonical(e)
		if err != nil {
			t.Fatalf("vector %q: Canonical: %v", v.Name, err)
		}
		next, err := Next(prev, e)
		if err != nil {
			t.Fatalf("vector %q: Next: %v", v.Name, err)
		}
		if *update {
			v.PrevHash, v.Canonical, v.Hash = prev.String(), string(canon), next.String()
			prev = next
			continue
		}

		if v.PrevHash != prev.String() {
			t.Errorf("vector %q: prev_hash %s, want the previous vector's hash %s", v.Name, v.PrevHash, prev)
		}
		// Independent computation over the stored strings.
		prevBytes, err := hex.DecodeString(v.PrevHash)
		if err != nil || len(prevBytes) != HashSize {
			t.Fatalf("vector %q: bad prev_hash %q", v.Name, v.PrevHash)
		}
		sum := sha256.Sum256(append(prevBytes, v.Canonical...))
		if got := hex.EncodeToString(sum[:]); got != v.Hash {
			t.Errorf("vector %q: SHA-256(prev || canonical) = %s, file says %s", v.Name, got, v.Hash)
		}
		if want := oracleCanonical(t, e); string(want) != v.Canonical {
			t.Errorf("vector %q: stored canonical differs from the encoding/json oracle:\nfile   %s\noracle %s", v.Name, v.Canonical, want)
		}
		// The implementation.
		if string(canon) != v.Canonical {
			t.Errorf("vector %q: Canonical =\n%s\nwant\n%s", v.Name, canon, v.Canonical)
		}
		if next.String() != v.Hash {
			t.Errorf("vector %q: Next = %s, want %s", v.Name, next, v.Hash)
		}
		sealed := e
		if err := Seal(prev, &sealed); err != nil || sealed.PrevHash != prev || sealed.Hash != next {
			t.Errorf("vector %q: Seal gave prev %s hash %s err %v", v.Name, sealed.PrevHash, sealed.Hash, err)
		}
		prev = next
	}
	if *update {
		writeJSONFile(t, path, f)
		t.Logf("rewrote %s", path)
	}
}
