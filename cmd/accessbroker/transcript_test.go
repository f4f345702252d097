package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var updateTranscript = flag.Bool("update", false, "rewrite the demo's golden transcripts in testdata/demo")

// What varies from one demo run to the next, and what the golden transcript shows instead.
var (
	transcriptIDRE        = regexp.MustCompile(`\b([rgs])_([a-z2-7]{16})\b`)
	transcriptStampRE     = regexp.MustCompile(`(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)( {2,})?`)
	transcriptLineStampRE = regexp.MustCompile(`(?m)^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)  `)
	transcriptReplacers   = []struct {
		re   *regexp.Regexp
		with string
	}{
		// A checkpoint is signed when the checkpointer's timer fires, before or after the
		// narrator's next move of the clock, and so before or after the events committed
		// meanwhile: both its time and the seq it covers vary.
		{regexp.MustCompile(`(checkpoints verified \(last at seq )\d+, T0\S*\)`), "${1}N, T0+…)"},
		{regexp.MustCompile(`\b\d\d:\d\d UTC\b`), "HH:MM UTC"},
		{regexp.MustCompile(`127\.0\.0\.1:\d+`), "127.0.0.1:PORT"},
		{regexp.MustCompile(`\bport \d+ ·`), "port PORT ·"},
		{regexp.MustCompile(`\bASIA[A-Z0-9]{16}\b`), "ASIAxxxxxxxxxxxxxxxx"},
		{regexp.MustCompile(`\b(accessbroker_demo|demo_readonly)_[0-9a-f]{8}\b`), "${1}_xxxxxxxx"},
		{regexp.MustCompile(`PostgreSQL \d\S*( \([^)]*\))? at`), "PostgreSQL VERSION at"},
		{regexp.MustCompile(`\bhead [0-9a-f]{64}\b`), "head HASH"},
		// The report's latest checkpoint: which one depends on the checkpointer's timer too.
		{regexp.MustCompile("(Latest checkpoint:\\*\\* )#\\d+ `[0-9a-f]{64}` at T0\\S*;"), "$1#N `HASH` at T0+…;"},
		{regexp.MustCompile(`\bAccessbrokerExp\d+\b`), "AccessbrokerExpN"},
		{regexp.MustCompile(`took \d+\.\d s of real time`), "took N s of real time"},
	}
)

// normalizeTranscript masks what differs between two runs of the same demo: the working
// directory, ids (numbered by first appearance: r_R1…, g_G1…), times (as offsets from the
// first line's time, T0), clock times, ports, AWS session key ids, the PostgreSQL names and
// version, the audit head hash, the real time taken. The closing section's entries are sorted,
// since the revoker finishes the leftover grants concurrently. Every line of the story stays.
func normalizeTranscript(s, dir string) string {
	s = strings.ReplaceAll(s, dir, "DIR")
	labels, counts := map[string]string{}, map[string]int{}
	for _, m := range transcriptIDRE.FindAllStringSubmatch(s, -1) {
		if _, ok := labels[m[2]]; !ok {
			counts[m[1]]++
			l := fmt.Sprintf("%s%d", strings.ToUpper(m[1]), counts[m[1]])
			labels[m[2]] = l + strings.Repeat("x", 16-len(l))
		}
	}
	for id, l := range labels { // the bare suffix too: it names the PostgreSQL login role
		s = strings.ReplaceAll(s, id, l)
	}
	var t0 time.Time
	if m := transcriptLineStampRE.FindStringSubmatch(s); m != nil {
		t0, _ = time.Parse(time.RFC3339, m[1])
	}
	s = transcriptStampRE.ReplaceAllStringFunc(s, func(m string) string {
		t, err := time.Parse(time.RFC3339, m[:24])
		if err != nil || t0.IsZero() {
			return m
		}
		d, sign := t.Sub(t0), "+"
		if d < 0 {
			d, sign = -d, "-"
		}
		out, gap := "T0"+sign+d.String(), m[24:]
		if gap != "" { // a column: keep it as wide as the time was
			out = fmt.Sprintf("%-24s", out)
		}
		return out + gap
	})
	for _, r := range transcriptReplacers {
		s = r.re.ReplaceAllString(s, r.with)
	}
	return sortClosingSection(s)
}

// sortClosingSection sorts the entries (a timed line and the lines indented under it) of the
// "Closing:" section.
func sortClosingSection(s string) string {
	lines := strings.Split(s, "\n")
	start := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "Closing: ") })
	if start < 0 {
		return s
	}
	start += 2 // the title and its rule
	end := start
	var entries []string
	for ; end < len(lines); end++ {
		l := lines[end]
		if strings.HasPrefix(l, "T0") {
			entries = append(entries, l)
		} else if strings.HasPrefix(l, " ") && len(entries) > 0 {
			entries[len(entries)-1] += "\n" + l
		} else {
			break
		}
	}
	slices.Sort(entries)
	return strings.Join(slices.Concat(lines[:start], entries, lines[end:]), "\n")
}

// checkTranscript compares the demo's masked transcript with testdata/demo/NAME; -update
// rewrites the file.
func checkTranscript(t *testing.T, name string, r demoResult) {
	t.Helper()
	got := normalizeTranscript(r.transcript, r.dir)
	path := "testdata/demo/" + name
	if *updateTranscript {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it)", err)
	}
	if d := cmp.Diff(strings.Split(string(want), "\n"), strings.Split(got, "\n")); d != "" {
		t.Errorf("the demo's transcript differs from %s (-want +got; run with -update if the change is meant):\n%s", path, d)
	}
}

func TestNormalizeTranscript(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"ids by first appearance, the role name too",
			"request r_abcdefghijklmnop grant g_zyxwvutsrqponmlk\nrole ab_alice_zyxwvutsrqponmlk of g_zyxwvutsrqponmlk, g_bbbbbbbbbbbbbbbb",
			"request r_R1xxxxxxxxxxxxxx grant g_G1xxxxxxxxxxxxxx\nrole ab_alice_G1xxxxxxxxxxxxxx of g_G1xxxxxxxxxxxxxx, g_G2xxxxxxxxxxxxxx"},
		{"times from the first timed line; columns keep their width",
			"until 2026-12-03T12:10:53.000Z\n2026-12-03T06:10:53.000Z  alice\n2026-12-03T06:25:54.000Z  until 2026-12-03T06:25:53.000Z: done",
			"until T0+6h0m0s\nT0+0s                     alice\nT0+15m1s                  until T0+15m0s: done"},
		{"a window that starts before T0",
			"2026-12-03T06:10:53.000Z  --since 2026-11-26T06:10:53.000Z",
			"T0+0s                     --since T0-168h0m0s"},
		{"the working directory, ports, clock times",
			"config /tmp/x/config.yaml at http://127.0.0.1:40887, until 06:25 UTC",
			"config DIR/config.yaml at http://127.0.0.1:PORT, until HH:MM UTC"},
		{"the closing section's entries are sorted",
			"Closing: revoking\n──\n2026-12-03T06:10:53.000Z  revoked b\n      b detail\n2026-12-03T06:10:53.000Z  revoked a\nDropped it.",
			"Closing: revoking\n──\nT0+0s                     revoked a\nT0+0s                     revoked b\n      b detail\nDropped it."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := normalizeTranscript(tc.in, "/tmp/x"); got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}
