package sqlstore

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
)

// The SQLite database holds every request, grant and audit event: only the broker's own user
// may read it. SQLite gives its -wal and -shm files the database file's permissions, so the
// database is created 0600 (whatever the umask) before SQLite opens it, and a missing
// directory 0700.
const (
	sqliteFileMode fs.FileMode = 0o600
	sqliteDirMode  fs.FileMode = 0o700
)

// sqliteFileSuffixes are the files of one SQLite database in WAL mode.
var sqliteFileSuffixes = []string{"", "-wal", "-shm"}

// sqlitePath returns the database file a "file:" URI names, or "" when it names none (an
// empty path, or an opaque form this store does not create files for).
func sqlitePath(full string) string {
	u, err := url.Parse(full)
	if err != nil {
		return ""
	}
	p := u.Opaque
	if p == "" {
		p = u.Path
	}
	if p == "" {
		return ""
	}
	if up, err := url.PathUnescape(p); err == nil {
		p = up
	}
	return filepath.Clean(p)
}

// prepareSQLiteFiles makes a new database private before SQLite creates it: missing parent
// directories are created 0700 and the database file 0600, whatever the umask. Existing files
// are never changed; any of the database, -wal and -shm that others may read or write is
// logged as a warning naming the file, its mode and the fix. readOnly (mode=ro) creates
// nothing.
func prepareSQLiteFiles(path string, readOnly bool, log *slog.Logger) error {
	if path == "" {
		return nil
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) && !readOnly {
		if err := mkdirPrivate(filepath.Dir(path)); err != nil {
			return err
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, sqliteFileMode)
		switch {
		case errors.Is(err, fs.ErrExist): // created meanwhile by someone else: check it below
		case err != nil:
			return fmt.Errorf("create sqlite database %s: %w", path, err)
		default:
			cerr := f.Close()
			if err := os.Chmod(path, sqliteFileMode); err != nil { // the umask may have narrowed or widened it
				return fmt.Errorf("make sqlite database %s private (chmod 600): %w", path, err)
			}
			if cerr != nil {
				return fmt.Errorf("create sqlite database %s: %w", path, cerr)
			}
		}
	}
	for _, suffix := range sqliteFileSuffixes {
		name := path + suffix
		fi, err := os.Stat(name)
		if err != nil {
			continue // absent (SQLite creates -wal and -shm with the database's mode)
		}
		if mode := fi.Mode().Perm(); mode&0o077 != 0 {
			log.Warn("sqlite file is readable or writable by other users; it holds every grant and the audit log",
				"file", name, "mode", fmt.Sprintf("%04o", mode), "fix", "chmod 600 "+name)
		}
	}
	return nil
}

// mkdirPrivate creates dir and any missing parents with mode 0700 (set explicitly, so the
// umask does not matter). Existing directories are left as they are.
func mkdirPrivate(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := mkdirPrivate(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, sqliteDirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create directory %s for the sqlite database: %w", dir, err)
	}
	if err := os.Chmod(dir, sqliteDirMode); err != nil {
		return fmt.Errorf("make directory %s private (chmod 700): %w", dir, err)
	}
	return nil
}
