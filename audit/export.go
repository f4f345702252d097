package audit

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
)

// WriteJSONL writes events as JSON Lines: one object per line in the form of
// Event.MarshalJSON (every field including seq, prev_hash and hash; keys sorted; times UTC
// RFC 3339 with milliseconds). ReadJSONL reads it back, and the result can be verified.
func WriteJSONL(w io.Writer, events []Event) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := encoder{b: make([]byte, 0, 1024)}
	for i := range events {
		enc.b, enc.err = enc.b[:0], nil
		enc.event(&events[i], true)
		if enc.err != nil {
			return fmt.Errorf("write audit JSONL seq %d: %w", events[i].Seq, enc.err)
		}
		enc.b = append(enc.b, '\n')
		if _, err := bw.Write(enc.b); err != nil {
			return fmt.Errorf("write audit JSONL seq %d: %w", events[i].Seq, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write audit JSONL: %w", err)
	}
	return nil
}

// ReadJSONL reads events written by WriteJSONL, in file order. Blank lines are skipped. The
// error for a malformed line names its line number.
func ReadJSONL(r io.Reader) ([]Event, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var events []Event
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(b)) > 0 {
			var e Event
			if jerr := json.Unmarshal(b, &e); jerr != nil {
				return events, fmt.Errorf("read audit JSONL line %d: %w", line, jerr)
			}
			events = append(events, e)
		}
		if err == io.EOF {
			return events, nil
		}
		if err != nil {
			return events, fmt.Errorf("read audit JSONL line %d: %w", line, err)
		}
	}
}

// CSVColumns is the fixed column order of WriteCSV. Columns are only ever appended.
var CSVColumns = []string{
	"seq", "time", "actor_kind", "actor_id", "actor_email", "action", "request_id",
	"grant_id", "resource", "reason", "evidence", "prev_hash", "hash",
}

// WriteCSV writes events as RFC 4180 CSV with the columns of CSVColumns, preceded by a header
// row when header is true. time is UTC RFC 3339 with milliseconds; evidence is a JSON object
// with sorted keys, or empty; hashes are lowercase hex. Every cell is passed through
// DefuseCSVCell, so a reason starting with '=' (or + - @, tab, CR, NUL) is written with a
// leading ' and cannot run as a spreadsheet formula; WriteCSVRaw writes the exact text.
func WriteCSV(w io.Writer, events []Event, header bool) error {
	return writeCSV(w, events, header, csvCell(false))
}

// WriteCSVRaw is WriteCSV without defusing: every cell is the log's exact text (quoted where
// CSV requires), for tools that compare the export with the log byte for byte. Do not open
// its output in a spreadsheet.
func WriteCSVRaw(w io.Writer, events []Event, header bool) error {
	return writeCSV(w, events, header, csvCell(true))
}

func writeCSV(w io.Writer, events []Event, header bool, cell func(string) string) error {
	cw := csv.NewWriter(w)
	if header {
		if err := cw.Write(CSVColumns); err != nil {
			return fmt.Errorf("write audit CSV header: %w", err)
		}
	}
	enc := encoder{b: make([]byte, 0, 256)}
	rec := make([]string, len(CSVColumns))
	for i := range events {
		e := &events[i]
		evidence := ""
		if len(e.Evidence) > 0 {
			enc.b, enc.err = enc.b[:0], nil
			enc.stringMap(e.Evidence)
			evidence = string(enc.b)
		}
		t, err := appendTime(nil, e.Time)
		if err != nil {
			return fmt.Errorf("write audit CSV seq %d: %w", e.Seq, err)
		}
		rec[0] = strconv.FormatInt(e.Seq, 10)
		rec[1] = string(t)
		rec[2] = string(e.Actor.Kind)
		rec[3] = e.Actor.ID
		rec[4] = e.Actor.Email
		rec[5] = string(e.Action)
		rec[6] = e.RequestID
		rec[7] = e.GrantID
		rec[8] = e.Resource
		rec[9] = e.Reason
		rec[10] = evidence
		rec[11] = e.PrevHash.String()
		rec[12] = e.Hash.String()
		for i, v := range rec {
			rec[i] = cell(v)
		}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("write audit CSV seq %d: %w", e.Seq, err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write audit CSV: %w", err)
	}
	return nil
}
