package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/fixtures/githubfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
)

const driftGHToken = "ghp_driftTestToken0123456789abcdef"

// TestServeRunsDrift: serve's drift reconciler (drift: {action: revoke}) over a github-team
// resource on the fake GitHub: Run's first pass comes a minute after start on the injected
// clock, removes a membership a revoked grant made that was re-added by hand (drift.found,
// drift.revoked), marks the live grant whose membership was removed by hand, counts both in
// the metrics, and `grants list` shows the mark.
func TestServeRunsDrift(t *testing.T) {
	dir := t.TempDir()
	gh := githubfake.New(driftGHToken)
	t.Cleanup(gh.Close)
	gh.AddTeam("acme", "infra-admins")
	gh.AddOrgMember("acme", "alice")
	gh.AddOrgMember("acme", "bob")
	t.Setenv("AB_DB", filepath.Join(dir, "ab.db"))
	t.Setenv("AB_KEY", filepath.Join(dir, "audit.key"))
	t.Setenv("AB_GITHUB_API_URL", gh.URL())
	t.Setenv("AB_GITHUB_TOKEN", driftGHToken)
	p := &inProcess{t: t, dir: dir, config: filepath.Join("testdata", "e2e", "drift.yaml")}
	p.mustRun("audit", "keygen", "--out", filepath.Join(dir, "audit.key"))
	cfg, ok := loadConfigFlag(p.config, io.Discard)
	if !ok {
		t.Fatal("config")
	}
	clock := clocktest.New(time.Now().UTC().Truncate(time.Millisecond))
	s, err := newServer(context.Background(), cfg, appOptions{clock: clock, logOut: io.Discard, withProviders: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	op := audit.Actor{Kind: audit.ActorOperator, ID: "tester"}
	issue := func(p grants.Person) grants.Grant {
		t.Helper()
		g, _, err := s.manager.Issue(ctx, grants.IssueInput{Resource: "infra-admins", Person: p, Duration: time.Hour, Reason: "deploy fix", Actor: op})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	alice := grants.Person{SlackTeamID: "T0ACME", SlackUserID: "U0ALICE", Email: "alice@example.com", GitHubLogin: "alice"}
	bob := grants.Person{SlackTeamID: "T0ACME", SlackUserID: "U0BOB", Email: "bob@example.com", GitHubLogin: "bob"}
	old := issue(alice)
	if _, err := s.manager.Revoke(ctx, old.ID, grants.CauseManual, op, "done"); err != nil {
		t.Fatal(err)
	}
	if err := s.revoker.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	gh.SetMembership("acme", "infra-admins", "alice", "member", "active") // back by hand
	live := issue(bob)
	gh.RemoveMembership("acme", "infra-admins", "bob") // removed by hand

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		s.Close()
	})
	dm := s.drift
	if dm == nil {
		t.Fatal("serve has no drift reconciler with drift.action revoke")
	}
	checks := func() float64 {
		m, _ := s.metrics.reg.Gather()
		for _, f := range m {
			if f.GetName() == "accessbroker_drift_checks_total" {
				for _, x := range f.GetMetric() {
					return x.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	// Advance the injected clock a minute at a time until the first pass ran (its timer is
	// armed when Run starts, which this test does not otherwise see).
	within(t, 30*time.Second, "the first drift pass", func() bool {
		if checks() >= 1 {
			return true
		}
		clock.Advance(time.Minute)
		return false
	})
	if _, _, ok := gh.Membership("acme", "infra-admins", "alice"); ok {
		t.Error("the re-added membership was not removed")
	}
	if got, _ := s.store.GetGrant(ctx, live.ID); got.AccessMissingAt.IsZero() {
		t.Error("bob's grant is not marked access-missing")
	}
	for action, want := range map[audit.Action]int{audit.ActionDriftFound: 1, audit.ActionDriftRevoked: 1, audit.ActionGrantAccessMissing: 1} {
		evs, err := s.store.Search(ctx, audit.Query{Action: action, Limit: 10})
		if err != nil || len(evs) != want {
			t.Errorf("%s events = %d (%v), want %d", action, len(evs), err, want)
		}
	}
	dmx := s.driftMetrics
	if v := testutil.ToFloat64(dmx.missing.WithLabelValues("infra-admins")); v != 1 {
		t.Errorf("accessbroker_drift_missing_access = %v, want 1", v)
	}
	if v := testutil.ToFloat64(dmx.revocations.WithLabelValues("infra-admins", "ok")); v != 1 {
		t.Errorf("accessbroker_drift_revocations_total{outcome=ok} = %v, want 1", v)
	}
	if out := p.mustRun("grants", "list", "--config", p.config); !strings.Contains(out, "ACCESS MISSING") {
		t.Errorf("grants list does not show the mark:\n%s", out)
	}
	if out := p.mustRun("grants", "list", "--config", p.config, "--format", "json"); !strings.Contains(out, `"access_missing_at"`) {
		t.Errorf("grants list --format json has no access_missing_at:\n%s", out)
	}
}
