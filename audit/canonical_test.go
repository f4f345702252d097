package audit

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// oracleCanonical computes the canonical encoding a second, independent way: a map of the
// included fields marshalled by encoding/json, which sorts map keys bytewise, with HTML
// escaping off. It only differs from Canonical where Canonical must reject input.
func oracleCanonical(tb testing.TB, e Event) []byte {
	tb.Helper()
	actor := map[string]any{"kind": string(e.Actor.Kind), "id": e.Actor.ID}
	if e.Actor.Email != "" {
		actor["email"] = e.Actor.Email
	}
	m := map[string]any{
		"seq":    e.Seq,
		"id":     e.ID,
		"time":   e.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		"actor":  actor,
		"action": string(e.Action),
	}
	for k, v := range map[string]string{"request_id": e.RequestID, "grant_id": e.GrantID, "resource": e.Resource, "reason": e.Reason} {
		if v != "" {
			m[k] = v
		}
	}
	if len(e.Evidence) > 0 {
		m["evidence"] = e.Evidence
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		tb.Fatalf("oracle: %v", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func minimalEvent() Event {
	return Event{
		Seq:    1,
		ID:     "ev1",
		Time:   time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
		Actor:  Actor{Kind: ActorUser, ID: "U1"},
		Action: ActionRequestCreated,
	}
}

func TestCanonical(t *testing.T) {
	t.Parallel()
	plus1 := time.FixedZone("CET", 3600)
	minus8 := time.FixedZone("PST", -8*3600)
	tests := []struct {
		name string
		edit func(e *Event)
		want string
	}{
		{
			name: "minimal event omits every empty optional field",
			edit: func(*Event) {},
			want: `{"action":"request.created","actor":{"id":"U1","kind":"user"},"id":"ev1","seq":1,"time":"2026-11-22T10:00:00.000Z"}`,
		},
		{
			name: "every field, keys sorted at every level",
			edit: func(e *Event) {
				e.Actor.Email = "alice@example.com"
				e.RequestID = "req1"
				e.GrantID = "grt1"
				e.Resource = "prod-db"
				e.Reason = "lag"
				e.Evidence = map[string]string{"schedule": "PS1", "approvers": "U2", "incident": "Q1"}
				e.PrevHash = Hash{1} // excluded
				e.Hash = Hash{2}     // excluded
			},
			want: `{"action":"request.created","actor":{"email":"alice@example.com","id":"U1","kind":"user"},"evidence":{"approvers":"U2","incident":"Q1","schedule":"PS1"},"grant_id":"grt1","id":"ev1","reason":"lag","request_id":"req1","resource":"prod-db","seq":1,"time":"2026-11-22T10:00:00.000Z"}`,
		},
		{
			name: "evidence keys sorted bytewise: empty, upper case, then lower case; empty values kept",
			edit: func(e *Event) { e.Evidence = map[string]string{"b": "", "a": "1", "B": "2", "": "3", "é": "4"} },
			want: `{"action":"request.created","actor":{"id":"U1","kind":"user"},"evidence":{"":"3","B":"2","a":"1","b":"","é":"4"},"id":"ev1","seq":1,"time":"2026-11-22T10:00:00.000Z"}`,
		},
		{
			name: "empty evidence map is omitted like nil",
			edit: func(e *Event) { e.Evidence = map[string]string{} },
			want: `{"action":"request.created","actor":{"id":"U1","kind":"user"},"id":"ev1","seq":1,"time":"2026-11-22T10:00:00.000Z"}`,
		},
		{
			name: "required fields stay when empty",
			edit: func(e *Event) { e.ID, e.Action, e.Actor, e.Seq = "", "", Actor{}, 0 },
			want: `{"action":"","actor":{"id":"","kind":""},"id":"","seq":0,"time":"2026-11-22T10:00:00.000Z"}`,
		},
		{
			name: "HTML characters are not escaped",
			edit: func(e *Event) { e.Reason = "<script>a & b</script>" },
			want: `{"action":"request.created","actor":{"id":"U1","kind":"user"},"id":"ev1","reason":"<script>a & b</script>","seq":1,"time":"2026-11-22T10:00:00.000Z"}`,
		},
		{
			name: "quotes, backslashes, short escapes, other controls as lowercase \\u00xx, DEL raw",
			edit: func(e *Event) { e.Reason = "\"q\" \\ \b\f\n\r\t \x00\x01\x1b\x1f \x7f /" },
			want: `{"action":"request.created","actor":{"id":"U1","kind":"user"},"id":"ev1","reason":"\"q\" \\ \b\f\n\r\t \u0000\u0001\u001b\u001f ` + "\x7f" + ` /","seq":1,"time":"2026-11-22T10:00:00.000Z"}`,
		},
		{
			name: "non-ASCII is raw UTF-8 except U+2028 and U+2029",
			edit: func(e *Event) { e.Reason = "café ☕ 日本 😀 \u2028\u2029 \ufffd" },
			want: `{"action":"request.created","actor":{"id":"U1","kind":"user"},"id":"ev1","reason":"café ☕ 日本 😀 \u2028\u2029 ` + "\ufffd" + `","seq":1,"time":"2026-11-22T10:00:00.000Z"}`,
		},
		{
			name: "time in another zone is normalised to UTC",
			edit: func(e *Event) { e.Time = time.Date(2026, 11, 22, 11, 0, 0, 0, plus1) },
			want: `{"action":"request.created","actor":{"id":"U1","kind":"user"},"id":"ev1","seq":1,"time":"2026-11-22T10:00:00.000Z"}`,
		},
		{
			name: "time is truncated, not rounded, to milliseconds; date rolls over with the zone",
			edit: func(e *Event) { e.Time = time.Date(2026, 12, 31, 16, 59, 59, 999_999_999, minus8) },
			want: `{"action":"request.created","actor":{"id":"U1","kind":"user"},"id":"ev1","seq":1,"time":"2027-01-01T00:59:59.999Z"}`,
		},
		{
			name: "milliseconds keep leading zeros",
			edit: func(e *Event) { e.Time = time.Date(2026, 1, 2, 3, 4, 5, 7_000_000, time.UTC) },
			want: `{"action":"request.created","actor":{"id":"U1","kind":"user"},"id":"ev1","seq":1,"time":"2026-01-02T03:04:05.007Z"}`,
		},
		{
			name: "year 0 and 9999 are representable",
			edit: func(e *Event) { e.Time = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC) },
			want: `{"action":"request.created","actor":{"id":"U1","kind":"user"},"id":"ev1","seq":1,"time":"0000-01-01T00:00:00.000Z"}`,
		},
		{
			name: "seq is a plain decimal integer",
			edit: func(e *Event) { e.Seq = math.MaxInt64 },
			want: `{"action":"request.created","actor":{"id":"U1","kind":"user"},"id":"ev1","seq":9223372036854775807,"time":"2026-11-22T10:00:00.000Z"}`,
		},
		{
			name: "negative seq keeps its sign",
			edit: func(e *Event) { e.Seq = -42 },
			want: `{"action":"request.created","actor":{"id":"U1","kind":"user"},"id":"ev1","seq":-42,"time":"2026-11-22T10:00:00.000Z"}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := minimalEvent()
			tc.edit(&e)
			got, err := Canonical(e)
			if err != nil {
				t.Fatalf("Canonical: %v", err)
			}
			if diff := cmp.Diff(tc.want, string(got)); diff != "" {
				t.Errorf("Canonical mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(string(oracleCanonical(t, e)), string(got)); diff != "" {
				t.Errorf("Canonical differs from the encoding/json oracle (-oracle +got):\n%s", diff)
			}
			if !json.Valid(got) {
				t.Errorf("Canonical output is not valid JSON: %s", got)
			}
		})
	}
}

func TestCanonicalRejects(t *testing.T) {
	t.Parallel()
	const bad = "ok\xffno"
	tests := []struct {
		name      string
		edit      func(e *Event)
		wantInErr string
	}{
		{"invalid UTF-8 in id", func(e *Event) { e.ID = bad }, "id is not valid UTF-8"},
		{"invalid UTF-8 in action", func(e *Event) { e.Action = bad }, "action is not valid UTF-8"},
		{"invalid UTF-8 in actor kind", func(e *Event) { e.Actor.Kind = bad }, "actor.kind is not valid UTF-8"},
		{"invalid UTF-8 in actor id", func(e *Event) { e.Actor.ID = bad }, "actor.id is not valid UTF-8"},
		{"invalid UTF-8 in actor email", func(e *Event) { e.Actor.Email = bad }, "actor.email is not valid UTF-8"},
		{"invalid UTF-8 in request id", func(e *Event) { e.RequestID = bad }, "request_id is not valid UTF-8"},
		{"invalid UTF-8 in grant id", func(e *Event) { e.GrantID = bad }, "grant_id is not valid UTF-8"},
		{"invalid UTF-8 in resource", func(e *Event) { e.Resource = bad }, "resource is not valid UTF-8"},
		{"invalid UTF-8 in reason", func(e *Event) { e.Reason = bad }, "reason is not valid UTF-8"},
		{"truncated multi-byte sequence", func(e *Event) { e.Reason = "caf\xc3" }, "reason is not valid UTF-8"},
		{"UTF-16 surrogate encoded in UTF-8", func(e *Event) { e.Reason = "\xed\xa0\x80" }, "reason is not valid UTF-8"},
		{"invalid UTF-8 in evidence key", func(e *Event) { e.Evidence = map[string]string{bad: "v"} }, "evidence key is not valid UTF-8"},
		{"invalid UTF-8 in evidence value", func(e *Event) { e.Evidence = map[string]string{"k": bad} }, "evidence value is not valid UTF-8"},
		{"zero time", func(e *Event) { e.Time = time.Time{} }, "time is zero"},
		{"year after 9999", func(e *Event) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "outside 0000..9999"},
		{"year before 0", func(e *Event) { e.Time = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) }, "outside 0000..9999"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := minimalEvent()
			tc.edit(&e)
			got, err := Canonical(e)
			if err == nil {
				t.Fatalf("Canonical = %s, want an error", got)
			}
			if !strings.Contains(err.Error(), tc.wantInErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantInErr)
			}
			if _, err := Next(Genesis, e); err == nil {
				t.Errorf("Next accepted what Canonical rejects")
			}
			sealed := e
			if err := Seal(Hash{9}, &sealed); err == nil || sealed.PrevHash != e.PrevHash || sealed.Hash != e.Hash {
				t.Errorf("Seal: err = %v, PrevHash %s, Hash %s: want an error and the event unchanged", err, sealed.PrevHash, sealed.Hash)
			}
		})
	}
}

// TestCanonicalIgnoresExcludedAndSubMillisecond pins what Canonical deliberately leaves out.
func TestCanonicalIgnoresExcludedAndSubMillisecond(t *testing.T) {
	t.Parallel()
	a := makeEvent(10)
	b := a
	b.PrevHash, b.Hash = Hash{7}, Hash{8}
	b.Time = a.Time.Add(999 * time.Microsecond).In(time.FixedZone("X", 5*3600+1800))
	ca, err := Canonical(a)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := Canonical(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca, cb) {
		t.Errorf("hashes, zone or sub-millisecond time changed the canonical bytes:\n%s\n%s", ca, cb)
	}
}

// TestCanonicalMatchesOracleOnGeneratedEvents cross-checks many varied events.
func TestCanonicalMatchesOracleOnGeneratedEvents(t *testing.T) {
	t.Parallel()
	for seq := int64(1); seq <= 420; seq++ {
		e := makeEvent(seq)
		got, err := Canonical(e)
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		if want := oracleCanonical(t, e); !bytes.Equal(got, want) {
			t.Fatalf("seq %d: Canonical differs from the oracle:\ngot  %s\nwant %s", seq, got, want)
		}
	}
}

func TestFormatTime(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), "2026-11-22T10:00:00.000Z"},
		{time.Date(2026, 11, 22, 11, 30, 0, 123_456_789, time.FixedZone("", 5400)), "2026-11-22T10:00:00.123Z"},
		{time.Time{}, "0001-01-01T00:00:00.000Z"},
	}
	for _, tc := range tests {
		if got := FormatTime(tc.in); got != tc.want {
			t.Errorf("FormatTime(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestNeedsEscapeOrDecode checks the word-at-a-time scan against the byte rule: every byte
// value in every position, against backgrounds of plain, borderline and high bytes.
func TestNeedsEscapeOrDecode(t *testing.T) {
	t.Parallel()
	needs := func(c byte) bool { return c < 0x20 || c == '"' || c == '\\' || c >= 0x80 }
	for _, bg := range []byte{'a', ' ', '!', '#', '[', ']', 0x7f, '~'} {
		for pos := 0; pos < 8; pos++ {
			for v := 0; v < 256; v++ {
				word := bytes.Repeat([]byte{bg}, 8)
				word[pos] = byte(v)
				want := needs(byte(v))
				if got := needsEscapeOrDecode(load8(string(word), 0)); got != want {
					t.Fatalf("word %q: got %v, want %v", word, got, want)
				}
			}
		}
	}
}

// TestSealEvidence: SealEvidence seals as Seal does and returns the evidence object of the
// canonical encoding: encoding/json's, HTML escaping off; "" for no evidence.
func TestSealEvidence(t *testing.T) {
	prev := Hash{7}
	for _, ev := range []map[string]string{nil, {}, {"a": "b"}, {"text": "SELECT 1 WHERE a < 2 & b > 1", "order": "3", "q": `"\` + "\n\u2028é"},
		{"z": "", "": "empty key"}, nil} {
		e := minimalEvent()
		e.Evidence = ev
		want := e
		if err := Seal(prev, &want); err != nil {
			t.Fatal(err)
		}
		got, err := SealEvidence(prev, &e)
		if err != nil {
			t.Fatal(err)
		}
		if e.Hash != want.Hash || e.PrevHash != prev {
			t.Errorf("evidence %q: sealed %v after %v, want %v after %v", ev, e.Hash, e.PrevHash, want.Hash, prev)
		}
		wantEv := ""
		if len(ev) > 0 {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(ev); err != nil {
				t.Fatal(err)
			}
			wantEv = strings.TrimSuffix(buf.String(), "\n")
		}
		if got != wantEv {
			t.Errorf("evidence %q: got %s, want %s", ev, got, wantEv)
		}
	}
	e := minimalEvent()
	e.Evidence = map[string]string{"bad": "\xff"}
	if _, err := SealEvidence(prev, &e); err == nil || e.Hash != (Hash{}) {
		t.Errorf("invalid UTF-8: err %v, hash %v; want an error and the event unsealed", err, e.Hash)
	}
}
