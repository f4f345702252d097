package audit

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"unicode/utf8"
)

// StoredEvent is an event as a store reads it for Verify's parallel check (StoredReader): the
// Event, with its evidence either decoded (Event.Evidence) or, when the store keeps it as
// text that is exactly its canonical encoding, left as that text (EvidenceJSON), so that
// the check hashes the stored bytes instead of building a map and encoding it again.
type StoredEvent struct {
	Event
	// EvidenceJSON, when not empty, is the evidence as Canonical writes it after
	// `"evidence":` (CanonicalEvidence reports true for it), and Event.Evidence is nil.
	EvidenceJSON string
}

// StoredReader is an optional capability of a ParallelReader that Verify's parallel check
// reads through instead of ReadEvents: the same rows, with the reader's own buffers reused.
// Rows that ReadStored cannot return exactly as ReadEvents would are returned decoded (or
// the call fails); whatever the parallel check does not find clean is checked again, row by
// row, through ReadEvents, so damage is named as without it.
type StoredReader interface {
	ParallelReader
	// ReadStored is ReadEvents into buf[:0] (its memory reused): up to limit events with
	// Seq > after, in ascending seq order as stored, fewer only at the end of the log.
	ReadStored(ctx context.Context, after int64, limit int, buf []StoredEvent) ([]StoredEvent, error)
}

// CanonicalEvidence reports whether s is exactly the canonical encoding (see Canonical) of a
// non-empty evidence map: a JSON object of strings, keys in strictly increasing bytewise
// order, every string valid UTF-8 without a byte below 0x20, '"', '\\', U+2028 or U+2029,
// so that each is written as it is. A store that keeps evidence as json.Marshal writes it
// can pass such text to Verify as StoredEvent.EvidenceJSON: the map it denotes encodes to
// these very bytes.
func CanonicalEvidence(s string) bool {
	if len(s) < len(`{"":""}`) || s[0] != '{' || s[len(s)-1] != '}' {
		return false
	}
	i := 1
	// str returns the string starting at s[i] (a '"') and moves i past its closing quote.
	str := func() (string, bool) {
		if i >= len(s) || s[i] != '"' {
			return "", false
		}
		j := strings.IndexByte(s[i+1:], '"')
		if j < 0 {
			return "", false
		}
		v := s[i+1 : i+1+j]
		if !plainString(v) {
			return "", false
		}
		i += j + 2
		return v, true
	}
	prev, first := "", true
	for {
		k, ok := str()
		if !ok || (!first && k <= prev) || i >= len(s) || s[i] != ':' {
			return false
		}
		i++
		if _, ok := str(); !ok || i >= len(s) {
			return false
		}
		prev, first = k, false
		switch s[i] {
		case ',':
			i++
		case '}':
			return i == len(s)-1
		default:
			return false
		}
	}
}

// plainString reports whether the strict encoder writes s between quotes unchanged: valid
// UTF-8 with no byte below 0x20, no '"' or '\\', no U+2028 or U+2029.
func plainString(s string) bool {
	for i := 0; i < len(s); {
		if i+8 <= len(s) && !needsEscapeOrDecode(load8(s, i)) {
			i += 8
			continue
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == '"' || c == '\\' {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			return false
		}
		i += size
	}
	return true
}

// hashStored is hash for a stored event: its EvidenceJSON, if any, is hashed as it is after
// checking that it is canonical (an event whose text is not is reported as an error here,
// and checked again through ReadEvents).
func (h *hasher) hashStored(prev Hash, e *StoredEvent) (Hash, error) {
	if e.EvidenceJSON == "" {
		return h.hash(prev, &e.Event)
	}
	if len(e.Evidence) > 0 || !CanonicalEvidence(e.EvidenceJSON) {
		return Hash{}, errNotCanonicalEvidence
	}
	h.w.strict = true
	h.w.err = nil
	h.w.b = append(h.w.b[:0], prev[:]...)
	h.w.eventWith(&e.Event, false, e.EvidenceJSON)
	if h.w.err != nil {
		return Hash{}, h.w.err
	}
	return sha256.Sum256(h.w.b), nil
}

// errNotCanonicalEvidence: a StoredReader passed evidence text that is not canonical.
var errNotCanonicalEvidence = errors.New("audit: stored evidence text is not its canonical encoding")

// readStored reads a page for the parallel check: through ReadStored when r has it, else
// through ReadEvents, copied into buf.
func readStored(ctx context.Context, r Reader, after int64, limit int, buf []StoredEvent) ([]StoredEvent, error) {
	if sr, ok := r.(StoredReader); ok {
		return sr.ReadStored(ctx, after, limit, buf)
	}
	page, err := r.ReadEvents(ctx, after, limit)
	if err != nil {
		return buf[:0], err
	}
	buf = buf[:0]
	for i := range page {
		buf = append(buf, StoredEvent{Event: page[i]})
	}
	return buf, nil
}
