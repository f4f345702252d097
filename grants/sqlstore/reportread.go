package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/audit"
)

// The report's read of the log (audit.ReportScanner): the events of the report's range, by
// seq, in pages, with only the columns a report reads (not the id or the two hashes) joined
// into one as readlog's packed columns are, and of each event's evidence only the keys the
// report reads for its action (audit.ReportEvidenceKeys): a proxied session's statement
// carries a dozen evidence entries, and the report reads four.

var _ audit.ReportScanner = (*Store)(nil)

// reportText lists the text columns joined into the third column of a report row, in order.
var reportText = [...]string{"actor_kind", "actor_id", "actor_email", "action", "request_id", "grant_id", "resource", "reason", "evidence"}

const reportFields = len(reportText)

var (
	reportColsSQLite   = "seq, time_ms, " + strings.Join(reportText[:], " || char(31) || ")
	reportColsPostgres = "seq, time_ms, " + strings.Join(reportText[:], " || chr(31) || ")
)

// reportPage is how many events ScanReportEvents reads per query and hands fn at once.
const reportPage = 10000

// ScanReportEvents implements audit.ReportScanner. The bounds are Search's for a query with
// Since from and Until until: from the first event at or after from (by the time index) up
// to the first event at or after until, every event before until.
func (s *Store) ScanReportEvents(ctx context.Context, from, until time.Time, fn func([]audit.Event) error) error {
	lo, ok, err := s.seqAtOrAfter(ctx, from)
	if err != nil || !ok {
		return err
	}
	where := "seq >= ? AND +time_ms < ?"
	args := []any{lo, ms(until)}
	hi, ok, err := s.seqAtOrAfter(ctx, until)
	if err != nil {
		return err
	}
	if ok {
		where += " AND seq < ?"
		args = append(args, hi)
	}
	// The first event of the range also has its time at or after from (as Search's
	// "+time_ms >= ?" asks); the rest are bounded by seq and until alone.
	var first int64
	err = s.r.QueryRowContext(ctx, s.q(`SELECT seq FROM audit_events WHERE `+where+` AND +time_ms >= ? ORDER BY seq LIMIT 1`), append(args, ms(from))...).Scan(&first)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("report range: %w", err)
	}
	cols := reportColsSQLite
	if s.dialect == dialectPostgres {
		cols = reportColsPostgres
	}
	// From the first event on, seq > after is the one lower bound (with a second one,
	// seq >= lo, SQLite would start every page's range scan at lo).
	where, args[0] = "seq > ? AND +time_ms < ?", first-1
	if ok {
		where += " AND seq < ?"
	}
	query := s.q(`SELECT ` + cols + ` FROM audit_events WHERE ` + where + ` ORDER BY seq LIMIT ` + itoa(reportPage))
	page := make([]audit.Event, 0, reportPage)
	for {
		var err error
		if page, err = s.reportPage(ctx, query, args, page[:0]); err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		if err := fn(page); err != nil {
			return err
		}
		if len(page) < reportPage {
			return nil
		}
		args[0] = page[len(page)-1].Seq
	}
}

// reportPage reads one page of report rows into page. Rows whose joined text is ambiguous
// (a column holds the separator) are read again column by column once the page's rows are
// closed (readPacked).
func (s *Store) reportPage(ctx context.Context, query string, args []any, page []audit.Event) ([]audit.Event, error) {
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read audit events: %w", err)
	}
	// A row read again is read whole: its evidence is a superset of what the report reads.
	page, err = s.readPacked(ctx, rows, page, unpackReportEvent)
	if err != nil {
		return nil, fmt.Errorf("read audit events: %w", err)
	}
	return page, nil
}

// unpackReportEvent builds the event of one report row. ok=false means the joined text does
// not split into reportFields parts: the row must be read column by column instead.
func unpackReportEvent(seq, t int64, packed string) (e audit.Event, ok bool, err error) {
	e.Seq = seq
	var f [reportFields]string
	if !splitPacked(packed, f[:]) {
		return e, false, nil
	}
	e = audit.Event{Seq: seq, Time: fromMS(t), Actor: audit.Actor{Kind: audit.ActorKind(f[0]), ID: f[1], Email: f[2]},
		Action: audit.Action(f[3]), RequestID: f[4], GrantID: f[5], Resource: f[6], Reason: f[7]}
	if f[8] != "" {
		keys, all := audit.ReportEvidenceKeys(e.Action)
		if all {
			e.Evidence, err = decodeEvidence(f[8])
		} else if len(keys) > 0 {
			e.Evidence, err = decodeEvidenceKeys(f[8], keys)
		} else {
			err = checkEvidence(f[8])
		}
		if err != nil {
			return e, true, fmt.Errorf("audit event %d evidence: %w", seq, err)
		}
	}
	return e, true, nil
}

// decodeEvidenceKeys is decodeEvidence keeping only keys (nil when none of them is there):
// the same values, and the same error for evidence decodeEvidence refuses. The common form
// (decodeFlatObject's) is scanned without building the whole map.
func decodeEvidenceKeys(s string, keys []string) (map[string]string, error) {
	m, ok := flatObjectKeys(s, keys)
	if !ok {
		all, err := decodeEvidence(s)
		if err != nil {
			return nil, err
		}
		m = nil
		for _, k := range keys {
			if v, ok := all[k]; ok {
				if m == nil {
					m = make(map[string]string, len(keys))
				}
				m[k] = v
			}
		}
	}
	return m, nil
}

// checkEvidence reports decodeEvidence's error for s, if any, without keeping what it
// decodes (the report reads no evidence of the event).
func checkEvidence(s string) error {
	if _, ok := flatObjectKeys(s, nil); ok {
		return nil
	}
	_, err := decodeEvidence(s)
	return err
}

// flatObjectKeys parses what decodeFlatObject parses, with the same rules (ok=false means
// "not that simple form", never a wrong answer), and returns the entries of keys only.
func flatObjectKeys(s string, keys []string) (map[string]string, bool) {
	var m map[string]string
	ok := scanFlatObject(s, func(k, v string) bool {
		for _, w := range keys {
			if w != k {
				continue
			}
			if _, dup := m[k]; dup {
				// decodeFlatObject refuses duplicates and encoding/json keeps the last;
				// only a wanted key's duplicate can change what is kept.
				return false
			}
			if m == nil {
				m = make(map[string]string, len(keys))
			}
			m[k] = v
			break
		}
		return true
	})
	if !ok {
		return nil, false
	}
	return m, true
}
