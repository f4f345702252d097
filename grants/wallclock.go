package grants

import (
	"context"
	"sync"
	"time"
)

// Deadlines, claims and leases are wall times (UTC, as the store keeps them), but timers run
// on the monotonic clock, which a step of the wall clock does not move. Left alone, a
// revoker armed for a deadline an hour away would, after the wall clock stepped an hour
// forward, still sleep an hour past the deadline; its claims would look lapsed to the store
// and be claimed again. So the revoker never sleeps longer than WallCheck without reading the
// wall clock again, and it compares how far the wall clock moved with how far the monotonic
// clock moved (wallWatch): a difference of WallStepTolerance or more is a step. Then it logs
// it, renews the claims it holds (judged by the time that really passed), and re-reads the
// next deadline. A backward step never revokes early: a grant is claimed only when the wall
// clock has reached its deadline.

// WallStepTolerance is the smallest difference between wall and monotonic time the revoker
// treats as a step of the wall clock. NTP's slewing (at most 500 ppm) stays far below it.
const WallStepTolerance = 500 * time.Millisecond

// WallStepMetrics is an optional ability of RevokerOptions.Metrics: told of every step of the
// wall clock the revoker noticed, with its size (negative: backwards).
type WallStepMetrics interface {
	WallClockStepped(step time.Duration)
}

// wallWatch tells steps of the wall clock from the passing of time.
type wallWatch struct {
	clock ElapsedClock // nil: steps are not told apart (the revoker still rereads the wall clock)
	mu    sync.Mutex   // held while a step is handled, so no claim is taken meanwhile
	seen  bool
	wall  time.Time
	mono  time.Duration
}

func newWallWatch(c Clock) *wallWatch {
	ec, _ := c.(ElapsedClock)
	return &wallWatch{clock: ec}
}

// look returns how far the wall clock stepped since the previous look (0 when it moved
// with the monotonic clock, within WallStepTolerance) and the wall time now. The caller holds
// w.mu.
func (w *wallWatch) look(c Clock) (time.Duration, time.Time) {
	if w.clock == nil {
		return 0, c.Now()
	}
	now, mono := w.clock.Now(), w.clock.Elapsed()
	if !w.seen {
		w.seen, w.wall, w.mono = true, now, mono
		return 0, now
	}
	step := now.Sub(w.wall) - (mono - w.mono)
	w.wall, w.mono = now, mono
	if step > -WallStepTolerance && step < WallStepTolerance {
		return 0, now
	}
	return step, now
}

// checkWall looks for a step of the wall clock since the last look. After one it logs it,
// tells the metrics, and renews the claims held (when held is not nil) so that a forward
// step does not make them look lapsed: their age is judged by the monotonic time that passed.
// It reports whether the clock stepped. Concurrent callers wait for the one handling a step.
func (r *Revoker) checkWall(ctx context.Context, held *heldClaims) bool {
	r.watch.mu.Lock()
	defer r.watch.mu.Unlock()
	step, now := r.watch.look(r.clock)
	if step == 0 {
		return false
	}
	r.log.WarnContext(ctx, "the wall clock stepped; the revoker re-reads its deadlines and renews its claims", "step", step.String(),
		"now", Timestamp(now), "instance", r.opts.Instance)
	if m, ok := r.opts.Metrics.(WallStepMetrics); ok {
		m.WallClockStepped(step)
	}
	if held == nil {
		return true
	}
	ids := held.list()
	if len(ids) == 0 {
		return true
	}
	// For a forward step, the wall time it would be without the step: claims taken a moment
	// ago are not lapsed, however far the clock jumped.
	before := now
	if step > 0 {
		before = now.Add(-step)
	}
	n, err := r.store.RenewClaims(ctx, r.opts.Instance, ids, before, now.Add(r.opts.ClaimLease))
	switch {
	case err != nil && ctx.Err() == nil:
		r.log.WarnContext(ctx, "renew revocation claims after a wall clock step failed", "claims", len(ids), "error", err)
	case err == nil:
		r.log.InfoContext(ctx, "renewed revocation claims after a wall clock step", "held", len(ids), "renewed", n)
	}
	return true
}

// sleepUntil waits until the wall clock reaches at, but at most most of real (monotonic)
// time, a wake-up or the end of ctx; it reports false when ctx ended. It reads the wall clock
// at least every WallCheck, so a forward step of the wall clock past at ends the wait within
// WallCheck, and a backward step makes it wait for the rest (never returning before at
// unless most has passed or it was woken); after a step it returns so that the caller
// re-reads the next deadline.
func (r *Revoker) sleepUntil(ctx context.Context, at time.Time, most time.Duration, held *heldClaims) bool {
	var slept time.Duration
	for {
		left := at.Sub(r.clock.Now())
		if left <= 0 || slept >= most {
			return ctx.Err() == nil
		}
		d := min(left, r.opts.WallCheck, most-slept)
		t := r.clock.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-r.wake:
			t.Stop()
			return true
		case <-t.C():
		}
		slept += d
		if r.checkWall(ctx, held) {
			return ctx.Err() == nil
		}
	}
}
