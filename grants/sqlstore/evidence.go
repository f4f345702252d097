package sqlstore

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
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
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' || strings.IndexByte(s, '\\') >= 0 || !utf8.ValidString(s) {
		return nil, false
	}
	m := make(map[string]string, 4)
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
		return m, i == len(s)-1
	}
	for {
		k, ok := str()
		if !ok || i >= len(s) || s[i] != ':' {
			return nil, false
		}
		i++
		v, ok := str()
		if !ok || i >= len(s) {
			return nil, false
		}
		if _, dup := m[k]; dup {
			return nil, false
		}
		m[k] = v
		switch s[i] {
		case ',':
			i++
		case '}':
			return m, i == len(s)-1
		default:
			return nil, false
		}
	}
}
