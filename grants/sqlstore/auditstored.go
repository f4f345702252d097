package sqlstore

import (
	"context"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Verify's parallel check reads the log through ReadStored (audit.StoredReader): the rows as
// ReadEvents reads them, with the store's buffers reused and no value allocated a column.
// On SQLite the rows go through the store's SQL function ab_stored_row (storedrow.go); on
// PostgreSQL pgx reads the fourteen columns as they are. A row whose values are not of the
// schema's types (a NULL, a blob, a number in a text column: a table an attacker rebuilt)
// sends its page through ReadEvents, so the events are those ReadEvents returns either way,
// and what the parallel check does not find clean it checks again through ReadEvents. An
// event's evidence is left as the stored text when that text is its canonical encoding
// (audit.CanonicalEvidence), as json.Marshal writes evidence without characters it escapes:
// the check hashes it as it is, without a map.
//
// On SQLite the page is read on a connection whose memory map is widened to the whole file
// for the read (mmap_size, put back afterwards): a database larger than the pool's map is
// otherwise read page by page with pread into a page cache that a scan of the log churns
// through, which cost as much as the rows' decoding (#16.5).

// storedFields is the number of columns a stored row has: seq, time_ms and the text columns.
const storedFields = 2 + packedFields

// SQLite memory map sizes: the read pool's (sqliteDSN), and a stored read's.
const (
	poolMmapSize   = 268435456
	storedMmapSize = 2147418112 // SQLite's largest (SQLITE_MAX_MMAP_SIZE)
)

var _ audit.StoredReader = (*Store)(nil)

// ReadStored implements audit.StoredReader.
func (s *Store) ReadStored(ctx context.Context, after int64, limit int, buf []audit.StoredEvent) ([]audit.StoredEvent, error) {
	var out []audit.StoredEvent
	var ok bool
	var err error
	if s.dialect == dialectPostgres {
		out, ok, err = s.readStoredPostgres(ctx, after, limit, buf[:0])
	} else {
		out, ok, err = s.readStoredSQLite(ctx, after, limit, buf[:0])
	}
	if err != nil {
		return buf[:0], fmt.Errorf("read audit events: %w", err)
	}
	if ok {
		return out, nil
	}
	evs, err := s.ReadEvents(ctx, after, limit)
	if err != nil {
		return buf[:0], err
	}
	out = buf[:0]
	for i := range evs {
		out = append(out, audit.StoredEvent{Event: evs[i]})
	}
	return out, nil
}

// readStoredSQLite reads a page on one connection of the read pool with its memory map
// widened for the read. ok=false: the page must be read through ReadEvents.
func (s *Store) readStoredSQLite(ctx context.Context, after int64, limit int, out []audit.StoredEvent) (_ []audit.StoredEvent, ok bool, err error) {
	conn, err := s.r.Conn(ctx)
	if err != nil {
		return out, false, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA mmap_size = `+itoa(storedMmapSize)); err != nil {
		return out, false, err
	}
	defer func() {
		if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA mmap_size = `+itoa(poolMmapSize)); rerr != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn }) // never reused
			err = errors.Join(err, fmt.Errorf("restore mmap_size: %w", rerr))
		}
	}()
	token, page := newStoredPage(int(s.storedPageBytes.Load()), min(limit, 10000))
	defer storedPages.Delete(token)
	rows, err := conn.QueryContext(ctx, storedRowsSQLite, token, after, limit)
	if err != nil {
		return out, false, err
	}
	defer rows.Close()
	for rows.Next() {
	}
	if err := rows.Err(); err != nil {
		return out, false, err
	}
	if page.odd {
		return out, false, nil
	}
	s.storedPageBytes.Store(int64(cap(page.text)))
	out, err = page.events(out)
	return out, true, err
}

// storedColsPostgres is the stored page query on PostgreSQL: the columns as they are, with no
// concat_ws for the server to run (pgx hands a row's values over without allocating for
// each, and a NULL is seen as one). The type checks below keep the read to the schema's
// types: a column whose type was changed is read through ReadEvents.
var storedColsPostgres = `SELECT seq, time_ms, ` + strings.Join(packedText[:], ", ") +
	` FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2`

// readStoredPostgres reads a page through pgx, whose rows are read without a value
// allocated for each: their texts are copied into one storedPage, of which the events'
// fields are substrings. ok=false: the page must be read through ReadEvents.
func (s *Store) readStoredPostgres(ctx context.Context, after int64, limit int, out []audit.StoredEvent) (_ []audit.StoredEvent, ok bool, err error) {
	rows, err := s.pool.Query(ctx, storedColsPostgres, after, limit)
	if err != nil {
		return out, false, err
	}
	defer rows.Close()
	fds := rows.FieldDescriptions()
	if len(fds) != storedFields {
		return out, false, nil
	}
	for i, fd := range fds {
		want := uint32(pgtype.TextOID)
		if i < 2 { // seq, time_ms
			want = pgtype.Int8OID
		}
		if fd.DataTypeOID != want {
			return out, false, nil
		}
	}
	page := &storedPage{text: make([]byte, 0, s.storedPageBytes.Load()), rows: make([]storedRow, 0, min(limit, 10000))}
	for rows.Next() {
		v := rows.RawValues()
		if len(v) != storedFields {
			return out, false, nil
		}
		var r storedRow
		var ok1, ok2 bool
		r.seq, ok1 = pgInt8(v[0], fds[0].Format)
		r.t, ok2 = pgInt8(v[1], fds[1].Format)
		if !ok1 || !ok2 {
			return out, false, nil
		}
		for j, c := range v[2:] {
			if c == nil { // NULL: ReadEvents says what it makes of it
				return out, false, nil
			}
			page.text = append(page.text, c...)
			r.ends[j] = len(page.text)
		}
		page.rows = append(page.rows, r)
	}
	if err := rows.Err(); err != nil {
		return out, false, err
	}
	s.storedPageBytes.Store(int64(cap(page.text)))
	out, err = page.events(out)
	return out, true, err
}

// pgInt8 reads a bigint value in the format pgx asked for.
func pgInt8(v []byte, format int16) (int64, bool) {
	if format == pgx.BinaryFormatCode {
		if len(v) != 8 {
			return 0, false
		}
		return int64(binary.BigEndian.Uint64(v)), true
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n, err == nil
}

// appendFields appends the event of one row: its seq, time and text columns (packedText's
// order). Errors are those ReadEvents reports for the same row.
func appendFields(out []audit.StoredEvent, seq, t int64, f *[packedFields]string) (_ []audit.StoredEvent, err error) {
	out = append(out, audit.StoredEvent{Event: audit.Event{Seq: seq, Time: fromMS(t), ID: f[0],
		Actor:  audit.Actor{Kind: audit.ActorKind(f[1]), ID: f[2], Email: f[3]},
		Action: audit.Action(f[4]), RequestID: f[5], GrantID: f[6], Resource: f[7], Reason: f[8]}})
	e := &out[len(out)-1]
	switch ev := f[9]; {
	case ev == "":
	case audit.CanonicalEvidence(ev):
		e.EvidenceJSON = ev
	default:
		if e.Evidence, err = decodeEvidence(ev); err != nil {
			return out, fmt.Errorf("audit event %d evidence: %w", seq, err)
		}
	}
	if e.PrevHash, err = parseHash(f[10]); err != nil {
		return out, fmt.Errorf("audit event %d prev_hash: %w", seq, err)
	}
	if e.Hash, err = parseHash(f[11]); err != nil {
		return out, fmt.Errorf("audit event %d hash: %w", seq, err)
	}
	return out, nil
}
