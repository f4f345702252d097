package grants

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"time"

	"github.com/accessbroker/accessbroker/audit"
)

// CheckpointStore is what the Checkpointer needs from the store.
type CheckpointStore interface {
	// Head returns the last event's seq, hash and time (0 and audit.Genesis when empty).
	Head(ctx context.Context) (int64, audit.Hash, time.Time, error)
	// LastCheckpoint returns the newest checkpoint, ok=false when there is none.
	LastCheckpoint(ctx context.Context) (audit.Checkpoint, bool, error)
	// AppendCheckpoint stores a signed checkpoint.
	AppendCheckpoint(ctx context.Context, c audit.Checkpoint) error
}

// Checkpointer signs (seq, hash, time) of the audit chain's head every Every events and every
// Period even when nothing happened, so that a quiet log can be told from a truncated one.
type Checkpointer struct {
	lease  Leaser
	holder string
	store  CheckpointStore
	key    ed25519.PrivateKey
	clock  Clock
	log    *slog.Logger
	every  int64
	period time.Duration
	poll   time.Duration
	signed func(audit.Checkpoint)
	guard  *AuditGuard
}

// GuardWith has every checkpoint preceded by the guard's check: a checkpoint is never signed
// over a head that does not verify from the newest checkpoint (a truncated or rolled-back
// log). Call it before Run.
func (c *Checkpointer) GuardWith(g *AuditGuard) { c.guard = g }

// checkHead runs the guard's check, if there is one.
func (c *Checkpointer) checkHead(ctx context.Context) error {
	if c.guard == nil {
		return nil
	}
	if err := c.guard.CheckBeforeSign(ctx); err != nil {
		return fmt.Errorf("not signing a checkpoint: %w", err)
	}
	return nil
}

// NewCheckpointer returns a Checkpointer. every ≥ 1 events, period > 0.
func NewCheckpointer(store CheckpointStore, key ed25519.PrivateKey, clock Clock, logger *slog.Logger, every int64, period time.Duration) *Checkpointer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	poll := min(period, 5*time.Second)
	return &Checkpointer{store: store, key: key, clock: clock, log: logger, every: max(every, 1), period: period, poll: poll}
}

// Run checks the head every few seconds and signs a checkpoint when one is due, until ctx
// ends; it then signs a last one so a clean shutdown leaves the head covered.
func (c *Checkpointer) Run(ctx context.Context) error {
	for {
		if _, err := c.MaybeCheckpoint(ctx); err != nil && ctx.Err() == nil {
			c.log.ErrorContext(ctx, "audit checkpoint failed", "error", err)
		}
		t := c.clock.NewTimer(c.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			// A clean stop covers the head: the final call sees a cancelled ctx, which
			// makes any new event since the last checkpoint due.
			if _, err := c.final(ctx); err != nil {
				c.log.Error("final audit checkpoint failed", "error", err)
			}
			return nil
		case <-t.C():
		}
	}
}

// Leaser grants a named lease to one holder at a time across processes.
type Leaser interface {
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
}

// ShareWith makes checkpointing a singleton among the processes sharing a store (replicas):
// only the holder of the "audit-checkpoint" lease signs.
func (c *Checkpointer) ShareWith(l Leaser, holder string) {
	c.lease, c.holder = l, holder
}

// AfterSign has fn called with each checkpoint once it is committed to the store (the
// Publisher's Enqueue, which never blocks). fn must return quickly.
func (c *Checkpointer) AfterSign(fn func(audit.Checkpoint)) { c.signed = fn }

func (c *Checkpointer) committed(cp audit.Checkpoint) {
	if c.signed != nil {
		c.signed(cp)
	}
}

// MaybeCheckpoint signs a checkpoint of the current head if none exists, if Every events
// were appended since the last one, or if Period has passed since the last one.
// It reports whether it signed one.
func (c *Checkpointer) MaybeCheckpoint(ctx context.Context) (bool, error) {
	if c.lease != nil {
		mine, err := c.lease.AcquireLease(ctx, "audit-checkpoint", c.holder, 3*c.poll+5*time.Second)
		if err != nil || !mine {
			return false, err
		}
	}
	seq, head, _, err := c.store.Head(ctx)
	if err != nil {
		return false, err
	}
	last, ok, err := c.store.LastCheckpoint(ctx)
	if err != nil {
		return false, err
	}
	now := c.clock.Now().Truncate(time.Millisecond)
	due := !ok || seq-last.Seq >= c.every || now.Sub(last.Time) >= c.period
	if !due {
		return false, nil
	}
	if err := c.checkHead(ctx); err != nil {
		return false, err
	}
	cp := audit.SignCheckpoint(c.key, seq, head, now)
	if err := c.store.AppendCheckpoint(ctx, cp); err != nil {
		return false, fmt.Errorf("sign checkpoint at seq %d: %w", seq, err)
	}
	c.log.InfoContext(ctx, "audit checkpoint signed", "seq", seq, "hash", head.String(), "key_id", cp.KeyID)
	c.committed(cp)
	return true, nil
}

func (c *Checkpointer) final(ctx context.Context) (bool, error) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	seq, head, _, err := c.store.Head(fctx)
	if err != nil {
		return false, err
	}
	last, ok, err := c.store.LastCheckpoint(fctx)
	if err != nil {
		return false, err
	}
	if ok && last.Seq == seq {
		return false, nil
	}
	if err := c.checkHead(fctx); err != nil {
		return false, err
	}
	cp := audit.SignCheckpoint(c.key, seq, head, c.clock.Now().Truncate(time.Millisecond))
	if err := c.store.AppendCheckpoint(fctx, cp); err != nil {
		return false, err
	}
	c.committed(cp) // published now if the Publisher still runs, else on the next start
	return true, nil
}
