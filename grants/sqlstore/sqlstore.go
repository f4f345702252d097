// Package sqlstore implements grants.Store on SQL databases: SQLite (the embedded default,
// pure Go) and, behind the same conformance suite, PostgreSQL. Requests, grants and the audit
// chain are written in one transaction per change; migrations are embedded and versioned; the
// audit tables refuse UPDATE and DELETE through triggers.
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
	"sort"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/accessbroker/accessbroker/grants"
)

//go:embed migrations
var migrations embed.FS

// Store is a grants.Store (and audit.Reader) on SQLite.
type Store struct {
	w     *sql.DB // the single writer connection: SQLite allows one writer at a time
	r     *sql.DB // readers (WAL lets them run beside the writer)
	clock grants.Clock
	log   *slog.Logger
}

var _ grants.Store = (*Store)(nil)

// Open opens (creating if needed) the database and applies pending migrations. driver must be
// "sqlite"; dsn is a SQLite URI such as "file:accessbroker.db". WAL journaling,
// synchronous=FULL, foreign keys and a busy timeout are always set.
func Open(ctx context.Context, driver, dsn string, clock grants.Clock, logger *slog.Logger) (*Store, error) {
	if driver != "sqlite" {
		return nil, fmt.Errorf("store driver %q is not supported here (want sqlite)", driver)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	full, err := sqliteDSN(dsn)
	if err != nil {
		return nil, err
	}
	w, err := sql.Open("sqlite", full)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", dsn, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	r, err := sql.Open("sqlite", full)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", dsn, err)
	}
	r.SetMaxOpenConns(4)
	s := &Store{w: w, r: r, clock: clock, log: logger}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

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
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Set("_txlock", "immediate")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Close releases the database.
func (s *Store) Close() error {
	return errors.Join(s.w.Close(), s.r.Close())
}

// Ready reports nil when the database answers and every embedded migration is applied.
func (s *Store) Ready(ctx context.Context) error {
	want, err := migrationFiles()
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

func migrationFiles() ([]string, error) {
	names, err := fs.Glob(migrations, "migrations/sqlite/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	names, err := migrationFiles()
	if err != nil {
		return err
	}
	for i, name := range names {
		version := i + 1
		if want := fmt.Sprintf("%04d_", version); !strings.HasPrefix(name[len("migrations/sqlite/"):], want) {
			return fmt.Errorf("migration %s: expected prefix %s", name, want)
		}
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
	return false
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
