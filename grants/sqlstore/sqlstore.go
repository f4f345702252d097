// Package sqlstore implements grants.Store on SQL databases: SQLite (the embedded default,
// pure Go, one process) and PostgreSQL (through pgx; several broker replicas on one schema),
// behind the same conformance suite. Requests, grants and the audit chain are written in one
// transaction per change; migrations are embedded and versioned; the audit tables refuse
// UPDATE and DELETE (and, on PostgreSQL, TRUNCATE) through triggers.
//
// On PostgreSQL, replicas coordinate only through the database: audit appends are serialised
// by a transaction-scoped advisory lock, so the chain has no gaps, forks or duplicate
// sequence numbers; due grants are claimed with FOR UPDATE SKIP LOCKED under a lease; leases
// (AcquireLease) and dedupe keys (Seen) are rows with unique keys.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/accessbroker/accessbroker/grants"
)

//go:embed migrations
var migrations embed.FS

// dialect is the SQL flavour a Store speaks. The queries are shared and written with "?"
// placeholders; PostgreSQL gets them rebound to $1, $2, … (see Store.q).
type dialect uint8

const (
	dialectSQLite dialect = iota
	dialectPostgres
)

func (d dialect) String() string {
	if d == dialectPostgres {
		return "postgres"
	}
	return "sqlite"
}

// Store is a grants.Store (and audit.Reader) on SQLite or PostgreSQL. Every method works on
// both; the differences (claiming, serialising audit appends, migrations) are inside.
type Store struct {
	dialect dialect
	w       *sql.DB // writes. SQLite: the single writer connection; PostgreSQL: the pool (same as r)
	r       *sql.DB // reads. SQLite: readers beside the writer (WAL); PostgreSQL: the pool
	pool    *pgxpool.Pool
	clock   grants.Clock
	log     *slog.Logger

	// PostgreSQL only: the schema the store lives in (the first existing schema on the
	// connection's search_path), and the advisory lock keys derived from it, so that stores
	// in different schemas of one database never wait for each other.
	schema            string
	chainKey, migrKey int64

	commits *groupCommit // every Apply

	// SQLite only: the connectors of w and r, which cache prepared statements per connection,
	// and the WAL checkpointer (nil when read-only).
	wstmts, rstmts *stmtCacheConnector
	ckpt           *checkpointer
	// storedPageBytes is the size of the last page ReadStored read, for the next one's buffer.
	storedPageBytes atomic.Int64
}

var _ grants.Store = (*Store)(nil)

// Open opens the store and applies pending migrations.
//
// driver "sqlite": dsn is a SQLite URI such as "file:accessbroker.db" (created if needed,
// mode 0600 whatever the umask, in a directory created 0700 when missing; existing files
// others may read are logged as a warning and left as they are); WAL journaling,
// synchronous=FULL, foreign keys and a busy timeout are always set. One process only.
//
// driver "postgres": dsn is a postgres:// URL or a key=value connection string as accepted by
// pgx (pgxpool.ParseConfig), including the pool settings pool_max_conns, pool_min_conns and
// pool_max_conn_lifetime and runtime parameters such as search_path. The store lives in the
// first existing schema on the search_path, which must exist. Several processes may open the
// same schema at once: migrations are applied once, under an advisory lock. The
// application_name defaults to "accessbroker" and connect_timeout to 10s.
//
// Errors never contain the DSN's password.
func Open(ctx context.Context, driver, dsn string, clock grants.Clock, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if clock == nil {
		return nil, errors.New("open store: a clock is required (grants.RealClock{} in production)")
	}
	switch driver {
	case "sqlite":
		return openSQLite(ctx, dsn, clock, logger)
	case "postgres":
		return openPostgres(ctx, dsn, clock, logger)
	default:
		return nil, fmt.Errorf("store driver %q is not supported: use sqlite (one process) or postgres (several replicas)", driver)
	}
}

func openSQLite(ctx context.Context, dsn string, clock grants.Clock, logger *slog.Logger) (*Store, error) {
	return openSQLiteWith(ctx, dsn, clock, logger, defaultWALLimits)
}

// openSQLiteWith is openSQLite with the WAL checkpointer's limits (see checkpoint.go).
func openSQLiteWith(ctx context.Context, dsn string, clock grants.Clock, logger *slog.Logger, lim walLimits) (*Store, error) {
	full, err := sqliteDSN(dsn)
	if err != nil {
		return nil, err
	}
	readOnly := false
	if u, err := url.Parse(full); err == nil {
		readOnly = u.Query().Get("mode") == "ro"
	}
	if err := prepareSQLiteFiles(sqlitePath(full), readOnly, logger); err != nil {
		return nil, err
	}
	// The writer's page cache is smaller than the readers': it holds the pages each
	// transaction changes (the grant, request and audit rows and their indexes), which it
	// writes out at commit and need not keep; with the readers' 32 MiB it grew with the
	// database to most of the process's memory (#16.6). The readers keep theirs for scans.
	// Both keep their prepared statements per connection (stmtcache.go). The writer never
	// checkpoints the WAL: the checkpointer does, on a connection of its own (checkpoint.go).
	wc, err := sqlite.NewConnector(withPragma(withCacheSize(full, writerCacheKiB), "wal_autocheckpoint(0)"))
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", dsn, err)
	}
	rc, err := sqlite.NewConnector(full)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", dsn, err)
	}
	s := &Store{dialect: dialectSQLite, clock: clock, log: logger,
		wstmts: newStmtCacheConnector(wc, stmtCacheSize), rstmts: newStmtCacheConnector(rc, stmtCacheSize)}
	if lim.soft > 0 && !readOnly {
		cc, err := sqlite.NewConnector(withBusyTimeout(withCacheSize(full, checkpointerCacheKiB), walTruncateWaitMS))
		if err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", dsn, err)
		}
		cdb := sql.OpenDB(cc)
		cdb.SetMaxOpenConns(1)
		cdb.SetConnMaxIdleTime(0)
		s.ckpt = newCheckpointer(cdb, lim, logger)
		s.wstmts.afterWrite = s.ckpt.wrote
	}
	s.w = sql.OpenDB(s.wstmts)
	s.w.SetMaxOpenConns(1)
	s.w.SetConnMaxIdleTime(0)
	s.r = sql.OpenDB(s.rstmts)
	s.r.SetMaxOpenConns(4)
	s.commits = &groupCommit{apply: s.applyTx}
	if err := s.migrateSQLite(ctx); err != nil {
		s.Close()
		return nil, err
	}
	// Let SQLite gather the index statistics its planner needs (cheap: it only analyzes
	// tables whose statistics are missing or stale), so audit searches pick selective indexes.
	if _, err := s.w.ExecContext(ctx, `PRAGMA optimize=0x10002`); err != nil {
		logger.Warn("sqlite PRAGMA optimize failed; searches may be slower", "error", err)
	}
	return s, nil
}

// Page cache sizes (KiB) of SQLite's connections.
const (
	readerCacheKiB       = 32768
	writerCacheKiB       = 4096
	checkpointerCacheKiB = 256 // a checkpoint copies WAL frames to the file, not through the cache
)

// withCacheSize returns a DSN made by sqliteDSN with another cache_size.
func withCacheSize(full string, kib int) string {
	return strings.Replace(full, url.QueryEscape(fmt.Sprintf("cache_size(-%d)", readerCacheKiB)), url.QueryEscape(fmt.Sprintf("cache_size(-%d)", kib)), 1)
}

// withBusyTimeout returns a DSN made by sqliteDSN with another busy_timeout.
func withBusyTimeout(full string, ms int) string {
	return strings.Replace(full, url.QueryEscape(fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS)), url.QueryEscape(fmt.Sprintf("busy_timeout(%d)", ms)), 1)
}

// withPragma returns a DSN made by sqliteDSN with one more pragma, run after the others.
func withPragma(full, pragma string) string {
	return full + "&_pragma=" + url.QueryEscape(pragma)
}

// busyTimeoutMS is how long a SQLite connection waits for a lock before it fails.
const busyTimeoutMS = 10000

func sqliteDSN(dsn string) (string, error) {
	if strings.TrimSpace(dsn) == "" {
		return "", errors.New("store.dsn is empty: set it to a SQLite file such as file:accessbroker.db")
	}
	if strings.Contains(dsn, ":memory:") || strings.Contains(dsn, "mode=memory") {
		return "", errors.New("store.dsn: an in-memory SQLite database loses every grant's revocation deadline on exit; use a file")
	}
	if !strings.HasPrefix(dsn, "file:") {
		dsn = "file:" + dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("store.dsn %q: %w", dsn, err)
	}
	q := u.Query()
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS))
	q.Add("_pragma", "foreign_keys(ON)")
	q.Add("_pragma", fmt.Sprintf("cache_size(-%d)", readerCacheKiB)) // 32 MiB of pages per reading connection: fewer reads for scans
	q.Add("_pragma", "mmap_size(268435456)")
	// Statement journals (a multi-row INSERT inside a transaction keeps one, to undo just
	// that statement) in memory, not in a temporary file written page by page: they are
	// never needed after a crash, the write-ahead log is.
	q.Add("_pragma", "temp_store(MEMORY)")
	q.Set("_txlock", "immediate")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Close releases the database connections. It does not wait for other processes.
func (s *Store) Close() error {
	if s.dialect == dialectPostgres {
		err := s.w.Close()
		s.pool.Close()
		return err
	}
	var cerr error
	if s.ckpt != nil {
		cerr = s.ckpt.close()
	}
	return errors.Join(cerr, s.w.Close(), s.r.Close())
}

// Driver returns "sqlite" or "postgres".
func (s *Store) Driver() string { return s.dialect.String() }

// Ready reports nil when the database answers and every embedded migration is applied.
func (s *Store) Ready(ctx context.Context) error {
	want, err := migrationFiles(s.dialect)
	if err != nil {
		return err
	}
	var have int
	if err := s.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("database not reachable: %w", err)
	}
	if have < len(want) {
		return fmt.Errorf("database at schema version %d, want %d", have, len(want))
	}
	return nil
}

// migrationFiles lists the dialect's embedded migrations in order. Each is named
// NNNN_description.sql with NNNN its 1-based version.
func migrationFiles(d dialect) ([]string, error) {
	names, err := fs.Glob(migrations, "migrations/"+d.String()+"/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	for i, name := range names {
		if want := fmt.Sprintf("%04d_", i+1); !strings.HasPrefix(path.Base(name), want) {
			return nil, fmt.Errorf("migration %s: expected prefix %s", name, want)
		}
	}
	return names, nil
}

func (s *Store) migrateSQLite(ctx context.Context) error {
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	names, err := migrationFiles(dialectSQLite)
	if err != nil {
		return err
	}
	for i, name := range names {
		version := i + 1
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migration %d: %w", version, err)
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", version, err)
		}
		if n > 0 {
			tx.Rollback()
			continue
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("apply migration %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, applied_at) VALUES (?, ?)`, version, ms(s.clock.Now())); err != nil {
			tx.Rollback()
			return fmt.Errorf("record migration %d: %w", version, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit migration %d: %w", version, err)
		}
		s.log.Info("applied migration", "version", version, "file", name)
	}
	return nil
}

// q adapts a query written with "?" placeholders to the store's dialect.
func (s *Store) q(query string) string {
	if s.dialect == dialectPostgres {
		return rebind(query)
	}
	return query
}

// rebind turns "?" placeholders into PostgreSQL's $1, $2, …, leaving quoted text alone.
func rebind(query string) string {
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	inQuote := false
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'':
			inQuote = !inQuote
			b.WriteByte(c)
		case c == '?' && !inQuote:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// beginWrite starts a write transaction. On PostgreSQL it runs at READ COMMITTED whatever the
// server's default, which the claim and audit-append statements rely on.
func (s *Store) beginWrite(ctx context.Context) (*sql.Tx, error) {
	if s.dialect == dialectPostgres {
		return s.w.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	}
	return s.w.BeginTx(ctx, nil)
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

func isUnique(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code()
		return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == pgUniqueViolation
	}
	return false
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
