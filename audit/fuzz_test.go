package audit

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzCanonical checks that Canonical never panics, rejects exactly the inputs it documents
// (invalid UTF-8, zero time, years outside 0000..9999), and otherwise emits valid,
// deterministic JSON equal to the encoding/json oracle.
func FuzzCanonical(f *testing.F) {
	f.Add(int64(1), "ev1", "user", "U1", "", "request.created", "", "", "", "", "", "", int64(1795341600000), int64(0), 0)
	f.Add(int64(-7), "ev\x00", "pagerduty", "P\u2028", "a@b.c", "<&>", "r\"", "g\\", "res\t", "café ☕ 😀\u2029", "k", "", int64(-62135596800000), int64(999999), 3600)
	f.Add(int64(9223372036854775807), "\xff", "", "", "", "", "", "", "", "", "\xc3", "v", int64(0), int64(-1), -43200)
	f.Add(int64(0), "", "", "", "", "", "", "", "", "\x7f\x1f\b\f", "", "\xed\xa0\x80", int64(253402300799999), int64(500000), 86340)
	f.Fuzz(func(t *testing.T, seq int64, id, kind, actorID, email, action, reqID, grantID, resource, reason, evKey, evVal string, unixMilli, subMilliNanos int64, zoneSeconds int) {
		zone := time.FixedZone("fuzz", zoneSeconds%(24*3600))
		ts := time.UnixMilli(unixMilli).Add(time.Duration(subMilliNanos % 1_000_000)).In(zone)
		e := Event{
			Seq: seq, ID: id, Time: ts,
			Actor:  Actor{Kind: ActorKind(kind), ID: actorID, Email: email},
			Action: Action(action), RequestID: reqID, GrantID: grantID, Resource: resource, Reason: reason,
		}
		if evKey != "" || evVal != "" {
			e.Evidence = map[string]string{evKey: evVal, "z": evVal}
		}
		validUTF8 := true
		for _, s := range []string{id, kind, actorID, email, action, reqID, grantID, resource, reason, evKey, evVal} {
			validUTF8 = validUTF8 && utf8.ValidString(s)
		}
		year := ts.UTC().Year()
		wantErr := !validUTF8 || ts.IsZero() || year < 0 || year > 9999

		got, err := Canonical(e)
		if (err != nil) != wantErr {
			t.Fatalf("Canonical error = %v, want error: %v (valid UTF-8 %v, time %v)", err, wantErr, validUTF8, ts)
		}
		if _, nerr := Next(Genesis, e); (nerr != nil) != wantErr {
			t.Fatalf("Next error = %v, Canonical error = %v", nerr, err)
		}
		if year >= 0 && year <= 9999 {
			b, merr := json.Marshal(e)
			if merr != nil || !json.Valid(b) {
				t.Fatalf("MarshalJSON = %s, %v: the export form must show any event in range", b, merr)
			}
		}
		if err != nil {
			return
		}
		if !json.Valid(got) {
			t.Fatalf("invalid JSON: %q", got)
		}
		again, err := Canonical(e)
		if err != nil || !bytes.Equal(got, again) {
			t.Fatalf("not deterministic:\n%q\n%q", got, again)
		}
		if want := oracleCanonical(t, e); !bytes.Equal(got, want) {
			t.Fatalf("differs from the encoding/json oracle:\ngot  %q\nwant %q", got, want)
		}
		h1, _ := Next(Genesis, e)
		h2, _ := Next(Genesis, e)
		if h1 != h2 {
			t.Fatal("Next is not deterministic")
		}
	})
}
