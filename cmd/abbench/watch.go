package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// pollEvery is how often the watcher looks at pg_roles.
const pollEvery = 10 * time.Millisecond

// watcher sees revocations from PostgreSQL's side: it polls pg_roles for the roles it was
// given and notes when each is first absent. The time noted is when the query returned, so a
// lag is never under-reported; a role is counted early only when it was absent before its
// deadline for certain.
type watcher struct {
	conn *pgx.Conn

	mu       sync.Mutex
	deadline map[string]time.Time // role → real deadline, still present at the last look
	gone     map[string]time.Time // role → first seen absent
	lags     []time.Duration
	early    int
	n        int
	changed  chan struct{} // closed and replaced whenever a role is seen gone
}

func newWatcher(conn *pgx.Conn) *watcher {
	return &watcher{conn: conn, deadline: map[string]time.Time{}, gone: map[string]time.Time{}, changed: make(chan struct{})}
}

// add watches role, due to be dropped at deadline (real time).
func (w *watcher) add(role string, deadline time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.deadline[role] = deadline
	w.n++
}

// watching runs fn while a watcher polls, and stops the watcher before it returns.
func watching(ctx context.Context, conn *pgx.Conn, fn func(*watcher) error) error {
	w := newWatcher(conn)
	wctx, stop := context.WithCancel(ctx)
	polled := make(chan error, 1)
	go func() { polled <- w.run(wctx) }()
	err := fn(w)
	stop()
	if perr := <-polled; err == nil {
		err = perr
	}
	return err
}

// run polls until ctx ends.
func (w *watcher) run(ctx context.Context) error {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := w.look(ctx); err != nil && ctx.Err() == nil {
			return err
		}
	}
}

func (w *watcher) look(ctx context.Context) error {
	w.mu.Lock()
	names := make([]string, 0, len(w.deadline))
	for r := range w.deadline {
		names = append(names, r)
	}
	w.mu.Unlock()
	if len(names) == 0 {
		return nil
	}
	rows, err := w.conn.Query(ctx, `SELECT rolname FROM pg_roles WHERE rolname = ANY($1)`, names)
	if err != nil {
		return fmt.Errorf("poll pg_roles: %w", err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("poll pg_roles: %w", err)
	}
	present := make(map[string]bool, len(list))
	for _, r := range list {
		present[r] = true
	}
	now := wall()
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := false
	for _, r := range names {
		if present[r] {
			continue
		}
		d := w.deadline[r]
		delete(w.deadline, r)
		w.gone[r] = now
		if now.Before(d) {
			w.early++
		}
		w.lags = append(w.lags, now.Sub(d))
		seen = true
	}
	if seen {
		close(w.changed)
		w.changed = make(chan struct{})
	}
	return nil
}

// waitAll returns when every watched role is gone, or with an error at giveUp.
func (w *watcher) waitAll(ctx context.Context, giveUp time.Time) error {
	for {
		w.mu.Lock()
		left, changed := len(w.deadline), w.changed
		w.mu.Unlock()
		if left == 0 {
			return nil
		}
		d := giveUp.Sub(wall())
		if d <= 0 {
			return fmt.Errorf("%d of %d roles still exist at the timeout after the last deadline; raise -timeout or read the revoker's log", left, w.n)
		}
		t := time.NewTimer(min(d, time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

func (w *watcher) stats() RevokeStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	lags := slices.Clone(w.lags)
	slices.Sort(lags)
	s := RevokeStats{N: w.n, Gone: len(lags), Early: w.early}
	if len(lags) > 0 {
		s.P50MS, s.P99MS, s.MaxMS = ms(quantile(lags, 0.50)), ms(quantile(lags, 0.99)), ms(lags[len(lags)-1])
	}
	return s
}

// span is when the first and the last role were seen gone.
func (w *watcher) span() (first, last time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, t := range w.gone {
		if first.IsZero() || t.Before(first) {
			first = t
		}
		if t.After(last) {
			last = t
		}
	}
	return first, last
}
