package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"modernc.org/sqlite"
)

// WAL checkpoints on SQLite, off the committing writer (#16.7).
//
// In WAL mode every commit appends the pages it changed to the -wal file, and a checkpoint
// copies them back into the database file. SQLite's automatic checkpoint runs inside the
// commit that takes the WAL past 1000 pages, so that commit's caller waits for it; on a
// store with a long history half of Apply's CPU time was such checkpoints, copying pages to
// random places of a large file (docs/performance.md, #16.7). The store turns it off on the
// writer (wal_autocheckpoint=0) and checkpoints from a connection and goroutine of its own:
//
//   - The writer counts the pages it appends to the WAL (sqlite3_db_status CACHE_WRITE, read
//     after each of its commits and autocommit statements) and, once walSoftPages were
//     appended since the last checkpoint began, wakes the checkpointer, which runs
//     PRAGMA wal_checkpoint(PASSIVE): it copies what no reader still needs, and neither the
//     writer nor any reader waits for it.
//   - A passive checkpoint that runs beside the writer rarely finishes before the writer
//     appends again, and SQLite starts the WAL over from its beginning only after a
//     checkpoint that copied every frame. So once the WAL holds walHardPages frames (what
//     the last checkpoint reported, plus what was appended since), the checkpointer runs
//     wal_checkpoint(RESTART): it waits for the writer's transaction in flight and for
//     readers (new writes wait meanwhile, so at most walRestartWaitMS; past that it copies
//     what it can, as a passive one does, and the next attempt tries again), copies the rest
//     (what the passive ones left, little) and makes the next commit write the WAL from its
//     beginning again. The file keeps its length, so commits overwrite it in place rather
//     than grow it (growing a file makes each fsync also write the file system's metadata).
//   - A writer that finds twice walHardPages frames in the WAL after its commit (the
//     RESTART could not finish: a reader held it up) waits for the next attempt before it
//     returns, so writes cannot outrun checkpoints; that attempt is a TRUNCATE, which also
//     gives the file's overgrown length back. The WAL thus stays under 2 × walHardPages
//     frames plus one transaction, unless a read transaction stays open past
//     walTruncateWaitMS (then no checkpoint of any kind could shorten it, SQLite's automatic
//     one included).
//
// Durability does not change: a commit is durable when its frames are in the WAL and the WAL
// is synced (synchronous=FULL, on the writer as before); a checkpoint syncs the WAL before
// it copies and the database file before it records the copy, whichever connection runs it.
// Without writes nothing is checkpointed until the next ones (or Close, where the last
// connection checkpoints everything, as before).
const (
	walSoftPages      = 1000 // SQLite's own automatic checkpoint threshold
	walHardPages      = 4000 // 16 MiB of WAL with 4 KiB pages
	walRestartWaitMS  = 50
	walTruncateWaitMS = 2000
)

// walLimits are a checkpointer's thresholds in pages; soft 0 runs no checkpointer (tests).
type walLimits struct{ soft, hard int }

var defaultWALLimits = walLimits{soft: walSoftPages, hard: walHardPages}

// checkpointer runs the store's WAL checkpoints (see above).
type checkpointer struct {
	db   *sql.DB // one connection of its own
	log  *slog.Logger
	lim  walLimits
	wake chan struct{} // buffered: a pending wake-up
	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu     sync.Mutex
	frames int           // frames in the WAL, at least: the last checkpoint's count plus pages appended since it began
	fresh  int           // pages appended since the last attempt began
	next   chan struct{} // closed when the next attempt to begin has ended

	passive, restart, truncate atomic.Int64 // checkpoints run, for tests and diagnostics
	written                    atomic.Int64 // pages the writer appended
}

func newCheckpointer(db *sql.DB, lim walLimits, log *slog.Logger) *checkpointer {
	c := &checkpointer{db: db, log: log, lim: lim, wake: make(chan struct{}, 1), stop: make(chan struct{}),
		done: make(chan struct{}), next: make(chan struct{})}
	go c.run()
	return c
}

// wrote is called by the writer's connection after each commit with the connection itself;
// it adds the pages the connection appended to the WAL since the last call.
func (c *checkpointer) wrote(dc driver.Conn) {
	st, ok := dc.(sqlite.DBStatus)
	if !ok {
		return
	}
	pages, _, err := st.Status(sqlite.DBStatusCacheWrite, true)
	if err != nil || pages <= 0 {
		return
	}
	c.written.Add(int64(pages))
	c.mu.Lock()
	c.frames += pages
	c.fresh += pages
	frames, fresh, next := c.frames, c.fresh, c.next
	c.mu.Unlock()
	if fresh < c.lim.soft && frames < c.lim.hard {
		return
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
	if frames >= 2*c.lim.hard {
		// Wait for an attempt that begins after this commit (a TRUNCATE: it sees these pages).
		select {
		case <-next:
		case <-c.stop:
		}
	}
}

func (c *checkpointer) run() {
	defer close(c.done)
	for {
		select {
		case <-c.stop:
			return
		case <-c.wake:
		}
		c.mu.Lock()
		ended, frames := c.next, c.frames
		c.next, c.fresh = make(chan struct{}), 0
		c.mu.Unlock()
		mode := "PASSIVE"
		switch {
		case frames >= 2*c.lim.hard:
			mode = "TRUNCATE"
		case frames >= c.lim.hard:
			mode = "RESTART"
		}
		walFrames, err := c.checkpoint(mode)
		c.mu.Lock()
		if err == nil {
			c.frames = walFrames + c.fresh // and what was appended meanwhile
		}
		c.mu.Unlock()
		close(ended)
		if err != nil {
			c.log.Warn("sqlite WAL checkpoint failed; the WAL grows until one succeeds", "mode", mode, "error", err)
		}
	}
}

// checkpoint runs one checkpoint and returns the frames in the WAL it saw (0 after a
// RESTART or TRUNCATE that copied them all: the WAL starts over).
func (c *checkpointer) checkpoint(mode string) (walFrames int, err error) {
	ctx := context.Background()
	conn, err := c.db.Conn(ctx)
	if err != nil {
		return 0, fmt.Errorf("wal_checkpoint(%s): %w", mode, err)
	}
	defer conn.Close()
	// How long it waits for the writer and for readers (its busy handler) while it blocks
	// new writes: briefly for a RESTART (past that it copies what it can, as a passive one
	// does, and the next attempt tries again), longer for a TRUNCATE, which the writer waits
	// for anyway.
	wait := walRestartWaitMS
	if mode == "TRUNCATE" {
		wait = walTruncateWaitMS
	}
	if _, err := conn.ExecContext(ctx, "PRAGMA busy_timeout = "+strconv.Itoa(wait)); err != nil {
		return 0, fmt.Errorf("wal_checkpoint(%s): %w", mode, err)
	}
	var busy, log, copied int
	if err := conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &log, &copied); err != nil {
		return 0, fmt.Errorf("wal_checkpoint(%s): %w", mode, err)
	}
	switch mode {
	case "PASSIVE":
		c.passive.Add(1)
	case "RESTART":
		c.restart.Add(1)
	default:
		c.truncate.Add(1)
	}
	switch {
	case log < 0: // not in WAL mode
		return 0, nil
	case mode == "PASSIVE":
		return log, nil
	case busy != 0:
		if mode == "TRUNCATE" {
			c.log.Warn("sqlite WAL checkpoint could not empty the WAL: a read transaction stayed open", "frames", log, "copied", copied)
		}
		return log, nil
	default:
		return 0, nil // copied everything: the next commit writes the WAL from its start
	}
}

// close stops the checkpointer (a writer waiting for it goes on) and closes its connection.
func (c *checkpointer) close() error {
	var err error
	c.once.Do(func() {
		close(c.stop)
		<-c.done
		err = c.db.Close()
	})
	return err
}
