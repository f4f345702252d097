package console

import (
	"fmt"
	"html"
	"html/template"
	"sort"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/audit"
)

// The pictures are server-rendered SVG, inline in the page (no script, no outside asset).
// Each has a title and a description for screen readers, and the page shows the same
// figures as a table.

// palette has enough contrast against white for WCAG AA graphics (3:1).
var palette = []string{"#1f5fa8", "#b0451c", "#2e7d32", "#6a1b9a", "#8d6e00", "#00695c", "#ad1457", "#37474f"}

const (
	svgW, svgH       = 640, 240
	padL, padB, padT = 48, 40, 16
)

type bar struct {
	label string
	parts []int // one per series
}

// barsSVG draws stacked bars with a legend.
func barsSVG(title, desc string, series []string, bars []bar) template.HTML {
	var b strings.Builder
	maxV := 1
	for _, br := range bars {
		t := 0
		for _, p := range br.parts {
			t += p
		}
		maxV = max(maxV, t)
	}
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="100%%" role="img" aria-labelledby="t-%s d-%s">`,
		svgW, svgH+20*((len(series)+3)/4), idOf(title), idOf(title))
	fmt.Fprintf(&b, `<title id="t-%s">%s</title><desc id="d-%s">%s</desc>`, idOf(title), html.EscapeString(title), idOf(title), html.EscapeString(desc))
	plotW, plotH := svgW-padL-8, svgH-padB-padT
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`, padL, padT+plotH, padL+plotW, padT+plotH)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" text-anchor="end" fill="#222">%d</text>`, padL-4, padT+8, maxV)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" text-anchor="end" fill="#222">0</text>`, padL-4, padT+plotH)
	if len(bars) > 0 {
		slot := plotW / len(bars)
		bw := max(4, slot*2/3)
		for i, br := range bars {
			x := padL + i*slot + (slot-bw)/2
			y := padT + plotH
			for s, v := range br.parts {
				if v == 0 {
					continue
				}
				h := v * plotH / maxV
				y -= h
				fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"><title>%s: %s %d</title></rect>`,
					x, y, bw, h, palette[s%len(palette)], html.EscapeString(br.label), html.EscapeString(series[s]), v)
			}
			fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" text-anchor="middle" fill="#222">%s</text>`, x+bw/2, padT+plotH+14, html.EscapeString(br.label))
		}
	}
	for i, s := range series {
		x, y := padL+(i%4)*150, svgH+(i/4)*20
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d" font-size="11" fill="#222">%s</text>`,
			x, y-9, palette[i%len(palette)], x+14, y, html.EscapeString(s))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every text above is escaped
}

func idOf(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 32
		}
		return '-'
	}, s)
}

// grantsPerDaySVG: the week's issued grants per day, stacked by resource.
func grantsPerDaySVG(rep audit.Report, since time.Time) template.HTML {
	resIdx := map[string]int{}
	var series []string
	for _, c := range rep.ByResource {
		resIdx[c.Name] = len(series)
		series = append(series, c.Name)
	}
	bars := make([]bar, 7)
	for d := range bars {
		bars[d] = bar{label: since.AddDate(0, 0, d).Format("Mon 02"), parts: make([]int, len(series))}
	}
	for _, row := range rep.Rows {
		d := int(row.IssuedAt.Sub(since) / (24 * time.Hour))
		if i, ok := resIdx[row.Resource]; ok && d >= 0 && d < 7 {
			bars[d].parts[i]++
		}
	}
	return barsSVG("Grants per day by resource", fmt.Sprintf("%d grants issued this week across %d resources", rep.Grants, len(series)), series, bars)
}

type bucket struct {
	label string
	upTo  time.Duration // inclusive upper bound; 0 for the last
}

func histogram(title, desc, series string, buckets []bucket, ds []time.Duration, extra ...bar) template.HTML {
	bars := make([]bar, len(buckets))
	for i, bk := range buckets {
		bars[i] = bar{label: bk.label, parts: []int{0}}
	}
	for _, d := range ds {
		for i, bk := range buckets {
			if bk.upTo == 0 || d <= bk.upTo {
				bars[i].parts[0]++
				break
			}
		}
	}
	return barsSVG(title, desc, []string{series}, append(bars, extra...))
}

// timeToGrantSVG: from request.created to grant.issued, for the week's grants whose
// request is known.
func timeToGrantSVG(rep audit.Report, created map[string]time.Time) template.HTML {
	var ds []time.Duration
	for _, row := range rep.Rows {
		if t, ok := created[row.RequestID]; ok && !row.IssuedAt.Before(t) {
			ds = append(ds, row.IssuedAt.Sub(t))
		}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	desc := fmt.Sprintf("%d grants with a known request", len(ds))
	if len(ds) > 0 {
		desc += "; median " + audit.FormatDuration(ds[len(ds)/2].Round(time.Second))
	}
	return histogram("Time from request to grant", desc, "grants", []bucket{
		{"≤ 10s", 10 * time.Second}, {"≤ 1m", time.Minute}, {"≤ 5m", 5 * time.Minute}, {"≤ 15m", 15 * time.Minute},
		{"≤ 1h", time.Hour}, {"> 1h", 0}}, ds)
}

// revocationLagSVG: revocation time minus expiry for grants that ended by expiring, and
// the grants still not revoked on time.
func revocationLagSVG(rep audit.Report) template.HTML {
	var ds []time.Duration
	for _, row := range rep.Rows {
		if row.RevokeCause == "expired" && !row.RevokedAt.IsZero() {
			ds = append(ds, max(0, row.RevokedAt.Sub(row.ExpiresAt)))
		}
	}
	late := bar{label: "not yet", parts: []int{rep.Revocations.NotRevokedOnTime}}
	return histogram("Revocation lag after expiry", fmt.Sprintf("%d expiries revoked; %d not revoked on time", len(ds), rep.Revocations.NotRevokedOnTime),
		"revocations", []bucket{{"≤ 1s", time.Second}, {"≤ 10s", 10 * time.Second}, {"≤ 1m", time.Minute}, {"≤ 5m", 5 * time.Minute}, {"> 5m", 0}}, ds, late)
}
