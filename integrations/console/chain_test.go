package console_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/integrations/console"
)

// chainLog is a sealed in-memory log of n events with a checkpoint signed by key at seq cp
// (0: none).
func chainLog(t *testing.T, n int, key ed25519.PrivateKey, cp int64) *audit.MemLog {
	t.Helper()
	m := &audit.MemLog{}
	prev := audit.Genesis
	for i := 1; i <= n; i++ {
		e := audit.Event{Seq: int64(i), ID: fmt.Sprintf("e_%016d", i), Time: start.Add(time.Duration(i) * time.Second),
			Actor: audit.Actor{Kind: audit.ActorUser, ID: alice}, Action: audit.ActionRequestCreated, RequestID: "r_0000000000000001", Reason: "r"}
		if err := audit.Seal(prev, &e); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
		m.Events = append(m.Events, e)
		if int64(i) == cp {
			m.Checkpoints = append(m.Checkpoints, audit.SignCheckpoint(key, e.Seq, e.Hash, e.Time))
		}
	}
	return m
}

func appendSealed(t *testing.T, m *audit.MemLog) audit.Event {
	t.Helper()
	last := m.Events[len(m.Events)-1]
	e := audit.Event{Seq: last.Seq + 1, ID: fmt.Sprintf("e_%016d", last.Seq+1), Time: last.Time.Add(time.Second),
		Actor: audit.Actor{Kind: audit.ActorSystem, ID: "accessbroker"}, Action: audit.ActionGrantIssued, GrantID: "g_0000000000000001"}
	if err := audit.Seal(last.Hash, &e); err != nil {
		t.Fatal(err)
	}
	m.Events = append(m.Events, e)
	return e
}

// TestChainMarks: the marks say verified up to the last checked seq (signed where a verified
// checkpoint covers the event), pending for what was appended since, and broken from the
// first damage on, for each kind of damage the watcher checks.
func TestChainMarks(t *testing.T) {
	key, err := audit.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := audit.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	clock := clocktest.New(start)

	t.Run("clean, then appended", func(t *testing.T) {
		m := chainLog(t, 10, key, 6)
		w := console.NewChainWatch(m, clock, pub)
		if got := w.State().MarkFor(m.Events[0]).State; got != "unknown" {
			t.Fatalf("before the first pass: %s", got)
		}
		if err := w.Step(t.Context()); err != nil {
			t.Fatal(err)
		}
		st := w.State()
		if st.VerifiedSeq != 10 || st.Damage != "" || st.Checkpoints != 1 || st.Checkpoint.Seq != 6 {
			t.Fatalf("state %+v; want verified to 10 with the checkpoint at 6", st)
		}
		if mk := st.MarkFor(m.Events[5]); mk.State != "verified" || !mk.Signed {
			t.Errorf("seq 6: %+v; want verified and signed", mk)
		}
		if mk := st.MarkFor(m.Events[8]); mk.State != "verified" || mk.Signed {
			t.Errorf("seq 9: %+v; want verified, not covered by a checkpoint", mk)
		}
		e := appendSealed(t, m)
		if mk := w.State().MarkFor(e); mk.State != "pending" {
			t.Errorf("appended event before the next pass: %+v; want pending", mk)
		}
		// A later checkpoint over the same head (a quiet period) is verified too.
		m.Checkpoints = append(m.Checkpoints, audit.SignCheckpoint(key, e.Seq, e.Hash, e.Time))
		if err := w.Step(t.Context()); err != nil {
			t.Fatal(err)
		}
		if mk := w.State().MarkFor(e); mk.State != "verified" || !mk.Signed {
			t.Errorf("appended event after the pass: %+v; want verified and signed", mk)
		}
		// An event shown with content that differs from what was chained is broken, even
		// below the verified seq.
		edited := m.Events[2]
		edited.Reason = "rewritten"
		if mk := w.State().MarkFor(edited); mk.State != "broken" {
			t.Errorf("an edited event: %+v; want broken", mk)
		}
	})

	damage := []struct {
		name     string
		edit     func(m *audit.MemLog)
		firstBad int64
	}{
		{"edited row", func(m *audit.MemLog) { m.Events[4].Reason = "rewritten" }, 5},
		{"rehashed row breaks the next link", func(m *audit.MemLog) {
			m.Events[4].Reason = "rewritten"
			_ = audit.Seal(m.Events[3].Hash, &m.Events[4])
		}, 6},
		{"deleted row", func(m *audit.MemLog) { m.Events = append(m.Events[:4], m.Events[5:]...) }, 5},
		{"forged checkpoint", func(m *audit.MemLog) { m.Checkpoints[0].Signature[0] ^= 1 }, 6},
		{"checkpoint over another history", func(m *audit.MemLog) {
			m.Checkpoints[0] = audit.SignCheckpoint(key, 6, m.Events[1].Hash, m.Events[5].Time)
		}, 6},
		{"truncated tail", func(m *audit.MemLog) { m.Events = m.Events[:4] }, 5},
	}
	for _, d := range damage {
		t.Run(d.name, func(t *testing.T) {
			m := chainLog(t, 10, key, 6)
			d.edit(m)
			w := console.NewChainWatch(m, clock, pub)
			if err := w.Step(t.Context()); err != nil {
				t.Fatal(err)
			}
			st := w.State()
			if st.Damage == "" || st.FirstBad != d.firstBad {
				t.Fatalf("state %+v; want damage at seq %d", st, d.firstBad)
			}
			for _, e := range m.Events {
				if e.Seq >= d.firstBad {
					if mk := st.MarkFor(e); mk.State != "broken" {
						t.Errorf("seq %d after the damage: %+v; want broken", e.Seq, mk)
					}
				}
			}
		})
	}

	t.Run("checkpoint of a retired key", func(t *testing.T) {
		m := chainLog(t, 10, other, 6)
		w := console.NewChainWatch(m, clock, pub)
		if err := w.Step(t.Context()); err != nil {
			t.Fatal(err)
		}
		if st := w.State(); st.Damage != "" || st.Checkpoints != 0 || st.VerifiedSeq != 10 {
			t.Fatalf("state %+v; want verified, the unknown key's checkpoint neither damage nor proof", st)
		}
		w = console.NewChainWatch(m, clock, pub, other.Public().(ed25519.PublicKey))
		if err := w.Step(t.Context()); err != nil {
			t.Fatal(err)
		}
		if st := w.State(); st.Checkpoints != 1 {
			t.Fatalf("with the retired key given: %+v; want the checkpoint verified", st)
		}
	})
}
