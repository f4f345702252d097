package sqlstore

import (
	"context"
	"database/sql/driver"
	"errors"
	"reflect"
	"strings"
	"sync/atomic"
)

// Prepared statements on SQLite, kept per connection (#16.4).
//
// The SQLite driver (modernc.org/sqlite) prepares a statement afresh for every Exec and
// Query that database/sql hands it without one, and finalizes it afterwards; parsing and
// planning cost more than running most of the store's statements (a third of the Slack
// acknowledgement's CPU was the pending-cap query's parse). A SQLite statement belongs to one
// connection, so the cache is a wrapper around each connection the store opens: every
// statement the connection runs (directly, in a transaction, or through Prepare) is
// prepared once and reset for its next use, whatever the call site, and finalized when the
// connection closes. database/sql already uses each connection from one goroutine at a time,
// which is what the cache relies on instead of a lock.
//
// A statement is lent to one user at a time (an open result set keeps it stepping); a second
// use of the same text meanwhile, such as the same query inside a loop over its own rows,
// prepares a private statement that is finalized afterwards. A statement that failed is
// finalized rather than cached again. Scripts (text with more than one statement, such as
// migrations) are passed to the driver as they are.
//
// On PostgreSQL the cache is not used: pgx prepares and caches every statement per
// connection already (QueryExecModeCacheStatement, its default).

// stmtCacheSize bounds the statements cached per connection. The store's statements are
// fixed texts (a few dozen); the bound only matters for texts built with a variable number
// of placeholders, the least recently used of which are finalized first.
const stmtCacheSize = 128

// stmtCacheConnector opens connections through base and wraps each in a statement cache.
type stmtCacheConnector struct {
	base driver.Connector
	size int // statements cached per connection; 0 caches none (every use prepares)

	prepared atomic.Int64 // statements the driver prepared, for tests and diagnostics

	// afterWrite, if set, is called with the driver's connection after each commit and each
	// statement run outside a transaction (the WAL checkpointer counts the pages written).
	afterWrite func(driver.Conn)
}

func newStmtCacheConnector(base driver.Connector, size int) *stmtCacheConnector {
	return &stmtCacheConnector{base: base, size: size}
}

// sqliteConn is what the cache needs of a driver connection (modernc's *conn has it).
type sqliteConn interface {
	driver.Conn
	driver.ConnPrepareContext
	driver.ConnBeginTx
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// Connect implements driver.Connector.
func (c *stmtCacheConnector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.base.Connect(ctx)
	if err != nil {
		return nil, err
	}
	sc, ok := dc.(sqliteConn)
	if !ok {
		dc.Close()
		return nil, errors.New("sqlite statement cache: the driver's connection lacks prepared statements with contexts")
	}
	return &cachingConn{sqliteConn: sc, owner: c, stmts: make(map[string]*cachedStmt)}, nil
}

// Driver implements driver.Connector.
func (c *stmtCacheConnector) Driver() driver.Driver { return c.base.Driver() }

// cachingConn is one driver connection with its statements.
type cachingConn struct {
	sqliteConn
	owner  *stmtCacheConnector
	stmts  map[string]*cachedStmt // by query text
	tick   uint64                 // use counter, for eviction
	closed bool
	inTx   bool // a transaction begun through BeginTx is open
}

// cachedStmt is a driver statement and who holds it: the caller that checked it out, and
// the result set it is stepping. It is returned to the cache (or finalized) when both let go.
type cachedStmt struct {
	ds      driver.Stmt
	text    string
	conn    *cachingConn
	cached  bool // in conn.stmts
	holders int  // 0: free in the cache
	failed  bool // a use returned an error: finalize instead of caching again
	used    uint64
	final   bool // finalized
}

// cacheable reports whether query is one statement (an optional trailing semicolon aside).
func cacheable(query string) bool {
	q := strings.TrimRight(query, " \t\r\n;")
	return q != "" && !strings.Contains(q, ";")
}

// checkout returns a statement for query held once by the caller.
func (c *cachingConn) checkout(ctx context.Context, query string) (*cachedStmt, error) {
	c.tick++
	if st := c.stmts[query]; st != nil && st.holders == 0 {
		st.holders, st.used = 1, c.tick
		return st, nil
	}
	ds, err := c.sqliteConn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.owner.prepared.Add(1)
	st := &cachedStmt{ds: ds, text: query, conn: c, holders: 1, used: c.tick}
	if c.owner.size > 0 && c.stmts[query] == nil {
		c.evict(c.owner.size - 1)
		c.stmts[query], st.cached = st, true
	}
	return st, nil
}

// evict finalizes the least recently used free statements until at most keep are cached.
// Statements in use stay (and count) until they are released.
func (c *cachingConn) evict(keep int) {
	for len(c.stmts) > keep {
		var lru *cachedStmt
		for _, st := range c.stmts {
			if st.holders == 0 && (lru == nil || st.used < lru.used) {
				lru = st
			}
		}
		if lru == nil {
			return
		}
		delete(c.stmts, lru.text)
		lru.cached = false
		lru.finalize()
	}
}

// release drops one hold on st; the last one returns it to the cache, or finalizes it.
func (st *cachedStmt) release(err error) error {
	if err != nil {
		st.failed = true
	}
	st.holders--
	if st.holders > 0 || st.final {
		return nil
	}
	c := st.conn
	if st.cached && !st.failed && !c.closed {
		return nil
	}
	if st.cached {
		delete(c.stmts, st.text)
		st.cached = false
	}
	return st.finalize()
}

func (st *cachedStmt) finalize() error {
	if st.final {
		return nil
	}
	st.final = true
	return st.ds.Close()
}

// BeginTx implements driver.ConnBeginTx; with afterWrite set, the transaction reports its
// commit.
func (c *cachingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := c.sqliteConn.BeginTx(ctx, opts)
	if err != nil || c.owner.afterWrite == nil {
		return tx, err
	}
	c.inTx = true
	return &reportingTx{Tx: tx, c: c}, nil
}

// reportingTx is a transaction that calls its connector's afterWrite once committed.
type reportingTx struct {
	driver.Tx
	c *cachingConn
}

func (t *reportingTx) Commit() error {
	err := t.Tx.Commit()
	t.c.inTx = false
	t.c.owner.afterWrite(t.c.sqliteConn)
	return err
}

func (t *reportingTx) Rollback() error {
	t.c.inTx = false
	return t.Tx.Rollback()
}

// ExecContext implements driver.ExecerContext through the cache.
func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	res, err := c.execContext(ctx, query, args)
	if c.owner.afterWrite != nil && !c.inTx {
		c.owner.afterWrite(c.sqliteConn)
	}
	return res, err
}

func (c *cachingConn) execContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if !cacheable(query) {
		return c.sqliteConn.ExecContext(ctx, query, args)
	}
	st, err := c.checkout(ctx, query)
	if err != nil {
		return nil, err
	}
	res, err := st.exec(ctx, args)
	if rerr := st.release(err); err == nil && rerr != nil {
		return nil, rerr
	}
	return res, err
}

// QueryContext implements driver.QueryerContext through the cache.
func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if !cacheable(query) {
		return c.sqliteConn.QueryContext(ctx, query, args)
	}
	st, err := c.checkout(ctx, query)
	if err != nil {
		return nil, err
	}
	rows, err := st.query(ctx, args)
	st.release(err)
	return rows, err
}

// PrepareContext implements driver.ConnPrepareContext: the statement comes from the cache
// and goes back to it when closed.
func (c *cachingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if !cacheable(query) {
		return c.sqliteConn.PrepareContext(ctx, query)
	}
	st, err := c.checkout(ctx, query)
	if err != nil {
		return nil, err
	}
	return &lentStmt{st: st}, nil
}

// Prepare implements driver.Conn.
func (c *cachingConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

// Close finalizes the cached statements, then closes the connection.
func (c *cachingConn) Close() error {
	c.closed = true
	var errs []error
	for q, st := range c.stmts {
		delete(c.stmts, q)
		st.cached = false
		errs = append(errs, st.finalize())
	}
	errs = append(errs, c.sqliteConn.Close())
	return errors.Join(errs...)
}

func (st *cachedStmt) exec(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	if e, ok := st.ds.(driver.StmtExecContext); ok {
		return e.ExecContext(ctx, args)
	}
	return nil, errors.New("sqlite statement cache: the driver's statement cannot execute with a context")
}

// query runs the statement; the result set holds it until closed.
func (st *cachedStmt) query(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := st.ds.(driver.StmtQueryContext)
	if !ok {
		return nil, errors.New("sqlite statement cache: the driver's statement cannot query with a context")
	}
	rows, err := q.QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	st.holders++
	return &lentRows{Rows: rows, st: st}, nil
}

// lentStmt is a cached statement handed to database/sql as a prepared statement.
type lentStmt struct {
	st     *cachedStmt
	closed bool
}

func (l *lentStmt) Close() error {
	if l.closed {
		return nil
	}
	l.closed = true
	return l.st.release(nil)
}

func (l *lentStmt) NumInput() int { return l.st.ds.NumInput() }

func (l *lentStmt) Exec(args []driver.Value) (driver.Result, error) {
	return l.ExecContext(context.Background(), namedValues(args))
}

func (l *lentStmt) Query(args []driver.Value) (driver.Rows, error) {
	return l.QueryContext(context.Background(), namedValues(args))
}

func (l *lentStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	if l.st.holders > 1 {
		// A result set of this statement is still open (the driver's statement is stepping
		// it): run this use on another statement of the same text.
		return l.st.conn.ExecContext(ctx, l.st.text, args)
	}
	res, err := l.st.exec(ctx, args)
	if err != nil {
		l.st.failed = true
	}
	return res, err
}

func (l *lentStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	if l.st.holders > 1 {
		return l.st.conn.QueryContext(ctx, l.st.text, args) // as in ExecContext
	}
	rows, err := l.st.query(ctx, args)
	if err != nil {
		l.st.failed = true
	}
	return rows, err
}

func namedValues(args []driver.Value) []driver.NamedValue {
	nv := make([]driver.NamedValue, len(args))
	for i, v := range args {
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return nv
}

// lentRows is a result set of a cached statement; closing it resets the statement (the
// driver does) and releases it.
type lentRows struct {
	driver.Rows
	st     *cachedStmt
	closed bool
}

func (r *lentRows) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.Rows.Close()
	if rerr := r.st.release(err); err == nil {
		err = rerr
	}
	return err
}

// The column type methods are passed on when the driver's rows have them (ColumnTypes).

func (r *lentRows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *lentRows) ColumnTypeLength(i int) (int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *lentRows) ColumnTypeNullable(i int) (bool, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *lentRows) ColumnTypePrecisionScale(i int) (int64, int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}

func (r *lentRows) ColumnTypeScanType(i int) reflect.Type {
	if t, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}
