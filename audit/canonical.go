package audit

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Canonical returns the canonical JSON encoding of e: the exact bytes that are hashed into the
// chain (see Next). The encoding is a contract: once an event is sealed its canonical bytes
// must never change, or the log stops verifying. Canonical does not use reflection or
// encoding/json, so neither a struct tag nor a Go release can change it by accident.
//
// Encoding rules (version 1):
//
//   - The output is one JSON object in UTF-8 with no insignificant whitespace and no trailing
//     newline.
//   - Object keys are sorted bytewise, in every object (the event, actor and evidence).
//   - Included keys: action, actor {email, id, kind}, evidence, grant_id, id, reason,
//     request_id, resource, seq, time. PrevHash and Hash are excluded: the previous hash is
//     already the first input of the chain hash, and Hash is its output.
//   - Always present, even when empty: seq, id, time, actor (with kind and id), action.
//     Omitted when empty: request_id, grant_id, resource, reason, actor.email, and evidence
//     when it is nil or has no entries. Evidence entries are kept even when their value is "".
//   - seq is a decimal integer: an optional '-', no leading zeros, no '+', no exponent. The
//     event has no floating-point fields and must never gain one.
//   - time is a string in UTC, "YYYY-MM-DDTHH:MM:SS.mmmZ", with exactly three fractional
//     digits, truncated (not rounded) to the millisecond. The zone of the Go value does not
//     matter; the instant does. The zero time and years outside 0000..9999 are rejected.
//   - Strings are escaped as encoding/json does with HTML escaping off: '"' and '\' get a
//     backslash; \b, \f, \n, \r and \t use their short forms; other bytes below 0x20 are
//     \u00XX with lowercase hex; U+2028 and U+2029 are \u2028 and \u2029. Everything else,
//     including '<', '>', '&', DEL and all other non-ASCII characters, is written as its UTF-8
//     bytes. Strings that are not valid UTF-8 (anywhere, including evidence keys) are rejected
//     rather than repaired, because repairing would let two different events share one hash.
//
// Rules for adding a field to Event (old events must keep their bytes):
//
//   - The field must be optional and omitted from the canonical encoding when it is empty,
//     so that every event sealed before the field existed encodes exactly as before.
//   - Its key goes in its sorted position; existing keys are never renamed, retyped or
//     re-escaped, and the rules above are never changed. A change that alters the bytes of an
//     existing event would be a new chain version, which accessbroker does not have.
//   - Only strings, integers, booleans, and objects or arrays of those; never floats.
//   - Update encodeEvent, the export encoding (which uses the same function), WriteCSV's
//     columns, the test oracle in canonical_test.go and the vectors in testdata.
func Canonical(e Event) ([]byte, error) {
	w := encoder{b: make([]byte, 0, 512), strict: true}
	w.event(&e, false)
	if w.err != nil {
		return nil, w.err
	}
	return w.b, nil
}

// FormatTime formats t the way audit records carry times: UTC RFC 3339 with exactly three
// fractional digits, truncated to the millisecond ("2026-11-22T10:00:00.000Z").
func FormatTime(t time.Time) string {
	b, err := appendTime(make([]byte, 0, len(timeLayout)), t)
	if err != nil {
		// Years outside 0000..9999 cannot be written in RFC 3339; fall back to Go's layout
		// so that a message or log line can still show the value.
		return t.UTC().Format(timeLayout)
	}
	return string(b)
}

// timeLayout is the Go layout equivalent of appendTime for times in UTC.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// encoder appends the canonical (strict) or export (lenient) JSON form of events to b.
// It is reused across events by Verify and the exporters so that encoding does not allocate.
type encoder struct {
	b []byte
	// strict rejects invalid UTF-8 and the zero time (Canonical); lenient replaces invalid
	// bytes with U+FFFD and writes the zero time (export), as encoding/json would.
	strict bool
	err    error      // first error; encoding goes on but the output is discarded
	kvs    []keyValue // scratch space for sorting evidence entries
	// evStart and evEnd delimit the evidence object in b after event (equal when none).
	evStart, evEnd int
}

// event appends e. withHashes adds hash and prev_hash (export form, never hashed).
func (w *encoder) event(e *Event, withHashes bool) { w.eventWith(e, withHashes, "") }

// eventWith is event with the evidence given as its canonical encoding when evidenceJSON is
// not empty (see StoredEvent; the caller has checked it with CanonicalEvidence), in place of
// e.Evidence.
func (w *encoder) eventWith(e *Event, withHashes bool, evidenceJSON string) {
	w.b = append(w.b, `{"action":`...)
	w.str("action", string(e.Action))
	w.b = append(w.b, `,"actor":{`...)
	if e.Actor.Email != "" {
		w.b = append(w.b, `"email":`...)
		w.str("actor.email", e.Actor.Email)
		w.b = append(w.b, ',')
	}
	w.b = append(w.b, `"id":`...)
	w.str("actor.id", e.Actor.ID)
	w.b = append(w.b, `,"kind":`...)
	w.str("actor.kind", string(e.Actor.Kind))
	w.b = append(w.b, '}')
	w.evStart, w.evEnd = 0, 0
	if evidenceJSON != "" {
		w.b = append(w.b, `,"evidence":`...)
		w.evStart = len(w.b)
		w.b = append(w.b, evidenceJSON...)
		w.evEnd = len(w.b)
	} else if len(e.Evidence) > 0 {
		w.b = append(w.b, `,"evidence":`...)
		w.evStart = len(w.b)
		w.stringMap(e.Evidence)
		w.evEnd = len(w.b)
	}
	w.optional(`,"grant_id":`, "grant_id", e.GrantID)
	if withHashes {
		w.b = append(w.b, `,"hash":"`...)
		w.b = appendHex(w.b, e.Hash[:])
		w.b = append(w.b, '"')
	}
	w.b = append(w.b, `,"id":`...)
	w.str("id", e.ID)
	if withHashes {
		w.b = append(w.b, `,"prev_hash":"`...)
		w.b = appendHex(w.b, e.PrevHash[:])
		w.b = append(w.b, '"')
	}
	w.optional(`,"reason":`, "reason", e.Reason)
	w.optional(`,"request_id":`, "request_id", e.RequestID)
	w.optional(`,"resource":`, "resource", e.Resource)
	w.b = append(w.b, `,"seq":`...)
	w.b = strconv.AppendInt(w.b, e.Seq, 10)
	w.b = append(w.b, `,"time":"`...)
	w.time(e.Time)
	w.b = append(w.b, `"}`...)
}

// optional appends key and s unless s is empty.
func (w *encoder) optional(key, field, s string) {
	if s == "" {
		return
	}
	w.b = append(w.b, key...)
	w.str(field, s)
}

// stringMap appends m as an object with bytewise-sorted keys.
func (w *encoder) stringMap(m map[string]string) {
	if cap(w.kvs) < len(m) {
		w.kvs = make([]keyValue, 0, len(m))
	}
	w.kvs = w.kvs[:0]
	for k, v := range m {
		w.kvs = append(w.kvs, keyValue{k, v})
	}
	// Go compares strings bytewise; keys are unique, so the order is total.
	slices.SortFunc(w.kvs, func(a, b keyValue) int { return strings.Compare(a.k, b.k) })
	w.b = append(w.b, '{')
	for i, kv := range w.kvs {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.str("evidence key", kv.k)
		w.b = append(w.b, ':')
		w.str("evidence value", kv.v)
	}
	w.b = append(w.b, '}')
	clear(w.kvs) // do not keep the map's strings alive through the scratch slice
}

type keyValue struct{ k, v string }

func (w *encoder) time(t time.Time) {
	if w.strict && t.IsZero() {
		w.fail(errors.New("audit canonical: time is zero: set Event.Time from the injected clock"))
		return
	}
	b, err := appendTime(w.b, t)
	if err != nil {
		w.fail(err)
		return
	}
	w.b = b
}

func (w *encoder) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// str appends s as a JSON string. field names the field in the error for invalid UTF-8.
func (w *encoder) str(field, s string) {
	b := append(w.b, '"')
	start := 0
	for i := 0; i < len(s); {
		if i+8 <= len(s) && !needsEscapeOrDecode(load8(s, i)) {
			i += 8 // eight plain ASCII bytes: the common case
			continue
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			if w.strict {
				w.fail(fmt.Errorf("audit canonical: %s is not valid UTF-8 (bad byte 0x%02x at offset %d): fix the producer of this value", field, c, i))
			}
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	w.b = append(b, '"')
}

const hexDigits = "0123456789abcdef"

// load8 returns s[i:i+8] as a little-endian word (the compiler merges the loads).
func load8(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// needsEscapeOrDecode reports whether any byte of x is below 0x20, '"', '\\' or non-ASCII.
// Per byte: b-0x20 borrows (sets the high bit) only for b < 0x20; (b^'"')-1 only for b == '"';
// likewise for '\\'; a borrow into a higher byte only happens when a lower byte already
// matched, and any false high bit comes from a byte >= 0x80, which matches anyway.
func needsEscapeOrDecode(x uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	return ((x-lo*0x20)|((x^lo*'"')-lo)|((x^lo*'\\')-lo)|x)&hi != 0
}

func appendHex(b, src []byte) []byte {
	for _, c := range src {
		b = append(b, hexDigits[c>>4], hexDigits[c&0xF])
	}
	return b
}

// appendTime appends t as "YYYY-MM-DDTHH:MM:SS.mmmZ" in UTC, truncated to the millisecond.
// It is written by hand because it runs once per event in Verify.
func appendTime(b []byte, t time.Time) ([]byte, error) {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return b, fmt.Errorf("audit: time %s: year %d is outside 0000..9999 and cannot be written in RFC 3339", t.Format(time.RFC3339), year)
	}
	hour, minute, sec := t.Clock()
	ms := t.Nanosecond() / int(time.Millisecond)
	b = append(b,
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+int(month)/10), byte('0'+int(month)%10), '-',
		byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':',
		byte('0'+minute/10), byte('0'+minute%10), ':',
		byte('0'+sec/10), byte('0'+sec%10), '.',
		byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
	return b, nil
}
