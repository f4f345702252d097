package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/config"
	"github.com/accessbroker/accessbroker/fixtures/slackfake"
	"github.com/accessbroker/accessbroker/grants"
)

// The admin DSN's password: percent-encoded in the config's DSN, decoded in what a driver
// quotes.
const (
	scrubPasswordDecoded = "Adm1n/pa55@w0rd"
	scrubPasswordEncoded = "Adm1n%2Fpa55%40w0rd"
	scrubBotToken        = "xoxb-scrub-test-0123456789"
)

// dsnQuotingProvider fails like a careless driver: its errors quote the admin DSN's password,
// decoded on issue, as written in the DSN on revoke.
type dsnQuotingProvider struct {
	mu      sync.Mutex
	revokes int
}

func (p *dsnQuotingProvider) Kind() string { return config.ProviderPostgres }

func (p *dsnQuotingProvider) Issue(context.Context, grants.IssueRequest) (grants.Issued, error) {
	return grants.Issued{}, fmt.Errorf("connect as accessbroker with password %s: role cannot be created: %w", scrubPasswordDecoded, grants.ErrInvalid)
}

func (p *dsnQuotingProvider) Revoke(context.Context, grants.RevokeRequest) error {
	p.mu.Lock()
	p.revokes++
	p.mu.Unlock()
	return fmt.Errorf("dial postgres://accessbroker:%s@db.internal:5432/app: connection refused", scrubPasswordEncoded)
}

// TestProviderErrorQuotingDSNPasswordNeverLeaks runs the wiring of serve (config → app →
// broker, manager, revoker, Slack notifier) with a postgres resource whose provider quotes
// its admin DSN's password in every error. A break-glass request fails to issue and its
// revocation fails: the password appears in no log line, no audit event, no stored error and
// no Slack message (the requester's and the audit channel's).
func TestProviderErrorQuotingDSNPasswordNeverLeaks(t *testing.T) {
	dir := t.TempDir()
	sl := slackfake.New(slackfake.Options{Token: scrubBotToken, TeamID: "T0ACME"})
	t.Cleanup(sl.Close)
	sl.AddUser(slackfake.User{ID: "U0ALICE", TeamID: "T0ACME", Name: "alice", Email: "alice@example.com"})
	sl.AddChannel("C0AUDIT")
	t.Setenv("AB_DB", filepath.Join(dir, "ab.db"))
	t.Setenv("AB_KEY", filepath.Join(dir, "audit.key"))
	t.Setenv("AB_SLACK_URL", sl.APIURL())
	t.Setenv("AB_ADMIN_DSN", "postgres://accessbroker:"+scrubPasswordEncoded+"@db.internal:5432/app?sslmode=require")
	t.Setenv("AB_BOT_TOKEN", scrubBotToken)
	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, []byte(`
listen: "127.0.0.1:0"
store: {driver: sqlite, dsn: "file:${AB_DB}"}
audit: {signing_key_file: "${AB_KEY}"}
revoker: {backoff_base: 1s, backoff_max: 1m}
slack:
  api_url: "${AB_SLACK_URL}"
  team_id: T0ACME
  bot_token: "${AB_BOT_TOKEN}"
  signing_secret: scrub-test-signing-secret
  audit_channel: C0AUDIT
resources:
  - name: prod-db
    provider: postgres
    default_duration: 1h
    max_duration: 4h
    postgres: {dsn: "${AB_ADMIN_DSN}", roles: [readonly]}
    policy: {break_glass: true, approvers: {slack_users: [U0LEAD]}}
identities:
  - {slack: U0ALICE, slack_team: T0ACME, email: alice@example.com}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	if code := run(context.Background(), []string{"audit", "keygen", "--out", filepath.Join(dir, "audit.key")}, io.Discard, &stderr); code != 0 {
		t.Fatalf("keygen: %s", stderr.String())
	}
	cfg, ok := loadConfigFlag(config, &stderr)
	if !ok {
		t.Fatalf("config: %s", stderr.String())
	}

	logs := &syncBuffer{}
	ctx := t.Context()
	a, err := newApp(ctx, cfg, appOptions{logOut: logs}) // providers are set below
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	prov := &dsnQuotingProvider{}
	a.providers["prod-db"] = prov // the map the manager and revoker were built with
	f, err := buildFrontends(ctx, a, http.NewServeMux())
	if err != nil {
		t.Fatal(err)
	}

	req, err := f.broker.Submit(ctx, broker.RequestInput{TeamID: "T0ACME", UserID: "U0ALICE", Resource: "prod-db",
		Duration: time.Hour, Reason: "database on fire, break glass", BreakGlass: true})
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if err := f.broker.Process(ctx, req.ID); err != nil {
		t.Fatalf("Process: %v", err)
	}
	listed, err := a.store.ListGrants(ctx, grants.GrantFilter{})
	if err != nil || len(listed) != 1 {
		t.Fatalf("grants = %d (%v), want the failed one", len(listed), err)
	}
	g := listed[0]
	if err := a.revoker.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	prov.mu.Lock()
	revokes := prov.revokes
	prov.mu.Unlock()
	if revokes == 0 {
		t.Fatal("the revoker never called the provider")
	}
	stored, err := a.store.GetGrant(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.State != grants.StateRevokeFailed {
		t.Fatalf("grant state %s, want revoke_failed", stored.State)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a hang guard, not a timing assertion
	defer cancel()
	msgs, err := sl.WaitFor(wctx, func(ms []slackfake.Message) bool {
		var toUser, alert bool
		for _, m := range ms {
			toUser = toUser || (m.Channel != "C0AUDIT" && strings.Contains(m.Text, "could not be issued"))
			alert = alert || (m.Channel == "C0AUDIT" && strings.Contains(m.Text, "ALERT"))
		}
		return toUser && alert
	})
	if err != nil {
		t.Fatalf("Slack never got the requester's failure message and the audit alert: %v; got %+v", err, sl.Messages())
	}
	evs, err := a.store.Search(ctx, audit.Query{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	auditJSON, err := json.Marshal(evs)
	if err != nil {
		t.Fatal(err)
	}
	slackJSON, err := json.Marshal(msgs)
	if err != nil {
		t.Fatal(err)
	}
	for where, text := range map[string]string{
		"the logs":               logs.String(),
		"the audit trail":        string(auditJSON),
		"Slack":                  string(slackJSON),
		"the grant's last error": stored.LastError,
	} {
		for _, pw := range []string{scrubPasswordDecoded, scrubPasswordEncoded} {
			if strings.Contains(text, pw) {
				t.Errorf("the DSN password reached %s:\n%s", where, excerpt(text, pw))
			}
		}
	}
	if !strings.Contains(string(slackJSON), "[REDACTED]") || !strings.Contains(string(auditJSON), "[REDACTED]") {
		t.Error("the scrubbed errors should still show where a secret was removed")
	}
}
