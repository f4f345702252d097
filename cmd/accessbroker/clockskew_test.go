package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/grants"
)

// offsetClock is the wall clock moved by d: a host whose clock is d off.
type offsetClock struct{ d time.Duration }

func (c offsetClock) Now() time.Time                        { return time.Now().UTC().Add(c.d) }
func (c offsetClock) NewTimer(d time.Duration) grants.Timer { return grants.RealClock{}.NewTimer(d) }

// TestReplicaWithASkewedClockRefusesToStart: of two replicas on one PostgreSQL store, the one
// whose clock is five minutes fast refuses to serve and says why (it would revoke grants early
// and take claims the other still holds); the one on time starts (issue #15: one clock for
// deadlines).
func TestReplicaWithASkewedClockRefusesToStart(t *testing.T) {
	c := newReplicaCluster(t) // skips without the test server
	for k, v := range map[string]string{"AB_LISTEN": "127.0.0.1:0", "AB_PG_DSN": c.dsn, "AB_KEY": filepath.Join(c.dir, "audit.key"),
		"AB_WEBHOOK_URL": c.fake.URL(), "AB_WEBHOOK_TOKEN": e2eToken} {
		t.Setenv(k, v) // what the replicas' processes get (replicaCluster.env)
	}
	cfg, ok := loadConfigFlag(c.config, io.Discard)
	if !ok {
		t.Fatal("config")
	}
	for _, tc := range []struct {
		name  string
		clock grants.Clock
		want  string // "" for a start
	}{
		// Offsets from the wall clock, not frozen clocks: on a loaded machine newServer may
		// take seconds, which would add to a frozen clock's skew ("5m1s").
		{"five minutes fast", offsetClock{5 * time.Minute}, "5m ahead of the database's"},
		{"five minutes slow", offsetClock{-5 * time.Minute}, "5m behind the database's"},
		{"on time", grants.RealClock{}, ""},
	} {
		s, err := newServer(context.Background(), cfg, appOptions{clock: tc.clock, logOut: io.Discard, withProviders: true})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: newServer = %v, want a refusal naming %q", tc.name, err, tc.want)
		}
		if err == nil {
			s.Close()
		}
	}
}
