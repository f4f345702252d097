package github_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/integrations/github"
)

// TestDriftOnGitHubTeam, through go-github against githubfake: a team of 150 permanent
// members (two pages) where one grant's membership was removed out of band (marked
// missing), and a membership a revoked grant of ours made was re-added by hand (drift,
// removed with action revoke and read back); permanent members are never drift.
func TestDriftOnGitHubTeam(t *testing.T) {
	e := newEnv(t, github.Config{}, nil)
	ctx := context.Background()
	for i := range 150 {
		e.fake.SetMembership(org, team, fmt.Sprintf("m%03d", i), "member", "active")
	}
	zoe := grants.Person{SlackTeamID: "T0ACME", SlackUserID: "U0ZOE", Email: "zoe@example.com", GitHubLogin: "zoe"}
	e.fake.AddOrgMember(org, "zoe")

	clock := clocktest.New(time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC))
	st, err := sqlstore.Open(ctx, "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	provs := map[string]grants.Provider{"infra-admins": e.p}
	res := grants.Resource{Name: "infra-admins", Provider: github.Kind, DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour}
	m := grants.NewManager(st, provs, []grants.Resource{res}, clock, nil, grants.ManagerOptions{})
	issue := func(p grants.Person) grants.Grant {
		t.Helper()
		g, _, err := m.Issue(ctx, grants.IssueInput{Resource: "infra-admins", Person: p, Duration: time.Hour, Reason: "deploy fix",
			Actor: audit.Actor{Kind: audit.ActorOperator, ID: "tester"}})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	old := issue(alice)
	if _, err := m.Revoke(ctx, old.ID, grants.CauseManual, audit.Actor{Kind: audit.ActorOperator, ID: "tester"}, "done"); err != nil {
		t.Fatal(err)
	}
	if err := grants.NewRevoker(st, provs, clock, nil, grants.RevokerOptions{}).Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := e.fake.Membership(org, team, "alice"); ok {
		t.Fatal("revocation left alice in the team")
	}
	e.fake.SetMembership(org, team, "alice", "member", "active") // re-added by hand
	live := issue(zoe)
	e.fake.RemoveMembership(org, team, "zoe") // removed by hand while the grant is live

	before := len(e.fake.Calls())
	d := grants.NewDriftReconciler(st, provs, clock, nil, grants.DriftOptions{Action: grants.DriftRevoke})
	rep, err := d.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lists := 0
	for _, c := range e.fake.Calls()[before:] {
		if c.Method == http.MethodGet && strings.HasSuffix(c.Path, "/members") {
			lists++
			if !c.Authorized {
				t.Error("listing sent without the bearer token")
			}
		}
	}
	if lists != 2 {
		t.Errorf("listed %d pages of 151 members, want 2", lists)
	}
	if len(rep.Unmanaged) != 1 || rep.Unmanaged[0].Access.Person.GitHubLogin != "alice" || !rep.Unmanaged[0].Revoked {
		t.Fatalf("unmanaged = %+v, want alice, revoked", rep.Unmanaged)
	}
	if _, _, ok := e.fake.Membership(org, team, "alice"); ok {
		t.Fatal("drift revoke left alice in the team")
	}
	if _, _, ok := e.fake.Membership(org, team, "m149"); !ok {
		t.Fatal("a permanent member was removed")
	}
	if !slices.Equal(rep.Missing, []string{live.ID}) {
		t.Fatalf("missing = %v, want [%s]", rep.Missing, live.ID)
	}

	// A pending invitation is not listed as a member, but read back it is there: not missing.
	e.fake.SetMembership(org, team, "zoe", "member", "pending")
	rep, err = d.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Missing) != 0 || !slices.Equal(rep.Restored, []string{live.ID}) {
		t.Fatalf("with zoe's membership pending: missing %v, restored %v; want none, [%s]", rep.Missing, rep.Restored, live.ID)
	}

	// GitHub failing: the pass concludes nothing.
	e.fake.RemoveMembership(org, team, "zoe")
	e.fake.FailMethod(http.MethodGet, 100, http.StatusBadGateway)
	rep, err = d.Pass(ctx)
	if err == nil || len(rep.Missing) != 0 {
		t.Fatalf("pass while GitHub fails: err %v, missing %v", err, rep.Missing)
	}
	if got, _ := st.GetGrant(ctx, live.ID); !got.AccessMissingAt.IsZero() {
		t.Fatal("a failed listing marked the grant")
	}
}

// TestGitHubRevokeReadBack: HasAccess sees an active or pending membership and not a
// removed one.
func TestGitHubRevokeReadBack(t *testing.T) {
	e := newEnv(t, github.Config{}, nil)
	ctx := context.Background()
	iss, err := e.p.Issue(ctx, issueReq("g_1", alice))
	if err != nil {
		t.Fatal(err)
	}
	req := revokeReq("g_1", alice, iss.Handle)
	if has, err := e.p.HasAccess(ctx, req); err != nil || !has {
		t.Fatalf("HasAccess after issue = %v, %v", has, err)
	}
	if err := e.p.Revoke(ctx, req); err != nil {
		t.Fatal(err)
	}
	if has, err := e.p.HasAccess(ctx, req); err != nil || has {
		t.Fatalf("HasAccess after revoke = %v, %v", has, err)
	}
}
