package console

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static/*
var staticFS embed.FS

// pageSet holds one parsed template per page, each with the shared layout.
type pageSet struct{ t map[string]*template.Template }

var pageNames = []string{"signin", "error", "home", "grants", "grant", "request", "form", "approvals", "audit", "report", "chain"}

var funcs = template.FuncMap{
	"ts":     tsText,
	"dur":    func(d time.Duration) string { return audit.FormatDuration(d) },
	"clean":  broker.Clean,
	"join":   strings.Join,
	"prefix": func() string { return Prefix },
}

// tsText is a time as the pages show it: RFC 3339 with milliseconds, or — when unset.
func tsText(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return audit.FormatTime(t)
}

func parsePages() (*pageSet, error) {
	ps := &pageSet{t: map[string]*template.Template{}}
	for _, n := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html", "templates/"+n+".html")
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", n, err)
		}
		ps.t[n] = t
	}
	return ps, nil
}

// render executes a page into a buffer first, so that a template error never sends half
// a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	var buf bytes.Buffer
	if err := c.pages.t[page].ExecuteTemplate(&buf, "layout.html", data); err != nil {
		c.log.ErrorContext(r.Context(), "render console page", "page", page, "error", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// static serves the embedded assets.
func (c *Console) static(w http.ResponseWriter, r *http.Request) {
	sub, _ := fs.Sub(staticFS, "static")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	http.StripPrefix(Prefix+"static/", http.FileServer(http.FS(sub))).ServeHTTP(w, r)
}
