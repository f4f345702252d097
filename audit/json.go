package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// MarshalJSON writes e as one JSON object with every field, including seq, prev_hash and hash:
// the export form. Keys are sorted and the encoding follows Canonical's rules, with two
// differences so that any event can be shown: invalid UTF-8 becomes U+FFFD and the zero time
// is written (as encoding/json would). The export form is never hashed; Canonical is.
func (e Event) MarshalJSON() ([]byte, error) {
	w := encoder{b: make([]byte, 0, 512)}
	w.event(&e, true)
	if w.err != nil {
		return nil, fmt.Errorf("audit event seq %d: %w", e.Seq, w.err)
	}
	return w.b, nil
}

// UnmarshalJSON reads the form written by MarshalJSON (any RFC 3339 time is accepted and
// stored in UTC). It replaces all of *e; fields absent from the input are zero. Unknown keys
// are ignored. JSON null leaves *e unchanged, as encoding/json does for structs.
func (e *Event) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		return nil
	}
	type plain Event // same fields and tags, without these methods
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("audit event: %w", err)
	}
	p.Time = p.Time.UTC()
	*e = Event(p)
	return nil
}
