package github_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	gh "github.com/google/go-github/v60/github"

	"github.com/accessbroker/accessbroker/fixtures/githubfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/github"
)

const alToken = "ghp_auditLogTokenForTests0123456789"

func teamGrant(login string, issued time.Time) grants.Grant {
	return grants.Grant{ID: "g_" + login, Resource: "gh-infra", Provider: github.Kind, IssuedAt: issued,
		Person: grants.Person{SlackUserID: "U0" + strings.ToUpper(login), GitHubLogin: login},
		Handle: grants.Handle{Key: "github-team:acme/infra:" + login, Data: map[string]string{"org": "acme", "team": "infra", "login": login}}}
}

// collectAll calls Collect until a batch is complete, as the collector does, and returns the
// items' keys, evidence and the number of calls.
func collectAll(t *testing.T, s *github.AuditLogSource, g grants.Grant, w grants.ActivityWindow, cursor string) ([]grants.ActivityItem, string) {
	t.Helper()
	var all []grants.ActivityItem
	for range 20 {
		b, err := s.Collect(context.Background(), g, w, cursor)
		if err != nil {
			t.Fatalf("Collect: %v", err)
		}
		all, cursor = append(all, b.Items...), b.Cursor
		if b.Complete {
			return all, cursor
		}
	}
	t.Fatal("Collect never completed")
	return nil, ""
}

// TestAuditLogActivity: the person's audit log entries during the grant are collected through
// go-github's GetAuditLog with the actor and created qualifiers, across Link-header pages
// (page budget 1, resumed from the cursor), never another person's; an entry after the end is
// marked after_revocation; a later look-up re-reads from just before the previous end (late
// entries) and the keys repeat so the store can drop them.
func TestAuditLogActivity(t *testing.T) {
	fake := githubfake.New(alToken)
	t.Cleanup(fake.Close)
	fake.EnableAuditLog("acme")
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	for i := range 150 {
		fake.AddAuditEntry("acme", githubfake.AuditEntry{DocumentID: fmt.Sprintf("doc-%03d", i), Action: "git.push", Actor: "alice",
			At: t0.Add(time.Duration(i) * time.Second), Repo: "acme/api"})
	}
	fake.AddAuditEntry("acme", githubfake.AuditEntry{DocumentID: "bob-1", Action: "repo.destroy", Actor: "bob", At: t0.Add(time.Minute)})
	fake.AddAuditEntry("acme", githubfake.AuditEntry{DocumentID: "early", Action: "git.push", Actor: "alice", At: t0.Add(-time.Hour)})
	fake.AddAuditEntry("acme", githubfake.AuditEntry{DocumentID: "after", Action: "team.add_member", Actor: "alice", At: t0.Add(40 * time.Minute)})
	s, err := github.NewAuditLogSource(fake.URL(), alToken, fake.Client(), github.AuditLogOptions{PagesPerCollect: 1})
	if err != nil {
		t.Fatal(err)
	}
	g := teamGrant("alice", t0)
	w := grants.ActivityWindow{From: t0, To: t0.Add(time.Hour), End: t0.Add(30 * time.Minute)}
	items, cursor := collectAll(t, s, g, w, "")
	if len(items) != 151 {
		t.Fatalf("collected %d entries, want alice's 151 during the window", len(items))
	}
	seen := map[string]bool{}
	for _, it := range items {
		if seen[it.Key] {
			t.Errorf("entry %s twice in one scan", it.Key)
		}
		seen[it.Key] = true
		ev := it.Event.Evidence
		if ev["actor"] != "alice" || it.Event.Action != "github.activity" || ev["via"] != "audit_log" {
			t.Errorf("entry %+v", ev)
		}
		if want := fmt.Sprint(ev["id"] == "after"); ev["after_revocation"] != want {
			t.Errorf("%s after_revocation = %q, want %s", ev["id"], ev["after_revocation"], want)
		}
	}
	if seen["audit_log:bob-1"] || seen["audit_log:early"] || !seen["audit_log:doc-000"] || items[0].Event.Evidence["repo"] != "acme/api" {
		t.Errorf("wrong entries: bob %v early %v first %v", seen["audit_log:bob-1"], seen["audit_log:early"], seen["audit_log:doc-000"])
	}
	var phrases []string
	for _, c := range fake.Calls() {
		if c.Path == "/orgs/acme/audit-log" {
			if !c.Authorized {
				t.Error("audit log call without the token")
			}
			phrases = append(phrases, c.Path)
		}
	}
	if len(phrases) != 2 {
		t.Errorf("%d audit log calls, want 2 pages", len(phrases))
	}
	// A late entry inside the window, delivered after the scan: the next look-up finds it.
	fake.AddAuditEntry("acme", githubfake.AuditEntry{DocumentID: "late", Action: "git.push", Actor: "alice", At: t0.Add(50 * time.Minute)})
	items, _ = collectAll(t, s, g, grants.ActivityWindow{From: t0, To: t0.Add(65 * time.Minute), End: w.End}, cursor)
	found := false
	for _, it := range items {
		found = found || it.Key == "audit_log:late"
	}
	if !found {
		t.Error("late entry not collected by the next look-up")
	}
}

// TestAuditLogUnavailable: an organisation without the audit log API (404) ends collection for
// the grant (ErrActivityNotCollectable); a 403 asks for an operator; a secondary rate limit is
// a retryable error; the token never appears in an error.
func TestAuditLogUnavailable(t *testing.T) {
	fake := githubfake.New(alToken)
	t.Cleanup(fake.Close)
	s, err := github.NewAuditLogSource(fake.URL(), alToken, fake.Client(), github.AuditLogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	w := grants.ActivityWindow{From: t0, To: t0.Add(time.Hour)}
	_, err = s.Collect(context.Background(), teamGrant("alice", t0), w, "")
	if !errors.Is(err, grants.ErrActivityNotCollectable) {
		t.Errorf("404: %v, want ErrActivityNotCollectable", err)
	}
	fake.EnableAuditLog("acme")
	fake.FailNext(1, 403)
	if _, err = s.Collect(context.Background(), teamGrant("alice", t0), w, ""); !errors.Is(err, grants.ErrNeedsOperator) || errors.Is(err, grants.ErrActivityNotCollectable) {
		t.Errorf("403: %v, want ErrNeedsOperator", err)
	}
	fake.SecondaryRateLimit(1, 30*time.Second)
	if _, err = s.Collect(context.Background(), teamGrant("alice", t0), w, ""); err == nil || errors.Is(err, grants.ErrActivityNotCollectable) || errors.Is(err, grants.ErrNeedsOperator) {
		t.Errorf("secondary rate limit: %v, want a retryable error", err)
	} else if strings.Contains(err.Error(), alToken) {
		t.Error("error contains the token")
	}
	_, err = s.Collect(context.Background(), grants.Grant{ID: "g_old", Handle: grants.Handle{}}, w, "")
	if !errors.Is(err, grants.ErrActivityNotCollectable) {
		t.Errorf("handle without login: %v", err)
	}
}

// TestAuditLogResponseShape: the fake's audit log entries have the keys of the fixture, and
// the fixture decodes into go-github's AuditEntry with its document id, time and repo.
func TestAuditLogResponseShape(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "fixtures", "github", "org-audit-log.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc []*gh.AuditEntry
	if err := json.Unmarshal(raw, &doc); err != nil || len(doc) != 1 {
		t.Fatalf("fixture: %v", err)
	}
	if doc[0].GetDocumentID() == "" || doc[0].GetTimestamp().IsZero() || doc[0].AdditionalFields["repo"] != "acme/api" {
		t.Errorf("fixture decoded as %+v", doc[0])
	}
	var want []map[string]any
	_ = json.Unmarshal(raw, &want)
	fake := githubfake.New(alToken)
	t.Cleanup(fake.Close)
	fake.EnableAuditLog("acme")
	fake.AddAuditEntry("acme", githubfake.AuditEntry{DocumentID: "d1", Action: "git.push", Actor: "alice", At: time.Now(), Repo: "acme/api"})
	req, _ := http.NewRequest("GET", fake.URL()+"/orgs/acme/audit-log", nil)
	req.Header.Set("Authorization", "Bearer "+alToken)
	resp, err := fake.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || len(got) != 1 {
		t.Fatalf("fake answer: %v", err)
	}
	keys := func(m map[string]any) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	if fmt.Sprint(keys(want[0])) != fmt.Sprint(keys(got[0])) {
		t.Errorf("fake keys %v, fixture keys %v", keys(got[0]), keys(want[0]))
	}
}
