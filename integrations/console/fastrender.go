package console

import (
	"html"
	"html/template"
	"net/url"
	"strconv"
	"strings"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

// The long lists of the console (a story's steps, a session's statements, the audit
// search's rows) are written here in Go rather than by html/template: a template action
// costs a reflective call and an escaper per field, which made these rows most of a story
// page's time (profile of BenchmarkConsolePages). Every value from the log goes through
// esc (html.EscapeString: & < > ' ") and every id in a link through url.PathEscape first,
// so the output is as safe as the template's in the contexts used here (element text and
// double-quoted attribute values); TestFastRenderEscapes checks it with hostile values.

// esc writes s escaped for element text or a double-quoted attribute value.
func esc(b *strings.Builder, s string) { b.WriteString(html.EscapeString(s)) }

// writeMark writes a chain mark as the "mark" template of parts.html does.
func writeMark(b *strings.Builder, m Mark) {
	b.WriteString(`<span class="mark mark-`)
	esc(b, m.State)
	b.WriteString(`" title="`)
	esc(b, m.Text)
	b.WriteString(`">`)
	switch m.State {
	case "verified":
		b.WriteString("✓ verified")
	case "pending":
		b.WriteString("… not yet verified")
	case "broken":
		b.WriteString("✗ broken")
	default:
		b.WriteString("? unknown")
	}
	if m.Signed {
		b.WriteString(" · signed")
	}
	b.WriteString(`</span><span class="sr"> (`)
	esc(b, m.Text)
	b.WriteString(`)</span>`)
}

// writeLink writes <a href="/ui/{kind}/{id}">{id}</a>.
func writeLink(b *strings.Builder, kind, id string) {
	b.WriteString(`<a href="`)
	b.WriteString(Prefix)
	b.WriteString(kind)
	b.WriteByte('/')
	esc(b, url.PathEscape(id))
	b.WriteString(`">`)
	esc(b, id)
	b.WriteString(`</a>`)
}

func writeSeq(b *strings.Builder, seq int64) {
	b.WriteByte('#')
	b.WriteString(strconv.FormatInt(seq, 10))
}

// stepsHTML renders a story's steps as the <li> items of its <ol>.
func stepsHTML(steps []step) template.HTML {
	var b strings.Builder
	b.Grow(len(steps) * 700)
	for _, s := range steps {
		b.WriteString(`<li class="step kind-`)
		esc(&b, s.Kind)
		b.WriteString(`" id="seq-`)
		b.WriteString(strconv.FormatInt(s.Seq, 10))
		b.WriteString(`">` + "\n" + `  <div class="step-head"><span class="seq">`)
		writeSeq(&b, s.Seq)
		b.WriteString(`</span> <strong class="action">`)
		esc(&b, s.Action)
		b.WriteString(`</strong> <time>`)
		esc(&b, s.Time)
		b.WriteString(`</time> `)
		writeMark(&b, s.Mark)
		b.WriteString("</div>\n  <div>by ")
		esc(&b, s.Actor)
		if s.Request != "" {
			b.WriteString(" · request ")
			writeLink(&b, "requests", s.Request)
		}
		if s.GrantID != "" {
			b.WriteString(" · grant ")
			writeLink(&b, "grants", s.GrantID)
		}
		b.WriteString("</div>\n")
		if s.Reason != "" {
			b.WriteString(`  <p class="reason">`)
			esc(&b, s.Reason)
			b.WriteString("</p>\n")
		}
		if len(s.Evidence) > 0 {
			b.WriteString(`  <dl class="evidence">`)
			for _, e := range s.Evidence {
				b.WriteString("<dt>")
				esc(&b, e.K)
				b.WriteString("</dt><dd>")
				esc(&b, e.V)
				b.WriteString("</dd>")
			}
			b.WriteString("</dl>\n")
		}
		b.WriteString("</li>\n")
	}
	return template.HTML(b.String()) //nolint:gosec // every value is escaped above
}

// statementsHTML renders a session's statements as table rows.
func statementsHTML(stmts []step) template.HTML {
	var b strings.Builder
	b.Grow(len(stmts) * 400)
	for _, s := range stmts {
		b.WriteString("<tr><td>")
		writeSeq(&b, s.Seq)
		b.WriteString("</td><td>")
		esc(&b, s.Time)
		b.WriteString("</td><td><code>")
		var tag string
		for _, e := range s.Evidence {
			switch e.K {
			case "text":
				esc(&b, e.V)
			case "tag":
				tag = e.V
			}
		}
		b.WriteString("</code>")
		if tag != "" {
			b.WriteString(" → ")
			esc(&b, tag)
		}
		b.WriteString("</td><td>")
		writeMark(&b, s.Mark)
		b.WriteString("</td></tr>")
	}
	return template.HTML(b.String()) //nolint:gosec // every value is escaped above
}

// auditRowsHTML renders the audit search's result rows.
func auditRowsHTML(steps []step) template.HTML {
	var b strings.Builder
	b.Grow(len(steps) * 500)
	for _, s := range steps {
		b.WriteString("<tr><td>")
		writeSeq(&b, s.Seq)
		b.WriteString("</td><td>")
		esc(&b, s.Time)
		b.WriteString("</td><td>")
		esc(&b, s.Action)
		b.WriteString("</td><td>")
		esc(&b, s.Actor)
		b.WriteString("</td><td>")
		if s.GrantID != "" {
			writeLink(&b, "grants", s.GrantID)
			b.WriteByte(' ')
		}
		if s.Request != "" {
			writeLink(&b, "requests", s.Request)
		}
		b.WriteString("</td><td>")
		esc(&b, s.Reason)
		b.WriteString("</td><td>")
		writeMark(&b, s.Mark)
		b.WriteString("</td></tr>")
	}
	return template.HTML(b.String()) //nolint:gosec // every value is escaped above
}

// liveRowsHTML renders the grants page's live-grant rows (the Grant, Resource, Person,
// State, Expires, Reason columns).
func liveRowsHTML(rows []grantRow) template.HTML {
	var b strings.Builder
	b.Grow(len(rows) * 400)
	for _, g := range rows {
		b.WriteString("<tr><td>")
		writeLink(&b, "grants", g.ID)
		b.WriteString("</td><td>")
		esc(&b, g.Resource)
		b.WriteString("</td><td>")
		esc(&b, g.Person)
		b.WriteString("</td><td>")
		esc(&b, g.State)
		b.WriteString("</td><td>")
		esc(&b, tsText(g.Expires))
		if g.Left != "" {
			b.WriteString(" (")
			esc(&b, g.Left)
			b.WriteString(" left)")
		}
		b.WriteString("</td><td>")
		esc(&b, broker.Clean(g.Reason))
		b.WriteString("</td></tr>")
	}
	return template.HTML(b.String()) //nolint:gosec // every value is escaped above
}

// pastRowsHTML renders the grants page's ended-grant rows (Grant, Resource, Ended, Why,
// Reason).
func pastRowsHTML(rows []grantRow) template.HTML {
	var b strings.Builder
	b.Grow(len(rows) * 300)
	for _, g := range rows {
		b.WriteString("<tr><td>")
		writeLink(&b, "grants", g.ID)
		b.WriteString("</td><td>")
		esc(&b, g.Resource)
		b.WriteString("</td><td>")
		esc(&b, tsText(g.Revoked))
		b.WriteString("</td><td>")
		esc(&b, g.RevokeCause)
		b.WriteString("</td><td>")
		esc(&b, broker.Clean(g.Reason))
		b.WriteString("</td></tr>")
	}
	return template.HTML(b.String()) //nolint:gosec // every value is escaped above
}

// writeInt writes n in decimal.
func writeInt(b *strings.Builder, n int) { b.WriteString(strconv.Itoa(n)) }

// homeGrantRowsHTML renders the home page's grant rows (Grant, Resource, State, Expires,
// Reason).
func homeGrantRowsHTML(rows []grantRow) template.HTML {
	var b strings.Builder
	b.Grow(len(rows) * 300)
	for _, g := range rows {
		b.WriteString("<tr><td>")
		writeLink(&b, "grants", g.ID)
		b.WriteString("</td><td>")
		esc(&b, g.Resource)
		b.WriteString("</td><td>")
		esc(&b, g.State)
		if g.RevokeCause != "" {
			b.WriteString(" (")
			esc(&b, g.RevokeCause)
			b.WriteString(")")
		}
		b.WriteString("</td><td>")
		esc(&b, tsText(g.Expires))
		if g.Left != "" {
			b.WriteString(" (")
			esc(&b, g.Left)
			b.WriteString(" left)")
		}
		b.WriteString("</td><td>")
		esc(&b, broker.Clean(g.Reason))
		b.WriteString("</td></tr>")
	}
	return template.HTML(b.String()) //nolint:gosec // every value is escaped above
}

// homeRequestRowsHTML renders the home page's request rows (Request, Resource, State,
// Asked, Reason).
func homeRequestRowsHTML(reqs []grants.Request) template.HTML {
	var b strings.Builder
	b.Grow(len(reqs) * 300)
	for _, r := range reqs {
		b.WriteString("<tr><td>")
		writeLink(&b, "requests", r.ID)
		b.WriteString("</td><td>")
		esc(&b, r.Resource)
		b.WriteString("</td><td>")
		esc(&b, string(r.State))
		b.WriteString("</td><td>")
		esc(&b, tsText(r.CreatedAt))
		b.WriteString("</td><td>")
		esc(&b, broker.Clean(r.Reason))
		b.WriteString("</td></tr>")
	}
	return template.HTML(b.String()) //nolint:gosec // every value is escaped above
}

// inboxRowsHTML renders the approvals inbox's rows, each with its Approve and Deny form
// carrying the viewer's CSRF token.
func inboxRowsHTML(items []inboxItem, csrf string) template.HTML {
	var b strings.Builder
	b.Grow(len(items) * 900)
	for _, it := range items {
		b.WriteString("<tr>\n<td>")
		writeLink(&b, "requests", it.ID)
		if it.Extends != "" {
			b.WriteString(" (extends ")
			esc(&b, it.Extends)
			b.WriteString(")")
		}
		b.WriteString("</td><td>")
		esc(&b, it.Requester.SlackUserID)
		if it.Requester.Email != "" {
			b.WriteString(" (")
			esc(&b, it.Requester.Email)
			b.WriteString(")")
		}
		b.WriteString("</td><td>")
		esc(&b, it.Resource)
		b.WriteString("</td><td>")
		esc(&b, audit.FormatDuration(it.Duration))
		b.WriteString("</td><td>")
		writeInt(&b, it.Have)
		b.WriteString(" of ")
		writeInt(&b, it.Needed)
		b.WriteString("</td><td>")
		esc(&b, broker.Clean(it.Reason))
		b.WriteString("</td>\n<td><form method=\"post\" action=\"")
		b.WriteString(Prefix)
		b.WriteString("requests/")
		esc(&b, url.PathEscape(it.ID))
		b.WriteString("/decide\" class=\"inline\">\n<input type=\"hidden\" name=\"csrf\" value=\"")
		esc(&b, csrf)
		b.WriteString("\">\n<button type=\"submit\" name=\"decision\" value=\"approve\" aria-label=\"Approve request ")
		esc(&b, it.ID)
		b.WriteString("\">Approve</button>\n<button type=\"submit\" name=\"decision\" value=\"deny\" aria-label=\"Deny request ")
		esc(&b, it.ID)
		b.WriteString("\">Deny</button>\n</form></td></tr>")
	}
	return template.HTML(b.String()) //nolint:gosec // every value is escaped above
}

// anomalyRowsHTML renders the weekly report's anomaly rows (Kind, Time, Person, Resource,
// Grant, Detail).
func anomalyRowsHTML(as []audit.Anomaly) template.HTML {
	var b strings.Builder
	b.Grow(len(as) * 300)
	for _, a := range as {
		b.WriteString("<tr><td>")
		esc(&b, string(a.Kind))
		b.WriteString("</td><td>")
		esc(&b, tsText(a.Time))
		b.WriteString("</td><td>")
		esc(&b, a.Person)
		b.WriteString("</td><td>")
		esc(&b, a.Resource)
		b.WriteString("</td><td>")
		if a.GrantID != "" {
			writeLink(&b, "grants", a.GrantID)
		}
		b.WriteString("</td><td>")
		esc(&b, a.Detail)
		b.WriteString("</td></tr>")
	}
	return template.HTML(b.String()) //nolint:gosec // every value is escaped above
}
