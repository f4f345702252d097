package sqlstore

import (
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/audit"
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

// FuzzSealEvidence: the evidence column sealEvidence returns is what json.Marshal writes
// ("" for no evidence), whether it comes from the canonical encoding or from encodeEvidence,
// and the event is sealed as audit.Seal seals it.
func FuzzSealEvidence(f *testing.F) {
	for _, kv := range [][2]string{{"a", "b"}, {"reason", `quotes " and \ backslash`}, {"html", "<b>&</b>"}, {"gt", "a > b"},
		{"unicode", "é ✓ \u2028"}, {"", ""}, {"ctl", "a\x01b\b\f\t"}, {"text", "SELECT 1 FROM t WHERE a = 'x'"}} {
		f.Add(kv[0], kv[1], "session_id", "s_1")
	}
	prev := audit.Hash{1, 2, 3}
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		if !utf8.ValidString(k1) || !utf8.ValidString(v1) || !utf8.ValidString(k2) || !utf8.ValidString(v2) {
			t.Skip("the chain refuses invalid UTF-8")
		}
		for _, m := range []map[string]string{nil, {}, {k1: v1}, {k1: v1, k2: v2}, {k1: v1, k2: v2, "order": "7"}} {
			want := ""
			if len(m) > 0 {
				b, err := json.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				want = string(b)
			}
			e := &audit.Event{Seq: 9, ID: "e_1", Time: time.UnixMilli(1764763200000), Actor: audit.Actor{Kind: audit.ActorUser, ID: "U1"},
				Action: audit.ActionSessionStatement, Evidence: m}
			wantHash, err := audit.Next(prev, *e)
			if err != nil {
				t.Fatal(err)
			}
			got, err := sealEvidence(prev, e)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("sealEvidence(%q) = %s, json.Marshal = %s", m, got, want)
			}
			if e.Hash != wantHash || e.PrevHash != prev {
				t.Fatalf("sealed %v after %v, want %v after %v", e.Hash, e.PrevHash, wantHash, prev)
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
