package broker_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/broker/brokertest"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

const (
	team  = "T0TEAM"
	alice = "U0ALICE" // requester
	bob   = "U0BOB"   // approver
	carol = "U0CAROL" // approver
	dave  = "U0DAVE"  // not an approver
)

var start = time.Date(2026, 3, 2, 13, 0, 0, 0, time.UTC)

// prodDB: on-call engineers are auto-approved; otherwise Bob or Carol approve.
func prodDB() grants.Resource {
	return grants.Resource{
		Name: "prod-db", Provider: "postgres", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour,
		Policy: grants.Policy{
			OnCallEscalationPolicies: []string{"PABC123"}, AutoApproveOnCall: true,
			ApproverSlackUsers: []string{bob, carol}, MinApprovals: 1, CapToShift: true,
		},
	}
}

type env struct {
	clock  *clocktest.Fake
	store  *sqlstore.Store
	mgr    *grants.Manager
	prov   *brokertest.Provider
	notes  *brokertest.Notifier
	dir    *brokertest.Directory
	groups *brokertest.Groups
	oncall *brokertest.StaticOnCall
	b      *broker.Broker
}

func newEnv(t *testing.T, resources ...grants.Resource) *env {
	t.Helper()
	if len(resources) == 0 {
		resources = []grants.Resource{prodDB()}
	}
	e := &env{clock: clocktest.New(start)}
	st, err := sqlstore.Open(t.Context(), "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), e.clock, nil)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	e.store = st
	e.prov = brokertest.NewProvider("postgres")
	provs := map[string]grants.Provider{} // keyed by resource name
	for _, r := range resources {
		provs[r.Name] = e.prov
	}
	e.mgr = grants.NewManager(st, provs, resources, e.clock, nil, grants.ManagerOptions{})
	e.notes = brokertest.NewNotifier()
	e.dir = brokertest.NewDirectory(
		grants.Person{SlackUserID: alice, Email: "alice@example.com"},
		grants.Person{SlackUserID: bob, Email: "bob@example.com"},
	)
	e.groups = brokertest.NewGroups()
	e.oncall = brokertest.NewStaticOnCall(e.clock)
	e.b = broker.New(broker.Deps{Manager: e.mgr, Store: e.store, Clock: e.clock, Leases: e.store, Once: e.store, OnCall: e.oncall, Directory: e.dir, Notifier: e.notes, Groups: e.groups, Logger: testLogger(t)})
	return e
}

func (e *env) setOnCall(user string, end time.Time) {
	e.oncall.Set(user, broker.Shift{EscalationPolicyID: "PABC123", EscalationPolicyName: "DB on-call", Level: 1, Start: start.Add(-time.Hour), End: end})
}

func (e *env) submit(t *testing.T, in broker.RequestInput) grants.Request {
	t.Helper()
	if in.TeamID == "" {
		in.TeamID = team
	}
	if in.UserID == "" {
		in.UserID = alice
	}
	if in.Resource == "" {
		in.Resource = "prod-db"
	}
	if in.Duration == 0 {
		in.Duration = time.Hour
	}
	if in.Reason == "" {
		in.Reason = "checking replication lag"
	}
	r, err := e.b.Submit(t.Context(), in)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	return r
}

func (e *env) process(t *testing.T, r grants.Request) {
	t.Helper()
	if err := e.b.Process(t.Context(), r.ID); err != nil {
		t.Fatalf("Process: %v", err)
	}
}

func (e *env) request(t *testing.T, id string) grants.Request {
	t.Helper()
	r, err := e.store.GetRequest(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (e *env) grantsFor(t *testing.T, requestID string) []grants.Grant {
	t.Helper()
	gs, err := e.store.ListGrants(t.Context(), grants.GrantFilter{RequestID: requestID})
	if err != nil {
		t.Fatal(err)
	}
	return gs
}

func (e *env) allGrants(t *testing.T) []grants.Grant {
	t.Helper()
	gs, err := e.store.ListGrants(t.Context(), grants.GrantFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return gs
}

// events returns every audit event, oldest first.
func (e *env) events(t *testing.T) []audit.Event {
	t.Helper()
	evs, err := e.store.ReadEvents(t.Context(), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func (e *env) countAction(t *testing.T, a audit.Action) int {
	t.Helper()
	n := 0
	for _, ev := range e.events(t) {
		if ev.Action == a {
			n++
		}
	}
	return n
}

func (e *env) decide(t *testing.T, user, requestID string, approve bool) error {
	t.Helper()
	return e.b.Decide(t.Context(), broker.DecisionInput{TeamID: team, UserID: user, RequestID: requestID, Approve: approve, ResponseURL: "https://hooks.example/" + user})
}

// assertNoSecrets fails if any audit event mentions a credential value the fake provider made.
func (e *env) assertNoSecrets(t *testing.T) {
	t.Helper()
	for _, ev := range e.events(t) {
		if s := ev.Reason + strings.Join(mapValues(ev.Evidence), " "); strings.Contains(s, "secret-") {
			t.Errorf("audit event %s %s holds a secret: %s", ev.Action, ev.ID, s)
		}
	}
	for _, n := range e.notes.Notes("") {
		if strings.Contains(n.Text, "secret-") {
			t.Errorf("%s note holds a secret: %s", n.Kind, n.Text)
		}
	}
}

// testLogger sends log lines to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func waitCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
