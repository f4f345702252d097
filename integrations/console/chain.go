package console

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// ChainWatch keeps the console's mark of how far the audit chain verifies: from the first
// event (genesis) up to VerifiedSeq every row links to the one before it and hashes to its
// stored hash, and every signed checkpoint in that range has a valid signature and matches
// the recomputed chain. It reads the whole log once, then only what was appended since
// (Step), so a page never verifies anything but the events it shows.
type ChainWatch struct {
	r     audit.Reader
	clock grants.Clock
	keys  map[string]ed25519.PublicKey

	mu    sync.Mutex
	state ChainState
	seen  map[string]bool // checkpoints verified (under stepMu)

	stepMu sync.Mutex
}

func cpKey(c audit.Checkpoint) string {
	return fmt.Sprint(c.Seq, "/", c.Time.UnixMilli(), "/", c.KeyID)
}

// ChainState is what the watcher knows at one time.
type ChainState struct {
	// Known is false until the first pass has run.
	Known bool
	// VerifiedSeq is the last seq verified from genesis, VerifiedHash its chain hash.
	VerifiedSeq  int64
	VerifiedHash audit.Hash
	// Checked is when the watcher last looked.
	Checked time.Time
	// Checkpoint is the newest checkpoint verified (zero Seq: none), Checkpoints how many.
	Checkpoint  audit.Checkpoint
	Checkpoints int
	// Damage is set when verification stopped: FirstBad is the seq it names.
	Damage   string
	FirstBad int64
}

// Mark is an event's chain mark on a page.
type Mark struct {
	// State is "verified" (the chain verifies from genesis up to this event, and it hashes
	// to its stored hash as shown), "pending" (appended after the last pass), "broken" (at or
	// after the first damage, or it does not hash to what it says) or "unknown".
	State string
	Text  string
	// Signed: a verified signed checkpoint at or after this seq covers it.
	Signed bool
}

// NewChainWatch returns a watcher over r that verifies checkpoints with pub (and retired
// keys of older checkpoints).
func NewChainWatch(r audit.Reader, clock grants.Clock, pub ed25519.PublicKey, retired ...ed25519.PublicKey) *ChainWatch {
	keys := map[string]ed25519.PublicKey{audit.KeyID(pub): pub}
	for _, k := range retired {
		if len(k) == ed25519.PublicKeySize {
			keys[audit.KeyID(k)] = k
		}
	}
	return &ChainWatch{r: r, clock: clock, keys: keys, state: ChainState{VerifiedHash: audit.Genesis}, seen: map[string]bool{}}
}

// State returns the current state.
func (w *ChainWatch) State() ChainState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state
}

// Run steps at once and then every period until ctx ends.
func (w *ChainWatch) Run(ctx context.Context, period time.Duration) error {
	for {
		// A read failure is not damage: the state stays as it was, and the next step tries again.
		_ = w.Step(ctx)
		t := w.clock.NewTimer(period)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// pageSize is how many events Step reads at a time.
const pageSize = 5000

// Step verifies the events appended since the last step (all of them the first time) and
// the checkpoints among them. It stops at the first damage and keeps reporting it.
func (w *ChainWatch) Step(ctx context.Context) error {
	w.stepMu.Lock()
	defer w.stepMu.Unlock()
	st := w.State()
	if st.Damage != "" {
		return nil
	}
	cps, err := w.r.ReadCheckpoints(ctx)
	if err != nil {
		return fmt.Errorf("chain marks: read checkpoints: %w", err)
	}
	bySeq := map[int64][]audit.Checkpoint{}
	for _, c := range cps {
		if !w.seen[cpKey(c)] {
			bySeq[c.Seq] = append(bySeq[c.Seq], c)
		}
	}
	check := func(seq int64, h audit.Hash) bool {
		for _, c := range bySeq[seq] {
			pub, ok := w.keys[c.KeyID]
			switch {
			case !ok:
				// Signed by a key the console was not given (before a rotation): neither
				// damage nor proof; `audit verify --retired-key` checks it.
				w.seen[cpKey(c)] = true
				continue
			case !c.Verify(pub):
				st.Damage, st.FirstBad = fmt.Sprintf("checkpoint at seq %d does not verify with the configured key", c.Seq), c.Seq
				return false
			case c.Hash != h:
				st.Damage, st.FirstBad = fmt.Sprintf("checkpoint at seq %d disagrees with the recomputed chain", c.Seq), c.Seq
				return false
			}
			w.seen[cpKey(c)] = true
			st.Checkpoints++
			if c.Seq > st.Checkpoint.Seq || (c.Seq == st.Checkpoint.Seq && c.Time.After(st.Checkpoint.Time)) {
				st.Checkpoint = c
			}
		}
		delete(bySeq, seq)
		return true
	}
	// Checkpoints made since the last step at or before what was verified (quiet periods
	// sign the same head again): checked against the hash at their seq.
	for seq := range bySeq {
		if seq > st.VerifiedSeq {
			continue
		}
		h := st.VerifiedHash
		if seq == 0 {
			h = audit.Genesis
		} else if seq < st.VerifiedSeq {
			evs, err := w.r.ReadEvents(ctx, seq-1, 1)
			if err != nil {
				return fmt.Errorf("chain marks: read event %d: %w", seq, err)
			}
			if len(evs) != 1 || evs[0].Seq != seq {
				st.Damage, st.FirstBad = fmt.Sprintf("event %d, which a checkpoint names, is missing", seq), seq
				w.save(st)
				return nil
			}
			h = evs[0].Hash
		}
		if !check(seq, h) {
			st.Known = true
			w.save(st)
			return nil
		}
	}
	ok := true
	for ok {
		page, err := w.r.ReadEvents(ctx, st.VerifiedSeq, pageSize)
		if err != nil {
			w.save(st)
			return fmt.Errorf("chain marks: read events after %d: %w", st.VerifiedSeq, err)
		}
		if len(page) == 0 {
			break
		}
		for i := range page {
			e := &page[i]
			if e.Seq != st.VerifiedSeq+1 {
				st.Damage, st.FirstBad = fmt.Sprintf("sequence jumps from %d to %d", st.VerifiedSeq, e.Seq), st.VerifiedSeq+1
				ok = false
				break
			}
			h, err := audit.Next(st.VerifiedHash, *e)
			if err != nil || e.PrevHash != st.VerifiedHash || h != e.Hash {
				st.Damage, st.FirstBad = fmt.Sprintf("event %d does not hash to its stored hash or does not link to event %d", e.Seq, e.Seq-1), e.Seq
				ok = false
				break
			}
			st.VerifiedSeq, st.VerifiedHash = e.Seq, h
			if !check(e.Seq, h) {
				ok = false
				break
			}
		}
		st.Known = true
		w.save(st) // progress shows while a long first pass runs
	}
	if ok {
		for seq := range bySeq {
			if seq > st.VerifiedSeq {
				st.Damage, st.FirstBad = fmt.Sprintf("a signed checkpoint names seq %d, beyond the log's last event %d: the tail was removed", seq, st.VerifiedSeq), st.VerifiedSeq+1
				break
			}
		}
	}
	st.Known = true
	st.Checked = w.clock.Now().UTC()
	w.save(st)
	return nil
}

func (w *ChainWatch) save(st ChainState) {
	w.mu.Lock()
	w.state = st
	w.mu.Unlock()
}

// MarkFor is e's mark: its own hash is recomputed from the event as it will be shown, so
// an event edited since the pass is caught too.
func (s ChainState) MarkFor(e audit.Event) Mark {
	if !s.Known {
		return Mark{State: "unknown", Text: "chain not checked yet"}
	}
	return s.MarkAt(e.Seq, hashesOK(e))
}

// hashesOK reports whether e, as read, hashes (with its stored previous hash) to its stored
// hash.
func hashesOK(e audit.Event) bool {
	h, err := audit.Next(e.PrevHash, e)
	return err == nil && h == e.Hash
}

// MarkAt is the mark of the event at seq whose own hash check (hashesOK) gave hashOK: the
// part of MarkFor that depends on the watcher's state, so that a page showing events read
// earlier (the story cache) marks them with what the watcher knows now.
func (s ChainState) MarkAt(seq int64, hashOK bool) Mark {
	switch {
	case !s.Known:
		return Mark{State: "unknown", Text: "chain not checked yet"}
	case !hashOK:
		return Mark{State: "broken", Text: "does not hash to its stored hash"}
	case s.Damage != "" && seq >= s.FirstBad:
		return Mark{State: "broken", Text: fmt.Sprintf("after the chain's first damage at seq %d", s.FirstBad)}
	case seq > s.VerifiedSeq:
		return Mark{State: "pending", Text: fmt.Sprintf("appended after the last check (verified up to seq %d)", s.VerifiedSeq)}
	}
	m := Mark{State: "verified", Text: fmt.Sprintf("chain verifies from genesis up to seq %d", s.VerifiedSeq)}
	if s.Checkpoint.Seq >= seq && s.Checkpoints > 0 {
		m.Signed = true
		m.Text += fmt.Sprintf("; signed checkpoint at seq %d covers it", s.Checkpoint.Seq)
	}
	return m
}

// marker marks many events of one page: the texts of the common marks are made once.
type marker struct {
	cs                        ChainState
	verified, signed, pending Mark
}

func newMarker(cs ChainState) *marker {
	clean := cs // the common marks, of events before any damage (at handles the rest)
	clean.Damage, clean.Known = "", true
	return &marker{cs: cs, pending: clean.MarkAt(clean.VerifiedSeq+1, true),
		verified: clean.MarkAt(clean.VerifiedSeq, true), signed: clean.MarkAt(min(clean.Checkpoint.Seq, clean.VerifiedSeq), true)}
}

// at is cs.MarkAt(seq, hashOK).
func (m *marker) at(seq int64, hashOK bool) Mark {
	cs := m.cs
	switch {
	case !cs.Known || !hashOK || (cs.Damage != "" && seq >= cs.FirstBad):
		return cs.MarkAt(seq, hashOK)
	case seq > cs.VerifiedSeq:
		return m.pending
	case cs.Checkpoints > 0 && cs.Checkpoint.Seq >= seq:
		return m.signed
	}
	return m.verified
}
