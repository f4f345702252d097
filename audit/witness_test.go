package audit

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// witnessed wraps checkpoints as if witness "file w.jsonl" had returned them, in order.
func witnessed(cps ...Checkpoint) []WitnessedCheckpoint {
	out := make([]WitnessedCheckpoint, len(cps))
	for i, c := range cps {
		out[i] = WitnessedCheckpoint{Witness: "file w.jsonl", Entry: i + 1, Checkpoint: c}
	}
	return out
}

// TestVerifyWitnessed covers what only a witness outside the database can see: the newest
// checkpoint deleted together with the events after the previous one leaves a database
// that verifies on its own.
func TestVerifyWitnessed(t *testing.T) {
	full := buildLog(t, 30, 10) // checkpoints at 0, 10, 20, 30
	published := slices.Clone(full.Checkpoints)

	// truncated: the newest checkpoint and every event after the previous one are gone.
	truncated := cloneLog(full)
	truncated.Events = truncated.Events[:20]
	truncated.Checkpoints = truncated.Checkpoints[:3]

	// rewritten: history from seq 12 on rewritten, every hash recomputed, and the database's
	// checkpoints after 10 re-signed... which the attacker cannot do; so they are deleted
	// and the log ends at 20.
	rewritten := cloneLog(full)
	at(t, rewritten, 12).Reason = "nothing to see"
	resealFrom(t, rewritten, 12)
	rewritten.Events = rewritten.Events[:20]
	rewritten.Checkpoints = rewritten.Checkpoints[:2]

	// dropped: every event is there but the checkpoint at seq 20 was deleted.
	dropped := cloneLog(full)
	dropped.Checkpoints = slices.Delete(dropped.Checkpoints, 2, 3)

	forged := published[3]
	forged.Signature = slices.Clone(forged.Signature)
	forged.Signature[0] ^= 1
	otherSigned := SignCheckpoint(otherKey(), 30, full.Events[29].Hash, full.Events[29].Time.Add(time.Second))

	tests := []struct {
		name      string
		log       *MemLog
		witness   []WitnessedCheckpoint
		damage    Damage // "" = intact
		firstBad  int64
		detail    []string
		witnessed int
	}{
		{name: "all published checkpoints match", log: full, witness: witnessed(published...), witnessed: 4},
		{name: "witness holds a prefix", log: full, witness: witnessed(published[:2]...), witnessed: 2},
		{name: "empty witness", log: full, witness: nil},
		{name: "duplicated entries match", log: full, witness: witnessed(published[3], published[3]), witnessed: 2},
		{name: "truncated after checkpoint", log: truncated, witness: witnessed(published...), damage: DamageBehindWitness, firstBad: 21,
			detail: []string{"log is behind published checkpoint 30", "file w.jsonl entry 4", "ends at seq 20", "events 21..30"}},
		{name: "rewritten and checkpoints deleted", log: rewritten, witness: witnessed(published...), damage: DamageBehindWitness, firstBad: 11,
			detail: []string{"log is behind published checkpoint 20", "entry 3", "was rewritten"}},
		{name: "checkpoint deleted, events kept", log: dropped, witness: witnessed(published...), damage: DamageBehindWitness, firstBad: 20,
			detail: []string{"log is behind published checkpoint 20", "missing from the database"}},
		{name: "altered witness entry", log: full, witness: witnessed(published[0], forged), damage: DamageBadWitnessSignature, firstBad: 30,
			detail: []string{"file w.jsonl entry 2", "does not verify", "altered or forged"}},
		{name: "witness entry by another key", log: full, witness: witnessed(otherSigned), damage: DamageBadWitnessSignature, firstBad: 30,
			detail: []string{"entry 1", "key id"}},
		{name: "forged entry beyond the end", log: truncated, witness: witnessed(forged), damage: DamageBadWitnessSignature, firstBad: 30,
			detail: []string{"entry 1", "does not verify"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alone, err := Verify(context.Background(), tt.log, PublicKeyOf(testKey()), VerifyOptions{RequireCheckpoint: true})
			if err != nil {
				t.Fatal(err)
			}
			if !alone.OK {
				t.Fatalf("without the witness the tampered log should look intact (that is the attack): %s", alone)
			}
			res, err := Verify(context.Background(), tt.log, PublicKeyOf(testKey()), VerifyOptions{RequireCheckpoint: true, Witnessed: tt.witness})
			if err != nil {
				t.Fatal(err)
			}
			if tt.damage == "" {
				if !res.OK || res.Witnessed != tt.witnessed {
					t.Fatalf("got %s (witnessed %d), want intact with %d witnessed", res, res.Witnessed, tt.witnessed)
				}
				return
			}
			if res.OK || res.Damage != tt.damage || res.FirstBad != tt.firstBad {
				t.Fatalf("got %s, want %s at seq %d", res, tt.damage, tt.firstBad)
			}
			for _, d := range tt.detail {
				if !strings.Contains(res.Detail, d) {
					t.Errorf("detail %q lacks %q", res.Detail, d)
				}
			}
		})
	}
}
