package sqlstore

import (
	"encoding/json"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/accessbroker/accessbroker/audit"
)

// decodeEvidence decodes an audit event's evidence column: a flat JSON object of strings, as
// json.Marshal of a map[string]string writes it. The common case (no escapes) is parsed
// directly, which is several times faster than encoding/json and matters when a verify or a
// report reads millions of events; anything else goes through encoding/json.
func decodeEvidence(s string) (map[string]string, error) {
	if m, ok := decodeFlatObject(s); ok {
		return m, nil
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeFlatObject parses {"k":"v",...} in valid UTF-8 whose strings contain no backslash
// (no whitespace either, as json.Marshal writes it); ok=false means
// "not that simple form", never a wrong answer.
func decodeFlatObject(s string) (map[string]string, bool) {
	m := make(map[string]string, 4)
	ok := scanFlatObject(s, func(k, v string) bool {
		if _, dup := m[k]; dup {
			return false
		}
		m[k] = v
		return true
	})
	if !ok {
		return nil, false
	}
	return m, true
}

// scanFlatObject walks s when it is decodeFlatObject's simple form, calling each with every
// key and value in order; it reports false when s is not in that form or each returned false.
func scanFlatObject(s string, each func(k, v string) bool) bool {
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' || strings.IndexByte(s, '\\') >= 0 || !utf8.ValidString(s) {
		return false
	}
	i := 1
	str := func() (string, bool) {
		if i >= len(s) || s[i] != '"' {
			return "", false
		}
		j := strings.IndexByte(s[i+1:], '"')
		if j < 0 {
			return "", false
		}
		v := s[i+1 : i+1+j]
		for k := 0; k < len(v); k++ {
			if v[k] < 0x20 { // control characters are always escaped in valid JSON
				return "", false
			}
		}
		i += j + 2
		return v, true
	}
	if s[i] == '}' {
		return i == len(s)-1
	}
	for {
		k, ok := str()
		if !ok || i >= len(s) || s[i] != ':' {
			return false
		}
		i++
		v, ok := str()
		if !ok || i >= len(s) || !each(k, v) {
			return false
		}
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

// sealEvidence seals e after prev (audit.Seal) and returns its evidence column: json.Marshal
// of e.Evidence, byte for byte, "" when it has none. The canonical encoding the chain hashes
// already holds that object for evidence without '<', '>' or '&' (the session proxy's
// statements), so it is taken from there rather than encoded twice; evidence with any of them
// is encoded by encodeEvidence, as encoding/json escapes them.
func sealEvidence(prev audit.Hash, e *audit.Event) (string, error) {
	ev, err := audit.SealEvidence(prev, e)
	if err != nil {
		return "", err
	}
	if strings.ContainsAny(ev, "<>&") {
		return encodeEvidence(e.Evidence)
	}
	return ev, nil
}

// encodeEvidence is json.Marshal of an audit event's evidence, byte for byte: keys sorted,
// strings that need no escaping written as they are (the common case, several times faster
// than encoding/json's reflection, and the proxy appends thousands of events a second);
// a map with any string that needs escaping goes through encoding/json.
func encodeEvidence(m map[string]string) (string, error) {
	keys := make([]string, 0, len(m))
	n := 2
	for k, v := range m {
		if !plainJSONString(k) || !plainJSONString(v) {
			b, err := json.Marshal(m)
			return string(b), err
		}
		keys = append(keys, k)
		n += len(k) + len(v) + 6
	}
	slices.Sort(keys)
	var b strings.Builder
	b.Grow(n)
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(k)
		b.WriteString(`":"`)
		b.WriteString(m[k])
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String(), nil
}

// plainJSONString: encoding/json writes s between quotes unchanged (printable ASCII other
// than its escaped '"', '\\', '<', '>', '&'; valid UTF-8 other than U+2028 and U+2029).
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				return false
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			return false
		}
		i += size - 1
	}
	return true
}
