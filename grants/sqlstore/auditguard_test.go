package sqlstore_test

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/grants/storetest"
)

// heldWitness is a witness that keeps what was published to it in memory.
type heldWitness struct {
	mu    sync.Mutex
	held  []audit.Checkpoint
	reads int // Checkpoints calls
}

func (w *heldWitness) Name() string { return "memory" }
func (w *heldWitness) Publish(_ context.Context, c audit.Checkpoint) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.held = append(w.held, c)
	return nil
}
func (w *heldWitness) Checkpoints(context.Context) ([]audit.Checkpoint, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reads++
	return append([]audit.Checkpoint(nil), w.held...), nil
}

// guardEnv is a SQLite log with a signer, a witness and a raw connection to damage it with.
type guardEnv struct {
	clock   *clocktest.Fake
	store   *sqlstore.Store
	path    string
	key     ed25519.PrivateKey
	signer  *grants.Checkpointer
	witness *heldWitness
}

func newGuardEnv(t *testing.T) *guardEnv {
	t.Helper()
	e := &guardEnv{clock: clocktest.New(storetest.Start), path: filepath.Join(t.TempDir(), "ab.db"), witness: &heldWitness{}}
	st, err := sqlstore.Open(context.Background(), "sqlite", "file:"+e.path, e.clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.store = st
	_, e.key, _ = ed25519.GenerateKey(nil)
	e.signer = grants.NewCheckpointer(st, e.key, e.clock, nil, 1, time.Hour)
	e.signer.AfterSign(func(c audit.Checkpoint) { _ = e.witness.Publish(context.Background(), c) })
	return e
}

// events appends n grant events, a minute apart.
func (e *guardEnv) events(t *testing.T, n int) {
	t.Helper()
	for range n {
		e.clock.Advance(time.Minute)
		g := storetest.NewGrant(e.clock.Now(), "prod-db", time.Hour)
		storetest.MustCreate(t, e.store, e.clock.Now(), g)
	}
}

func (e *guardEnv) checkpoint(t *testing.T) audit.Checkpoint {
	t.Helper()
	e.clock.Advance(time.Second)
	if ok, err := e.signer.MaybeCheckpoint(context.Background()); err != nil || !ok {
		t.Fatalf("checkpoint: %v, %v", ok, err)
	}
	cp, _, err := e.store.LastCheckpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func (e *guardEnv) guard(witnessed bool) *grants.AuditGuard {
	opts := grants.AuditGuardOptions{}
	if witnessed {
		opts.Witnesses = []grants.Witness{e.witness}
	}
	return grants.NewAuditGuard(e.store, e.key.Public().(ed25519.PublicKey), e.clock, opts)
}

// tamper runs statements on the database as an attacker with write access would, triggers
// dropped first.
func (e *guardEnv) tamper(t *testing.T, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+e.path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range append([]string{
		`DROP TRIGGER IF EXISTS audit_events_no_update`, `DROP TRIGGER IF EXISTS audit_events_no_delete`,
		`DROP TRIGGER IF EXISTS audit_checkpoints_no_delete`, `DROP TRIGGER IF EXISTS audit_checkpoints_no_update`,
	}, stmts...) {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// TestAuditGuardFindsDamage: each way of damaging the log the broker appends to is found
// (issue #15: a damaged log stops new grants), and an intact one passes.
func TestAuditGuardFindsDamage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		witnessed bool
		damage    func(t *testing.T, e *guardEnv, older, newest audit.Checkpoint)
		want      string // in the damage; "" for none
	}{
		{"intact", true, func(*testing.T, *guardEnv, audit.Checkpoint, audit.Checkpoint) {}, ""},
		{"intact, events after the newest checkpoint", true, func(t *testing.T, e *guardEnv, _, _ audit.Checkpoint) { e.events(t, 3) }, ""},
		{"an event after the newest checkpoint altered", false, func(t *testing.T, e *guardEnv, _, newest audit.Checkpoint) {
			e.events(t, 2)
			e.tamper(t, `UPDATE audit_events SET reason = 'nothing to see' WHERE seq = (SELECT MAX(seq) FROM audit_events)`)
		}, "does not chain"},
		{"history under the newest checkpoint rewritten", false, func(t *testing.T, e *guardEnv, _, newest audit.Checkpoint) {
			e.tamper(t, `UPDATE audit_events SET hash = prev_hash WHERE seq = (SELECT MAX(seq) FROM audit_checkpoints)`)
		}, "no longer has the hash its checkpoint signed"},
		{"events under the newest checkpoint deleted", false, func(t *testing.T, e *guardEnv, older, _ audit.Checkpoint) {
			e.tamper(t, `DELETE FROM audit_events WHERE seq > (SELECT MAX(seq) FROM audit_checkpoints) - 1`)
		}, "behind its newest checkpoint"},
		{"a forged checkpoint", false, func(t *testing.T, e *guardEnv, _, _ audit.Checkpoint) {
			e.events(t, 1)
			seq, head, _, err := e.store.Head(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			_, other, _ := ed25519.GenerateKey(nil)
			if err := e.store.AppendCheckpoint(context.Background(), audit.SignCheckpoint(other, seq, head, e.clock.Now())); err != nil {
				t.Fatal(err)
			}
		}, "not signed by this broker's audit key"},
		{"newest checkpoint and its events deleted, no witness", false, func(t *testing.T, e *guardEnv, older, _ audit.Checkpoint) {
			truncate(t, e, older)
		}, ""}, // the hole a witness closes
		{"newest checkpoint and its events deleted, witnessed", true, func(t *testing.T, e *guardEnv, older, _ audit.Checkpoint) {
			truncate(t, e, older)
		}, "behind published checkpoint"},
		{"newest checkpoint deleted, events kept, witnessed", true, func(t *testing.T, e *guardEnv, older, _ audit.Checkpoint) {
			e.tamper(t, `DELETE FROM audit_checkpoints WHERE seq > `+itoa(older.Seq))
		}, "missing from the database"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newGuardEnv(t)
			e.events(t, 3)
			older := e.checkpoint(t)
			e.events(t, 3)
			newest := e.checkpoint(t)
			tc.damage(t, e, older, newest)
			err := e.guard(tc.witnessed).Check(context.Background())
			var se *grants.AuditSuspectError
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check = %v, want the log to verify", err)
			case tc.want != "" && (!errors.As(err, &se) || !errors.Is(err, grants.ErrAuditSuspect) || !strings.Contains(se.Damage, tc.want)):
				t.Fatalf("Check = %v, want an audit-suspect error naming %q", err, tc.want)
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// truncate deletes the checkpoints after older and every event after older's seq: what
// `audit verify` without a witness cannot see.
func truncate(t *testing.T, e *guardEnv, older audit.Checkpoint) {
	t.Helper()
	e.tamper(t, `DELETE FROM audit_checkpoints WHERE seq > `+itoa(older.Seq), `DELETE FROM audit_events WHERE seq > `+itoa(older.Seq))
}

// TestAuditGuardStopsGrantsAndCheckpoints: while the log is suspect no grant is issued or
// extended (the provider is never called) and no checkpoint is signed over the damaged head;
// revocations go on; a signed operator clearance with a new checkpoint ends the state, and a
// clearance written without the key does not.
func TestAuditGuardStopsGrantsAndCheckpoints(t *testing.T) {
	t.Parallel()
	e := newGuardEnv(t)
	ctx := context.Background()
	guard := e.guard(true)
	prov := &countingProvider{}
	res := grants.Resource{Name: "prod-db", Provider: "counting", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour}
	mgr := grants.NewManager(e.store, map[string]grants.Provider{"prod-db": prov}, []grants.Resource{res}, e.clock, nil,
		grants.ManagerOptions{Gate: guard})
	e.signer.GuardWith(guard)
	issue := func() (grants.Grant, error) {
		g, _, err := mgr.Issue(ctx, grants.IssueInput{Resource: "prod-db", Person: grants.Person{SlackUserID: "U0ALICE"},
			Duration: time.Hour, Reason: "checking replication lag", Actor: audit.Actor{Kind: audit.ActorOperator, ID: "ops"}})
		return g, err
	}
	live, err := issue()
	if err != nil {
		t.Fatal(err)
	}
	older := e.checkpoint(t)
	e.events(t, 2)
	e.checkpoint(t)
	truncate(t, e, older)

	if err := guard.Check(ctx); !errors.Is(err, grants.ErrAuditSuspect) {
		t.Fatalf("Check = %v, want suspect", err)
	}
	issuesBefore := prov.issues()
	if _, err := issue(); !errors.Is(err, grants.ErrAuditSuspect) {
		t.Fatalf("Issue while suspect = %v, want ErrAuditSuspect", err)
	}
	if _, err := mgr.Extend(ctx, grants.ExtendInput{GrantID: live.ID, By: time.Hour, Actor: audit.Actor{Kind: audit.ActorOperator, ID: "ops"}, Reason: "more"}); !errors.Is(err, grants.ErrAuditSuspect) {
		t.Fatalf("Extend while suspect = %v, want ErrAuditSuspect", err)
	}
	if prov.issues() != issuesBefore {
		t.Fatal("the provider was called while the log is suspect")
	}
	e.clock.Advance(2 * time.Hour)
	if ok, err := e.signer.MaybeCheckpoint(ctx); ok || !errors.Is(err, grants.ErrAuditSuspect) {
		t.Fatalf("MaybeCheckpoint while suspect = %v, %v; want nothing signed", ok, err)
	}
	if _, err := mgr.Revoke(ctx, live.ID, grants.CauseManual, audit.Actor{Kind: audit.ActorOperator, ID: "ops"}, "incident over"); err != nil {
		t.Fatalf("Revoke while suspect = %v; revocations must go on", err)
	}

	// A clearance without the key's signature is no clearance.
	forged := map[string]string{"reason": "trust me", "cleared_until": audit.FormatTime(e.clock.Now()), "signature": "AAAA"}
	if err := mgr.Record(ctx, &audit.Event{Actor: audit.Actor{Kind: audit.ActorOperator, ID: "mallory"}, Action: audit.ActionAuditSuspectCleared, Evidence: forged}); err != nil {
		t.Fatal(err)
	}
	if err := guard.Check(ctx); !errors.Is(err, grants.ErrAuditSuspect) {
		t.Fatalf("after a forged clearance Check = %v, want still suspect", err)
	}

	// The operator's clearance: signed evidence, then a checkpoint over the head.
	e.clock.Advance(time.Second)
	if err := mgr.Record(ctx, &audit.Event{Actor: audit.Actor{Kind: audit.ActorOperator, ID: "ops"}, Action: audit.ActionAuditSuspectCleared,
		Evidence: grants.SignClearance(e.key, e.clock.Now(), "restored from backup; the lost seqs are in INC-1042")}); err != nil {
		t.Fatal(err)
	}
	seq, head, _, err := e.store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.AppendCheckpoint(ctx, audit.SignCheckpoint(e.key, seq, head, e.clock.Now())); err != nil {
		t.Fatal(err)
	}
	if err := guard.Check(ctx); err != nil {
		t.Fatalf("after the clearance Check = %v, want the log to verify", err)
	}
	if _, err := issue(); err != nil {
		t.Fatalf("Issue after the clearance = %v", err)
	}
}

type countingProvider struct {
	mu sync.Mutex
	n  int
}

func (p *countingProvider) Kind() string { return "counting" }
func (p *countingProvider) Issue(_ context.Context, req grants.IssueRequest) (grants.Issued, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	return grants.Issued{Handle: grants.Handle{Key: "counting:" + req.GrantID}, Credential: grants.NewCredential("counting", "password", "canary")}, nil
}
func (p *countingProvider) Revoke(context.Context, grants.RevokeRequest) error { return nil }
func (p *countingProvider) issues() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// TestAuditGuardQuietWhileTheLogGrows: checks that run while other writers append never call
// a growing log damaged (the tail is read up to the head it started from).
func TestAuditGuardQuietWhileTheLogGrows(t *testing.T) {
	t.Parallel()
	e := newGuardEnv(t)
	e.events(t, 2)
	e.checkpoint(t)
	guard := e.guard(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			g := storetest.NewGrant(e.clock.Now(), "prod-db", time.Hour)
			storetest.MustCreate(t, e.store, e.clock.Now(), g)
		}
	}()
	var first error
	for running := true; running && first == nil; {
		select {
		case <-done:
			running = false
		default:
		}
		first = guard.Check(context.Background())
	}
	<-done
	if first != nil {
		t.Fatalf("Check while the log grows = %v", first)
	}
}

// TestCheckpointsDoNotReadTheWitnesses: the check before each checkpoint reads only the
// database (a witness read can be thousands of S3 GETs); the periodic check reads them.
func TestCheckpointsDoNotReadTheWitnesses(t *testing.T) {
	t.Parallel()
	e := newGuardEnv(t)
	guard := e.guard(true)
	e.signer.GuardWith(guard)
	for range 5 {
		e.events(t, 1)
		e.checkpoint(t)
	}
	e.witness.mu.Lock()
	reads := e.witness.reads
	e.witness.mu.Unlock()
	if reads != 0 {
		t.Fatalf("5 checkpoints read the witness %d times, want 0", reads)
	}
	if err := guard.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.witness.mu.Lock()
	defer e.witness.mu.Unlock()
	if e.witness.reads != 1 {
		t.Fatalf("the periodic check read the witness %d times, want 1", e.witness.reads)
	}
}
