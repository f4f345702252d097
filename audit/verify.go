package audit

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Reader is what Verify needs from a store.
type Reader interface {
	// ReadEvents returns up to limit events with Seq > after, in ascending seq order as stored.
	// Seq is the row's sequence number; an event has no other. An empty result means there
	// are no more events. Each call returns a slice of its own: Verify reads the next page
	// (from another goroutine) while it still checks the events of the previous one, and may
	// read one page more than it needed before it stops.
	ReadEvents(ctx context.Context, after int64, limit int) ([]Event, error)
	// ReadCheckpoints returns every checkpoint in ascending seq (then time) order.
	ReadCheckpoints(ctx context.Context) ([]Checkpoint, error)
}

// Damage names the first problem Verify found. The values are stable strings that the
// command line and the API print.
type Damage string

// Kinds of damage, from the row level up to the checkpoint level. Each says what FirstBad
// names for it.
const (
	// DamageHashMismatch: a row does not hash to what the chain says. Either its content (or
	// its stored hash or prev_hash) was edited in place (FirstBad: that row), or a row was
	// rewritten with a recomputed hash so that the next row no longer links to it (FirstBad:
	// the rewritten row; see Verify, step 3).
	DamageHashMismatch Damage = "hash_mismatch"
	// DamageGap: sequence numbers jump (deleted rows). FirstBad: the first missing seq.
	DamageGap Damage = "gap"
	// DamageReorder: genuine rows in the wrong place: seq not strictly increasing
	// (duplicated or moved rows), or a row whose content and hashes are genuine for another
	// seq (contents swapped between rows while the seq column stayed). FirstBad: the seq
	// whose row is misplaced; for a swap, the lower of the two.
	DamageReorder Damage = "reorder"
	// DamageBadCheckpointSignature: a checkpoint does not verify with the public key: forged,
	// altered, or signed by another key. FirstBad: the checkpoint's seq.
	DamageBadCheckpointSignature Damage = "bad_checkpoint_signature"
	// DamageCheckpointMismatch: a validly signed checkpoint disagrees with the recomputed
	// chain at its seq: history before it was rewritten, hashes and all. FirstBad: the first
	// seq after the last checkpoint that did match (the rewrite lies between there and the
	// failing checkpoint, which Detail names).
	DamageCheckpointMismatch Damage = "checkpoint_mismatch"
	// DamageMissingCheckpoint: checkpoints are absent, too old or too far behind (see
	// VerifyOptions). FirstBad: the first seq after the last verified checkpoint.
	DamageMissingCheckpoint Damage = "missing_checkpoint"
	// DamageBehindWitness: a witness outside the database (VerifyOptions.Witnessed) holds a
	// validly signed checkpoint that the log no longer matches: events beyond the log's end,
	// a different hash at its seq, or the checkpoint itself missing from the database. The
	// database was truncated, rolled back or rewritten, checkpoints and all. Detail starts
	// with "log is behind published checkpoint N" (N: that checkpoint's seq). FirstBad: the
	// last seq + 1 for missing events; the first seq after the last matching checkpoint for
	// a different hash; the checkpoint's seq for a missing checkpoint.
	DamageBehindWitness Damage = "behind_witness"
	// DamageBadWitnessSignature: a checkpoint a witness returned does not verify with the
	// public key: the witness's copy was altered or forged. FirstBad: its seq.
	DamageBadWitnessSignature Damage = "bad_witness_signature"
	// DamageTruncated: a validly signed checkpoint names a seq beyond the log's last event:
	// the tail was removed. FirstBad: the last remaining seq + 1.
	DamageTruncated Damage = "truncated"
)

// DefaultPageSize is the number of events Verify reads per ReadEvents call by default.
const DefaultPageSize = 10000

// movedSearchWindow bounds the search for the original seq of a row whose content was moved
// to another seq (DamageReorder): seqs within this distance are tried. Farther moves are
// reported as DamageHashMismatch, which is still detection, only less precisely named.
const movedSearchWindow = 4096

// VerifyOptions tunes Verify. The zero value checks the chain and every checkpoint present
// but does not require any checkpoint to exist.
type VerifyOptions struct {
	// PageSize is the limit passed to ReadEvents; 0 means DefaultPageSize.
	PageSize int
	// RequireCheckpoint reports DamageMissingCheckpoint when there is no checkpoint at all.
	RequireCheckpoint bool
	// CheckpointEvery, when > 0, is the configured audit.checkpoint_every; more than twice that
	// many events after the last checkpoint is DamageMissingCheckpoint.
	CheckpointEvery int64
	// MaxCheckpointAge, when > 0, reports DamageMissingCheckpoint when the newest checkpoint
	// (by time) is older than Now - MaxCheckpointAge, or when there is none.
	MaxCheckpointAge time.Duration
	// Now is the current time from the injected clock; required when MaxCheckpointAge > 0.
	Now time.Time
	// RetiredKeys are public keys that signed older checkpoints before a key rotation. A
	// checkpoint is checked with the key whose KeyID it names, among pub and these.
	RetiredKeys []ed25519.PublicKey
	// Witnessed are checkpoints read back from witnesses outside the database (the file,
	// HTTP or S3 copies every signed checkpoint is published to). Each must verify, match the
	// recomputed chain at its seq, and be present among the database's checkpoints;
	// otherwise DamageBadWitnessSignature or DamageBehindWitness.
	Witnessed []WitnessedCheckpoint

	// chunkPages is the size, in pages, of a chunk of the parallel check (tests make it
	// small); 0 means defaultChunkPages.
	chunkPages int
}

// WitnessedCheckpoint is a checkpoint as one witness returned it.
type WitnessedCheckpoint struct {
	// Witness names the witness for people, e.g. "file /var/lib/witness/checkpoints.jsonl".
	Witness string
	// Entry is the checkpoint's 1-based position in what the witness returned (the line of
	// a file witness).
	Entry int
	Checkpoint
}

// Result is the outcome of Verify.
type Result struct {
	// OK is true when no damage was found.
	OK bool
	// Events is the number of events read and chained before Verify stopped (all of them
	// when OK). LastSeq and Head are the seq and chain hash of the last of them (0 and
	// Genesis for an empty log). When OK is false they describe progress, not a guarantee:
	// see FirstBad.
	Events  int64
	LastSeq int64
	Head    Hash
	// Checkpoints is the number of checkpoints whose signature and hash were verified.
	// LastCheckpoint is the last of them (highest seq, then latest time); zero if none.
	Checkpoints    int
	LastCheckpoint Checkpoint
	// Witnessed is the number of VerifyOptions.Witnessed checkpoints that verified and
	// matched the log and its checkpoints.
	Witnessed int
	// FirstBad is the sequence number the damage is reported at (0 when OK); the Damage
	// constants say what it names for each kind. Damage is the kind of the first damage in
	// seq order and Detail a sentence for people: what differs and what it suggests.
	FirstBad int64
	Damage   Damage
	Detail   string
}

// String is a one-line summary for the command line and logs.
func (r Result) String() string {
	var b strings.Builder
	if r.OK {
		fmt.Fprintf(&b, "audit log intact: %d events", r.Events)
		if r.Events > 0 {
			fmt.Fprintf(&b, " up to seq %d", r.LastSeq)
		}
		fmt.Fprintf(&b, ", head %s, %d checkpoints verified", r.Head, r.Checkpoints)
		if r.Checkpoints > 0 {
			fmt.Fprintf(&b, " (last at seq %d, %s)", r.LastCheckpoint.Seq, FormatTime(r.LastCheckpoint.Time))
		}
		if r.Witnessed > 0 {
			fmt.Fprintf(&b, ", %d witnessed checkpoints match", r.Witnessed)
		}
		return b.String()
	}
	fmt.Fprintf(&b, "audit log DAMAGED: %s at seq %d: %s (%d events and %d checkpoints checked before stopping)",
		r.Damage, r.FirstBad, r.Detail, r.Events, r.Checkpoints)
	return b.String()
}

// Verify reads the whole log through r, recomputes the chain from Genesis, checks every
// checkpoint with pub, and reports the first damage in seq order. It returns an error only
// when it could not do its job (invalid pub or opts, a Reader error, a Reader that breaks its
// contract, or ctx ending); damage is reported in the Result with a nil error.
//
// Events are read in pages of opts.PageSize and hashed with one reused buffer, so memory
// stays flat however long the log is. An event's Seq is its row's sequence number (there is
// no other) and is part of its canonical content, so content moved to another row no longer
// hashes to its stored hash there; step 3 uses that to recognise moved rows. For each row,
// in order:
//
//  1. Seq must be the previous seq + 1 (1 for the first row). A jump is DamageGap naming the
//     first missing seq, unless that seq appears later in the same page (DamageReorder); a
//     seq that does not increase is DamageReorder naming it.
//  2. If the row's prev_hash equals the recomputed hash of the previous row, its stored hash
//     must equal SHA-256(prev || Canonical(row)); otherwise DamageHashMismatch at this seq
//     (a field, or the hash itself, was edited in place).
//  3. If prev_hash does not link, there are three cases. (a) The row is self-consistent
//     (its stored hash matches its own prev_hash and content): since seq is hashed, it sits
//     at its own seq, so this is rewriting, not reordering. It is DamageHashMismatch naming
//     the previous seq, the row an attacker rewrites in the usual case (edit a row,
//     recompute its hash); if the previous hash is vouched for (Genesis or a verified
//     checkpoint at the previous seq), this row's prev_hash was rewritten and this seq is
//     named. (b) The row's content and hashes are genuine for another seq at most 4,096
//     away: DamageReorder at this seq (contents swapped or moved while the seq
//     column stayed; for a swap the lower seq is reported, because it is read first).
//     (c) Otherwise DamageHashMismatch at this seq.
//  4. Each checkpoint is checked when the chain reaches its seq (seq 0 before the first row):
//     a bad signature is DamageBadCheckpointSignature at its seq; a hash different from the
//     recomputed one is DamageCheckpointMismatch. A consistent rewrite of every hash from
//     some row on is invisible to steps 1-3, so only a checkpoint catches it, and the
//     rewritten row could be anywhere after the last checkpoint that did match: FirstBad is
//     that checkpoint's seq + 1 (the first seq no signature vouches for) and Detail names
//     the failing checkpoint.
//  5. After the last row: a validly signed checkpoint beyond it is DamageTruncated with
//     FirstBad = last seq + 1 (a forged one is DamageBadCheckpointSignature). Then the
//     checkpoint freshness rules of opts apply (DamageMissingCheckpoint, FirstBad = first
//     seq after the last verified checkpoint).
//  6. Witnessed checkpoints (opts.Witnessed) are checked like the database's, when the chain
//     reaches their seq and after the last row, and must also be among the database's
//     checkpoints: a bad signature is DamageBadWitnessSignature; events beyond the log's end,
//     a different hash or a checkpoint missing from the database is DamageBehindWitness.
//     This is what catches an attacker who deletes the newest checkpoints together with the
//     events after an older one: the database alone then looks intact.
//
// Verify stops at the first damage. What no verifier can see: events appended after the
// last checkpoint and then removed or rewritten, by someone who can write the database,
// remain undetectable until the next checkpoint disagrees; that is why checkpoints are made
// every audit.checkpoint_every events and during quiet periods, and why opts can require
// them to be recent.
func Verify(ctx context.Context, r Reader, pub ed25519.PublicKey, opts VerifyOptions) (Result, error) {
	res := Result{Head: Genesis}
	if len(pub) != ed25519.PublicKeySize {
		return res, fmt.Errorf("verify audit log: public key has %d bytes, want %d: pass the checkpoint key file", len(pub), ed25519.PublicKeySize)
	}
	switch {
	case opts.PageSize < 0:
		return res, fmt.Errorf("verify audit log: page size %d is negative", opts.PageSize)
	case opts.CheckpointEvery < 0:
		return res, fmt.Errorf("verify audit log: checkpoint_every %d is negative", opts.CheckpointEvery)
	case opts.MaxCheckpointAge < 0:
		return res, fmt.Errorf("verify audit log: max checkpoint age %s is negative", opts.MaxCheckpointAge)
	case opts.MaxCheckpointAge > 0 && opts.Now.IsZero():
		return res, errors.New("verify audit log: max checkpoint age is set but Now is zero: pass the current time from the clock")
	}
	if opts.PageSize == 0 {
		opts.PageSize = DefaultPageSize
	}
	cps, err := r.ReadCheckpoints(ctx)
	if err != nil {
		return res, fmt.Errorf("verify audit log: read checkpoints: %w", err)
	}
	cps = slices.Clone(cps)
	slices.SortStableFunc(cps, func(a, b Checkpoint) int {
		return cmp.Or(cmp.Compare(a.Seq, b.Seq), a.Time.Compare(b.Time))
	})
	wcps := slices.Clone(opts.Witnessed)
	slices.SortStableFunc(wcps, func(a, b WitnessedCheckpoint) int {
		return cmp.Or(cmp.Compare(a.Seq, b.Seq), a.Time.Compare(b.Time))
	})
	stored := make(map[checkpointKey]bool, len(cps))
	for _, c := range cps {
		stored[keyOf(c)] = true
	}
	v := verifier{pub: pub, opts: opts, cps: cps, wcps: wcps, stored: stored, res: res}
	v.h.w.b = make([]byte, 0, 1024)
	if v.checkpointsUpTo(0) {
		return v.res, nil
	}
	if pr, ok := r.(ParallelReader); ok {
		// A read waits on a database (its server, or pages of the file) as well as using a
		// core, so up to twice as many reads as cores keep the cores busy; more would only
		// hold more pages in memory.
		if workers := min(pr.ParallelReads(), 2*runtime.GOMAXPROCS(0)); workers > 1 {
			switch end, err := v.parallel(ctx, r, workers); {
			case err != nil:
				return v.res, err
			case end == parallelDamage:
				return v.res, nil
			case end == parallelEnd:
				v.finish()
				return v.res, nil
			}
			// parallelResume: the rows after v.res.LastSeq are checked below, one by one.
		}
	}
	// The next page is read while this one is checked (a database read costs several times
	// what hashing does, and the two overlap on another core). Pages are still checked one
	// after the other, in seq order, so the outcome is that of reading them in turn.
	pages, stop := prefetch(ctx, r, v.res.LastSeq, opts.PageSize)
	defer stop()
	after := v.res.LastSeq
	for {
		if err := ctx.Err(); err != nil {
			return v.res, fmt.Errorf("verify audit log after seq %d: %w", after, err)
		}
		p, ok := <-pages
		if !ok {
			return v.res, fmt.Errorf("verify audit log after seq %d: %w", after, ctx.Err())
		}
		page, err := p.events, p.err
		if err != nil {
			return v.res, fmt.Errorf("verify audit log: read events after seq %d: %w", after, err)
		}
		if len(page) == 0 {
			break
		}
		for i := range page {
			if page[i].Seq <= after {
				return v.res, fmt.Errorf("verify audit log: reader returned seq %d when asked for seq > %d: the Reader breaks its contract", page[i].Seq, after)
			}
			if v.row(&page[i], page[i+1:]) {
				return v.res, nil
			}
		}
		after = v.res.LastSeq
	}
	v.finish()
	return v.res, nil
}

// readPage is one ReadEvents result.
type readPage struct {
	events []Event
	err    error
}

// prefetch reads pages of size events from r, one ahead of the consumer: each page asks for
// the events after the last seq of the page before (as Verify's loop would), and the reading
// ends after an empty page or an error, which are delivered too. stop ends the reading and
// waits for it; the channel is closed when reading ends.
func prefetch(ctx context.Context, r Reader, after int64, size int) (<-chan readPage, func()) {
	ctx, cancel := context.WithCancel(ctx)
	out := make(chan readPage) // unbuffered: the page being read is the only one ahead
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(out)
		for {
			page, err := r.ReadEvents(ctx, after, size)
			select {
			case out <- readPage{events: page, err: err}:
			case <-ctx.Done():
				return
			}
			if err != nil || len(page) == 0 {
				return
			}
			// A page whose last seq does not increase breaks the Reader contract; the
			// consumer reports it before asking for more, so stopping here loses nothing.
			if last := page[len(page)-1].Seq; last > after {
				after = last
			} else {
				return
			}
		}
	}()
	return out, func() { cancel(); <-done }
}

// verifier is the state of one Verify run.
type verifier struct {
	pub    ed25519.PublicKey
	opts   VerifyOptions
	cps    []Checkpoint          // sorted by seq, then time
	next   int                   // index of the first checkpoint not yet checked
	wcps   []WitnessedCheckpoint // opts.Witnessed sorted by seq, then time
	wnext  int                   // index of the first witnessed checkpoint not yet checked
	goodW  int64                 // seq of the last witnessed checkpoint that matched
	stored map[checkpointKey]bool
	goodCp int64     // seq of the last checkpoint that matched; 0 (Genesis) at first
	newest time.Time // latest time among verified checkpoints
	h      hasher
	res    Result
}

// damage records the first damage and reports true, so callers can `return v.damage(...)`.
func (v *verifier) damage(kind Damage, firstBad int64, format string, args ...any) bool {
	v.res.OK = false
	v.res.Damage = kind
	v.res.FirstBad = firstBad
	v.res.Detail = fmt.Sprintf(format, args...)
	return true
}

// row checks e, the next row read; rest is what follows it in the same page (for telling a
// gap from a reorder). It reports whether damage was found.
func (v *verifier) row(e *Event, rest []Event) bool {
	last := v.res.LastSeq
	want := last + 1
	switch {
	case e.Seq < want:
		return v.damage(DamageReorder, e.Seq, "seq %d is stored after seq %d: rows are duplicated or out of order", e.Seq, last)
	case e.Seq > want:
		for i := range rest {
			if rest[i].Seq == want {
				return v.damage(DamageReorder, want, "seq %d is stored after seq %d: rows are out of order", want, e.Seq)
			}
		}
		if e.Seq == want+1 {
			return v.damage(DamageGap, want, "seq %d is missing (seq %d follows seq %d): a row was deleted", want, e.Seq, last)
		}
		return v.damage(DamageGap, want, "seqs %d..%d are missing (seq %d follows seq %d): %d rows were deleted", want, e.Seq-1, e.Seq, last, e.Seq-want)
	}

	head := v.res.Head
	h, err := v.h.hash(head, e)
	if err != nil {
		return v.damage(DamageHashMismatch, e.Seq, "seq %d cannot be hashed (%v): a field was edited to a value no event can hold", e.Seq, err)
	}
	if e.PrevHash == head {
		if h != e.Hash {
			return v.damage(DamageHashMismatch, e.Seq, "seq %d has stored hash %s but its content hashes to %s: a field (or the hash) was edited", e.Seq, e.Hash, h)
		}
	} else {
		self, _ := v.h.hash(e.PrevHash, e) // same content: cannot fail now
		switch {
		case self == e.Hash && last == 0:
			return v.damage(DamageHashMismatch, e.Seq, "seq %d links to prev_hash %s, not to the genesis hash (all zeros): its prev_hash was changed and its hash recomputed", e.Seq, e.PrevHash)
		case self == e.Hash && v.goodCp == last:
			// The previous hash is vouched for by a verified checkpoint, so this row's
			// prev_hash was changed and its hash recomputed.
			return v.damage(DamageHashMismatch, e.Seq, "seq %d links to prev_hash %s, not to %s which is verified at seq %d: its prev_hash was changed and its hash recomputed", e.Seq, e.PrevHash, head, last)
		case self == e.Hash:
			return v.damage(DamageHashMismatch, last, "seq %d links to prev_hash %s but seq %d's stored hash is %s: seq %d was rewritten with a recomputed hash (or seq %d's prev_hash was)", e.Seq, e.PrevHash, last, head, last, e.Seq)
		}
		if from, ok := v.movedFrom(e); ok {
			return v.damage(DamageReorder, e.Seq, "seq %d holds the event that was chained at seq %d: rows were swapped, moved, or renumbered after a deletion", e.Seq, from)
		}
		return v.damage(DamageHashMismatch, e.Seq, "seq %d matches neither the chain (prev_hash %s, want %s) nor its own stored hash: the row was edited", e.Seq, e.PrevHash, head)
	}
	v.res.Events++
	v.res.LastSeq = e.Seq
	v.res.Head = h
	return v.checkpointsUpTo(e.Seq)
}

// movedFrom looks for the seq at which e's content, prev_hash and hash form a genuine link,
// nearest first. It is only called on a damaged row, so its cost does not matter.
func (v *verifier) movedFrom(e *Event) (int64, bool) {
	c := *e
	try := func(s int64) bool {
		c.Seq = s
		h, err := v.h.hash(c.PrevHash, &c)
		return err == nil && h == c.Hash
	}
	for d := int64(1); d <= movedSearchWindow; d++ {
		if lo := e.Seq - d; lo >= 1 && try(lo) {
			return lo, true
		}
		if hi := e.Seq + d; hi > e.Seq && try(hi) { // hi > e.Seq guards overflow
			return hi, true
		}
	}
	return 0, false
}

// checkpointsUpTo checks every pending checkpoint with Seq <= seq against the chain head,
// which is the hash at seq. It reports whether damage was found.
func (v *verifier) checkpointsUpTo(seq int64) bool {
	for v.next < len(v.cps) && v.cps[v.next].Seq <= seq {
		c := v.cps[v.next]
		v.next++
		if p := c.problem(v.keyFor(c)); p != "" {
			return v.damage(DamageBadCheckpointSignature, max(c.Seq, 0), "checkpoint at seq %d (%s) does not verify: %s", c.Seq, FormatTime(c.Time), p)
		}
		if c.Seq != seq || c.Hash != v.res.Head {
			return v.damage(DamageCheckpointMismatch, min(v.goodCp+1, c.Seq),
				"signed checkpoint at seq %d (%s) has hash %s but the log hashes to %s there: history after seq %d, up to seq %d, was rewritten",
				c.Seq, FormatTime(c.Time), c.Hash, v.res.Head, v.goodCp, c.Seq)
		}
		v.goodCp = c.Seq
		v.res.Checkpoints++
		v.res.LastCheckpoint = c
		if c.Time.After(v.newest) {
			v.newest = c.Time
		}
	}
	return v.witnessedUpTo(seq)
}

// checkpointKey identifies a checkpoint by what is signed.
type checkpointKey struct {
	seq  int64
	hash Hash
	ms   int64
}

func keyOf(c Checkpoint) checkpointKey {
	return checkpointKey{seq: c.Seq, hash: c.Hash, ms: c.Time.UnixMilli()}
}

// witnessedUpTo checks every pending witnessed checkpoint with Seq <= seq against the chain
// head (the hash at seq) and the database's checkpoints. It reports whether damage was found.
func (v *verifier) witnessedUpTo(seq int64) bool {
	for v.wnext < len(v.wcps) && v.wcps[v.wnext].Seq <= seq {
		w := v.wcps[v.wnext]
		v.wnext++
		if v.badWitness(w) {
			return true
		}
		if w.Seq != seq || w.Hash != v.res.Head {
			good := max(v.goodCp, v.goodW)
			return v.damage(DamageBehindWitness, min(good+1, w.Seq),
				"log is behind published checkpoint %d: %s entry %d has the signed hash %s at seq %d (%s), but the log hashes to %s there: history after seq %d, up to seq %d, was rewritten",
				w.Seq, w.Witness, w.Entry, w.Hash, w.Seq, FormatTime(w.Time), v.res.Head, good, w.Seq)
		}
		if !v.stored[keyOf(w.Checkpoint)] {
			return v.damage(DamageBehindWitness, w.Seq,
				"log is behind published checkpoint %d: the checkpoint at seq %d (%s) that %s entry %d holds is missing from the database: checkpoints were deleted",
				w.Seq, w.Seq, FormatTime(w.Time), w.Witness, w.Entry)
		}
		v.goodW = w.Seq
		v.res.Witnessed++
	}
	return false
}

// badWitness reports DamageBadWitnessSignature when w does not verify.
func (v *verifier) badWitness(w WitnessedCheckpoint) bool {
	if p := w.problem(v.keyFor(w.Checkpoint)); p != "" {
		return v.damage(DamageBadWitnessSignature, max(w.Seq, 0),
			"%s entry %d (checkpoint at seq %d, %s) does not verify: %s: the witness's copy was altered or forged",
			w.Witness, w.Entry, w.Seq, FormatTime(w.Time), p)
	}
	return false
}

// finish runs the end-of-log checks: checkpoints beyond the last event, then freshness.
func (v *verifier) finish() {
	last := v.res.LastSeq
	var forged *Checkpoint
	for i := v.next; i < len(v.cps); i++ {
		c := &v.cps[i]
		if p := c.problem(v.keyFor(*c)); p != "" {
			if forged == nil {
				forged = c
			}
			continue
		}
		v.damage(DamageTruncated, last+1, "signed checkpoint at seq %d (%s) is beyond the last event, seq %d: seqs %d..%d were removed", c.Seq, FormatTime(c.Time), last, last+1, c.Seq)
		return
	}
	if forged != nil {
		v.damage(DamageBadCheckpointSignature, forged.Seq, "checkpoint at seq %d (%s), beyond the last event (seq %d), does not verify: %s", forged.Seq, FormatTime(forged.Time), last, forged.problem(v.keyFor(*forged)))
		return
	}
	for _, w := range v.wcps[v.wnext:] {
		if v.badWitness(w) {
			return
		}
	}
	if v.wnext < len(v.wcps) {
		w := v.wcps[len(v.wcps)-1] // the newest publication says most about what is gone
		v.damage(DamageBehindWitness, last+1,
			"log is behind published checkpoint %d: %s entry %d holds a signed checkpoint at seq %d (%s, hash %s) but the log ends at seq %d: events %d..%d and that checkpoint are missing from the database",
			w.Seq, w.Witness, w.Entry, w.Seq, FormatTime(w.Time), w.Hash, last, last+1, w.Seq)
		return
	}

	uncovered := last - v.goodCp
	switch o := v.opts; {
	case o.RequireCheckpoint && v.res.Checkpoints == 0:
		v.damage(DamageMissingCheckpoint, v.goodCp+1, "there is no signed checkpoint: the log cannot be checked against rewriting or truncation")
		return
	case o.CheckpointEvery > 0 && uncovered > 2*o.CheckpointEvery:
		v.damage(DamageMissingCheckpoint, v.goodCp+1, "%d events after the last checkpoint (seq %d), more than twice checkpoint_every (%d): checkpoints stopped or were deleted", uncovered, v.goodCp, o.CheckpointEvery)
		return
	case o.MaxCheckpointAge > 0 && v.res.Checkpoints == 0:
		v.damage(DamageMissingCheckpoint, v.goodCp+1, "there is no signed checkpoint, and one no older than %s is required", o.MaxCheckpointAge)
		return
	case o.MaxCheckpointAge > 0 && v.newest.Before(o.Now.Add(-o.MaxCheckpointAge)):
		v.damage(DamageMissingCheckpoint, v.goodCp+1, "the newest checkpoint was made at %s, more than %s before %s: checkpoints stopped or were deleted", FormatTime(v.newest), o.MaxCheckpointAge, FormatTime(o.Now))
		return
	}
	v.res.OK = true
}

// keyFor returns the key a checkpoint names (the current one unless a retired key matches).
func (v *verifier) keyFor(c Checkpoint) ed25519.PublicKey {
	for _, k := range v.opts.RetiredKeys {
		if len(k) == ed25519.PublicKeySize && KeyID(k) == c.KeyID {
			return k
		}
	}
	return v.pub
}
