// Package pgproxy is the PostgreSQL session proxy: a person holding a grant of a resource
// with postgres.proxy: true connects here, with the proxy-only password delivered to them;
// the proxy logs in upstream as the grant's role with a password they never see, relays the
// wire protocol (simple and extended query, COPY, cancel), records every session and
// statement in the audit chain, and ends every session of a grant the moment it is revoked
// or expires.
//
// # Login
//
// TLS is required (SSLRequest; a plaintext startup gets an ErrorResponse saying so). The
// user is the grant's role name; the proxy finds the grant whose provider handle is that
// role, authenticates the client with SCRAM-SHA-256 against Passwords.Client(grant id, role)
// (the password never crosses the wire), and checks the grant is active and not past its
// expiry. Only then does it connect upstream as the role with
// Passwords.Upstream(grant id, role). Every refusal is a session.login_failed event.
//
// # The record
//
// session.started is written before the client may send a statement (if it cannot be
// written, the login fails). Each finished statement becomes a session.statement event
// (order, text up to Config.TextLimit bytes with the SHA-256 of the whole, number of bind
// parameters, command tag and rows, SQLSTATE on error, duration); result rows and parameter
// values are never recorded. Statement and end events are written in batches by one
// goroutine; if a batch cannot be written within Config.AuditTimeout, every session ends
// (reason audit_unavailable).
//
// # Revocation
//
// A watcher looks up the grant of every open session each Config.CheckEvery (and at once on
// Wake); a grant no longer active or past its expiry has its sessions ended with FATAL 57P01
// "access grant revoked" and its running queries cancelled upstream. Because it reads the
// store, each replica's proxy ends the sessions it holds, whichever replica revoked.
package pgproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// Grants reads grants from the store (grants.Store implements it).
type Grants interface {
	GetGrant(ctx context.Context, id string) (grants.Grant, error)
	ListGrants(ctx context.Context, f grants.GrantFilter) ([]grants.Grant, error)
}

// Passwords derives a grant's two passwords from a key only the broker holds: Client is the
// one delivered to the person, accepted only by the proxy; Upstream is the role's password on
// the PostgreSQL server, never shown to anyone. Neither can be computed from the other.
type Passwords interface {
	Client(grantID, role string) string
	Upstream(grantID, role string) string
}

// Upstream is one proxied resource's server.
type Upstream struct {
	// DSN locates the server: host, port, TLS settings and the default database are taken
	// from it (the postgres provider's admin DSN); its user and password are replaced by the
	// grant's role and upstream password.
	DSN string
	// RecordParameters records the values bound to extended-protocol statements
	// (param_values); by default only their number is recorded.
	RecordParameters bool
}

// Defaults of Config's zero values.
const (
	DefaultCheckEvery   = time.Second
	DefaultAuditTimeout = 5 * time.Second
	DefaultTextLimit    = 4096
	DefaultBatch        = 512
	loginTimeout        = 30 * time.Second
	maxMessageBody      = 64 << 20
	maxLoginBody        = 8 << 10 // SASL messages before a login are well under 1 KiB
)

// Config configures a Proxy. TLS, Upstreams, Grants, Recorder, Passwords and Clock are required.
type Config struct {
	TLS       *tls.Config         // the proxy's server certificate
	Upstreams map[string]Upstream // by resource name: the resources with postgres.proxy: true
	Grants    Grants
	Recorder  Recorder
	Passwords Passwords
	Clock     grants.Clock
	Logger    *slog.Logger

	CheckEvery   time.Duration // how often open sessions' grants are checked (default 1s)
	AuditTimeout time.Duration // longest wait for the audit log before sessions end (default 5s)
	TextLimit    int           // statement text bytes kept in an event (default 4096)
	Batch        int           // most events per audit write (default 512)
}

// Proxy serves the PostgreSQL wire protocol for proxied resources. Serve runs it; it is safe
// for concurrent use.
type Proxy struct {
	cfg       Config
	log       *slog.Logger
	upstreams map[string]*pgconn.Config
	values    map[string]bool // resources whose bind values are recorded
	rec       *recorder
	wake      chan struct{}
	refusals  refusalLimiter

	mu       sync.Mutex
	sessions map[string]*session // by session id
	byKey    map[uint32]*session // by the BackendKeyData process id handed to the client
}

// New checks cfg and parses each upstream DSN. Errors name what to fix and never contain a DSN.
func New(cfg Config) (*Proxy, error) {
	switch {
	case cfg.TLS == nil || len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil:
		return nil, fmt.Errorf("postgres proxy: no TLS certificate; set postgres_proxy.tls_cert_file and tls_key_file: %w", grants.ErrInvalid)
	case cfg.Grants == nil, cfg.Recorder == nil, cfg.Passwords == nil, cfg.Clock == nil:
		return nil, fmt.Errorf("postgres proxy: grants, recorder, passwords and clock are required: %w", grants.ErrInvalid)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.CheckEvery <= 0 {
		cfg.CheckEvery = DefaultCheckEvery
	}
	if cfg.AuditTimeout <= 0 {
		cfg.AuditTimeout = DefaultAuditTimeout
	}
	if cfg.TextLimit <= 0 {
		cfg.TextLimit = DefaultTextLimit
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	p := &Proxy{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "postgres_proxy"),
		upstreams: map[string]*pgconn.Config{},
		values:    map[string]bool{},
		wake:      make(chan struct{}, 1),
		sessions:  map[string]*session{},
		byKey:     map[uint32]*session{},
	}
	for name, u := range cfg.Upstreams {
		pc, err := pgconn.ParseConfig(u.DSN)
		if err != nil {
			return nil, fmt.Errorf("postgres proxy: resource %s: dsn is not a valid PostgreSQL connection string (details withheld: they may contain the password): %w", name, grants.ErrInvalid)
		}
		pc.Password = ""
		pc.OnNotice, pc.OnNotification, pc.OnPgError = nil, nil, nil
		p.upstreams[name] = pc
		p.values[name] = u.RecordParameters
	}
	p.rec = newRecorder(cfg.Recorder, p.log, cfg.Batch, cfg.AuditTimeout, p.auditFailed, p.statementEvent)
	return p, nil
}

// Wake makes the watcher check every open session's grant now (call it after a revocation
// in this process; other replicas notice within CheckEvery).
func (p *Proxy) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Serve accepts connections on ln until ctx ends, then ends every session (reason
// proxy_stopped), records their end and returns nil. It closes ln.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	stopRec := make(chan struct{})
	go p.rec.run(stopRec)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.watch(ctx) }()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	p.log.Info("postgres proxy listening", "addr", ln.Addr().String(), "resources", p.resourceNames())
	var err error
	for {
		var c net.Conn
		c, err = ln.Accept()
		if err != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.serveConn(ctx, c)
		}()
	}
	if ctx.Err() != nil {
		err = nil
	} else {
		err = fmt.Errorf("postgres proxy: accept: %w", err)
	}
	p.endAll(EndProxyStopped, "the access broker is shutting down")
	wg.Wait()
	close(stopRec)
	<-p.rec.done
	return err
}

func (p *Proxy) resourceNames() []string {
	names := make([]string, 0, len(p.upstreams))
	for n := range p.upstreams {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// watch checks the grants of open sessions every CheckEvery and on Wake.
func (p *Proxy) watch(ctx context.Context) {
	for {
		t := p.cfg.Clock.NewTimer(p.cfg.CheckEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		case <-p.wake:
			t.Stop()
		}
		p.check(ctx)
	}
}

// check ends the sessions whose grant is no longer active or has expired.
func (p *Proxy) check(ctx context.Context) {
	byGrant := map[string][]*session{}
	p.mu.Lock()
	for _, s := range p.sessions {
		byGrant[s.grant.ID] = append(byGrant[s.grant.ID], s)
	}
	p.mu.Unlock()
	var ends []ending
	for id, ss := range byGrant {
		g, err := p.cfg.Grants.GetGrant(ctx, id)
		if err != nil && !errors.Is(err, grants.ErrNotFound) {
			p.log.Warn("checking a proxied session's grant failed; will retry", "grant_id", id, "err", err)
			continue
		}
		reason, ok := p.grantEnded(g, err)
		if !ok {
			continue
		}
		for _, s := range ss {
			ends = append(ends, ending{s: s, reason: reason, e: revokedError(reason, g)})
		}
	}
	endEach(ends)
}

// ending is a session to end, why, and what its client is told.
type ending struct {
	s      *session
	reason string
	e      *pgproto3.ErrorResponse
}

// endEach ends the sessions at once: each end may wait seconds on a client that does not read
// or an upstream that does not answer, and must not hold up the others.
func endEach(es []ending) {
	var wg sync.WaitGroup
	for _, x := range es {
		wg.Go(func() { x.s.end(x.reason, x.e) })
	}
	wg.Wait()
}

// grantEnded says whether a grant no longer allows a session, and why.
func (p *Proxy) grantEnded(g grants.Grant, err error) (string, bool) {
	switch {
	case err != nil: // not found
		return EndGrantRevoked, true
	case g.State != grants.StateActive:
		if g.RevokeCause == grants.CauseExpired {
			return EndGrantExpired, true
		}
		return EndGrantRevoked, true
	case !p.cfg.Clock.Now().Before(g.ExpiresAt):
		return EndGrantExpired, true
	}
	return "", false
}

// endAll ends every open session.
func (p *Proxy) endAll(reason, detail string) {
	p.mu.Lock()
	ss := make([]*session, 0, len(p.sessions))
	for _, s := range p.sessions {
		ss = append(ss, s)
	}
	p.mu.Unlock()
	es := make([]ending, len(ss))
	for i, s := range ss {
		es[i] = ending{s: s, reason: reason, e: fatal("57P01", "terminating connection: "+detail)}
	}
	endEach(es)
}

// auditFailed ends every session: their statements can no longer be recorded.
func (p *Proxy) auditFailed(err error) {
	p.endAll(EndAuditUnavailable, "the audit log is unavailable, so no session may continue")
}

// Sessions returns the ids of the open sessions, sorted.
func (p *Proxy) Sessions() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]string, 0, len(p.sessions))
	for id := range p.sessions {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (p *Proxy) register(s *session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, taken := p.byKey[s.key.ProcessID]; taken {
		return false
	}
	p.sessions[s.id] = s
	p.byKey[s.key.ProcessID] = s
	return true
}

func (p *Proxy) unregister(s *session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.sessions, s.id)
	delete(p.byKey, s.key.ProcessID)
}

func (p *Proxy) event(action audit.Action, actor audit.Actor, g grants.Grant, ev map[string]string) *audit.Event {
	now := p.cfg.Clock.Now().Truncate(time.Millisecond)
	return &audit.Event{
		ID:       grants.NewOrderedID("e", now),
		Time:     now,
		Actor:    actor,
		Action:   action,
		GrantID:  g.ID,
		Resource: g.Resource,
		Evidence: ev,
	}
}

func personActor(g grants.Grant) audit.Actor {
	return audit.Actor{Kind: audit.ActorUser, ID: g.Person.SlackUserID, Email: g.Person.Email}
}

// Limits on session.login_failed events, so that unauthenticated clients cannot flood the
// audit log: per client host and minute, and for all hosts together. Refusals beyond them are
// still refused, and logged.
const (
	refusalsPerHost   = 10
	refusalsPerMinute = 100
)

// refusalLimiter counts audited refusals per minute.
type refusalLimiter struct {
	mu     sync.Mutex
	window time.Time
	total  int
	byHost map[string]int
}

func (l *refusalLimiter) allow(host string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.window) >= time.Minute || l.byHost == nil {
		l.window, l.total, l.byHost = now, 0, map[string]int{}
	}
	if l.total >= refusalsPerMinute || l.byHost[host] >= refusalsPerHost {
		return false
	}
	l.total++
	l.byHost[host]++
	return true
}
