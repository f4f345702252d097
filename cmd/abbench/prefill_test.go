package main

import (
	"context"
	"crypto/ed25519"
	"path/filepath"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// TestPrefillWritesAValidPast: the prefilled store holds the past grants (revoked, none due)
// and exactly the events asked for, and its chain verifies. No PostgreSQL needed.
func TestPrefillWritesAValidPast(t *testing.T) {
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), grants.RealClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ps, err := prefill(ctx, st, 1500, 10_000, time.Now().UTC())
	if err != nil {
		t.Fatalf("prefill: %v", err)
	}
	if ps.Grants != 1500 || ps.Events != 10_000 {
		t.Errorf("prefill stats %+v: want 1500 grants and 10000 events", ps)
	}
	revoked, err := st.ListGrants(ctx, grants.GrantFilter{States: []grants.State{grants.StateRevoked}})
	if err != nil {
		t.Fatal(err)
	}
	if len(revoked) != 1500 {
		t.Errorf("revoked grants = %d, want 1500", len(revoked))
	}
	live, err := st.ListGrants(ctx, grants.GrantFilter{States: []grants.State{grants.StateIssuing, grants.StateActive, grants.StateRevoking, grants.StateRevokeFailed}})
	if err != nil || len(live) != 0 {
		t.Errorf("live grants = %d (%v), want none", len(live), err)
	}
	if _, due, err := st.NextDue(ctx); err != nil || due {
		t.Errorf("NextDue: due %v, err %v; want nothing due", due, err)
	}
	key, err := audit.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := audit.Verify(ctx, st, key.Public().(ed25519.PublicKey), audit.VerifyOptions{})
	if err != nil || !res.OK || res.Events != 10_000 {
		t.Errorf("verify = %+v, %v; want 10000 events, OK", res, err)
	}
}
