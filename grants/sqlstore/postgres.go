package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/accessbroker/accessbroker/grants"
)

// pgUniqueViolation is PostgreSQL's SQLSTATE for a unique or primary key violation.
const pgUniqueViolation = "23505"

// DefaultApplicationName is the application_name a PostgreSQL store connects with unless the
// DSN names one; operators find the broker's sessions in pg_stat_activity by it.
const DefaultApplicationName = "accessbroker"

// defaultConnectTimeout bounds one connection attempt when the DSN sets no connect_timeout,
// so that a PostgreSQL outage turns into errors (and a red /readyz) instead of hangs.
const defaultConnectTimeout = 10 * time.Second

func openPostgres(ctx context.Context, dsn string, clock grants.Clock, logger *slog.Logger) (*Store, error) {
	if strings.TrimSpace(dsn) == "" {
		return nil, errors.New("store.dsn is empty: set it to a PostgreSQL URL such as postgres://accessbroker@db.internal:5432/accessbroker?sslmode=verify-full")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx redacts the password from the connection string it quotes.
		return nil, fmt.Errorf("store.dsn is not a valid PostgreSQL connection string: %w", err)
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = DefaultApplicationName
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	s := &Store{dialect: dialectPostgres, w: db, r: db, pool: pool, clock: clock, log: logger}
	s.commits = &groupCommit{apply: s.applyTx, gather: true}
	var schema sql.NullString
	if err := db.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		s.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	if !schema.Valid || schema.String == "" {
		s.Close()
		return nil, errors.New("postgres: no schema on the connection's search_path exists: create one (CREATE SCHEMA accessbroker) " +
			"and name it in store.dsn (…?search_path=accessbroker), or create the public schema")
	}
	s.schema = schema.String
	s.chainKey = advisoryKey("audit-chain", s.schema)
	s.migrKey = advisoryKey("migrate", s.schema)
	if err := s.migratePostgres(ctx); err != nil {
		s.Close()
		return nil, err
	}
	logger.Info("store opened", "driver", "postgres", "schema", s.schema, "pool_max_conns", cfg.MaxConns)
	return s, nil
}

// Schema returns the PostgreSQL schema the store lives in ("" for SQLite).
func (s *Store) Schema() string { return s.schema }

// advisoryKey derives a 64-bit advisory lock key for one purpose in one schema. Advisory
// locks are per database, so the schema is part of the key: brokers in two schemas of one
// database never serialise each other.
func advisoryKey(purpose, schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("accessbroker\x00" + purpose + "\x00" + schema))
	return int64(h.Sum64())
}

// migratePostgres applies pending migrations in one transaction under a transaction-scoped
// advisory lock. Replicas starting together queue on the lock; the first applies the
// migrations, the others find them recorded. The lock cannot outlive its transaction, so a
// replica that dies while migrating leaves nothing held and nothing half-applied.
func (s *Store) migratePostgres(ctx context.Context) error {
	names, err := migrationFiles(dialectPostgres)
	if err != nil {
		return err
	}
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, s.migrKey); err != nil {
		return fmt.Errorf("migrate: take the migration lock: %w", err)
	}
	// Create the bookkeeping table only when missing: CREATE … IF NOT EXISTS needs the CREATE
	// privilege even when the table exists, and a least-privilege runtime role has none.
	var exists bool
	if err := tx.QueryRowContext(ctx, `SELECT to_regclass(quote_ident(current_schema()) || '.schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return fmt.Errorf("migrate: look for schema_migrations: %w", err)
	}
	if !exists {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
			return fmt.Errorf("create schema_migrations in schema %s (the role needs CREATE on the schema to migrate it): %w", s.schema, err)
		}
	}
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if have > len(names) {
		// A newer broker migrated this schema (rolling upgrade). Keep serving; Ready is fine
		// as long as every migration this build knows is applied.
		s.log.Warn("database schema is newer than this build", "schema", s.schema, "version", have, "known", len(names))
	}
	for i := have; i < len(names); i++ {
		version := i + 1
		body, err := migrations.ReadFile(names[i])
		if err != nil {
			return err
		}
		// No arguments: pgx sends it with the simple protocol, which runs every statement.
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			return fmt.Errorf("apply migration %s in schema %s (run it once as the schema's owner; see docs/postgres.md): %w", names[i], s.schema, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, applied_at) VALUES ($1, $2)`, version, ms(s.clock.Now())); err != nil {
			return fmt.Errorf("record migration %d: %w", version, err)
		}
		s.log.Info("applied migration", "version", version, "file", names[i], "schema", s.schema)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit migrations: %w", err)
	}
	return nil
}

// isConnError reports whether err means the connection, not the statement, failed: the
// server ended the session (SQLSTATE class 57P, e.g. 57P01 admin_shutdown) or the connection
// broke (class 08, a closed pooled connection, or pgx's "nothing was sent" errors).
// isDeadlock reports a PostgreSQL deadlock or serialization failure: the transaction was
// rolled back and may simply be run again.
func isDeadlock(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

func isConnError(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "57P") || strings.HasPrefix(pe.Code, "08")
	}
	return errors.Is(err, driver.ErrBadConn) || pgconn.SafeToRetry(err) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// lockChain serialises audit appends across every process using this schema. It is taken
// after the transaction's row writes and followed only by reading the head, inserting the
// events and COMMIT: its holder never waits for a row lock, so a transaction waiting for it
// while holding row locks cannot be part of a deadlock, and replicas queue only for the
// append itself. The lock is released by COMMIT or ROLLBACK, after the commit is visible, so
// the next holder reads the new head.
func (s *Store) lockChain(ctx context.Context, tx *sql.Tx) error {
	if s.dialect != dialectPostgres {
		return nil // SQLite: the one writer connection already serialises every transaction
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, s.chainKey); err != nil {
		return fmt.Errorf("lock the audit chain: %w", err)
	}
	return nil
}

// claimPostgresSQL claims due grants: the CTE locks up to limit claimable rows, skipping rows
// another claimer (or a writer) holds, and the UPDATE leases them in the same statement.
// At READ COMMITTED, a row changed by a transaction that committed after the statement began
// is re-checked against the WHERE clause when locked, so a grant just claimed elsewhere (its
// claimed_to moved past now) is not claimed twice.
// Arguments: now, now, limit, owner, claimed_to.
var claimPostgresSQL = rebind(`WITH due AS (
		SELECT id FROM grants
		WHERE state <> 'revoked' AND due_at <= ? AND claimed_to <= ?
		ORDER BY due_at, id
		LIMIT ?
		FOR UPDATE SKIP LOCKED)
	UPDATE grants AS g SET claimed_by = ?, claimed_to = ?, version = g.version + 1
	FROM due WHERE g.id = due.id
	RETURNING ` + qualify(grantCols, "g."))

// qualify prefixes every column of a comma-separated list.
func qualify(cols, prefix string) string {
	parts := strings.Split(cols, ",")
	for i, p := range parts {
		parts[i] = prefix + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
}

// ClockSkew returns how far this process's clock is ahead of the database's (negative when
// behind), measured at the middle of one round trip. Deadlines, claims and leases are compared
// across replicas in database rows, so a replica whose clock is fast revokes early and takes
// claims that are still held. On SQLite (one process, one clock) it is 0.
func (s *Store) ClockSkew(ctx context.Context) (time.Duration, error) {
	if s.dialect != dialectPostgres {
		return 0, nil
	}
	before := s.clock.Now()
	var db time.Time
	if err := s.r.QueryRowContext(ctx, `SELECT clock_timestamp()`).Scan(&db); err != nil {
		return 0, fmt.Errorf("read the database's clock: %w", err)
	}
	after := s.clock.Now()
	mid := before.Add(after.Sub(before) / 2)
	return mid.Sub(db), nil
}
