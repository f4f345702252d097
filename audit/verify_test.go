package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The probe log: 24 events with checkpoints at seq 0, 5, 10, 15, 20 and 24.
const (
	probeEvents = 24
	probeEvery  = 5
)

// probe is one mutation of the intact probe log and the verdict Verify must reach.
type probe struct {
	name   string
	file   string // when set, the tampered log is also committed as testdata/tamper/<file>.*
	mutate func(tb testing.TB, m *MemLog)
	opts   VerifyOptions
	// wantDamage "" means the log must verify.
	wantDamage   Damage
	wantFirstBad int64
	wantDetail   string // a substring of Result.Detail
	// page1, when set, is the verdict with one-row pages ("ok" or a Damage): Verify can only
	// see misplaced rows within one page, because a Reader pages by seq.
	page1 string
}

func editProbe(name string, edit func(e *Event)) probe {
	return probe{
		name:         "edit " + name,
		mutate:       func(tb testing.TB, m *MemLog) { edit(at(tb, m, 13)) },
		wantDamage:   DamageHashMismatch,
		wantFirstBad: 13,
	}
}

// cp returns the checkpoint of m at seq (the first one).
func cp(tb testing.TB, m *MemLog, seq int64) *Checkpoint {
	tb.Helper()
	for i := range m.Checkpoints {
		if m.Checkpoints[i].Seq == seq {
			return &m.Checkpoints[i]
		}
	}
	tb.Fatalf("no checkpoint at seq %d", seq)
	return nil
}

func deleteSeqs(tb testing.TB, m *MemLog, from, to int64) {
	tb.Helper()
	at(tb, m, from)
	m.Events = slices.Delete(m.Events, int(from-1), int(to))
}

func dropCheckpointsAfter(m *MemLog, seq int64) {
	m.Checkpoints = slices.DeleteFunc(m.Checkpoints, func(c Checkpoint) bool { return c.Seq > seq })
}

// swapContents exchanges every column but seq between two rows.
func swapContents(tb testing.TB, m *MemLog, a, b int64) {
	tb.Helper()
	ea, eb := at(tb, m, a), at(tb, m, b)
	*ea, *eb = *eb, *ea
	ea.Seq, eb.Seq = a, b
}

func probes() []probe {
	key := testKey()
	lastCpTime := makeEvent(probeEvents).Time.Add(time.Second)
	return []probe{
		{name: "intact log", file: "intact"},
		{name: "intact log with checkpoint_every", opts: VerifyOptions{CheckpointEvery: probeEvery, RequireCheckpoint: true}},
		{name: "representation only: time in another zone", mutate: func(tb testing.TB, m *MemLog) {
			e := at(tb, m, 13)
			e.Time = e.Time.In(time.FixedZone("IST", 5*3600+1800))
		}},
		{name: "representation only: sub-millisecond time is not hashed", mutate: func(tb testing.TB, m *MemLog) {
			e := at(tb, m, 13)
			e.Time = e.Time.Add(999 * time.Microsecond)
		}},

		// Edits in place: the row no longer hashes to its stored hash.
		editProbe("id", func(e *Event) { e.ID += "x" }),
		editProbe("time by 1ms", func(e *Event) { e.Time = e.Time.Add(time.Millisecond) }),
		editProbe("actor kind", func(e *Event) { e.Actor.Kind = ActorOperator }),
		editProbe("actor id", func(e *Event) { e.Actor.ID = "U0MALLORY" }),
		editProbe("actor email removed", func(e *Event) { e.Actor.Email = "" }),
		editProbe("action", func(e *Event) { e.Action = ActionRequestDenied }),
		editProbe("request id added", func(e *Event) { e.RequestID = "req_x" }),
		editProbe("grant id", func(e *Event) { e.GrantID = "grt_other" }),
		editProbe("resource", func(e *Event) { e.Resource = "prod-db-replica" }),
		editProbe("reason", func(e *Event) { e.Reason = "routine." }),
		editProbe("evidence value", func(e *Event) { e.Evidence["schedule"] = "PSCHED2" }),
		editProbe("evidence key added", func(e *Event) { e.Evidence["break_glass"] = "true" }),
		editProbe("evidence key removed", func(e *Event) { delete(e.Evidence, "empty") }),
		editProbe("evidence removed", func(e *Event) { e.Evidence = nil }),
		editProbe("stored hash", func(e *Event) { e.Hash[0] ^= 0x80 }),
		editProbe("stored prev_hash", func(e *Event) { e.PrevHash[31] ^= 1 }),
		{
			name:         "edit the first row",
			mutate:       func(tb testing.TB, m *MemLog) { at(tb, m, 1).Actor.ID = "U0MALLORY" },
			wantDamage:   DamageHashMismatch,
			wantFirstBad: 1,
		},
		{
			name:         "edit the last row, which a checkpoint covers",
			mutate:       func(tb testing.TB, m *MemLog) { at(tb, m, probeEvents).Action = ActionGrantRevoked },
			wantDamage:   DamageHashMismatch,
			wantFirstBad: probeEvents,
		},
		{
			name: "edit the last row and recompute its hash",
			mutate: func(tb testing.TB, m *MemLog) {
				at(tb, m, probeEvents).Action = ActionGrantRevoked
				rehash(tb, m, probeEvents)
			},
			wantDamage:   DamageCheckpointMismatch,
			wantFirstBad: 21,
		},
		{
			name:         "edit reason to invalid UTF-8",
			mutate:       func(tb testing.TB, m *MemLog) { at(tb, m, 13).Reason = "routine\xff" },
			wantDamage:   DamageHashMismatch,
			wantFirstBad: 13,
			wantDetail:   "cannot be hashed",
		},
		{
			name:         "edit reason",
			file:         "edited-reason",
			mutate:       func(tb testing.TB, m *MemLog) { at(tb, m, 13).Reason = "nothing to see here" },
			wantDamage:   DamageHashMismatch,
			wantFirstBad: 13,
			wantDetail:   "seq 13 has stored hash",
		},

		// Edits with the row's own hash recomputed: the next row's link breaks.
		{
			name: "edit reason and recompute that row's hash",
			file: "edited-and-rehashed",
			mutate: func(tb testing.TB, m *MemLog) {
				at(tb, m, 13).Reason = "nothing to see here"
				rehash(tb, m, 13)
			},
			wantDamage:   DamageHashMismatch,
			wantFirstBad: 13,
			wantDetail:   "seq 13 was rewritten with a recomputed hash",
		},
		{
			name: "edit the row after a checkpoint and recompute its hash",
			mutate: func(tb testing.TB, m *MemLog) {
				at(tb, m, 11).Action = ActionRequestApproved
				rehash(tb, m, 11)
			},
			wantDamage:   DamageHashMismatch,
			wantFirstBad: 11,
		},
		{
			name: "change prev_hash of the row after a checkpoint and recompute its hash",
			mutate: func(tb testing.TB, m *MemLog) {
				at(tb, m, 11).PrevHash = Hash{0xde, 0xad}
				rehash(tb, m, 11)
			},
			wantDamage:   DamageHashMismatch,
			wantFirstBad: 11,
			wantDetail:   "its prev_hash was changed",
		},
		{
			name: "change prev_hash of seq 1 and recompute its hash",
			mutate: func(tb testing.TB, m *MemLog) {
				at(tb, m, 1).PrevHash = Hash{1}
				rehash(tb, m, 1)
			},
			wantDamage:   DamageHashMismatch,
			wantFirstBad: 1,
			wantDetail:   "genesis",
		},
		{
			name: "edit a checkpointed row and recompute its hash",
			mutate: func(tb testing.TB, m *MemLog) {
				at(tb, m, 15).Reason = "edited"
				rehash(tb, m, 15)
			},
			wantDamage:   DamageCheckpointMismatch,
			wantFirstBad: 11,
			wantDetail:   "history after seq 10, up to seq 15, was rewritten",
		},

		// History rewritten with every later hash recomputed: only checkpoints see it.
		{
			name: "rewrite history from seq 13 on",
			file: "rewritten-history",
			mutate: func(tb testing.TB, m *MemLog) {
				at(tb, m, 13).Actor.ID = "U0SOMEONEELSE"
				resealFrom(tb, m, 13)
			},
			wantDamage:   DamageCheckpointMismatch,
			wantFirstBad: 11,
			wantDetail:   "signed checkpoint at seq 15",
		},
		{
			name: "rewrite history after the second-last checkpoint",
			mutate: func(tb testing.TB, m *MemLog) {
				at(tb, m, 22).Reason = "edited"
				resealFrom(tb, m, 22)
			},
			wantDamage:   DamageCheckpointMismatch,
			wantFirstBad: 21,
		},
		{
			// The documented limit: nothing signed covers seq 21..24 once the last
			// checkpoint is gone, so a consistent rewrite there cannot be seen.
			name: "rewrite after the last checkpoint is invisible (documented limit)",
			mutate: func(tb testing.TB, m *MemLog) {
				dropCheckpointsAfter(m, 20)
				at(tb, m, 22).Reason = "edited"
				resealFrom(tb, m, 22)
			},
			opts: VerifyOptions{CheckpointEvery: probeEvery},
		},

		// Deleted rows.
		{
			name:         "delete a middle row",
			file:         "deleted-row",
			mutate:       func(tb testing.TB, m *MemLog) { deleteSeqs(tb, m, 13, 13) },
			wantDamage:   DamageGap,
			wantFirstBad: 13,
			wantDetail:   "seq 13 is missing",
		},
		{
			name:         "delete three middle rows",
			mutate:       func(tb testing.TB, m *MemLog) { deleteSeqs(tb, m, 12, 14) },
			wantDamage:   DamageGap,
			wantFirstBad: 12,
			wantDetail:   "seqs 12..14 are missing",
		},
		{
			name:         "delete the first row",
			mutate:       func(tb testing.TB, m *MemLog) { deleteSeqs(tb, m, 1, 1) },
			wantDamage:   DamageGap,
			wantFirstBad: 1,
		},
		{
			name:         "edit seq",
			mutate:       func(tb testing.TB, m *MemLog) { at(tb, m, 13).Seq = 99 },
			wantDamage:   DamageGap,
			wantFirstBad: 13,
		},

		// Reordered rows.
		{
			name:         "swap two adjacent rows' contents, seq column kept",
			file:         "swapped-contents",
			mutate:       func(tb testing.TB, m *MemLog) { swapContents(tb, m, 13, 14) },
			wantDamage:   DamageReorder,
			wantFirstBad: 13,
			wantDetail:   "seq 13 holds the event that was chained at seq 14",
		},
		{
			name:         "swap two distant rows' contents, seq column kept",
			mutate:       func(tb testing.TB, m *MemLog) { swapContents(tb, m, 13, 19) },
			wantDamage:   DamageReorder,
			wantFirstBad: 13,
			wantDetail:   "chained at seq 19",
		},
		{
			name: "delete a row and renumber the rest",
			mutate: func(tb testing.TB, m *MemLog) {
				deleteSeqs(tb, m, 13, 13)
				for i := 12; i < len(m.Events); i++ {
					m.Events[i].Seq--
				}
			},
			wantDamage:   DamageReorder,
			wantFirstBad: 13,
			wantDetail:   "chained at seq 14",
		},
		{
			name: "rows stored out of order",
			file: "moved-rows",
			mutate: func(tb testing.TB, m *MemLog) {
				m.Events[12], m.Events[13] = m.Events[13], m.Events[12]
			},
			wantDamage:   DamageReorder,
			wantFirstBad: 13,
			wantDetail:   "seq 13 is stored after seq 14",
			// With one-row pages seq 14 is read first and seq 13 is never asked for again.
			page1: string(DamageGap),
		},
		{
			name:         "duplicated row",
			mutate:       func(tb testing.TB, m *MemLog) { m.Events = slices.Insert(m.Events, 13, m.Events[12]) },
			wantDamage:   DamageReorder,
			wantFirstBad: 13,
			wantDetail:   "duplicated",
			// A duplicate at a page boundary is skipped by the after-seq cursor. Stores make
			// seq the primary key, so only a hand-made file can hold one.
			page1: "ok",
		},

		// Removed tail.
		{
			name:         "truncate the tail",
			file:         "truncated-tail",
			mutate:       func(tb testing.TB, m *MemLog) { deleteSeqs(tb, m, 22, probeEvents) },
			wantDamage:   DamageTruncated,
			wantFirstBad: 22,
			wantDetail:   "seqs 22..24 were removed",
		},
		{
			name:         "truncate the last row",
			mutate:       func(tb testing.TB, m *MemLog) { deleteSeqs(tb, m, probeEvents, probeEvents) },
			wantDamage:   DamageTruncated,
			wantFirstBad: probeEvents,
		},
		{
			name:         "delete every event",
			mutate:       func(tb testing.TB, m *MemLog) { m.Events = nil },
			wantDamage:   DamageTruncated,
			wantFirstBad: 1,
		},
		{
			name: "truncate the tail and its checkpoint too",
			mutate: func(tb testing.TB, m *MemLog) {
				deleteSeqs(tb, m, 22, probeEvents)
				dropCheckpointsAfter(m, 20)
			},
			// 21 is after the last checkpoint (20), so this is only visible through freshness.
			opts:         VerifyOptions{MaxCheckpointAge: time.Hour, Now: lastCpTime.Add(2 * time.Hour)},
			wantDamage:   DamageMissingCheckpoint,
			wantFirstBad: 21,
		},

		// Checkpoints.
		{
			name:         "forged checkpoint signature",
			file:         "forged-checkpoint",
			mutate:       func(tb testing.TB, m *MemLog) { cp(tb, m, 15).Signature[10] ^= 4 },
			wantDamage:   DamageBadCheckpointSignature,
			wantFirstBad: 15,
			wantDetail:   "signature does not match",
		},
		{
			name: "checkpoint signed by another key",
			mutate: func(tb testing.TB, m *MemLog) {
				c := cp(tb, m, 15)
				*c = SignCheckpoint(otherKey(), c.Seq, c.Hash, c.Time)
			},
			wantDamage:   DamageBadCheckpointSignature,
			wantFirstBad: 15,
			wantDetail:   "signed by key id",
		},
		{
			name:         "checkpoint hash altered",
			mutate:       func(tb testing.TB, m *MemLog) { cp(tb, m, 15).Hash[0] ^= 1 },
			wantDamage:   DamageBadCheckpointSignature,
			wantFirstBad: 15,
		},
		{
			name: "forged checkpoint beyond the end",
			mutate: func(tb testing.TB, m *MemLog) {
				c := SignCheckpoint(otherKey(), 30, Hash{3}, lastCpTime)
				c.KeyID = KeyID(PublicKeyOf(key))
				m.Checkpoints = append(m.Checkpoints, c)
			},
			wantDamage:   DamageBadCheckpointSignature,
			wantFirstBad: 30,
		},
		{
			name: "valid checkpoint beyond the end",
			mutate: func(tb testing.TB, m *MemLog) {
				m.Checkpoints = append(m.Checkpoints, SignCheckpoint(key, 30, Hash{3}, lastCpTime))
			},
			wantDamage:   DamageTruncated,
			wantFirstBad: probeEvents + 1,
		},
		{
			name: "validly signed checkpoint of another log",
			mutate: func(tb testing.TB, m *MemLog) {
				c := cp(tb, m, 15)
				*c = SignCheckpoint(key, 15, Hash{0x15}, c.Time)
			},
			wantDamage:   DamageCheckpointMismatch,
			wantFirstBad: 11,
		},
		{
			name: "validly signed checkpoint at seq 0 that is not genesis",
			mutate: func(tb testing.TB, m *MemLog) {
				c := cp(tb, m, 0)
				*c = SignCheckpoint(key, 0, Hash{1}, c.Time)
			},
			wantDamage:   DamageCheckpointMismatch,
			wantFirstBad: 0,
		},
		{
			name: "quiet-period checkpoints repeat the last seq",
			mutate: func(tb testing.TB, m *MemLog) {
				last := m.Events[len(m.Events)-1]
				for i := 1; i <= 3; i++ {
					m.Checkpoints = append(m.Checkpoints, SignCheckpoint(key, last.Seq, last.Hash, lastCpTime.Add(time.Duration(i)*time.Hour)))
				}
			},
			opts: VerifyOptions{MaxCheckpointAge: 2 * time.Hour, Now: lastCpTime.Add(4 * time.Hour)},
		},

		// Missing checkpoints.
		{
			name:         "no checkpoint when one is required",
			file:         "missing-checkpoint",
			mutate:       func(tb testing.TB, m *MemLog) { m.Checkpoints = nil },
			opts:         VerifyOptions{RequireCheckpoint: true},
			wantDamage:   DamageMissingCheckpoint,
			wantFirstBad: 1,
		},
		{
			name:   "no checkpoint, none required",
			mutate: func(tb testing.TB, m *MemLog) { m.Checkpoints = nil },
		},
		{
			name:         "checkpoints stopped: more than 2*checkpoint_every uncovered",
			mutate:       func(tb testing.TB, m *MemLog) { dropCheckpointsAfter(m, 10) },
			opts:         VerifyOptions{CheckpointEvery: probeEvery},
			wantDamage:   DamageMissingCheckpoint,
			wantFirstBad: 11,
			wantDetail:   "14 events after the last checkpoint (seq 10)",
		},
		{
			name: "exactly 2*checkpoint_every uncovered is tolerated",
			mutate: func(tb testing.TB, m *MemLog) {
				dropCheckpointsAfter(m, 10)
				deleteSeqs(tb, m, 21, probeEvents)
			},
			opts: VerifyOptions{CheckpointEvery: probeEvery},
		},
		{
			name: "2*checkpoint_every+1 uncovered",
			mutate: func(tb testing.TB, m *MemLog) {
				dropCheckpointsAfter(m, 10)
				deleteSeqs(tb, m, 22, probeEvents)
			},
			opts:         VerifyOptions{CheckpointEvery: probeEvery},
			wantDamage:   DamageMissingCheckpoint,
			wantFirstBad: 11,
		},
		{
			name:         "newest checkpoint too old",
			opts:         VerifyOptions{MaxCheckpointAge: time.Hour, Now: lastCpTime.Add(time.Hour + time.Millisecond)},
			wantDamage:   DamageMissingCheckpoint,
			wantFirstBad: probeEvents + 1,
		},
		{
			name: "newest checkpoint exactly at the age limit",
			opts: VerifyOptions{MaxCheckpointAge: time.Hour, Now: lastCpTime.Add(time.Hour)},
		},
		{
			name:         "no checkpoint with a max age",
			mutate:       func(tb testing.TB, m *MemLog) { m.Checkpoints = nil },
			opts:         VerifyOptions{MaxCheckpointAge: time.Hour, Now: lastCpTime},
			wantDamage:   DamageMissingCheckpoint,
			wantFirstBad: 1,
		},

		// First damage in seq order wins.
		{
			name: "row damage before a forged checkpoint wins",
			mutate: func(tb testing.TB, m *MemLog) {
				cp(tb, m, 20).Signature[0] ^= 1
				at(tb, m, 7).Reason = "x"
			},
			wantDamage:   DamageHashMismatch,
			wantFirstBad: 7,
		},
		{
			name: "forged checkpoint before row damage wins",
			mutate: func(tb testing.TB, m *MemLog) {
				cp(tb, m, 5).Signature[0] ^= 1
				at(tb, m, 7).Reason = "x"
			},
			wantDamage:   DamageBadCheckpointSignature,
			wantFirstBad: 5,
		},
		{
			name: "gap before truncation wins",
			mutate: func(tb testing.TB, m *MemLog) {
				deleteSeqs(tb, m, 22, probeEvents)
				deleteSeqs(tb, m, 3, 3)
			},
			wantDamage:   DamageGap,
			wantFirstBad: 3,
		},
	}
}

func newProbeLog(tb testing.TB) *MemLog {
	tb.Helper()
	return buildLog(tb, probeEvents, probeEvery)
}

// TestVerifyProbes applies each mutation to the intact log and checks the verdict, with the
// default page size and with pages that split the log.
func TestVerifyProbes(t *testing.T) {
	t.Parallel()
	base := newProbeLog(t)
	pub := PublicKeyOf(testKey())
	for _, p := range probes() {
		for _, pageSize := range []int{0, 4, 1} {
			t.Run(fmt.Sprintf("%s/page=%d", p.name, pageSize), func(t *testing.T) {
				t.Parallel()
				m := cloneLog(base)
				if p.mutate != nil {
					p.mutate(t, m)
				}
				opts := p.opts
				opts.PageSize = pageSize
				wantDamage, wantDetail := p.wantDamage, p.wantDetail
				if pageSize == 1 && p.page1 != "" {
					wantDamage, wantDetail = Damage(strings.TrimPrefix(p.page1, "ok")), ""
				}
				res, err := Verify(t.Context(), m, pub, opts)
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				checkResult(t, res, wantDamage, p.wantFirstBad, wantDetail)
			})
		}
	}
}

func checkResult(t *testing.T, res Result, wantDamage Damage, wantFirstBad int64, wantDetail string) {
	t.Helper()
	if wantDamage == "" {
		if !res.OK || res.Damage != "" || res.FirstBad != 0 {
			t.Fatalf("Verify found damage in an intact log: %s", res)
		}
		return
	}
	if res.OK {
		t.Fatalf("Verify = OK (%s), want %s at seq %d", res, wantDamage, wantFirstBad)
	}
	if res.Damage != wantDamage || res.FirstBad != wantFirstBad {
		t.Fatalf("Verify = %s at seq %d, want %s at seq %d\n%s", res.Damage, res.FirstBad, wantDamage, wantFirstBad, res)
	}
	if !strings.Contains(res.Detail, wantDetail) {
		t.Errorf("Detail %q does not mention %q", res.Detail, wantDetail)
	}
	if s := res.String(); !strings.Contains(s, string(wantDamage)) || !strings.Contains(s, fmt.Sprintf("at seq %d", wantFirstBad)) {
		t.Errorf("String() = %q, want it to name %s at seq %d", s, wantDamage, wantFirstBad)
	}
}

func TestVerifyIntactResult(t *testing.T) {
	t.Parallel()
	m := newProbeLog(t)
	res, err := Verify(t.Context(), m, PublicKeyOf(testKey()), VerifyOptions{RequireCheckpoint: true})
	if err != nil {
		t.Fatal(err)
	}
	last := m.Events[len(m.Events)-1]
	want := Result{
		OK:             true,
		Events:         probeEvents,
		LastSeq:        probeEvents,
		Head:           last.Hash,
		Checkpoints:    len(m.Checkpoints),
		LastCheckpoint: m.Checkpoints[len(m.Checkpoints)-1],
	}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("Result (-want +got):\n%s", diff)
	}
	wantString := fmt.Sprintf("audit log intact: 24 events up to seq 24, head %s, 6 checkpoints verified (last at seq 24, %s)", last.Hash, FormatTime(last.Time.Add(time.Second)))
	if res.String() != wantString {
		t.Errorf("String() =\n%s\nwant\n%s", res, wantString)
	}
}

func TestVerifyEmptyLog(t *testing.T) {
	t.Parallel()
	key := testKey()
	pub := PublicKeyOf(key)
	quiet := SignCheckpoint(key, 0, Genesis, baseTime)
	tests := []struct {
		name         string
		log          MemLog
		opts         VerifyOptions
		wantDamage   Damage
		wantFirstBad int64
		wantCps      int
	}{
		{name: "nothing at all"},
		{name: "quiet-period checkpoint at seq 0", log: MemLog{Checkpoints: []Checkpoint{quiet, SignCheckpoint(key, 0, Genesis, baseTime.Add(time.Hour))}},
			opts: VerifyOptions{RequireCheckpoint: true, MaxCheckpointAge: time.Hour, Now: baseTime.Add(90 * time.Minute)}, wantCps: 2},
		{name: "checkpoint required, none", opts: VerifyOptions{RequireCheckpoint: true}, wantDamage: DamageMissingCheckpoint, wantFirstBad: 1},
		{name: "checkpoint at seq 3 of an empty log", log: MemLog{Checkpoints: []Checkpoint{quiet, SignCheckpoint(key, 3, Hash{3}, baseTime)}},
			wantDamage: DamageTruncated, wantFirstBad: 1, wantCps: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, err := Verify(t.Context(), &tc.log, pub, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, res, tc.wantDamage, tc.wantFirstBad, "")
			if res.Events != 0 || res.LastSeq != 0 || res.Head != Genesis || res.Checkpoints != tc.wantCps {
				t.Errorf("Result = %+v, want no events, genesis head and %d checkpoints", res, tc.wantCps)
			}
		})
	}
}

// failingReader returns an error after a number of pages.
type failingReader struct {
	MemLog
	pagesBeforeError int
	cpErr            error
}

var errStore = errors.New("store unavailable")

func (f *failingReader) ReadEvents(ctx context.Context, after int64, limit int) ([]Event, error) {
	if f.pagesBeforeError == 0 {
		return nil, errStore
	}
	f.pagesBeforeError--
	return f.MemLog.ReadEvents(ctx, after, limit)
}

func (f *failingReader) ReadCheckpoints(ctx context.Context) ([]Checkpoint, error) {
	if f.cpErr != nil {
		return nil, f.cpErr
	}
	return f.MemLog.ReadCheckpoints(ctx)
}

// ignoresAfter is a broken Reader that always returns the first page.
type ignoresAfter struct{ MemLog }

func (r *ignoresAfter) ReadEvents(ctx context.Context, _ int64, limit int) ([]Event, error) {
	return r.MemLog.ReadEvents(ctx, 0, limit)
}

func TestVerifyErrors(t *testing.T) {
	t.Parallel()
	m := newProbeLog(t)
	pub := PublicKeyOf(testKey())
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		r       Reader
		pub     []byte
		opts    VerifyOptions
		wantIs  error
		wantErr string
	}{
		{name: "short public key", r: m, pub: pub[:16], wantErr: "public key has 16 bytes"},
		{name: "no public key", r: m, wantErr: "public key has 0 bytes"},
		{name: "negative page size", r: m, pub: pub, opts: VerifyOptions{PageSize: -1}, wantErr: "page size -1"},
		{name: "negative checkpoint_every", r: m, pub: pub, opts: VerifyOptions{CheckpointEvery: -1}, wantErr: "checkpoint_every -1"},
		{name: "negative max age", r: m, pub: pub, opts: VerifyOptions{MaxCheckpointAge: -time.Second}, wantErr: "negative"},
		{name: "max age without now", r: m, pub: pub, opts: VerifyOptions{MaxCheckpointAge: time.Hour}, wantErr: "Now is zero"},
		{name: "checkpoint read fails", r: &failingReader{MemLog: *m, cpErr: errStore}, pub: pub, wantIs: errStore, wantErr: "read checkpoints"},
		{name: "event read fails on the second page", r: &failingReader{MemLog: *m, pagesBeforeError: 1}, pub: pub, opts: VerifyOptions{PageSize: 10}, wantIs: errStore, wantErr: "after seq 10"},
		{name: "reader ignores after", r: &ignoresAfter{*m}, pub: pub, opts: VerifyOptions{PageSize: 10}, wantErr: "breaks its contract"},
		{name: "context canceled", ctx: canceled, r: m, pub: pub, wantIs: context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := tc.ctx
			if ctx == nil {
				ctx = t.Context()
			}
			res, err := Verify(ctx, tc.r, tc.pub, tc.opts)
			if err == nil {
				t.Fatalf("Verify = %s, want an error", res)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v is not %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
			if res.OK {
				t.Error("Result.OK is true alongside an error")
			}
		})
	}
}

// TestVerifyFindsMovedContentWithinWindow pins the bound on the search for moved content.
func TestVerifyFindsMovedContentWithinWindow(t *testing.T) {
	t.Parallel()
	const n = movedSearchWindow + 20
	base := buildLog(t, n, 0)
	pub := PublicKeyOf(testKey())
	tests := []struct {
		name string
		b    int64
		want Damage
	}{
		{"moved exactly the window", 10 + movedSearchWindow, DamageReorder},
		{"moved beyond the window", 11 + movedSearchWindow, DamageHashMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := &MemLog{Events: slices.Clone(base.Events)}
			swapContents(t, m, 10, tc.b)
			res, err := Verify(t.Context(), m, pub, VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Damage != tc.want || res.FirstBad != 10 {
				t.Errorf("Verify = %s", res)
			}
		})
	}
}

// TestVerifyTamperFiles verifies the committed tampered logs in testdata/tamper, which are
// also meant for end-to-end tests of `accessbroker audit verify` on exported files. With
// -update they are regenerated from the probes marked with a file name.
func TestVerifyTamperFiles(t *testing.T) {
	dir := filepath.Join("testdata", "tamper")
	type manifestCase struct {
		Name     string `json:"name"`
		Probe    string `json:"probe"`
		Events   string `json:"events"`
		Cps      string `json:"checkpoints"`
		Require  bool   `json:"require_checkpoint,omitempty"`
		Damage   Damage `json:"damage"`
		FirstBad int64  `json:"first_bad"`
	}
	type manifest struct {
		Description string         `json:"description"`
		PublicKey   string         `json:"public_key"`
		Cases       []manifestCase `json:"cases"`
	}
	if *update {
		pubPEM, err := MarshalPublicKey(PublicKeyOf(testKey()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "public_key.pem"), pubPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		man := manifest{
			Description: "Tampered copies of one 24-event audit log (JSON Lines, as WriteJSONL exports it) with its checkpoints, signed by the key in public_key.pem. damage and first_bad are what Verify must report. Regenerate with go test ./audit -run TestVerifyTamperFiles -update.",
			PublicKey:   "public_key.pem",
		}
		base := newProbeLog(t)
		for _, p := range probes() {
			if p.file == "" {
				continue
			}
			if p.opts.CheckpointEvery != 0 || p.opts.MaxCheckpointAge != 0 {
				t.Fatalf("probe %q: only require_checkpoint is carried into files", p.name)
			}
			m := cloneLog(base)
			if p.mutate != nil {
				p.mutate(t, m)
			}
			f, err := os.Create(filepath.Join(dir, p.file+".jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			if err := WriteJSONL(f, m.Events); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			cps := m.Checkpoints
			if cps == nil {
				cps = []Checkpoint{}
			}
			writeJSONFile(t, filepath.Join(dir, p.file+".checkpoints.json"), cps)
			man.Cases = append(man.Cases, manifestCase{
				Name: p.file, Probe: p.name, Events: p.file + ".jsonl", Cps: p.file + ".checkpoints.json",
				Require: p.opts.RequireCheckpoint, Damage: p.wantDamage, FirstBad: p.wantFirstBad,
			})
		}
		writeJSONFile(t, filepath.Join(dir, "manifest.json"), man)
		t.Logf("rewrote %s", dir)
	}

	var man manifest
	readJSONFile(t, filepath.Join(dir, "manifest.json"), &man)
	pubPEM, err := os.ReadFile(filepath.Join(dir, man.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	if len(man.Cases) < 9 {
		t.Fatalf("manifest has %d cases, want one per kind of tamper", len(man.Cases))
	}
	for _, c := range man.Cases {
		t.Run(c.Name, func(t *testing.T) {
			f, err := os.Open(filepath.Join(dir, c.Events))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			events, err := ReadJSONL(f)
			if err != nil {
				t.Fatal(err)
			}
			var cps []Checkpoint
			readJSONFile(t, filepath.Join(dir, c.Cps), &cps)
			res, err := Verify(t.Context(), &MemLog{Events: events, Checkpoints: cps}, pub, VerifyOptions{RequireCheckpoint: c.Require})
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, res, c.Damage, c.FirstBad, "")
		})
	}
}

// countingReader counts ReadEvents calls and how many run at once.
type countingReader struct {
	MemLog
	mu             sync.Mutex
	calls, running int
	maxRunning     int
}

func (c *countingReader) ReadEvents(ctx context.Context, after int64, limit int) ([]Event, error) {
	c.mu.Lock()
	c.calls++
	c.running++
	c.maxRunning = max(c.maxRunning, c.running)
	c.mu.Unlock()
	defer func() { c.mu.Lock(); c.running--; c.mu.Unlock() }()
	return c.MemLog.ReadEvents(ctx, after, limit)
}

// TestVerifyReadsOnePageAhead: Verify reads the next page while it checks one, never more
// than one call at a time and at most one page beyond the damage, and every read has ended
// when it returns.
func TestVerifyReadsOnePageAhead(t *testing.T) {
	t.Parallel()
	pub := PublicKeyOf(testKey())
	m := newProbeLog(t)
	at(t, m, 3).Reason = "edited"
	r := &countingReader{MemLog: *m}
	res, err := Verify(t.Context(), r, pub, VerifyOptions{PageSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res, DamageHashMismatch, 3, "")
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running != 0 || r.maxRunning != 1 || r.calls > 2 {
		t.Errorf("reads: %d calls, %d at most at once, %d still running after Verify returned; want ≤ 2, 1, 0", r.calls, r.maxRunning, r.running)
	}
}
