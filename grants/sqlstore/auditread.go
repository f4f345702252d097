package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/accessbroker/accessbroker/audit"
)

// Reading audit events is what `audit verify`, reports, exports and sinks spend their time
// on, and with database/sql most of a row's cost is per column (the driver fetches, copies
// and boxes each one, then Scan converts it). So events are read as three columns: seq,
// time_ms and every text column joined with the unit separator (U+001F) by the database.
// The joined string is allocated once and the event's fields are substrings of it.
//
// A text column may itself contain U+001F (a reason can hold anything; an attacker can
// write anything). Joining is then ambiguous, so a row whose joined text does not split into
// exactly packedFields parts is read again column by column (scanEvent). Either way the
// event is exactly what the fourteen columns hold: Verify hashes what is stored, whatever
// it is.

// packedText lists the text columns joined into the third column, in order.
var packedText = [...]string{"id", "actor_kind", "actor_id", "actor_email", "action", "request_id", "grant_id",
	"resource", "reason", "evidence", "prev_hash", "hash"}

// packedFields is the number of text columns in the joined column.
const packedFields = len(packedText)

// packedSep separates the joined columns.
const packedSep = '\x1f'

var (
	packedColsSQLite   = "seq, time_ms, " + strings.Join(packedText[:], " || char(31) || ")
	packedColsPostgres = "seq, time_ms, " + strings.Join(packedText[:], " || chr(31) || ")
)

// packedEventCols is the select list of a packed event read in the store's dialect.
func (s *Store) packedEventCols() string {
	if s.dialect == dialectPostgres {
		return packedColsPostgres
	}
	return packedColsSQLite
}

// scanPackedEvents reads every row of rows (selected with packedEventCols) and closes them;
// rows whose joined text is ambiguous are read again by seq, column by column, once rows
// are closed (so that a store's last free connection is never needed twice at once).
func (s *Store) scanPackedEvents(ctx context.Context, rows *sql.Rows, sizeHint int) ([]audit.Event, error) {
	return s.readPacked(ctx, rows, make([]audit.Event, 0, sizeHint), unpackEvent)
}

// readPacked appends to out the events of rows (seq, time, packed text), built by unpack,
// and closes rows; a row unpack cannot split (ok=false) is read again whole by its seq once
// rows are closed.
func (s *Store) readPacked(ctx context.Context, rows *sql.Rows, out []audit.Event, unpack func(seq, t int64, packed string) (audit.Event, bool, error)) ([]audit.Event, error) {
	defer rows.Close()
	var again []int // indexes in out of the rows to read column by column
	for rows.Next() {
		var seq, t int64
		var packed string
		if err := rows.Scan(&seq, &t, &packed); err != nil {
			return nil, err
		}
		e, ok, err := unpack(seq, t, packed)
		if err != nil {
			return nil, err
		}
		if !ok {
			again = append(again, len(out))
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	for _, i := range again {
		e, err := scanEvent(s.r.QueryRowContext(ctx, s.q(`SELECT `+eventCols+` FROM audit_events WHERE seq = ?`), out[i].Seq))
		if err != nil {
			return nil, fmt.Errorf("audit event %d: %w", out[i].Seq, err)
		}
		out[i] = e
	}
	return out, nil
}

// unpackEvent builds the event of one packed row. ok=false means the joined text does not
// split into packedFields parts (a column contains the separator): the row must be read
// column by column instead. Errors are those scanEvent reports for the same row.
func unpackEvent(seq, t int64, packed string) (e audit.Event, ok bool, err error) {
	e.Seq = seq // also for ok=false: the seq to read the row again by
	var f [packedFields]string
	if !splitPacked(packed, f[:]) {
		return e, false, nil
	}
	e = audit.Event{Seq: seq, Time: fromMS(t), ID: f[0], Actor: audit.Actor{Kind: audit.ActorKind(f[1]), ID: f[2], Email: f[3]},
		Action: audit.Action(f[4]), RequestID: f[5], GrantID: f[6], Resource: f[7], Reason: f[8]}
	if f[9] != "" {
		if e.Evidence, err = decodeEvidence(f[9]); err != nil {
			return e, true, fmt.Errorf("audit event %d evidence: %w", seq, err)
		}
	}
	if e.PrevHash, err = parseHash(f[10]); err != nil {
		return e, true, fmt.Errorf("audit event %d prev_hash: %w", seq, err)
	}
	if e.Hash, err = parseHash(f[11]); err != nil {
		return e, true, fmt.Errorf("audit event %d hash: %w", seq, err)
	}
	return e, true, nil
}

// splitPacked splits packed at packedSep into exactly len(f) parts (substrings of packed)
// and reports whether it holds that many: not when a column contains the separator.
func splitPacked(packed string, f []string) bool {
	n := 0
	for n < len(f)-1 {
		i := strings.IndexByte(packed, packedSep)
		if i < 0 {
			return false
		}
		f[n], packed = packed[:i], packed[i+1:]
		n++
	}
	if strings.IndexByte(packed, packedSep) >= 0 {
		return false
	}
	f[n] = packed
	return true
}

// parseHash is audit.ParseHash without its allocations: 64 hex digits, either case.
func parseHash(s string) (audit.Hash, error) {
	var h audit.Hash
	if len(s) != 2*audit.HashSize {
		return audit.ParseHash(s) // for its error
	}
	bad := byte(0)
	for i := range h {
		hi, lo := hexVal[s[2*i]], hexVal[s[2*i+1]]
		bad |= hi | lo
		h[i] = hi<<4 | lo&0x0f
	}
	if bad&0xf0 != 0 { // a byte that is not a hex digit
		return audit.ParseHash(s)
	}
	return h, nil
}

// hexVal maps a hex digit (either case) to its value and every other byte to 0xff: one load
// per digit, where verify reads two hashes an event.
var hexVal = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c-'a') + 10
		t[c-'a'+'A'] = byte(c-'a') + 10
	}
	return t
}()
