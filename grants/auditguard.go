package grants

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/accessbroker/accessbroker/audit"
)

// GuardStore is what the AuditGuard reads from the store.
type GuardStore interface {
	// Head returns the last event's seq, hash and time (0 and audit.Genesis when empty).
	Head(ctx context.Context) (int64, audit.Hash, time.Time, error)
	// LastCheckpoint returns the newest checkpoint, ok=false when there is none.
	LastCheckpoint(ctx context.Context) (audit.Checkpoint, bool, error)
	// ReadCheckpoints returns every checkpoint in ascending seq (then time) order.
	ReadCheckpoints(ctx context.Context) ([]audit.Checkpoint, error)
	// ReadEvents returns up to limit events with Seq > after, in ascending seq order.
	ReadEvents(ctx context.Context, after int64, limit int) ([]audit.Event, error)
	// Search returns the events matching q.
	Search(ctx context.Context, q audit.Query) ([]audit.Event, error)
}

// AuditSuspectError says why the audit log is suspect. It unwraps to ErrAuditSuspect.
type AuditSuspectError struct {
	Since  time.Time // when this process found it
	Damage string    // what is wrong, in words
}

func (e *AuditSuspectError) Error() string {
	return fmt.Sprintf("the audit log failed verification (%s) at %s; no grant is issued or extended until an operator investigates and runs `accessbroker audit clear-suspect`: %v",
		e.Damage, audit.FormatTime(e.Since), ErrAuditSuspect)
}

// Unwrap returns ErrAuditSuspect.
func (e *AuditSuspectError) Unwrap() error { return ErrAuditSuspect }

// AuditGuardOptions tune an AuditGuard. Zero values take the defaults.
type AuditGuardOptions struct {
	// Witnesses are compared with the log: the newest checkpoint a witness holds must be in
	// the store's checkpoints, and the log must not be behind it.
	Witnesses []Witness
	// Period is how often Run checks (default 5m).
	Period time.Duration
	// Alert posts one line to the people who watch the broker (the audit channel). Optional.
	Alert func(ctx context.Context, line string)
	// Record appends audit-only events (grants.Manager.Record). Optional: with it, entering
	// the suspect state is recorded as audit.suspect.
	Record func(ctx context.Context, events ...*audit.Event) error
	// Metric is told whether the log is suspect after each check. Optional.
	Metric func(suspect bool)
	Logger *slog.Logger
}

// AuditGuard watches the audit log this broker appends to. It verifies the tail from the
// newest checkpoint (its signature, the hash at its seq, every event after it), that the head
// never goes back behind what this process saw, and that no witness holds a checkpoint the
// store lost or a log the store is behind. While a check fails the broker is audit suspect:
// IssueAllowed refuses new grants and extensions, the checkpointer signs nothing, and
// revocations go on. The state ends when a check passes again, which for real damage takes an
// operator's `accessbroker audit clear-suspect` (a signed clearance and a new checkpoint).
type AuditGuard struct {
	store GuardStore
	pub   ed25519.PublicKey
	clock Clock
	opts  AuditGuardOptions
	log   *slog.Logger

	mu       sync.Mutex
	suspect  *AuditSuspectError
	seenSeq  int64 // the highest head this process has seen, with its hash, when it was seen
	seenHash audit.Hash
	seenAt   time.Time
}

// NewAuditGuard returns a guard over store, verifying checkpoints with pub.
func NewAuditGuard(store GuardStore, pub ed25519.PublicKey, clock Clock, opts AuditGuardOptions) *AuditGuard {
	if opts.Period <= 0 {
		opts.Period = 5 * time.Minute
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &AuditGuard{store: store, pub: pub, clock: clock, opts: opts, log: log.With("component", "audit_guard")}
}

// IssueAllowed returns nil, or an *AuditSuspectError while the log is suspect.
func (g *AuditGuard) IssueAllowed() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.suspect != nil {
		return g.suspect
	}
	return nil
}

// Suspect returns the current suspicion, or nil.
func (g *AuditGuard) Suspect() *AuditSuspectError {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.suspect
}

// Run checks at once and then every Period until ctx ends.
func (g *AuditGuard) Run(ctx context.Context) error {
	for {
		if err := g.Check(ctx); err != nil && !errors.Is(err, ErrAuditSuspect) && ctx.Err() == nil {
			g.log.WarnContext(ctx, "audit log check could not run; will retry", "error", err)
		}
		t := g.clock.NewTimer(g.opts.Period)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// Check verifies the log now and updates the state. It returns an *AuditSuspectError when
// the log is suspect, another error when the check itself could not run (the state is then
// unchanged: an unreachable database is not damage), and nil when the log verifies.
func (g *AuditGuard) Check(ctx context.Context) error { return g.check(ctx, true) }

// CheckBeforeSign is Check without reading the witnesses (the periodic Check compares with
// them): it runs before every checkpoint, so it reads only the database's tail. Finding no
// damage there does not end a suspicion the witnesses raised.
func (g *AuditGuard) CheckBeforeSign(ctx context.Context) error { return g.check(ctx, false) }

func (g *AuditGuard) check(ctx context.Context, withWitnesses bool) error {
	damage, err := g.findDamage(ctx, withWitnesses)
	if err != nil {
		return err
	}
	g.mu.Lock()
	was := g.suspect
	if damage == "" && !withWitnesses && was != nil {
		g.mu.Unlock()
		return was
	}
	if damage == "" {
		g.suspect = nil
	} else if was == nil || was.Damage != damage {
		g.suspect = &AuditSuspectError{Since: g.clock.Now().UTC().Truncate(time.Millisecond), Damage: damage}
	}
	now := g.suspect
	g.mu.Unlock()
	if g.opts.Metric != nil {
		g.opts.Metric(now != nil)
	}
	switch {
	case now != nil && now != was:
		g.log.ErrorContext(ctx, "AUDIT LOG SUSPECT: new grants stopped; revocations go on", "damage", damage)
		if g.opts.Record != nil {
			ev := &audit.Event{Actor: systemActor, Action: audit.ActionAuditSuspect, Reason: damage,
				Evidence: map[string]string{"damage": damage}}
			if err := g.opts.Record(ctx, ev); err != nil {
				g.log.ErrorContext(ctx, "record audit.suspect", "error", err)
			}
		}
		g.alert(ctx, fmt.Sprintf(":rotating_light: AUDIT LOG SUSPECT: %s. accessbroker issues and extends no grant until an operator investigates and runs `accessbroker audit clear-suspect --reason …`; revocations go on.", damage))
	case now == nil && was != nil:
		g.log.InfoContext(ctx, "audit log verifies again; grants resume", "was", was.Damage)
		g.alert(ctx, ":white_check_mark: The audit log verifies again; accessbroker issues grants again.")
	}
	if now != nil {
		return now
	}
	return nil
}

func (g *AuditGuard) alert(ctx context.Context, line string) {
	if g.opts.Alert != nil {
		g.opts.Alert(ctx, line)
	}
}

// findDamage returns what is wrong with the log in words, "" when nothing is.
func (g *AuditGuard) findDamage(ctx context.Context, withWitnesses bool) (string, error) {
	headSeq, headHash, _, err := g.store.Head(ctx)
	if err != nil {
		return "", fmt.Errorf("read the audit head: %w", err)
	}
	clearedUntil, err := g.clearedUntil(ctx)
	if err != nil {
		return "", err
	}
	g.mu.Lock()
	if g.seenAt.Before(clearedUntil) {
		// An operator accepted the log as it is after this process last saw it.
		g.seenSeq, g.seenHash = 0, audit.Hash{}
	}
	seenSeq, seenHash := g.seenSeq, g.seenHash
	g.mu.Unlock()
	if headSeq < seenSeq {
		return fmt.Sprintf("the log's head went back from seq %d to seq %d while this broker ran (events deleted)", seenSeq, headSeq), nil
	}
	last, ok, err := g.store.LastCheckpoint(ctx)
	if err != nil {
		return "", fmt.Errorf("read the newest checkpoint: %w", err)
	}
	if ok {
		if d, err := g.verifyTail(ctx, last, headSeq, headHash); d != "" || err != nil {
			return d, err
		}
	}
	if seenSeq > 0 && headSeq >= seenSeq {
		h, found, err := g.hashAt(ctx, seenSeq)
		if err != nil {
			return "", err
		}
		if !found || h != seenHash {
			return fmt.Sprintf("event %d changed after this broker saw it (history rewritten)", seenSeq), nil
		}
	}
	if withWitnesses {
		if d, err := g.compareWitnesses(ctx, headSeq, clearedUntil); d != "" || err != nil {
			return d, err
		}
	}
	g.mu.Lock()
	g.seenSeq, g.seenHash, g.seenAt = headSeq, headHash, g.clock.Now()
	g.mu.Unlock()
	return "", nil
}

// verifyTail checks the newest checkpoint's signature and that the events from its seq to the
// head chain onto its hash.
func (g *AuditGuard) verifyTail(ctx context.Context, cp audit.Checkpoint, headSeq int64, headHash audit.Hash) (string, error) {
	if g.pub != nil && !cp.Verify(g.pub) {
		return fmt.Sprintf("the newest checkpoint (seq %d) is not signed by this broker's audit key", cp.Seq), nil
	}
	if headSeq < cp.Seq {
		return fmt.Sprintf("the log ends at seq %d, behind its newest checkpoint at seq %d (events deleted)", headSeq, cp.Seq), nil
	}
	prev := audit.Genesis
	if cp.Seq > 0 {
		h, found, err := g.hashAt(ctx, cp.Seq)
		if err != nil {
			return "", err
		}
		if !found || h != cp.Hash {
			return fmt.Sprintf("event %d no longer has the hash its checkpoint signed (history rewritten)", cp.Seq), nil
		}
		prev = h
	} else if cp.Hash != audit.Genesis {
		return "the checkpoint of the empty log does not carry the genesis hash", nil
	}
	next := cp.Seq
	for next < headSeq {
		// Only up to the head read above: events appended since are checked next time.
		evs, err := g.store.ReadEvents(ctx, next, int(min(1000, headSeq-next)))
		if err != nil {
			return "", fmt.Errorf("read events after seq %d: %w", next, err)
		}
		if len(evs) == 0 {
			break
		}
		for i := range evs {
			e := &evs[i]
			if e.Seq != next+1 {
				return fmt.Sprintf("events %d..%d are missing after the newest checkpoint", next+1, e.Seq-1), nil
			}
			h, err := audit.Next(prev, *e)
			if err != nil {
				return "", fmt.Errorf("hash event %d: %w", e.Seq, err)
			}
			if e.PrevHash != prev || e.Hash != h {
				return fmt.Sprintf("event %d does not chain onto the one before it (altered or inserted)", e.Seq), nil
			}
			prev, next = h, e.Seq
		}
	}
	if next != headSeq || prev != headHash {
		return fmt.Sprintf("the log's head (seq %d) does not match its events (last read seq %d)", headSeq, next), nil
	}
	return "", nil
}

func (g *AuditGuard) hashAt(ctx context.Context, seq int64) (audit.Hash, bool, error) {
	evs, err := g.store.ReadEvents(ctx, seq-1, 1)
	if err != nil {
		return audit.Hash{}, false, fmt.Errorf("read event %d: %w", seq, err)
	}
	if len(evs) == 0 || evs[0].Seq != seq {
		return audit.Hash{}, false, nil
	}
	return evs[0].Hash, true, nil
}

// compareWitnesses checks each witness's newest checkpoint signed after the last clearance:
// it must be among the store's checkpoints, and the log must not be behind it.
func (g *AuditGuard) compareWitnesses(ctx context.Context, headSeq int64, clearedUntil time.Time) (string, error) {
	if len(g.opts.Witnesses) == 0 {
		return "", nil
	}
	stored, err := g.store.ReadCheckpoints(ctx)
	if err != nil {
		return "", fmt.Errorf("read the store's checkpoints: %w", err)
	}
	have := make(map[string]bool, len(stored))
	for _, c := range stored {
		have[checkpointKey(c)] = true
	}
	for _, w := range g.opts.Witnesses {
		held, err := w.Checkpoints(ctx)
		if err != nil && !errors.Is(err, ErrWitnessIncomplete) {
			// A witness that cannot be read says nothing; the publisher alerts on it.
			g.log.WarnContext(ctx, "cannot read a witness to compare with the log", "witness", w.Name(), "error", err)
			continue
		}
		var newest *audit.Checkpoint
		for i := range held {
			c := held[i]
			if !c.Time.After(clearedUntil) || (g.pub != nil && !c.Verify(g.pub)) {
				continue
			}
			if newest == nil || checkpointBefore(*newest, c) {
				newest = &held[i]
			}
		}
		switch {
		case newest == nil:
		case newest.Seq > headSeq:
			return fmt.Sprintf("the log is behind published checkpoint %d (witness %s holds seq %d, the log ends at seq %d)", newest.Seq, w.Name(), newest.Seq, headSeq), nil
		case !have[checkpointKey(*newest)]:
			return fmt.Sprintf("checkpoint %d published to witness %s is missing from the database", newest.Seq, w.Name()), nil
		}
	}
	return "", nil
}

// clearedUntil is the time of the newest valid operator clearance (zero when none): witness
// checkpoints before it were accepted as lost.
func (g *AuditGuard) clearedUntil(ctx context.Context) (time.Time, error) {
	evs, err := g.store.Search(ctx, audit.Query{Action: audit.ActionAuditSuspectCleared, Descending: true, Limit: 20})
	if err != nil {
		return time.Time{}, fmt.Errorf("read audit clearances: %w", err)
	}
	for _, e := range evs {
		if t, ok := VerifyClearance(g.pub, e.Evidence); ok {
			return t, nil
		}
	}
	return time.Time{}, nil
}

// clearanceContext separates the signed clearance message from every other signature.
const clearanceContext = "accessbroker audit suspect cleared v1\n"

func clearanceMessage(until time.Time, reason string) []byte {
	return []byte(clearanceContext + audit.FormatTime(until) + "\n" + reason + "\n")
}

// SignClearance returns the evidence of an audit.suspect_cleared event: the reason, the time
// up to which earlier published checkpoints are accepted as lost, and the audit key's
// signature over both, so that nobody without the key can clear the state by writing rows.
func SignClearance(key ed25519.PrivateKey, until time.Time, reason string) map[string]string {
	until = until.UTC().Truncate(time.Millisecond)
	return map[string]string{
		"reason":        reason,
		"cleared_until": audit.FormatTime(until),
		"signature":     base64.StdEncoding.EncodeToString(ed25519.Sign(key, clearanceMessage(until, reason))),
		"key_id":        audit.KeyID(key.Public().(ed25519.PublicKey)),
	}
}

// VerifyClearance checks the evidence of an audit.suspect_cleared event against pub and
// returns the time it clears up to.
func VerifyClearance(pub ed25519.PublicKey, ev map[string]string) (time.Time, bool) {
	if pub == nil {
		return time.Time{}, false
	}
	until, err := time.Parse(time.RFC3339Nano, ev["cleared_until"])
	if err != nil {
		return time.Time{}, false
	}
	sig, err := base64.StdEncoding.DecodeString(ev["signature"])
	if err != nil || !ed25519.Verify(pub, clearanceMessage(until, ev["reason"]), sig) {
		return time.Time{}, false
	}
	return until, true
}
