package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/accessbroker/accessbroker/grants"
)

// LiveGrant is a grant not yet revoked, as PeekLiveGrants reads it.
type LiveGrant struct {
	ID       string
	Resource string
	State    grants.State
}

// PeekLiveGrants reads the grants not yet revoked from the store at (driver, dsn) without
// changing anything: no file is created, no migration is applied, nothing is written (a
// configuration check runs it before the broker that owns the store). A store that does not
// exist yet, or has no grants table, has no live grants.
func PeekLiveGrants(ctx context.Context, driver, dsn string) ([]LiveGrant, error) {
	var db *sql.DB
	switch driver {
	case "sqlite":
		full, err := sqliteDSN(dsn)
		if err != nil {
			return nil, err
		}
		path := sqlitePath(full)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		u, err := url.Parse(full)
		if err != nil {
			return nil, err
		}
		q := u.Query()
		q.Set("mode", "ro")
		q.Del("_txlock")
		u.RawQuery = q.Encode()
		if db, err = sql.Open("sqlite", u.String()); err != nil {
			return nil, fmt.Errorf("open %s read-only: %w", path, err)
		}
	case "postgres":
		pcfg, err := pgxpool.ParseConfig(dsn) // strips the pool's own parameters (pool_max_conns)
		if err != nil {
			return nil, fmt.Errorf("store.dsn is not a valid PostgreSQL connection string: %w", err)
		}
		cfg := pcfg.ConnConfig
		if cfg.ConnectTimeout == 0 {
			cfg.ConnectTimeout = defaultConnectTimeout
		}
		db = stdlib.OpenDB(*cfg)
	default:
		return nil, fmt.Errorf("store driver %q is not supported: use sqlite or postgres", driver)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT id, resource, state FROM grants WHERE state <> 'revoked' ORDER BY resource, id`)
	if err != nil {
		if isMissingTable(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("read live grants: %w", err)
	}
	defer rows.Close()
	var out []LiveGrant
	for rows.Next() {
		var g LiveGrant
		var state string
		if err := rows.Scan(&g.ID, &g.Resource, &state); err != nil {
			return nil, fmt.Errorf("read live grants: %w", err)
		}
		g.State = grants.State(state)
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read live grants: %w", err)
	}
	return out, nil
}

// isMissingTable reports a query on a table that does not exist (a store never migrated).
func isMissingTable(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "no such table") || strings.Contains(msg, "SQLSTATE 42P01")
}
