package console

import (
	"strings"
	"testing"
)

// TestFastRenderEscapes: the Go-written rows escape every value from the log, in text and
// in attributes, and percent-encode ids in links: a hostile reason, actor, evidence, id or
// mark text cannot open a tag or leave an attribute.
func TestFastRenderEscapes(t *testing.T) {
	const evil = `"><script>alert(1)</script><a href='x'>&`
	s := step{Seq: 7, Time: evil, Kind: evil, Action: evil, Actor: evil, Reason: evil, GrantID: `g_1"/../x?<`, Request: evil,
		Evidence: []kv{{evil, evil}, {"text", evil}, {"tag", evil}}, Mark: Mark{State: evil, Text: evil, Signed: true}}
	tests := []struct {
		name string
		html string
	}{
		{"story steps", string(stepsHTML([]step{s}))},
		{"statements", string(statementsHTML([]step{s}))},
		{"audit rows", string(auditRowsHTML([]step{s}))},
		{"live grants", string(liveRowsHTML([]grantRow{{ID: s.GrantID, Resource: evil, Person: evil, State: evil, Reason: evil, Left: evil}}))},
		{"past grants", string(pastRowsHTML([]grantRow{{ID: s.GrantID, Resource: evil, RevokeCause: evil, Reason: evil}}))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, bad := range []string{"<script", "<a href='x'", `"><script`, "'x'"} {
				if strings.Contains(tt.html, bad) {
					t.Errorf("output contains %q unescaped:\n%s", bad, tt.html)
				}
			}
			if !strings.Contains(tt.html, "&lt;script&gt;alert(1)&lt;/script&gt;") {
				t.Errorf("the hostile value is not shown escaped:\n%s", tt.html)
			}
			if strings.Contains(tt.html, `href="`+Prefix+`grants/`) && !strings.Contains(tt.html, `href="`+Prefix+`grants/g_1%22%2F..%2Fx%3F%3C"`) {
				t.Errorf("the grant id is not percent-encoded in its link:\n%s", tt.html)
			}
		})
	}
}
