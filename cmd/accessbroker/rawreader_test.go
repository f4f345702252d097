package main

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// rawReader reads every event of a database through a throwaway store on a copy, so a test
// can recompute hashes the way an attacker would.
type rawReader struct{ db *sql.DB }

func (r *rawReader) all() ([]audit.Event, error) {
	var path string
	if err := r.db.QueryRow(`SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&path); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "raw")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cp := filepath.Join(dir, "copy.db")
	if _, err := r.db.Exec(`VACUUM INTO ?`, cp); err != nil {
		return nil, err
	}
	st, err := sqlstore.Open(context.Background(), "sqlite", "file:"+cp, grants.RealClock{}, nil)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	var out []audit.Event
	var after int64
	for {
		evs, err := st.ReadEvents(context.Background(), after, 1000)
		if err != nil {
			return nil, err
		}
		if len(evs) == 0 {
			return out, nil
		}
		out = append(out, evs...)
		after = evs[len(evs)-1].Seq
	}
}
