package audit

import (
	"crypto/ed25519"
	"crypto/sha256"
	"flag"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"
)

// update regenerates the files in testdata from the current implementation.
var update = flag.Bool("update", false, "rewrite testdata golden files")

// testSeed derives the test signing key. It protects nothing: it exists so that signatures in
// testdata are reproducible.
var testSeed = sha256.Sum256([]byte("accessbroker audit test key (not a secret)"))

func testKey() ed25519.PrivateKey { return ed25519.NewKeyFromSeed(testSeed[:]) }

// otherKey is a second key, for checkpoints made by the wrong signer.
func otherKey() ed25519.PrivateKey {
	s := sha256.Sum256([]byte("some other key"))
	return ed25519.NewKeyFromSeed(s[:])
}

var baseTime = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

var testActions = []Action{
	ActionRequestCreated, ActionOnCallChecked, ActionRequestApproved, ActionGrantIssuing,
	ActionGrantIssued, ActionGrantRevokeQueued, ActionGrantRevoked, ActionWebhookRejected,
}

// makeEvent returns a deterministic event for seq, varied enough to exercise every field,
// escaping and unicode.
func makeEvent(seq int64) Event {
	e := Event{
		Seq:    seq,
		ID:     fmt.Sprintf("ev_%08d", seq),
		Time:   baseTime.Add(time.Duration(seq)*37*time.Second + time.Duration(seq*7%1000)*time.Millisecond),
		Action: testActions[seq%int64(len(testActions))],
		Actor:  Actor{Kind: ActorUser, ID: fmt.Sprintf("U%04d", seq%13)},
	}
	switch seq % 4 {
	case 1:
		e.Actor.Email = fmt.Sprintf("user%d@example.com", seq%13)
	case 2:
		e.Actor = Actor{Kind: ActorSystem, ID: "revoker"}
	case 3:
		e.Actor = Actor{Kind: ActorPagerDuty, ID: "PUSER01", Email: "oncall@example.com"}
	}
	if seq%2 == 0 {
		e.RequestID = fmt.Sprintf("req_%d", seq/2)
	}
	if seq%3 != 0 {
		e.GrantID = fmt.Sprintf("grt_%d", seq/3)
		e.Resource = []string{"prod-db", "prod-aws", "infra-admins"}[seq%3]
	}
	switch {
	case seq%7 == 0:
		e.Reason = "checking <replication> lag & \"locks\"\n\tsee runbook\\db"
	case seq%5 == 0:
		e.Reason = "incident #4211: café ☕ 日本 😀 \u2028"
	case seq%2 == 1:
		e.Reason = "routine"
	}
	if seq%3 == 1 {
		e.Evidence = map[string]string{
			"schedule":  "PSCHED1",
			"incident":  fmt.Sprintf("Q%d", seq),
			"approvers": "U0LEAD,U0SEC",
			"empty":     "",
		}
	}
	return e
}

// buildLog returns n sealed events and checkpoints at seq 0 and at every multiple of every
// (and at n), each made one second after the event it covers. every <= 0 means none.
func buildLog(tb testing.TB, n int64, every int64) *MemLog {
	tb.Helper()
	m := &MemLog{Events: make([]Event, 0, n)}
	prev := Genesis
	for seq := int64(1); seq <= n; seq++ {
		e := makeEvent(seq)
		if err := Seal(prev, &e); err != nil {
			tb.Fatalf("seal seq %d: %v", seq, err)
		}
		prev = e.Hash
		m.Events = append(m.Events, e)
	}
	if every > 0 {
		key := testKey()
		m.Checkpoints = append(m.Checkpoints, SignCheckpoint(key, 0, Genesis, baseTime.Add(-time.Hour)))
		for seq := every; seq <= n; seq += every {
			e := m.Events[seq-1]
			m.Checkpoints = append(m.Checkpoints, SignCheckpoint(key, seq, e.Hash, e.Time.Add(time.Second)))
		}
		if n%every != 0 {
			e := m.Events[n-1]
			m.Checkpoints = append(m.Checkpoints, SignCheckpoint(key, n, e.Hash, e.Time.Add(time.Second)))
		}
	}
	return m
}

// cloneLog deep-copies m so that a probe can mutate it.
func cloneLog(m *MemLog) *MemLog {
	c := &MemLog{Events: slices.Clone(m.Events), Checkpoints: slices.Clone(m.Checkpoints)}
	for i := range c.Events {
		c.Events[i].Evidence = maps.Clone(c.Events[i].Evidence)
	}
	for i := range c.Checkpoints {
		c.Checkpoints[i].Signature = slices.Clone(c.Checkpoints[i].Signature)
	}
	return c
}

// at returns the event with seq in m (which must be the intact layout, seq i at index i-1).
func at(tb testing.TB, m *MemLog, seq int64) *Event {
	tb.Helper()
	e := &m.Events[seq-1]
	if e.Seq != seq {
		tb.Fatalf("event at index %d has seq %d, want %d", seq-1, e.Seq, seq)
	}
	return e
}

// resealFrom recomputes prev_hash and hash of every event from seq on, as an attacker with
// write access and knowledge of the chain formula would.
func resealFrom(tb testing.TB, m *MemLog, seq int64) {
	tb.Helper()
	prev := Genesis
	if seq > 1 {
		prev = at(tb, m, seq-1).Hash
	}
	for i := seq - 1; i < int64(len(m.Events)); i++ {
		if err := Seal(prev, &m.Events[i]); err != nil {
			tb.Fatalf("reseal seq %d: %v", m.Events[i].Seq, err)
		}
		prev = m.Events[i].Hash
	}
}

// rehash recomputes the hash of the event with seq from its own (possibly edited) content
// and stored prev_hash, leaving every other row alone.
func rehash(tb testing.TB, m *MemLog, seq int64) {
	tb.Helper()
	e := at(tb, m, seq)
	if err := Seal(e.PrevHash, e); err != nil {
		tb.Fatalf("rehash seq %d: %v", seq, err)
	}
}
