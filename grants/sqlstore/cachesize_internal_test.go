package sqlstore

import (
	"path/filepath"
	"testing"

	"github.com/accessbroker/accessbroker/grants"
)

// TestWriterPageCacheIsSmall: the writer's connection has the small page cache, the readers'
// the large one (#16.6: the writer's cache grew with the database).
func TestWriterPageCacheIsSmall(t *testing.T) {
	t.Parallel()
	s, err := Open(t.Context(), "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), grants.RealClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var w, r int
	if err := s.w.QueryRowContext(t.Context(), "PRAGMA cache_size").Scan(&w); err != nil {
		t.Fatal(err)
	}
	if err := s.r.QueryRowContext(t.Context(), "PRAGMA cache_size").Scan(&r); err != nil {
		t.Fatal(err)
	}
	if w != -writerCacheKiB || r != -readerCacheKiB {
		t.Errorf("cache_size: writer %d, reader %d; want %d and %d", w, r, -writerCacheKiB, -readerCacheKiB)
	}
}
