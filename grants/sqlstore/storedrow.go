package sqlstore

import (
	"database/sql/driver"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"modernc.org/sqlite"

	"github.com/accessbroker/accessbroker/audit"
)

// Verify's parallel check on SQLite reads a page through an SQL function of the store's own,
// ab_stored_row(token, seq, time_ms, <the text columns>): SQLite hands it the row's values as
// views of its own memory (sqlite.FunctionImpl.VolatileArgs), and it copies their bytes into
// the page the token names, one buffer a page. Neither SQLite nor Go allocates a value per
// row, and there is no joined text to split: the row's fields are where they were copied.
// A value that is not what ReadEvents reads the column as (NULL, a blob, a number in a text
// column, text in an integer one) marks the page, which is then read through ReadEvents.
// The function returns NULL; the rows of the query only drive it.
//
// The function is called on the goroutine that steps the query, once a row, in the scan's
// order (seq's: the table's rowid). The page's rows carry their seq, and the verifier checks
// them in order whatever they are, so an order SQLite did not keep is seen, not trusted.

// storedRowFunc is the SQL name of the function.
const storedRowFunc = "ab_stored_row"

func init() {
	sqlite.MustRegisterFunction(storedRowFunc, &sqlite.FunctionImpl{
		NArgs: int32(3 + packedFields), VolatileArgs: true, Scalar: fillStoredPage,
	})
}

// storedRowsSQLite is the stored page query on SQLite.
var storedRowsSQLite = `SELECT ` + storedRowFunc + `(?, seq, time_ms, ` + strings.Join(packedText[:], ", ") +
	`) FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?`

// storedPage is a page of stored rows being read: by ab_stored_row on SQLite, by
// readStoredPostgres on PostgreSQL.
type storedPage struct {
	text []byte      // the rows' text columns, one after the other
	rows []storedRow // in the order read
	odd  bool        // a value ReadEvents would read otherwise: read the page through it
}

// storedRow is a row of a storedPage: its integers and where its text columns end in text.
type storedRow struct {
	seq, t int64
	ends   [packedFields]int
}

var (
	storedPages     sync.Map // token (int64) → *storedPage
	storedPageToken atomic.Int64
)

// newStoredPage registers a page for ab_stored_row to fill and returns its token; the caller
// removes it with storedPages.Delete when the query is done.
func newStoredPage(textHint, rowsHint int) (int64, *storedPage) {
	p := &storedPage{text: make([]byte, 0, textHint), rows: make([]storedRow, 0, rowsHint)}
	token := storedPageToken.Add(1)
	storedPages.Store(token, p)
	return token, p
}

var errNoStoredPage = errors.New(storedRowFunc + ": no page for this token")

// fillStoredPage is ab_stored_row. Its arguments are views of SQLite's memory, valid only during
// the call: their bytes are copied, never the strings kept.
func fillStoredPage(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
	token, _ := args[0].(int64)
	v, ok := storedPages.Load(token)
	if !ok {
		return nil, errNoStoredPage
	}
	p := v.(*storedPage)
	if p.odd {
		return nil, nil
	}
	var r storedRow
	seq, ok1 := args[1].(int64)
	t, ok2 := args[2].(int64)
	if !ok1 || !ok2 {
		p.odd = true
		return nil, nil
	}
	r.seq, r.t = seq, t
	for j, a := range args[3:] {
		s, ok := a.(string)
		if !ok {
			p.odd = true
			return nil, nil
		}
		p.text = append(p.text, s...)
		r.ends[j] = len(p.text)
	}
	p.rows = append(p.rows, r)
	return nil, nil
}

// events appends the page's events to out. The page's text is not written again: the events'
// fields are substrings of it.
func (p *storedPage) events(out []audit.StoredEvent) ([]audit.StoredEvent, error) {
	text := unsafe.String(unsafe.SliceData(p.text), len(p.text))
	start := 0
	var err error
	for i := range p.rows {
		var f [packedFields]string
		for j, end := range p.rows[i].ends {
			f[j], start = text[start:end], end
		}
		if out, err = appendFields(out, p.rows[i].seq, p.rows[i].t, &f); err != nil {
			return out, err
		}
	}
	return out, nil
}
