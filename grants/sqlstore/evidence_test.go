package sqlstore

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDecodeEvidenceMatchesEncodingJSON(t *testing.T) {
	for _, m := range []map[string]string{
		{}, {"a": "b"}, {"person": "alice@example.com", "expires_at": "2026-11-22T10:00:00.000Z", "cause": "expired"},
		{"reason": `quotes " and \ backslash`}, {"html": "<b>&</b>"}, {"unicode": "é ✓ \u2028"}, {"": ""},
	} {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeEvidence(string(b))
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if diff := cmp.Diff(m, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", b, diff)
		}
	}
}

// FuzzDecodeEvidence: on any input the fast path either declines or agrees with encoding/json.
func FuzzDecodeEvidence(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":"b"}`, `{"a":"b","c":"d"}`, `{"a":"b",}`, `{"a":1}`, `{"a":"b"}x`, `{"a":"b","a":"c"}`, `{"k":"\u0001"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fast, ok := decodeFlatObject(s)
		if !ok {
			return
		}
		var want map[string]string
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refuses it: %v", s, err)
		}
		if diff := cmp.Diff(want, fast); diff != "" {
			t.Fatalf("%q (-encoding/json +fast):\n%s", s, diff)
		}
	})
}

// FuzzEncodeEvidence: encodeEvidence writes what json.Marshal writes, on any map.
func FuzzEncodeEvidence(f *testing.F) {
	for _, kv := range [][2]string{{"a", "b"}, {"reason", `quotes " and \ backslash`}, {"html", "<b>&</b>"},
		{"unicode", "é ✓ \u2028"}, {"", ""}, {"bad", "\xff\xfe"}, {"ctl", "a\x01b"}, {"text", "SELECT 1 FROM t WHERE a = 'x'"}} {
		f.Add(kv[0], kv[1], "session_id", "s_1")
	}
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		for _, m := range []map[string]string{{}, {k1: v1}, {k1: v1, k2: v2}, {k1: v1, k2: v2, "order": "7"}} {
			want, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := encodeEvidence(m)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Fatalf("encodeEvidence(%q) = %s, json.Marshal = %s", m, got, want)
			}
		}
	})
}

// FuzzDecodeEvidenceKeys: the report's filtered decoding keeps exactly the wanted keys of what
// decodeEvidence decodes, and refuses what it refuses.
func FuzzDecodeEvidenceKeys(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":"b"}`, `{"a":"b","c":"d"}`, `{"c":"d","c":"e"}`, `{"a":"b","a":"c"}`, `{"a":"\u00e9"}`, `{"a":1}`, `{"a":"b"}x`} {
		f.Add(s)
	}
	keys := []string{"a", "tag"}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := decodeEvidenceKeys(s, keys)
		all, wantErr := decodeEvidence(s)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("%q: decodeEvidenceKeys error %v, decodeEvidence error %v", s, err, wantErr)
		}
		if err != nil {
			return
		}
		var want map[string]string
		for _, k := range keys {
			if v, ok := all[k]; ok {
				if want == nil {
					want = map[string]string{}
				}
				want[k] = v
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("%q (-decodeEvidence filtered +decodeEvidenceKeys):\n%s", s, diff)
		}
		if checkEvidence(s) != nil {
			t.Fatalf("%q: checkEvidence refuses what decodeEvidence accepts", s)
		}
	})
}
