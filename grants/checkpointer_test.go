package grants_test

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

func TestCheckpointerEveryNEventsAndEveryPeriod(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, key, _ := ed25519.GenerateKey(nil)
	cp := grants.NewCheckpointer(e.store, key, e.clock, nil, 3, time.Hour)

	count := func() int {
		t.Helper()
		cps, err := e.store.ReadCheckpoints(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(cps)
	}
	step := func(want bool, what string) {
		t.Helper()
		got, err := cp.MaybeCheckpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("%s: signed = %v, want %v", what, got, want)
		}
	}
	step(true, "empty log, no checkpoint yet") // quiet logs are checkpointed too (seq 0)
	step(false, "nothing new")
	e.issue(t, time.Hour) // 2 events
	step(false, "2 events < every")
	e.issue(t, time.Hour) // 4 events
	step(true, "4 events ≥ every")
	e.clock.Advance(59 * time.Minute)
	step(false, "within the period")
	e.clock.Advance(time.Minute)
	step(true, "a quiet hour still gets a checkpoint")
	if n := count(); n != 3 {
		t.Fatalf("checkpoints = %d, want 3", n)
	}
	res, err := audit.Verify(ctx, e.store, key.Public().(ed25519.PublicKey), audit.VerifyOptions{
		RequireCheckpoint: true, MaxCheckpointAge: 2 * time.Hour, Now: e.clock.Now()})
	if err != nil || !res.OK || res.Checkpoints != 3 {
		t.Fatalf("verify: %v %s", err, res)
	}
}

func TestCheckpointerRunSignsOnShutdown(t *testing.T) {
	e := newEnv(t)
	_, key, _ := ed25519.GenerateKey(nil)
	cp := grants.NewCheckpointer(e.store, key, e.clock, nil, 1000, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- cp.Run(ctx) }()
	waitSleeping(t, e) // first checkpoint signed, now polling
	e.issue(t, time.Hour)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	last, ok, err := e.store.LastCheckpoint(context.Background())
	if err != nil || !ok || last.Seq != 2 {
		t.Fatalf("last checkpoint = %+v %v %v, want seq 2 (the head at shutdown)", last, ok, err)
	}
}

func TestCheckpointerSingletonAcrossReplicas(t *testing.T) {
	e := newEnv(t)
	_, key, _ := ed25519.GenerateKey(nil)
	a := grants.NewCheckpointer(e.store, key, e.clock, nil, 1, time.Hour)
	b := grants.NewCheckpointer(e.store, key, e.clock, nil, 1, time.Hour)
	a.ShareWith(e.store, "replica-a")
	b.ShareWith(e.store, "replica-b")
	ctx := context.Background()
	if ok, err := a.MaybeCheckpoint(ctx); !ok || err != nil {
		t.Fatalf("a: %v %v", ok, err)
	}
	e.issue(t, time.Hour)
	if ok, err := b.MaybeCheckpoint(ctx); ok || err != nil {
		t.Fatalf("b signed while a holds the lease: %v %v", ok, err)
	}
	e.clock.Advance(time.Minute) // a's lease lapses (a died)
	if ok, err := b.MaybeCheckpoint(ctx); !ok || err != nil {
		t.Fatalf("b after the lease lapsed: %v %v", ok, err)
	}
}
