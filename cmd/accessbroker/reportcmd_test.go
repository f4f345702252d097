package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker/brokertest"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/integrations/adminapi"
)

// The report window: Monday 2026-03-02 09:00 UTC for a week.
var (
	rptSince = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	rptUntil = rptSince.AddDate(0, 0, 7)
)

// reportHistory writes a small week into the store at path, through the real Manager and
// Revoker on a fake clock:
//   - g_carry: an operator grant on Sunday 08:00 for 4h, revoked at expiry (before the window);
//   - alice: an operator grant on Tuesday 10:00 for 1h, revoked at expiry (no on-call check);
//   - bob: on call until Wednesday 12:15, auto-approved at 12:00 for 30m (outlives the shift),
//     ended by bob himself at 12:10;
//   - dave: refused three times within 20 minutes on Thursday.
//
// It returns the ids of alice's and bob's grants.
func reportHistory(t *testing.T, path string) (aliceGrant, bobGrant string) {
	t.Helper()
	ctx := t.Context()
	clock := clocktest.New(time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC))
	st, err := sqlstore.Open(ctx, "sqlite", "file:"+path, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	res := grants.Resource{Name: "prod-db", Provider: "webhook", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour}
	provs := map[string]grants.Provider{"prod-db": brokertest.NewProvider("webhook")}
	mgr := grants.NewManager(st, provs, []grants.Resource{res}, clock, nil, grants.ManagerOptions{})
	rev := grants.NewRevoker(st, provs, clock, nil, grants.RevokerOptions{})
	operator := audit.Actor{Kind: audit.ActorOperator, ID: "ops"}
	alice := grants.Person{SlackUserID: "U0ALICE", Email: "alice@example.com"}
	bob := grants.Person{SlackUserID: "U0BOB", Email: "bob@example.com"}
	issue := func(p grants.Person, d time.Duration, actor audit.Actor, ev map[string]string) string {
		t.Helper()
		g, _, err := mgr.Issue(ctx, grants.IssueInput{Resource: "prod-db", Person: p, Duration: d, Reason: "checking replication lag", Actor: actor, Evidence: ev})
		if err != nil {
			t.Fatal(err)
		}
		return g.ID
	}
	sweepAt := func(at time.Time) {
		t.Helper()
		clock.Set(at)
		if err := rev.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
	}

	issue(alice, 4*time.Hour, operator, map[string]string{"source": "cli"})
	sweepAt(time.Date(2026, 3, 1, 12, 0, 5, 0, time.UTC))

	clock.Set(time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC))
	aliceGrant = issue(alice, time.Hour, operator, map[string]string{"source": "cli"})
	sweepAt(time.Date(2026, 3, 3, 11, 0, 5, 0, time.UTC))

	clock.Set(time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC))
	shiftEnd := grants.Timestamp(time.Date(2026, 3, 4, 12, 15, 0, 0, time.UTC))
	bobGrant = issue(bob, 30*time.Minute, audit.Actor{Kind: audit.ActorUser, ID: bob.SlackUserID, Email: bob.Email},
		map[string]string{"on_call": "true", "on_call_until": shiftEnd, "path": "auto_approve"})
	clock.Set(time.Date(2026, 3, 4, 12, 10, 0, 0, time.UTC))
	if _, err := mgr.Revoke(ctx, bobGrant, grants.CauseManual, audit.Actor{Kind: audit.ActorUser, ID: bob.SlackUserID}, "ended by its owner with /access done"); err != nil {
		t.Fatal(err)
	}
	sweepAt(time.Date(2026, 3, 4, 12, 10, 1, 0, time.UTC))

	for _, m := range []int{0, 10, 20} {
		clock.Set(time.Date(2026, 3, 5, 15, m, 0, 0, time.UTC))
		if err := mgr.Record(ctx, &audit.Event{Actor: audit.Actor{Kind: audit.ActorUser, ID: "U0DAVE"}, Action: audit.ActionRequestRejected,
			Resource: "prod-dbb", Reason: `There is no resource named "prod-dbb".`}); err != nil {
			t.Fatal(err)
		}
	}
	return aliceGrant, bobGrant
}

// reportJSON is the part of the JSON report these tests look at.
type reportJSON struct {
	Since, Until string
	Grants       int
	People       int
	Decisions    []audit.Count
	EarlyEnds    []audit.Count `json:"early_ends"`
	Requests     audit.RequestCounts
	Revocations  struct {
		Revoked  int
		Failures int
	}
	Anomalies []struct {
		Kind    string
		Person  string
		GrantID string `json:"grant_id"`
	}
	Rows []struct {
		GrantID     string `json:"grant_id"`
		Person      string
		Decision    string
		State       string
		RevokeCause string `json:"revoke_cause"`
		EndedEarly  string `json:"ended_early"`
	}
}

func decodeReport(t *testing.T, b []byte) reportJSON {
	t.Helper()
	var r reportJSON
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, b)
	}
	return r
}

// checkWeek compares a decoded report of the whole week with the history's figures.
func checkWeek(t *testing.T, r reportJSON, aliceGrant, bobGrant string) {
	t.Helper()
	type anomaly struct{ Kind, Person, GrantID string }
	type row struct{ GrantID, Person, Decision, State, Cause, Early string }
	var gotAnomalies []anomaly
	for _, a := range r.Anomalies {
		gotAnomalies = append(gotAnomalies, anomaly{a.Kind, a.Person, a.GrantID})
	}
	var gotRows []row
	for _, g := range r.Rows {
		gotRows = append(gotRows, row{g.GrantID, g.Person, g.Decision, g.State, g.RevokeCause, g.EndedEarly})
	}
	got := struct {
		Since, Until      string
		Grants, People    int
		Rejected, Revoked int
		Anomalies         []anomaly
		Rows              []row
	}{r.Since, r.Until, r.Grants, r.People, r.Requests.Rejected, r.Revocations.Revoked, gotAnomalies, gotRows}
	want := got
	want.Since, want.Until = "2026-03-02T09:00:00.000Z", "2026-03-09T09:00:00.000Z"
	want.Grants, want.People, want.Rejected, want.Revoked = 2, 2, 3, 2 // g_carry was revoked before the window
	want.Anomalies = []anomaly{
		{"not_on_call", "alice@example.com", aliceGrant},
		{"outside_shift", "bob@example.com", bobGrant},
		{"repeated_rejections", "U0DAVE", ""},
	}
	want.Rows = []row{
		{aliceGrant, "alice@example.com", "operator", "revoked", "expired", ""},
		{bobGrant, "bob@example.com", "on_call_auto_approval", "revoked", "manual", "done"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
}

func TestReportCommand(t *testing.T) {
	p := newInProcess(t)
	aliceGrant, bobGrant := reportHistory(t, filepath.Join(p.dir, "ab.db"))
	window := []string{"--config", p.config, "--since", "2026-03-02T09:00:00Z", "--until", "2026-03-09T09:00:00Z"}

	out := p.mustRun(append([]string{"report", "--format", "json"}, window...)...)
	checkWeek(t, decodeReport(t, []byte(out)), aliceGrant, bobGrant)

	csv := p.mustRun(append([]string{"report", "--format", "csv"}, window...)...)
	lines := strings.Split(strings.TrimSpace(csv), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "grant_id,request_id,resource,person,issued_at") ||
		!strings.HasPrefix(lines[1], aliceGrant+",") || !strings.HasPrefix(lines[2], bobGrant+",") {
		t.Errorf("CSV = %q, want a header and the two grants in issue order", lines)
	}

	md := p.mustRun(append([]string{"report"}, window...)...)
	for _, want := range []string{"# Access report 2026-03-02T09:00:00.000Z – 2026-03-09T09:00:00.000Z", "| grants | 2 |", "| anomalies | 3 |", "`" + bobGrant + "`"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown report lacks %q", want)
		}
	}

	// Only Tuesday: alice's grant alone; dave's refusals and bob's grant fall outside.
	tue := decodeReport(t, []byte(p.mustRun("report", "--config", p.config, "--format", "json", "--since", "2026-03-03T00:00:00Z", "--until", "2026-03-04T00:00:00Z")))
	if tue.Grants != 1 || len(tue.Rows) != 1 || tue.Rows[0].GrantID != aliceGrant || tue.Requests.Rejected != 0 {
		t.Errorf("Tuesday report = %+v, want alice's grant only", tue)
	}

	// The defaults: the last 168h up to now (the history is long past): an empty week.
	if out := p.mustRun("report", "--config", p.config); !strings.Contains(out, "No grants this week") {
		t.Errorf("default report over the last week:\n%s", out)
	}
}

func TestReportCommandRefusesBadFlags(t *testing.T) {
	p := newInProcess(t)
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no config":      {[]string{"report"}, "--config FILE is required"},
		"bad format":     {[]string{"report", "--config", p.config, "--format", "xlsx"}, `--format "xlsx" is not supported`},
		"since after":    {[]string{"report", "--config", p.config, "--since", "2026-03-09T00:00:00Z", "--until", "2026-03-02T00:00:00Z"}, "is not before --until"},
		"bad since":      {[]string{"report", "--config", p.config, "--since", "last week"}, "--since"},
		"bad until":      {[]string{"report", "--config", p.config, "--until", "tomorrow"}, "--until"},
		"empty since":    {[]string{"report", "--config", p.config, "--since", ""}, "--since is required"},
		"bad pair limit": {[]string{"report", "--config", p.config, "--max-approvals-per-pair", "0"}, "must be 1 or more"},
		"stray argument": {[]string{"report", "--config", p.config, "weekly"}, `unexpected argument "weekly"`},
		"negative since": {[]string{"report", "--config", p.config, "--since", "-5h"}, "must be positive"},
		"unknown flag":   {[]string{"report", "--weekly"}, "flag provided but not defined"},
		"missing file":   {[]string{"report", "--config", filepath.Join(p.dir, "nope.yaml")}, "nope.yaml"},
	} {
		t.Run(name, func(t *testing.T) {
			_, stderr, code := p.run(tc.args...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, exitUsage, tc.want)
			}
		})
	}
}

// TestReporterThroughAdminAPI serves the reporter as serve wires it: adminapi.Config.Reporter.
func TestReporterThroughAdminAPI(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ab.db")
	aliceGrant, bobGrant := reportHistory(t, path)
	clock := clocktest.New(rptUntil)
	st, err := sqlstore.Open(t.Context(), "sqlite", "file:"+path, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	token := strings.Repeat("k", 40)
	srv := httptest.NewServer(adminapi.New(adminapi.Config{Token: token, Reporter: newReporter(st, audit.ReportOptions{}), Clock: clock}))
	t.Cleanup(srv.Close)
	get := func(query string) (int, string, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/api/v1/report"+query, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("Content-Type"), body
	}

	// The default window is the 168h before now (the clock is at the week's end).
	code, ct, body := get("")
	if code != http.StatusOK || ct != "application/json" {
		t.Fatalf("GET /api/v1/report: %d %s %s", code, ct, body)
	}
	checkWeek(t, decodeReport(t, body), aliceGrant, bobGrant)

	code, ct, body = get("?format=csv&since=2026-03-02T09:00:00Z&until=2026-03-04T00:00:00Z")
	if lines := strings.Split(strings.TrimSpace(string(body)), "\n"); code != http.StatusOK || ct != "text/csv; charset=utf-8" || len(lines) != 2 || !strings.HasPrefix(lines[1], aliceGrant) {
		t.Errorf("CSV until Wednesday: %d %s %q, want the header and alice's grant", code, ct, lines)
	}
	code, ct, body = get("?format=markdown&since=100h") // from Thursday 05:00: dave's refusals, no grants
	if code != http.StatusOK || ct != "text/markdown; charset=utf-8" || !strings.Contains(string(body), "| grants | 0 |") || !strings.Contains(string(body), "repeated_rejections") {
		t.Errorf("markdown of the last 100h: %d %s\n%s", code, ct, body)
	}
	if code, _, body := get("?format=pdf"); code != http.StatusBadRequest {
		t.Errorf("format=pdf: %d %s, want 400", code, body)
	}
}

// TestReporterRejectsUnknownFormat covers the reporter's own check (the API checks first).
func TestReporterRejectsUnknownFormat(t *testing.T) {
	r := newReporter(emptySearcher{}, audit.ReportOptions{})
	if _, _, err := r.Report(t.Context(), rptSince, rptUntil, "xlsx"); err == nil || !strings.Contains(err.Error(), "xlsx") {
		t.Errorf("Report(xlsx) = %v, want an error naming the format", err)
	}
	ct, body, err := r.Report(t.Context(), rptSince, rptUntil, "json")
	if err != nil || ct != "application/json" || decodeReport(t, body).Grants != 0 {
		t.Errorf("Report(json) of an empty log = %s %s %v", ct, body, err)
	}
}

type emptySearcher struct{}

func (emptySearcher) Search(context.Context, audit.Query) ([]audit.Event, error) { return nil, nil }

// benchReportDB builds a SQLite database holding one week of 100,000 grants in 1,000,000
// chained audit events (10 per grant: request created, on-call check, approval, approved,
// issuing, issued, extended, revoke requested, a failed attempt, revoked), written in
// transactions of 5,000 events as the store writes them.
func benchReportDB(b *testing.B) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "report.db")
	st, err := sqlstore.Open(context.Background(), "sqlite", "file:"+path, grants.RealClock{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	sys := audit.Actor{Kind: audit.ActorSystem, ID: "accessbroker"}
	c := &grants.Change{}
	for i := range 100_000 {
		t0 := rptSince.Add(time.Duration(i) * 6 * time.Second)
		rid, gid := fmt.Sprintf("r_%06d", i), fmt.Sprintf("g_%06d", i)
		user := audit.Actor{Kind: audit.ActorUser, ID: fmt.Sprintf("U%04d", i%400)}
		email := fmt.Sprintf("user%d@example.com", i%400)
		approver := audit.Actor{Kind: audit.ActorUser, ID: fmt.Sprintf("U9%03d", i%7)}
		exp := t0.Add(time.Hour)
		ev := func(at time.Time, a audit.Actor, action audit.Action, kv ...string) {
			e := &audit.Event{ID: grants.NewID("e"), Time: at, Actor: a, Action: action, RequestID: rid, Resource: fmt.Sprintf("res-%d", i%20), Reason: "checking replication lag",
				Evidence: map[string]string{"person": email}}
			if action != audit.ActionRequestCreated && action != audit.ActionOnCallChecked && action != audit.ActionApprovalRecorded && action != audit.ActionRequestApproved {
				e.GrantID = gid
			}
			for k := 0; k+1 < len(kv); k += 2 {
				e.Evidence[kv[k]] = kv[k+1]
			}
			c.Events = append(c.Events, e)
		}
		ev(t0.Add(-time.Minute), user, audit.ActionRequestCreated, "source", "slack")
		ev(t0.Add(-time.Minute), sys, audit.ActionOnCallChecked, "on_call", "false", "path", "approval")
		ev(t0, approver, audit.ActionApprovalRecorded, "approver", approver.ID)
		ev(t0, approver, audit.ActionRequestApproved, "approvers", approver.ID, "path", "approval")
		ev(t0, approver, audit.ActionGrantIssuing, "approvers", approver.ID, "path", "approval", "expires_at", grants.Timestamp(exp))
		ev(t0.Add(time.Second), approver, audit.ActionGrantIssued, "expires_at", grants.Timestamp(exp))
		ev(t0.Add(time.Minute), user, audit.ActionGrantExtended, "old_expires_at", grants.Timestamp(exp), "expires_at", grants.Timestamp(exp.Add(30*time.Minute)))
		ev(t0.Add(20*time.Minute), user, audit.ActionGrantRevokeQueued, "cause", "manual")
		ev(t0.Add(20*time.Minute+time.Second), sys, audit.ActionGrantRevokeFailed, "cause", "manual", "attempt", "1")
		ev(t0.Add(21*time.Minute), sys, audit.ActionGrantRevoked, "cause", "manual")
		if len(c.Events) >= 5000 {
			if err := st.Apply(ctx, c); err != nil {
				b.Fatal(err)
			}
			c = &grants.Change{}
		}
	}
	if len(c.Events) > 0 {
		if err := st.Apply(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	return path
}

// BenchmarkReportFromSQLite: the report of a week of 100k grants / 1M audit events read from
// SQLite: reading the events alone (Search in pages of 10,000: by seq as audit.ReadReport
// does, and by time range), then reading and building (audit.ReadReport), then the whole
// `report --format csv` path.
func BenchmarkReportFromSQLite(b *testing.B) {
	path := benchReportDB(b)
	st, err := sqlstore.Open(context.Background(), "sqlite", "file:"+path, grants.RealClock{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	// read pages through every event of the report's range and counts them.
	read := func(b *testing.B, q audit.Query) {
		b.Helper()
		n := 0
		for {
			evs, err := st.Search(ctx, q)
			if err != nil {
				b.Fatal(err)
			}
			n += len(evs)
			if len(evs) < q.Limit {
				break
			}
			q.AfterSeq = evs[len(evs)-1].Seq
		}
		if n != 1_000_000 {
			b.Fatalf("read %d events, want 1000000", n)
		}
	}
	// By seq, with the upper time bound only: how audit.ReadReport pages.
	b.Run("read-events-by-seq", func(b *testing.B) {
		cpu0 := cpuTime()
		for b.Loop() {
			read(b, audit.Query{Until: rptUntil, Limit: audit.MaxQueryLimit})
		}
		b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
	})
	// With both time bounds, as `audit export --since --until` pages: SQLite's planner then
	// walks the time index and sorts the rest of the range for every page.
	b.Run("read-events-time-range", func(b *testing.B) {
		cpu0 := cpuTime()
		for b.Loop() {
			read(b, audit.Query{Since: rptSince.Add(-audit.ReportLookback), Until: rptUntil, Limit: audit.MaxQueryLimit})
		}
		b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
	})
	b.Run("read-and-build", func(b *testing.B) {
		cpu0 := cpuTime()
		for b.Loop() {
			r, err := newReporter(st, audit.ReportOptions{}).Build(ctx, rptSince, rptUntil)
			if err != nil || r.Grants != 100_000 {
				b.Fatalf("report of %d grants: %v", r.Grants, err)
			}
		}
		b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
	})
	b.Run("read-build-render-csv", func(b *testing.B) {
		cpu0 := cpuTime()
		for b.Loop() {
			if _, body, err := newReporter(st, audit.ReportOptions{}).Report(ctx, rptSince, rptUntil, audit.FormatCSV); err != nil || len(body) == 0 {
				b.Fatal(err)
			}
		}
		b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
	})
}

// cpuTime is the process's CPU time so far (user + system, every goroutine): a second
// witness beside wall time on a loaded machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
