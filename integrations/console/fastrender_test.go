package console

import (
	"bytes"
	"html/template"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
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
		{"home grants", string(homeGrantRowsHTML([]grantRow{{ID: s.GrantID, Resource: evil, State: evil, RevokeCause: evil, Reason: evil, Left: evil}}))},
		{"home requests", string(homeRequestRowsHTML([]grants.Request{{ID: s.GrantID, Resource: evil, State: grants.RequestState(evil), Reason: evil}}))},
		{"inbox", string(inboxRowsHTML([]inboxItem{{Request: grants.Request{ID: s.GrantID, Resource: evil, Reason: evil,
			Requester: grants.Person{SlackUserID: evil, Email: evil}}, Extends: evil}}, evil))},
		{"anomalies", string(anomalyRowsHTML([]audit.Anomaly{{Kind: audit.AnomalyKind(evil), Person: evil, Resource: evil, GrantID: s.GrantID, Detail: evil}}))},
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

// TestFastRenderMatchesTemplate: for ordinary values each Go-written list is the HTML the
// template it replaced wrote (those templates are kept here as the reference).
func TestFastRenderMatchesTemplate(t *testing.T) {
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	g := grantRow{ID: "g_01JABC", Resource: "prod-db", State: "revoked", RevokeCause: "expired", Reason: "checking <lag> & 'more'", Expires: at, Left: "1h0m"}
	req := grants.Request{ID: "r_01JABC", Resource: "prod-db", State: grants.RequestPending, CreatedAt: at, Reason: "a \"quoted\" reason",
		Duration: 90 * time.Minute, Requester: grants.Person{SlackUserID: "U1", Email: "a@example.com"}}
	item := inboxItem{Request: req, Extends: "g_01JOLD", Needed: 2, Have: 1}
	an := audit.Anomaly{Kind: audit.AnomalyNotOnCall, Time: at, Person: "U1 <a@example.com>", Resource: "prod-db", GrantID: "g_01JABC", Detail: "not on call & approved"}
	tests := []struct {
		name, tmpl string
		data       any
		got        template.HTML
	}{
		{"home grants", `{{range .}}<tr><td><a href="{{prefix}}grants/{{.ID}}">{{.ID}}</a></td><td>{{.Resource}}</td><td>{{.State}}{{with .RevokeCause}} ({{.}}){{end}}</td><td>{{ts .Expires}}{{with .Left}} ({{.}} left){{end}}</td><td>{{clean .Reason}}</td></tr>{{end}}`,
			[]grantRow{g, {ID: "g_2", Resource: "x", State: "active", Reason: "r"}}, homeGrantRowsHTML([]grantRow{g, {ID: "g_2", Resource: "x", State: "active", Reason: "r"}})},
		{"home requests", `{{range .}}<tr><td><a href="{{prefix}}requests/{{.ID}}">{{.ID}}</a></td><td>{{.Resource}}</td><td>{{.State}}</td><td>{{ts .CreatedAt}}</td><td>{{clean .Reason}}</td></tr>{{end}}`,
			[]grants.Request{req}, homeRequestRowsHTML([]grants.Request{req})},
		{"inbox", `{{range .}}<tr>
<td><a href="{{prefix}}requests/{{.ID}}">{{.ID}}</a>{{with .Extends}} (extends {{.}}){{end}}</td><td>{{.Requester.SlackUserID}}{{with .Requester.Email}} ({{.}}){{end}}</td><td>{{.Resource}}</td><td>{{dur .Duration}}</td><td>{{.Have}} of {{.Needed}}</td><td>{{clean .Reason}}</td>
<td><form method="post" action="{{prefix}}requests/{{.ID}}/decide" class="inline">
<input type="hidden" name="csrf" value="CSRF-TOKEN">
<button type="submit" name="decision" value="approve" aria-label="Approve request {{.ID}}">Approve</button>
<button type="submit" name="decision" value="deny" aria-label="Deny request {{.ID}}">Deny</button>
</form></td></tr>{{end}}`, []inboxItem{item}, inboxRowsHTML([]inboxItem{item}, "CSRF-TOKEN")},
		{"anomalies", `{{range .}}<tr><td>{{.Kind}}</td><td>{{ts .Time}}</td><td>{{.Person}}</td><td>{{.Resource}}</td><td>{{with .GrantID}}<a href="{{prefix}}grants/{{.}}">{{.}}</a>{{end}}</td><td>{{.Detail}}</td></tr>{{end}}`,
			[]audit.Anomaly{an, {Kind: audit.AnomalyNotOnCall, Time: at}}, anomalyRowsHTML([]audit.Anomaly{an, {Kind: audit.AnomalyNotOnCall, Time: at}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref := template.Must(template.New("ref").Funcs(funcs).Parse(tt.tmpl))
			var want bytes.Buffer
			if err := ref.Execute(&want, tt.data); err != nil {
				t.Fatal(err)
			}
			if string(tt.got) != want.String() {
				t.Errorf("fast render differs from the template:\n got: %s\nwant: %s", tt.got, want.String())
			}
		})
	}
}
