package console

import (
	"testing"

	"github.com/accessbroker/accessbroker/audit"
)

// TestMarkerMatchesMarkAt: the page marker's shared marks are MarkAt's, for every kind of
// state (unknown, clean, signed, damaged before or after what was verified) and seq.
func TestMarkerMatchesMarkAt(t *testing.T) {
	cp := audit.Checkpoint{Seq: 40}
	states := map[string]ChainState{
		"unknown":                {},
		"verified, unsigned":     {Known: true, VerifiedSeq: 50},
		"verified, signed":       {Known: true, VerifiedSeq: 50, Checkpoint: cp, Checkpoints: 2},
		"damage after":           {Known: true, VerifiedSeq: 50, Checkpoint: cp, Checkpoints: 1, Damage: "x", FirstBad: 51},
		"damage at a checkpoint": {Known: true, VerifiedSeq: 50, Checkpoint: audit.Checkpoint{Seq: 30}, Checkpoints: 1, Damage: "x", FirstBad: 45},
		"nothing verified":       {Known: true},
	}
	for name, cs := range states {
		t.Run(name, func(t *testing.T) {
			m := newMarker(cs)
			for seq := int64(1); seq <= 60; seq++ {
				for _, ok := range []bool{true, false} {
					if got, want := m.at(seq, ok), cs.MarkAt(seq, ok); got != want {
						t.Fatalf("seq %d hashOK %v: marker %+v, MarkAt %+v", seq, ok, got, want)
					}
				}
			}
		})
	}
}
