package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const dsnEnv = "ACCESSBROKER_TEST_POSTGRES_DSN"

// TestSmoke runs the whole benchmark with small numbers against the real server and checks
// the report says what happened: every phase ran, every role was seen gone, none early,
// and the throwaway database and roles are gone afterwards. Timings are not asserted.
func TestSmoke(t *testing.T) {
	dsn := os.Getenv(dsnEnv)
	if dsn == "" {
		t.Skipf("abbench needs a PostgreSQL server: set %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable (a superuser DSN)", dsnEnv)
	}
	ctx := context.Background()
	o := options{dsn: dsn, clients: 4, grants: 20, burst: 20, wait: 2 * time.Second, timeout: time.Minute, issueGap: time.Millisecond}
	rep, err := measure(ctx, o, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("measure: %v", err)
	}
	raw, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"issue_1_client":`, `"issue_n_clients":`, `"revocation_spread":`, `"burst":`, `"rss_mib":`, `"lag_p99_ms":`, `"first_gone_ms":`, `"all_gone_ms":`, `"per_second":`} {
		if !bytes.Contains(raw, []byte(key)) {
			t.Errorf("report lacks %s: %s", key, raw)
		}
	}
	for _, s := range []IssueStats{rep.Issue1, rep.IssueN} {
		if s.N != 20 || s.P50MS <= 0 || s.P99MS < s.P50MS || s.PerSecond <= 0 {
			t.Errorf("issue phase %+v: want 20 grants with positive figures", s)
		}
		// The test server runs on this machine: its backends' CPU time is readable.
		if s.GapMS != 1 || s.PostgresCPUMSPerIssue == nil || *s.PostgresCPUMSPerIssue < 0 {
			t.Errorf("issue phase %+v: want gap_ms 1 and the server's CPU time per issue", s)
		}
	}
	if rep.Issue1.Clients != 1 || rep.IssueN.Clients != 4 {
		t.Errorf("clients = %d and %d, want 1 and 4", rep.Issue1.Clients, rep.IssueN.Clients)
	}
	if s := rep.Spread; s.N != 20 || s.Gone != 20 || s.Early != 0 || s.P99MS < s.P50MS {
		t.Errorf("spread revocations %+v: want 20 of 20 gone, none early", s)
	}
	if b := rep.Burst; b == nil || b.N != 20 || b.Gone != 20 || b.Early != 0 || b.AllGoneMS < b.FirstGoneMS {
		t.Errorf("burst %+v: want 20 of 20 gone, none early", b)
	}
	if c := rep.StoreCheck; c.Revoked != 40 || c.RevokedEarly != 0 || c.RevokeFailed != 0 {
		t.Errorf("store check %+v: want 40 revoked, none early or failed", c)
	}
	if rep.RSS.Idle <= 0 || rep.RSS.Live <= 0 || rep.RSS.LiveGrants != 40 || rep.Setup.ManagerBehindS != 58 {
		t.Errorf("rss %+v, setup %+v: want positive figures, 40 live grants, manager 58 s behind", rep.RSS, rep.Setup)
	}

	root, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close(ctx)
	if len(rep.made) != 4+80 {
		t.Fatalf("the run made %d databases and roles, want 4 + 80 temporary roles", len(rep.made))
	}
	var left []string
	if err := root.QueryRow(ctx, `SELECT array(SELECT datname::text FROM pg_database WHERE datname = ANY($1)
		UNION ALL SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1))`, rep.made).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("after the run %q are left; want none", left)
	}
}

// TestFlagsRefuseBadInput: each bad flag is refused before anything is created, with an
// error naming the flag.
func TestFlagsRefuseBadInput(t *testing.T) {
	good := options{dsn: "postgres://x@127.0.0.1:1/x", clients: 1, grants: 1, burst: 0, wait: time.Second, timeout: time.Second}
	for _, tc := range []struct {
		name string
		edit func(*options)
		want string
	}{
		{"no dsn", func(o *options) { o.dsn = "" }, "-dsn"},
		{"no clients", func(o *options) { o.clients = 0 }, "-clients"},
		{"no grants", func(o *options) { o.grants = 0 }, "-grants"},
		{"negative burst", func(o *options) { o.burst = -1 }, "-burst"},
		{"wait too short", func(o *options) { o.wait = time.Millisecond }, "-wait"},
		{"no timeout", func(o *options) { o.timeout = 0 }, "-timeout"},
		{"negative issue gap", func(o *options) { o.issueGap = -time.Millisecond }, "-issue-gap"},
		{"negative prefill grants", func(o *options) { o.prefillGrants = -1 }, "-prefill-grants"},
		{"too few prefill events", func(o *options) { o.prefillGrants, o.prefillEvents = 100, 399 }, "-prefill-events"},
		{"prefill grants without events", func(o *options) { o.prefillGrants = 1 }, "-prefill-events"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.edit(&o)
			err := run(context.Background(), o, &bytes.Buffer{}, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run = %v, want an error naming %s", err, tc.want)
			}
		})
	}
	if err := good.validate(); err != nil {
		t.Errorf("valid options refused: %v", err)
	}
}
