package awsprov

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/accessbroker/accessbroker/fixtures/awsfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
)

const (
	testKey    = "AKIDEXAMPLE"
	testSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	instance   = "arn:aws:sso:::instance/ssoins-1111111111111111"
	permSet    = "arn:aws:sso:::permissionSet/ssoins-1111111111111111/ps-2222222222222222"
	storeID    = "d-1234567890"
	accountID  = "123456789012"
)

var t0 = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

var alice = grants.Person{SlackTeamID: "T1", SlackUserID: "U0ALICE", Email: "alice@example.com"}
var bob = grants.Person{SlackTeamID: "T1", SlackUserID: "U0BOB", Email: "bob@example.com"}

// logBuffer collects log output safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// env is a fake AWS with a fake clock, and an aws.Config pointed at it through the retrying
// HTTP client.
type env struct {
	fake   *awsfake.Server
	clock  *clocktest.Fake
	cfg    aws.Config
	logs   *logBuffer
	logger *slog.Logger
}

func newEnv(t *testing.T, opts awsfake.Options) *env {
	t.Helper()
	clock := clocktest.New(t0)
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	opts.SecretAccessKey = testSecret
	opts.Region = "us-east-1"
	fake := awsfake.New(opts)
	t.Cleanup(fake.Close)
	logs := &logBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return &env{fake: fake, clock: clock, cfg: loadConfig(t, fake.URL(), testSecret, logger), logs: logs, logger: logger}
}

func loadConfig(t *testing.T, endpoint, secret string, logger *slog.Logger) aws.Config {
	t.Helper()
	httpc := httpclient.New(httpclient.Options{
		Logger: logger, RetryMax: 3, WaitMin: time.Millisecond, WaitMax: 5 * time.Millisecond,
		MaxRetryAfter: 10 * time.Millisecond, ReturnLastResponse: true,
	})
	cfg, err := LoadAWSConfig(t.Context(), "us-east-1", endpoint, httpc,
		WithStaticCredentials(testKey, secret), WithThrottleRetries(4, 5*time.Millisecond), WithoutSharedConfigFiles())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// newSTS adds a role to the fake and returns a provider on it.
func (e *env) newSTS(t *testing.T, maxSession time.Duration, cfg STSConfig, opts ...STSOption) (*STSProvider, awsfake.Role) {
	t.Helper()
	role := e.fake.AddRole("oncall-admin", maxSession)
	cfg.RoleARN = role.ARN
	opts = append([]STSOption{WithFederationURL(e.fake.FederationURL())}, opts...)
	p, err := NewSTS(t.Context(), cfg, e.cfg, e.clock, e.logger, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p, role
}

func issueReq(p grants.Person, id string, expires time.Time) grants.IssueRequest {
	return grants.IssueRequest{GrantID: id, Resource: "prod-aws", Person: p, ExpiresAt: expires, Reason: "test"}
}

func fields(c grants.Credential) map[string]string {
	m := map[string]string{}
	for _, f := range c.Reveal() {
		m[f.Name] = f.Value
	}
	return m
}

func mustIssue(t *testing.T, p grants.Provider, req grants.IssueRequest) grants.Issued {
	t.Helper()
	iss, err := p.Issue(t.Context(), req)
	if err != nil {
		t.Fatalf("Issue(%s): %v", req.GrantID, err)
	}
	return iss
}

func mustRevoke(t *testing.T, p grants.Provider, id string, person grants.Person, h grants.Handle) {
	t.Helper()
	if err := p.Revoke(t.Context(), grants.RevokeRequest{GrantID: id, Resource: "prod-aws", Person: person, Handle: h}); err != nil {
		t.Fatalf("Revoke(%s): %v", id, err)
	}
}

// sessionWorks reports whether the credential issued for the session can still be used.
func (e *env) sessionWorks(t *testing.T, sessionName string) error {
	t.Helper()
	s, ok := e.fake.SessionByName(sessionName)
	if !ok {
		return awsfake.ErrNoSuchSession
	}
	return e.fake.CheckSession(s.AccessKeyID, "s3:GetObject")
}

func countCalls(e *env, service, action string) int { return len(e.fake.CallsTo(service, action)) }

// assertNoSecretsLogged fails if any of the values shows in the log output.
func assertNoSecretsLogged(t *testing.T, logs string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("log output contains a secret value (%d chars)", len(s))
		}
	}
}

// driveClock advances the fake clock whenever someone waits on it, until done is closed.
func driveClock(ctx context.Context, clock *clocktest.Fake, step time.Duration, done <-chan struct{}) {
	for {
		if err := clock.BlockUntil(ctx, 1); err != nil {
			return
		}
		select {
		case <-done:
			return
		default:
		}
		clock.Advance(step)
	}
}

func newClock() *clocktest.Fake { return clocktest.New(t0) }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
