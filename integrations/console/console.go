// Package console is accessbroker's web console, served under /ui/ by `serve` itself: sign
// in with Slack (OpenID Connect), the grants and requests a person may see, a request form
// with a dry run, the approvals inbox, the whole story of each grant with its audit seqs
// and chain marks, audit search and export, the weekly report with its anomalies and
// pictures, and the audit chain's state.
//
// Every change goes through the broker's own operations (the same as Slack's buttons and
// commands) or, for an auditor's revocation, through the grants manager as the admin API
// does; the console never writes the store itself. Pages are rendered on the server with
// html/template and read without JavaScript; every asset is embedded. A credential is
// never shown: it goes to its owner by Slack direct message, as from Slack.
package console

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

// Prefix is where the console is mounted.
const Prefix = "/ui/"

// Broker is the part of *broker.Broker the console acts through: the same operations as
// the Slack front end, plus the dry run.
type Broker interface {
	Submit(ctx context.Context, in broker.RequestInput) (grants.Request, error)
	Process(ctx context.Context, requestID string) error
	DryRun(ctx context.Context, in broker.RequestInput) (broker.Preview, error)
	Decide(ctx context.Context, in broker.DecisionInput) error
	Done(ctx context.Context, c broker.Caller, grantID string) (grants.Grant, error)
	SubmitExtension(ctx context.Context, in broker.ExtensionInput) (grants.Request, error)
	Resources() []grants.Resource
	RecordRejection(ctx context.Context, r broker.Rejection) error
}

var _ Broker = (*broker.Broker)(nil)

// Store is what the console reads grants and requests from (grants/sqlstore implements it).
type Store interface {
	GetGrant(ctx context.Context, id string) (grants.Grant, error)
	ListGrants(ctx context.Context, f grants.GrantFilter) ([]grants.Grant, error)
	GetRequest(ctx context.Context, id string) (grants.Request, error)
	ListRequests(ctx context.Context, f grants.RequestFilter) ([]grants.Request, error)
}

// AuditLog is what the console reads the audit trail through (grants/sqlstore implements
// it): search for pages and exports, the raw chain and checkpoints for the chain marks.
type AuditLog interface {
	Search(ctx context.Context, q audit.Query) ([]audit.Event, error)
	audit.Reader
}

// Revoker ends a grant on an auditor's behalf (grants.Manager implements it), the path the
// admin API uses.
type Revoker interface {
	Revoke(ctx context.Context, grantID string, cause grants.RevokeCause, actor audit.Actor, reason string) (grants.Grant, error)
}

// AuditChannel posts one line to the Slack audit channel (integrations/slack's Notifier
// implements it, as broker.Notifier). Optional.
type AuditChannel interface {
	PostAudit(ctx context.Context, line string) error
}

// Checkpoints reports the newest signed checkpoint and how many witnesses hold it.
// Optional.
type Checkpoints interface {
	LatestCheckpoint(ctx context.Context) (audit.ReportCheckpoint, bool, error)
}

// StandInUser is a person the demo lets anyone sign in as, without Slack.
type StandInUser struct {
	Name   string // shown on the button, e.g. "alice"
	TeamID string
	UserID string
	Role   string // shown next to the name, e.g. "engineer"
}

// Config wires the console. Base URL, Broker, Store, Audit, Directory, Clock, TeamID and
// SessionKey are required, and either the Slack client (ClientID, ClientSecret) or
// StandIn.
type Config struct {
	// BaseURL is the console's public address (console.base_url), e.g.
	// https://access.example.com: the OpenID redirect URI is BaseURL + /ui/signin/callback,
	// and cookies are Secure when it is https.
	BaseURL string
	// IssuerURL is the OpenID Connect issuer (default https://slack.com; tests point it at
	// fixtures/oidcfake).
	IssuerURL string
	// ClientID and ClientSecret are the Slack app's (console.slack_client_id,
	// console.slack_client_secret).
	ClientID     string
	ClientSecret string
	// HTTPClient carries the OpenID calls (discovery, JWKS, token). Default http.DefaultClient.
	HTTPClient *http.Client
	// TeamID is the only Slack workspace whose people may sign in (slack.team_id).
	TeamID string
	// SessionKey signs the session and sign-in cookies (at least 32 bytes). Every replica
	// must have the same key; cmd derives it from the client secret.
	SessionKey []byte
	// SessionTTL is how long a sign-in lasts (default 8h).
	SessionTTL time.Duration
	// Auditors: Slack users, and members of a usergroup, who see everything read-only and
	// may revoke grants with a reason (console.auditors).
	AuditorUsers     []string
	AuditorUsergroup string

	Broker    Broker
	Store     Store
	Audit     AuditLog
	Revoker   Revoker
	Directory broker.Directory
	Groups    broker.Groups // needed for the auditor usergroup and approver usergroups
	// AuditChannel, when set, is told of an auditor's revocation from the console, as
	// /access revoke tells it (who asked, and why); the revoker's own line when the access
	// is gone follows, as for every revocation.
	AuditChannel AuditChannel
	// Checkpoints, when set, tells the chain page how many witnesses hold the newest
	// checkpoint.
	Checkpoints Checkpoints
	// PublicKey verifies checkpoint signatures for the chain marks; RetiredKeys are the
	// keys of older checkpoints (audit.retired_public_keys).
	PublicKey   ed25519.PublicKey
	RetiredKeys []ed25519.PublicKey
	Clock       grants.Clock
	Logger      *slog.Logger

	// StandIn, when set (the demo only), replaces Sign in with Slack by a choice of these
	// people. It is no configuration key: serve never sets it.
	StandIn []StandInUser
	// ProcessTimeout bounds the decision of a submitted request (on-call check, issue)
	// while the browser waits (default 20s); the request is recorded before, so a timeout
	// only means the page shows it still pending.
	ProcessTimeout time.Duration
}

// Console is the http.Handler for /ui/.
type Console struct {
	cfg      Config
	log      *slog.Logger
	base     *url.URL
	secure   bool
	sessions sessionCodec
	oidc     *oidcClient
	chain    *ChainWatch
	handler  http.Handler
	pages    *pageSet
	weeks    weekCache
	stories  storyCache
	groups   *groupCache
}

// New checks cfg and returns the console. It does no network I/O: the OpenID provider is
// discovered at the first sign-in (and again after a failure).
func New(cfg Config) (*Console, error) {
	var missing []string
	for name, ok := range map[string]bool{
		"BaseURL": cfg.BaseURL != "", "Broker": cfg.Broker != nil, "Store": cfg.Store != nil, "Audit": cfg.Audit != nil,
		"Directory": cfg.Directory != nil, "Clock": cfg.Clock != nil, "TeamID": cfg.TeamID != "",
	} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("console: missing %s", strings.Join(missing, ", "))
	}
	if len(cfg.SessionKey) < 32 {
		return nil, errors.New("console: the session key must have at least 32 bytes")
	}
	if len(cfg.StandIn) == 0 && (cfg.ClientID == "" || cfg.ClientSecret == "") {
		return nil, errors.New("console: console.slack_client_id and console.slack_client_secret are required for Sign in with Slack")
	}
	base, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("console: base_url %q is not an absolute http(s) URL such as https://access.example.com", cfg.BaseURL)
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if cfg.ProcessTimeout <= 0 {
		cfg.ProcessTimeout = 20 * time.Second
	}
	if cfg.IssuerURL == "" {
		cfg.IssuerURL = DefaultIssuer
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Console{cfg: cfg, log: log.With("component", "console"), base: base, secure: base.Scheme == "https"}
	c.sessions = sessionCodec{key: cfg.SessionKey, secure: c.secure}
	c.groups = newGroupCache(cfg.Groups, cfg.Clock, time.Minute)
	if len(cfg.StandIn) == 0 {
		c.oidc = &oidcClient{issuer: cfg.IssuerURL, clientID: cfg.ClientID, clientSecret: cfg.ClientSecret,
			redirect: base.String() + Prefix + "signin/callback", http: cfg.HTTPClient, clock: cfg.Clock}
	}
	if len(cfg.PublicKey) == ed25519.PublicKeySize {
		c.chain = NewChainWatch(cfg.Audit, cfg.Clock, cfg.PublicKey, cfg.RetiredKeys...)
	}
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	c.weeks = weekCache{m: map[string]*weekView{}}
	c.handler = c.routes()
	return c, nil
}

// Chain returns the console's chain watcher (nil without a public key); serve runs it.
func (c *Console) Chain() *ChainWatch { return c.chain }

// Run verifies the chain for the marks, builds last week's report in advance, then keeps
// the marks current every 30 seconds until ctx ends (without a public key it only waits).
func (c *Console) Run(ctx context.Context) error {
	if c.chain != nil {
		if err := c.chain.Step(ctx); err != nil && ctx.Err() == nil {
			c.log.WarnContext(ctx, "console: chain marks could not be computed; will retry", "error", err)
		}
	}
	c.warmReport(ctx)
	if c.chain == nil {
		<-ctx.Done()
		return nil
	}
	return c.chain.Run(ctx, 30*time.Second)
}

// ServeHTTP serves the console.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.handler.ServeHTTP(w, r) }

// contentSecurityPolicy allows nothing from outside the binary: styles from /ui/static,
// no scripts at all, inline SVG only, forms only to the console itself, no framing.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'"

// headers sets the security headers on every answer.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// groupCache caches usergroup members for a short time, so that a page does not ask Slack
// on every view; decisions (approvals) ask the broker, which looks again at click time.
type groupCache struct {
	groups broker.Groups
	clock  grants.Clock
	ttl    time.Duration
	mu     sync.Mutex
	m      map[string]groupEntry
}

type groupEntry struct {
	members []string
	at      time.Time
}

func newGroupCache(g broker.Groups, clock grants.Clock, ttl time.Duration) *groupCache {
	return &groupCache{groups: g, clock: clock, ttl: ttl, m: map[string]groupEntry{}}
}

// Members implements broker.Groups with a cache of ttl; a failure is not cached.
func (g *groupCache) Members(ctx context.Context, group string) ([]string, error) {
	if g.groups == nil {
		return nil, errors.New("no usergroup lookup is configured")
	}
	now := g.clock.Now()
	g.mu.Lock()
	e, ok := g.m[group]
	g.mu.Unlock()
	if ok && now.Sub(e.at) < g.ttl {
		return e.members, nil
	}
	m, err := g.groups.Members(ctx, group)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.m[group] = groupEntry{members: m, at: now}
	g.mu.Unlock()
	return m, nil
}
