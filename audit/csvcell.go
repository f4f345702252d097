package audit

import "strings"

// csvFormulaStarts are the first characters that make a spreadsheet (Excel, LibreOffice,
// Google Sheets) read a cell as a formula or fold it into one: = + - @, and tab, carriage
// return and NUL, which some importers strip before looking at the next character.
const csvFormulaStarts = "=+-@\t\r\x00"

// DefuseCSVCell returns s made safe to open in a spreadsheet: a cell whose first character is
// = + - @, a tab, a carriage return or NUL gets a leading ' (the spreadsheet convention for
// "this is text"), so a reason such as =HYPERLINK(...) is shown, never run. Any other cell is
// returned unchanged. Every CSV accessbroker writes (audit search, audit export, report)
// passes each cell through it unless the caller asked for raw output (--raw).
func DefuseCSVCell(s string) string {
	if s != "" && strings.IndexByte(csvFormulaStarts, s[0]) >= 0 {
		return "'" + s
	}
	return s
}

// csvCell is how a CSV writer turns a value into a cell: DefuseCSVCell, or the value itself
// when raw.
func csvCell(raw bool) func(string) string {
	if raw {
		return func(s string) string { return s }
	}
	return DefuseCSVCell
}
