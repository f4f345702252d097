package console_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/broker/brokertest"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/integrations/console"
)

// The benchmark's database: benchGrants grants (each with its request and the events of
// request, on-call check, approval, issue and revocation; 200 still active), 50 pending
// requests, and proxied sessions with statements on some grants, up to benchEvents audit
// events in all, spread over 13 weeks. Built once per run (about a minute on 2 cores);
// ACCESSBROKER_CONSOLE_BENCH_DB keeps it at that path for later runs.
const (
	benchGrants    = 100_000
	benchEvents    = 1_000_000
	benchUsers     = 500
	benchActive    = 200
	benchPending   = 50
	benchWeeks     = 13
	benchStmtGrant = 100 // statements per grant with a session
)

var benchResources = []string{"prod-db", "prod-aws", "prod-sso", "infra-admins", "billing-db"}

var benchEnd = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) // a Wednesday: the last complete week is whole

func benchUser(i int) string { return fmt.Sprintf("U%05d", i%benchUsers) }

var (
	benchOnce sync.Once
	benchPath string
	benchErr  error
	benchIDs  benchSample
)

// benchSample are ids the pages are asked about.
type benchSample struct {
	grant, sessionGrant, request, pending string
}

func seedBench(b *testing.B) (string, benchSample) {
	b.Helper()
	benchOnce.Do(func() {
		benchPath = os.Getenv("ACCESSBROKER_CONSOLE_BENCH_DB")
		if benchPath == "" {
			dir, err := os.MkdirTemp("", "ab-console-bench")
			if err != nil {
				benchErr = err
				return
			}
			benchPath = filepath.Join(dir, "console.db")
		}
		idsPath := benchPath + ".ids"
		if raw, err := os.ReadFile(idsPath); err == nil {
			f := strings.Fields(string(raw))
			if len(f) == 4 {
				benchIDs = benchSample{f[0], f[1], f[2], f[3]}
				return
			}
		}
		_ = os.Remove(benchPath)
		t0 := time.Now()
		benchIDs, benchErr = buildBenchDB(benchPath)
		if benchErr == nil {
			benchErr = os.WriteFile(idsPath, []byte(strings.Join([]string{benchIDs.grant, benchIDs.sessionGrant, benchIDs.request, benchIDs.pending}, " ")), 0o600)
		}
		fmt.Fprintf(os.Stderr, "console bench: built %s in %s\n", benchPath, time.Since(t0).Round(time.Second))
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchPath, benchIDs
}

func buildBenchDB(path string) (benchSample, error) {
	var ids benchSample
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, "sqlite", "file:"+path, grants.RealClock{}, nil)
	if err != nil {
		return ids, err
	}
	defer st.Close()
	begin := benchEnd.Add(-benchWeeks * 7 * 24 * time.Hour)
	step := (benchEnd.Sub(begin) - time.Hour) / benchGrants
	perGrant := 6
	sessionGrants := (benchEvents - benchGrants*perGrant) / (benchStmtGrant + 2)
	sessionEvery := benchGrants / max(1, sessionGrants)
	sys := audit.Actor{Kind: audit.ActorSystem, ID: "accessbroker"}
	c := &grants.Change{}
	flush := func() error {
		if len(c.Events) == 0 {
			return nil
		}
		err := st.Apply(ctx, c)
		c = &grants.Change{}
		return err
	}
	total := 0
	for i := range benchGrants {
		at := begin.Add(time.Duration(i) * step).Truncate(time.Millisecond)
		user := benchUser(i)
		res := benchResources[i%len(benchResources)]
		person := grants.Person{SlackTeamID: team, SlackUserID: user, Email: strings.ToLower(user) + "@example.com"}
		r := &grants.Request{ID: grants.NewID("r"), Requester: person, Resource: res, Duration: time.Hour, Reason: "checking replication lag",
			Source: grants.SourceSlack, State: grants.RequestApproved, Stage: grants.StageDecided, CreatedAt: at, DecidedAt: at.Add(time.Second),
			ExpiresAt: at.Add(time.Hour), Approvals: []grants.Approval{{By: "U0BOB", At: at.Add(time.Second), Approved: true}}, Evidence: map[string]string{"path": "approval"}}
		g := &grants.Grant{ID: grants.NewID("g"), RequestID: r.ID, Resource: res, Provider: "postgres", Person: person, State: grants.StateRevoked,
			Reason: r.Reason, CreatedAt: at.Add(2 * time.Second), IssuedAt: at.Add(2 * time.Second), ExpiresAt: at.Add(time.Hour + 2*time.Second),
			RevokedAt: at.Add(time.Hour + 3*time.Second), RevokeCause: grants.CauseExpired, DueAt: at.Add(time.Hour + 2*time.Second)}
		if i >= benchGrants-benchActive {
			g.State, g.RevokedAt, g.RevokeCause = grants.StateActive, time.Time{}, ""
			g.ExpiresAt = benchEnd.Add(2 * time.Hour)
			g.DueAt = g.ExpiresAt
		}
		ev := func(t time.Time, actor audit.Actor, a audit.Action, reason string, e map[string]string) *audit.Event {
			x := grants.NewGrantEvent(t, actor, a, g, reason, e)
			if a == audit.ActionRequestCreated || a == audit.ActionOnCallChecked || a == audit.ActionRequestApproved {
				x.GrantID = ""
			}
			return x
		}
		c.Requests = append(c.Requests, grants.RequestWrite{Request: r, Create: true})
		c.Grants = append(c.Grants, grants.GrantWrite{Grant: g, Create: true})
		c.Events = append(c.Events,
			ev(at, audit.Actor{Kind: audit.ActorUser, ID: user}, audit.ActionRequestCreated, r.Reason, map[string]string{"duration": "1h0m0s", "source": "slack"}),
			ev(at, sys, audit.ActionOnCallChecked, "not on call; approval needed", map[string]string{"on_call": "false"}),
			ev(at.Add(time.Second), audit.Actor{Kind: audit.ActorUser, ID: "U0BOB"}, audit.ActionRequestApproved, "approved by 1 of 1", map[string]string{"approvers": "U0BOB"}),
			ev(at.Add(2*time.Second), sys, audit.ActionGrantIssuing, r.Reason, map[string]string{"expires_at": grants.Timestamp(g.ExpiresAt), "approvers": "U0BOB", "path": "approval"}),
			ev(at.Add(2*time.Second), sys, audit.ActionGrantIssued, r.Reason, map[string]string{"expires_at": grants.Timestamp(g.ExpiresAt)}),
		)
		total += 5
		if g.State == grants.StateRevoked {
			c.Events = append(c.Events, ev(g.RevokedAt, sys, audit.ActionGrantRevoked, "expired", map[string]string{"cause": "expired"}))
			total++
		}
		if i%sessionEvery == 0 && total+benchStmtGrant+2 <= benchEvents {
			sid := fmt.Sprintf("s%07d", i)
			t := at.Add(3 * time.Second)
			c.Events = append(c.Events, ev(t, audit.Actor{Kind: audit.ActorUser, ID: user}, audit.ActionSessionStarted, "", map[string]string{"session_id": sid, "role": "ab_" + user, "database": "app"}))
			for k := range benchStmtGrant {
				c.Events = append(c.Events, ev(t, audit.Actor{Kind: audit.ActorUser, ID: user}, audit.ActionSessionStatement, "",
					map[string]string{"session_id": sid, "order": strconv.Itoa(k + 1), "text": "SELECT * FROM pg_stat_replication", "tag": "SELECT 1"}))
			}
			c.Events = append(c.Events, ev(t.Add(time.Second), audit.Actor{Kind: audit.ActorUser, ID: user}, audit.ActionSessionEnded, "", map[string]string{"session_id": sid, "reason": "client_closed"}))
			total += benchStmtGrant + 2
			if ids.sessionGrant == "" && i > benchGrants/2 {
				ids.sessionGrant = g.ID
			}
		}
		if i == benchGrants*3/4 {
			ids.grant, ids.request = g.ID, r.ID
		}
		if len(c.Events) >= 5000 {
			if err := flush(); err != nil {
				return ids, err
			}
		}
	}
	// Pending requests waiting for bob, and filler events up to benchEvents.
	at := benchEnd.Add(-30 * time.Minute)
	for i := range benchPending {
		user := benchUser(i + 7)
		r := &grants.Request{ID: grants.NewID("r"), Requester: grants.Person{SlackTeamID: team, SlackUserID: user}, Resource: "prod-db", Duration: time.Hour,
			Reason: "pending for the inbox", Source: grants.SourceSlack, State: grants.RequestPending, Stage: grants.StageAwaitingApproval,
			CreatedAt: at, ExpiresAt: benchEnd.Add(time.Hour), Evidence: map[string]string{}}
		c.Requests = append(c.Requests, grants.RequestWrite{Request: r, Create: true})
		c.Events = append(c.Events, &audit.Event{ID: grants.NewID("e"), Time: at, Actor: audit.Actor{Kind: audit.ActorUser, ID: user},
			Action: audit.ActionRequestCreated, RequestID: r.ID, Resource: r.Resource, Reason: r.Reason})
		total++
		ids.pending = r.ID
	}
	for total < benchEvents {
		c.Events = append(c.Events, &audit.Event{ID: grants.NewID("e"), Time: at, Actor: audit.Actor{Kind: audit.ActorUnknown, ID: "203.0.113.9"},
			Action: audit.ActionWebhookRejected, Reason: "bad signature"})
		total++
		if len(c.Events) >= 5000 {
			if err := flush(); err != nil {
				return ids, err
			}
		}
	}
	return ids, flush()
}

// BenchmarkConsolePages serves every page of the console over a 100,000-grant,
// 1,000,000-event SQLite database and reports each page's p50 and p99 (ms) and the
// first (cold) answer. The pages are served in process (handler, routing, templates, store),
// without a network hop. Run: go test -run '^$' -bench BenchmarkConsolePages -benchtime 200x
// ./integrations/console
func BenchmarkConsolePages(b *testing.B) {
	path, ids := seedBench(b)
	clock := clocktest.New(benchEnd)
	st, err := sqlstore.Open(context.Background(), "sqlite", "file:"+path, clock, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	var res []grants.Resource
	for _, n := range benchResources {
		res = append(res, grants.Resource{Name: n, Provider: "postgres", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour,
			Policy: grants.Policy{ApproverSlackUsers: []string{"U0BOB"}, MinApprovals: 1}})
	}
	provs := map[string]grants.Provider{}
	for _, n := range benchResources {
		provs[n] = brokertest.NewProvider("postgres")
	}
	mgr := grants.NewManager(st, provs, res, clock, nil, grants.ManagerOptions{})
	var people []grants.Person
	for i := range benchUsers {
		people = append(people, grants.Person{SlackUserID: benchUser(i), Email: strings.ToLower(benchUser(i)) + "@example.com"})
	}
	people = append(people, grants.Person{SlackUserID: "U0BOB", Email: "bob@example.com"}, grants.Person{SlackUserID: carol, Email: "carol@example.com"})
	dir := brokertest.NewDirectory(people...)
	groups := brokertest.NewGroups()
	br := broker.New(broker.Deps{Manager: mgr, Store: st, Clock: clock, Leases: st, Once: st, OnCall: brokertest.NewStaticOnCall(clock),
		Directory: dir, Notifier: brokertest.NewNotifier(), Groups: groups, Logger: slog.New(slog.DiscardHandler)})
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	c, err := console.New(console.Config{BaseURL: "http://console.test", TeamID: team, SessionKey: key, AuditorUsers: []string{carol},
		Broker: br, Store: st, Audit: st, Revoker: mgr, Directory: dir, Groups: groups, PublicKey: pub, Clock: clock,
		StandIn: []console.StandInUser{{Name: "eng", TeamID: team, UserID: benchUser(42)}, {Name: "bob", TeamID: team, UserID: "U0BOB"}, {Name: "carol", TeamID: team, UserID: carol}}})
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	if err := c.Chain().Step(context.Background()); err != nil {
		b.Fatal(err)
	}
	if cs := c.Chain().State(); cs.VerifiedSeq < benchEvents || cs.Damage != "" {
		b.Fatalf("chain state after the first pass: %+v", cs)
	}
	b.Logf("chain marks: first pass over %d events took %s", c.Chain().State().VerifiedSeq, time.Since(t0).Round(time.Millisecond))
	mux := http.NewServeMux()
	mux.Handle(console.Prefix, c)
	session := func(user string) (*http.Cookie, string) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "http://console.test/ui/signin/standin", strings.NewReader(url.Values{"user": {user}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		mux.ServeHTTP(rec, req)
		cks := rec.Result().Cookies()
		if len(cks) == 0 {
			b.Fatalf("sign in as %s: %d %s", user, rec.Code, rec.Body.String())
		}
		rec = httptest.NewRecorder()
		req = httptest.NewRequest(http.MethodGet, "http://console.test/ui/request", nil)
		req.AddCookie(cks[0])
		mux.ServeHTTP(rec, req)
		m := csrfRE.FindStringSubmatch(rec.Body.String())
		if m == nil {
			b.Fatalf("no CSRF token for %s", user)
		}
		return cks[0], m[1]
	}
	eng, engCSRF := session(benchUser(42))
	bob, _ := session("U0BOB")
	aud, _ := session(carol)
	lastSeq := strconv.Itoa(benchEvents - 500)
	// Stories of many grants, each seen once in a while: more events than the story cache
	// holds, so that page measures a story read from the log (a cache miss) every time.
	many, err := st.ListGrants(context.Background(), grants.GrantFilter{States: []grants.State{grants.StateRevoked}, Limit: 2000})
	if err != nil || len(many) < 2000 {
		b.Fatalf("grants for the many-stories page: %d, %v", len(many), err)
	}
	var manyPaths []string
	for _, g := range many {
		manyPaths = append(manyPaths, "/ui/grants/"+g.ID)
	}
	pages := []struct {
		name   string
		who    *http.Cookie
		method string
		path   string
		form   url.Values
		want   string
		paths  []string // when set, the page is each of these in turn (path is unused)
	}{
		{"home", eng, "GET", "/ui/", nil, "Your recent grants", nil},
		{"grants-own", eng, "GET", "/ui/grants", nil, "Your past grants", nil},
		{"grants-all", aud, "GET", "/ui/grants?all=1", nil, "Everybody's live grants", nil},
		{"grants-all-resource", aud, "GET", "/ui/grants?all=1&resource=prod-db", nil, "Everybody's live grants", nil},
		{"grant-story", aud, "GET", "/ui/grants/" + ids.grant, nil, "grant.issued", nil},
		{"grant-story-session", aud, "GET", "/ui/grants/" + ids.sessionGrant, nil, "Database sessions", nil},
		{"grant-story-many", aud, "GET", "", nil, "grant.issued", manyPaths},
		{"request", aud, "GET", "/ui/requests/" + ids.request, nil, "request.approved", nil},
		{"request-form", eng, "GET", "/ui/request", nil, "dry run", nil},
		{"dry-run", eng, "POST", "/ui/request", url.Values{"csrf": {engCSRF}, "action": {"dry-run"}, "resource": {"prod-db"}, "duration": {"1h"}, "reason": {"bench"}}, "Dry run: this request", nil},
		{"approvals", bob, "GET", "/ui/approvals", nil, ids.pending, nil},
		{"audit-latest", aud, "GET", "/ui/audit", nil, "Next page", nil},
		{"audit-next-page", aud, "GET", "/ui/audit?after=" + lastSeq, nil, "Next page", nil},
		{"audit-actor", aud, "GET", "/ui/audit?actor=" + benchUser(42), nil, "Next page", nil},
		{"audit-action-resource", aud, "GET", "/ui/audit?action=grant.issued&resource=prod-db", nil, "Next page", nil},
		{"audit-grant", aud, "GET", "/ui/audit?grant=" + ids.sessionGrant, nil, "session.statement", nil},
		{"audit-since", aud, "GET", "/ui/audit?since=72h&action=grant.revoked", nil, "grant.revoked", nil},
		{"audit-export-grant", aud, "GET", "/ui/audit/export?format=jsonl&grant=" + ids.grant, nil, "grant.issued", nil},
		{"report", aud, "GET", "/ui/report", nil, "Grants per day by resource", nil},
		{"chain", aud, "GET", "/ui/chain", nil, "from genesis up to seq", nil},
	}
	for _, p := range pages {
		b.Run(p.name, func(b *testing.B) {
			served := 0
			serve := func() (time.Duration, time.Duration) {
				var body *strings.Reader
				if p.form != nil {
					body = strings.NewReader(p.form.Encode())
				} else {
					body = strings.NewReader("")
				}
				path := p.path
				if len(p.paths) > 0 {
					path = p.paths[served%len(p.paths)]
				}
				served++
				req := httptest.NewRequest(p.method, "http://console.test"+path, body)
				if p.form != nil {
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				}
				req.AddCookie(p.who)
				rec := httptest.NewRecorder()
				c0, _ := threadCPU()
				s := time.Now()
				mux.ServeHTTP(rec, req)
				d := time.Since(s)
				c1, _ := threadCPU()
				if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), p.want) {
					b.Fatalf("%s: %d, want 200 with %q:\n%s", p.path, rec.Code, p.want, rec.Body.String())
				}
				return d, c1 - c0
			}
			// The page is served on one OS thread, so that its thread's CPU clock measures
			// the page's own work (the GC's background workers run elsewhere: allocs/op and
			// B/op, with -benchmem, witness that part).
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			_, cpuOK := threadCPU()
			cold, _ := serve()
			var lat, cpu []time.Duration
			for b.Loop() {
				d, c := serve()
				lat, cpu = append(lat, d), append(cpu, c)
			}
			b.ReportMetric(pct(lat, 50), "p50-ms")
			b.ReportMetric(pct(lat, 99), "p99-ms")
			b.ReportMetric(float64(cold.Microseconds())/1000, "cold-ms")
			if cpuOK {
				// CPU time does not grow while the request waits for a core: the load-free
				// part of the latency.
				b.ReportMetric(pct(cpu, 50), "cpu-p50-ms")
				b.ReportMetric(pct(cpu, 99), "cpu-p99-ms")
			}
		})
	}
}

// pct is the p-th percentile of ds in milliseconds (ds is sorted in place). With -benchtime
// 200x the p99 is the second-slowest of 200 answers; run -benchtime 1000x or more for a p99
// that one descheduled request does not decide.
func pct(ds []time.Duration, p int) float64 {
	slices.Sort(ds)
	return float64(ds[min(len(ds)-1, len(ds)*p/100)].Microseconds()) / 1000
}
