package audit

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"
)

// TestVerifyAcrossKeyRotation: checkpoints signed before a key rotation verify only when the
// retired public key is supplied.
func TestVerifyAcrossKeyRotation(t *testing.T) {
	_, oldKey, _ := ed25519.GenerateKey(nil)
	_, newKey, _ := ed25519.GenerateKey(nil)
	log := &MemLog{}
	prev := Genesis
	start := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	for i := int64(1); i <= 4; i++ {
		e := Event{Seq: i, ID: fmt.Sprintf("e%d", i), Time: start.Add(time.Duration(i) * time.Minute), Actor: Actor{Kind: ActorSystem, ID: "t"}, Action: ActionGrantIssued}
		if err := Seal(prev, &e); err != nil {
			t.Fatal(err)
		}
		log.Events = append(log.Events, e)
		prev = e.Hash
		if i == 2 {
			log.Checkpoints = append(log.Checkpoints, SignCheckpoint(oldKey, 2, e.Hash, e.Time))
		}
	}
	log.Checkpoints = append(log.Checkpoints, SignCheckpoint(newKey, 4, prev, start.Add(time.Hour)))
	newPub := newKey.Public().(ed25519.PublicKey)
	res, err := Verify(context.Background(), log, newPub, VerifyOptions{})
	if err != nil || res.OK || res.Damage != DamageBadCheckpointSignature {
		t.Fatalf("without the retired key: %v %s; want bad_checkpoint_signature", err, res)
	}
	res, err = Verify(context.Background(), log, newPub, VerifyOptions{RetiredKeys: []ed25519.PublicKey{oldKey.Public().(ed25519.PublicKey)}})
	if err != nil || !res.OK || res.Checkpoints != 2 {
		t.Fatalf("with the retired key: %v %s", err, res)
	}
}
