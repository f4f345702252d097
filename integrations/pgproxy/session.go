package pgproxy

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// fatal is a FATAL ErrorResponse.
func fatal(code, msg string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg}
}

// revokedError is what a client whose grant ended receives.
func revokedError(reason string, g grants.Grant) *pgproto3.ErrorResponse {
	e := fatal("57P01", "access grant revoked")
	if reason == EndGrantExpired {
		e.Detail = fmt.Sprintf("Grant %s of %s expired at %s.", g.ID, g.Resource, grants.Timestamp(g.ExpiresAt))
	} else {
		e.Detail = fmt.Sprintf("Grant %s of %s was revoked.", g.ID, g.Resource)
	}
	e.Hint = "Request access again with /access."
	return e
}

// countingConn counts the bytes read and written.
type countingConn struct {
	net.Conn
	in, out atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.out.Add(int64(n))
	return n, err
}

// serveConn runs one client connection: startup, login, relay, record.
func (p *Proxy) serveConn(ctx context.Context, raw net.Conn) {
	defer raw.Close()
	client := raw.RemoteAddr().String()
	// The whole login must finish in loginTimeout.
	lctx, cancel := context.WithTimeout(ctx, loginTimeout)
	stop := context.AfterFunc(lctx, func() { raw.Close() })
	s, err := p.login(lctx, raw, client)
	if !stop() {
		err = errors.Join(err, errors.New("login timed out"))
	}
	cancel()
	if s != nil && err != nil {
		// The timeout fired just after the login succeeded: the session is registered and
		// recorded, so end it properly (session.ended, out of the proxy's map).
		s.end(EndClientLost, nil)
		s.finish()
		return
	}
	if err != nil || s == nil {
		p.log.Debug("postgres proxy connection ended before a session", "client_addr", client, "err", err)
		return
	}
	s.run(ctx)
}

// login answers the startup sequence. It returns a registered session ready to relay, or
// an error after telling the client (and the audit log) why not.
func (p *Proxy) login(ctx context.Context, raw net.Conn, client string) (*session, error) {
	be := pgproto3.NewBackend(raw, raw)
	be.SetMaxBodyLen(maxLoginBody) // before a login, no client may make us allocate more
	var conn net.Conn = raw
	for tlsDone := false; ; {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return nil, fmt.Errorf("read startup message: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CancelRequest:
			p.cancel(ctx, m)
			return nil, nil
		case *pgproto3.GSSEncRequest:
			if _, err := raw.Write([]byte{'N'}); err != nil {
				return nil, fmt.Errorf("refuse GSS encryption: %w", err)
			}
		case *pgproto3.SSLRequest:
			if tlsDone {
				return nil, errors.New("SSLRequest inside TLS")
			}
			if _, err := raw.Write([]byte{'S'}); err != nil {
				return nil, fmt.Errorf("accept SSLRequest: %w", err)
			}
			tc := tls.Server(raw, p.cfg.TLS)
			if err := tc.HandshakeContext(ctx); err != nil {
				return nil, fmt.Errorf("TLS handshake: %w", err)
			}
			conn, tlsDone = tc, true
			be = pgproto3.NewBackend(tc, tc)
			be.SetMaxBodyLen(maxLoginBody)
		case *pgproto3.StartupMessage:
			if !tlsDone {
				p.loginFailed(ctx, m.Parameters, client, LoginTLSRequired, grants.Grant{})
				return nil, p.refuse(be, fatal("28000", "the accessbroker PostgreSQL proxy accepts only TLS connections"),
					"Connect with sslmode=require (or verify-full with the proxy's CA).")
			}
			return p.authenticate(ctx, be, conn, client, m)
		default:
			return nil, fmt.Errorf("unexpected startup message %T", msg)
		}
	}
}

// refuse sends a FATAL error with a hint and returns it as an error.
func (p *Proxy) refuse(be *pgproto3.Backend, e *pgproto3.ErrorResponse, hint string) error {
	e.Hint = hint
	be.Send(e)
	_ = be.Flush()
	return fmt.Errorf("refused: %s (%s)", e.Message, e.Code)
}

func (p *Proxy) loginFailed(ctx context.Context, params map[string]string, client, reason string, g grants.Grant) {
	host, _, err := net.SplitHostPort(client)
	if err != nil {
		host = client
	}
	if !p.refusals.allow(host, p.cfg.Clock.Now()) {
		p.log.Warn("postgres proxy: refused login not audited (too many from this address or in all this minute)", "client_addr", client, "reason", reason)
		return
	}
	actor := audit.Actor{Kind: audit.ActorUnknown, ID: client}
	if g.ID != "" && reason != LoginWrongPassword {
		actor = personActor(g)
	}
	ev := map[string]string{
		"role":        params["user"],
		"client_addr": client,
		"reason":      reason,
	}
	for k, v := range map[string]string{"database": params["database"], "application_name": params["application_name"]} {
		if v != "" {
			ev[k], _ = truncateText(v, 128)
		}
	}
	ev["role"], _ = truncateText(ev["role"], 128)
	e := p.event(ActionSessionLoginFailed, actor, g, ev)
	e.Reason = loginReasonText[reason]
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.AuditTimeout)
	defer cancel()
	if err := p.cfg.Recorder.Record(rctx, e); err != nil {
		p.log.Error("recording a refused proxy login failed", "reason", reason, "client_addr", client, "err", err)
	}
}

var loginReasonText = map[string]string{
	LoginUnknownRole:     "no grant of a proxied resource has this role",
	LoginWrongPassword:   "wrong password",
	LoginGrantNotActive:  "the grant is not active",
	LoginTLSRequired:     "plaintext connection refused: TLS is required",
	LoginUpstreamRefused: "the database server refused the grant's role",
	LoginProtocol:        "startup refused",
}

// authenticate checks the password and the grant, connects upstream and records
// session.started.
func (p *Proxy) authenticate(ctx context.Context, be *pgproto3.Backend, conn net.Conn, client string, m *pgproto3.StartupMessage) (*session, error) {
	params := m.Parameters
	role := params["user"]
	if role == "" {
		p.loginFailed(ctx, params, client, LoginProtocol, grants.Grant{})
		return nil, p.refuse(be, fatal("28000", "no user name given"), "The user is the role name in the connection string accessbroker delivered.")
	}
	if v, ok := params["replication"]; ok && v != "false" && v != "0" && v != "off" {
		p.loginFailed(ctx, params, client, LoginProtocol, grants.Grant{})
		return nil, p.refuse(be, fatal("28000", "replication connections are not served by the accessbroker proxy"), "Connect without replication=….")
	}
	g, found, err := p.grantOf(ctx, role)
	if err != nil {
		p.log.Error("postgres proxy: looking up the grant of a login failed", "role", role, "err", err)
		return nil, p.refuse(be, fatal("08006", "the access broker cannot check grants right now"), "Try again in a moment.")
	}
	if !found {
		p.loginFailed(ctx, params, client, LoginUnknownRole, grants.Grant{})
		return nil, p.refuse(be, fatal("28000", fmt.Sprintf("no access grant of a proxied resource has the role %q", role)),
			"Use the user name and password accessbroker delivered for your grant, or request access with /access.")
	}
	switch err := scramExchange(be, p.cfg.Passwords.Client(g.ID, role)); {
	case errors.Is(err, errBadProof):
		p.loginFailed(ctx, params, client, LoginWrongPassword, g)
		return nil, p.refuse(be, fatal("28P01", fmt.Sprintf("password authentication failed for user %q", role)),
			"Use the password accessbroker delivered with this grant.")
	case err != nil:
		p.loginFailed(ctx, params, client, LoginProtocol, g)
		return nil, p.refuse(be, fatal("28000", "SCRAM-SHA-256 authentication failed: "+err.Error()), "")
	}
	if reason, ended := p.grantEnded(g, nil); ended {
		p.loginFailed(ctx, params, client, LoginGrantNotActive, g)
		e := fatal("28000", fmt.Sprintf("access grant %s is no longer active (%s)", g.ID, reason))
		return nil, p.refuse(be, e, "Request access again with /access.")
	}
	up, ok := p.upstreams[g.Resource]
	if !ok {
		p.loginFailed(ctx, params, client, LoginUnknownRole, g)
		return nil, p.refuse(be, fatal("28000", fmt.Sprintf("resource %s is not served by this proxy", g.Resource)), "Connect to the resource directly.")
	}

	ucfg := up.Copy()
	ucfg.User = role
	ucfg.Password = p.cfg.Passwords.Upstream(g.ID, role)
	if db := params["database"]; db != "" {
		ucfg.Database = db
	}
	ucfg.RuntimeParams = map[string]string{}
	for k, v := range params {
		switch k {
		case "user", "database", "replication":
		default:
			ucfg.RuntimeParams[k] = v
		}
	}
	// Should the proxy die mid-query, the backend notices within a second (PostgreSQL 14+)
	// instead of running the query to its end.
	ucfg.RuntimeParams["client_connection_check_interval"] = "1000"
	pc, err := pgconn.ConnectConfig(ctx, ucfg)
	if err != nil {
		p.loginFailed(ctx, params, client, LoginUpstreamRefused, g)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			e := fatal(pgErr.Code, pgErr.Message)
			return nil, p.refuse(be, e, "The database server refused the connection.")
		}
		p.log.Error("postgres proxy: connecting upstream failed", "grant_id", g.ID, "resource", g.Resource, "err", err)
		return nil, p.refuse(be, fatal("08006", "the access broker cannot reach the database server"), "Try again in a moment.")
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return nil, fmt.Errorf("take over the upstream connection: %w", err)
	}
	canceler, err := pgconn.Construct(&pgconn.HijackedConn{Conn: hc.Conn, TLSConfig: hc.TLSConfig, PID: hc.PID, SecretKey: hc.SecretKey,
		ParameterStatuses: map[string]string{}, TxStatus: 'I', Config: hc.Config})
	if err != nil {
		hc.Conn.Close()
		return nil, fmt.Errorf("prepare cancel: %w", err)
	}

	s := &session{
		p:        p,
		id:       grants.NewID("s"),
		grant:    g,
		role:     role,
		client:   &countingConn{Conn: conn},
		upstream: hc.Conn,
		canceler: canceler,
		started:  p.cfg.Clock.Now(),
		closed:   make(chan struct{}),
	}
	s.clientBE = pgproto3.NewBackend(s.client, s.client)
	s.clientBE.SetMaxBodyLen(maxMessageBody)
	s.upFE = pgproto3.NewFrontend(hc.Conn, hc.Conn)
	s.track = newTracker(p.cfg.Clock.Now, s.statementDone, p.values[g.Resource])
	for {
		var k [8]byte
		if _, err := rand.Read(k[:]); err != nil {
			hc.Conn.Close()
			return nil, fmt.Errorf("backend key: %w", err)
		}
		s.key = pgproto3.BackendKeyData{ProcessID: binary.BigEndian.Uint32(k[:4]) & 0x7fffffff, SecretKey: k[4:]}
		if p.register(s) {
			break
		}
	}

	ev := map[string]string{
		"session_id":   s.id,
		"role":         role,
		"client_addr":  client,
		"database":     ucfg.Database,
		"upstream_pid": strconv.FormatUint(uint64(hc.PID), 10),
		"person":       g.Person.Label(),
	}
	if a := params["application_name"]; a != "" {
		ev["application_name"], _ = truncateText(a, 128)
	}
	start := p.event(ActionSessionStarted, personActor(g), g, ev)
	rctx, cancel := context.WithTimeout(ctx, p.cfg.AuditTimeout)
	err = p.cfg.Recorder.Record(rctx, start)
	cancel()
	if err != nil {
		p.unregister(s)
		hc.Conn.Close()
		p.log.Error("postgres proxy: session.started could not be recorded; login refused", "grant_id", g.ID, "err", err)
		return nil, p.refuse(be, fatal("08006", "the access broker cannot record this session, so it may not start"), "Try again in a moment.")
	}
	p.log.Info("proxied session started", "session_id", s.id, "grant_id", g.ID, "resource", g.Resource, "role", role, "client_addr", client)

	be.Send(&pgproto3.AuthenticationOk{})
	names := make([]string, 0, len(hc.ParameterStatuses))
	for k := range hc.ParameterStatuses {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		be.Send(&pgproto3.ParameterStatus{Name: k, Value: hc.ParameterStatuses[k]})
	}
	be.Send(&s.key)
	be.Send(&pgproto3.ReadyForQuery{TxStatus: hc.TxStatus})
	if err := be.Flush(); err != nil {
		s.end(EndClientLost, nil)
		s.finish()
		return nil, fmt.Errorf("complete the login: %w", err)
	}
	return s, nil
}

// grantOf finds the newest grant of a proxied resource whose provider handle is role.
func (p *Proxy) grantOf(ctx context.Context, role string) (grants.Grant, bool, error) {
	if len(role) > 63 {
		return grants.Grant{}, false, nil
	}
	gs, err := p.cfg.Grants.ListGrants(ctx, grants.GrantFilter{HandleKey: role, Limit: 10})
	if err != nil {
		return grants.Grant{}, false, fmt.Errorf("list grants of role %q: %w", role, err)
	}
	for _, g := range gs {
		if _, ok := p.upstreams[g.Resource]; ok && g.Handle.Key == role {
			return g, true, nil
		}
	}
	return grants.Grant{}, false, nil
}

// cancel forwards a client's CancelRequest to the upstream backend of the session it names.
func (p *Proxy) cancel(ctx context.Context, m *pgproto3.CancelRequest) {
	p.mu.Lock()
	s := p.byKey[m.ProcessID]
	p.mu.Unlock()
	if s == nil || !hmac.Equal(s.key.SecretKey, m.SecretKey) {
		p.log.Warn("postgres proxy: cancel request for no session", "process_id", m.ProcessID)
		return
	}
	s.cancelUpstream(ctx)
}

// session is one proxied connection.
type session struct {
	p        *Proxy
	id       string
	grant    grants.Grant
	role     string
	key      pgproto3.BackendKeyData
	client   *countingConn
	upstream net.Conn
	canceler *pgconn.PgConn // only for CancelRequest; never used to read or write
	clientBE *pgproto3.Backend
	upFE     *pgproto3.Frontend
	track    *tracker
	started  time.Time

	clientMu sync.Mutex // serialises writes to the client

	endOnce  sync.Once
	reason   string
	sqlstate string // the code the client was given at the end, if any
	closed   chan struct{}
}

func (s *session) cancelUpstream(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.canceler.CancelRequest(cctx); err != nil {
		s.p.log.Warn("postgres proxy: forwarding a cancel request failed", "session_id", s.id, "err", err)
	}
}

func (s *session) statementDone(st Statement) {
	if err := s.p.recordStatement(context.Background(), s.id, &s.grant, st); err != nil {
		s.p.log.Error("postgres proxy: a statement could not be queued for the audit log; ending the session", "session_id", s.id, "err", err)
		go s.end(EndAuditUnavailable, fatal("57P01", "terminating connection: the audit log is unavailable, so no session may continue"))
	}
}

// recordStatement queues st for its session.statement event (built by the recorder).
func (p *Proxy) recordStatement(ctx context.Context, sessionID string, g *grants.Grant, st Statement) error {
	return p.rec.addStatement(ctx, &queuedStatement{sessionID: sessionID, grant: g, st: st})
}

// statementEvent is the session.statement event of a queued statement.
func (p *Proxy) statementEvent(q *queuedStatement) *audit.Event {
	t := q.st.End.Truncate(time.Millisecond)
	return &audit.Event{
		ID:       grants.NewOrderedID("e", t),
		Time:     t,
		Actor:    personActor(*q.grant),
		Action:   ActionSessionStatement,
		GrantID:  q.grant.ID,
		Resource: q.grant.Resource,
		Evidence: statementEvidence(q.sessionID, q.st, p.cfg.TextLimit),
	}
}

// end stops the session once: with e non-nil the client is told why (and the running query
// is cancelled upstream first). Both connections are closed.
func (s *session) end(reason string, e *pgproto3.ErrorResponse) {
	s.endThen(reason, e, nil)
}

// endThen is end with a step run once the reason is fixed and before the connections
// close: a Terminate is flushed to the server there, so the server closing its side in
// answer cannot be mistaken for a lost connection.
func (s *session) endThen(reason string, e *pgproto3.ErrorResponse, first func()) {
	s.endOnce.Do(func() {
		s.reason = reason
		s.sqlstate = "08006" // connection failure
		if e != nil {
			s.sqlstate = e.Code
		}
		close(s.closed)
		if first != nil {
			first()
		}
		if reason != EndUpstreamLost && s.track.busy() {
			// Stop the running query on the server, not only the relay: a backend does not
			// notice a closed connection until it next writes. An idle backend is waiting
			// for the client and ends when the connection closes.
			s.cancelUpstream(context.Background())
		}
		if e != nil {
			s.upstream.Close()
			// A client that does not read must not hold the proxy up.
			t := time.AfterFunc(5*time.Second, func() { s.client.Close() })
			s.clientMu.Lock()
			s.clientBE.Send(e)
			_ = s.clientBE.Flush()
			s.clientMu.Unlock()
			t.Stop()
		}
		s.upstream.Close()
		s.client.Close()
	})
}

// run relays until either side ends, then records session.ended.
func (s *session) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.clientToServer() }()
	go func() { defer wg.Done(); s.serverToClient(ctx) }()
	wg.Wait()
	s.finish()
}

// finish records session.ended and forgets the session.
func (s *session) finish() {
	s.p.unregister(s)
	s.track.abort(s.sqlstate)
	now := s.p.cfg.Clock.Now()
	ev := map[string]string{
		"session_id": s.id,
		"reason":     s.reason,
		"duration":   audit.FormatDuration(now.Sub(s.started)),
		"bytes_in":   strconv.FormatInt(s.client.in.Load(), 10),
		"bytes_out":  strconv.FormatInt(s.client.out.Load(), 10),
		"statements": strconv.Itoa(s.track.statements()),
	}
	e := s.p.event(ActionSessionEnded, personActor(s.grant), s.grant, ev)
	if err := s.p.rec.add(context.Background(), e); err != nil {
		s.p.log.Error("postgres proxy: session.ended could not be queued for the audit log", "session_id", s.id, "err", err)
	}
	s.p.log.Info("proxied session ended", "session_id", s.id, "grant_id", s.grant.ID, "reason", s.reason)
}

// flushAfter says whether a client message completes a batch the server should see now.
func flushAfter(msg pgproto3.FrontendMessage) bool {
	switch msg.(type) {
	case *pgproto3.Parse, *pgproto3.Bind, *pgproto3.Describe, *pgproto3.Execute, *pgproto3.Close:
		return false // always followed by Sync or Flush
	}
	return true
}

func (s *session) clientToServer() {
	for {
		msg, err := s.clientBE.Receive()
		if err != nil {
			var maxErr *pgproto3.ExceededMaxBodyLenErr
			if errors.As(err, &maxErr) {
				s.end(EndProtocolError, fatal("08P01", "message too large for the accessbroker proxy"))
				return
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
				s.end(EndClientLost, nil)
				return
			}
			s.end(EndProtocolError, fatal("08P01", "invalid message: "+err.Error()))
			return
		}
		s.track.clientMessage(msg)
		s.upFE.Send(msg)
		if _, quit := msg.(*pgproto3.Terminate); quit {
			s.endThen(EndClientQuit, nil, func() { _ = s.upFE.Flush() })
			return
		}
		if flushAfter(msg) {
			if err := s.upFE.Flush(); err != nil {
				s.upstreamLost(context.Background())
				return
			}
		}
	}
}

func (s *session) serverToClient(ctx context.Context) {
	for {
		msg, err := s.upFE.Receive()
		if err != nil {
			s.upstreamLost(ctx)
			return
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok && e.Severity == "FATAL" {
			// The server is ending the session: if it is because the grant ended (the
			// provider terminating the role's backends), say so.
			if g, gerr := s.p.cfg.Grants.GetGrant(ctx, s.grant.ID); gerr == nil || errors.Is(gerr, grants.ErrNotFound) {
				if reason, ended := s.p.grantEnded(g, gerr); ended {
					s.end(reason, revokedError(reason, s.grant))
					return
				}
			}
		}
		select {
		case <-s.closed: // ending: nothing more reaches the client but the reason
			return
		default:
		}
		s.track.serverMessage(msg)
		s.clientMu.Lock()
		s.clientBE.Send(msg)
		var ferr error
		if s.upFE.ReadBufferLen() == 0 {
			ferr = s.clientBE.Flush()
		}
		s.clientMu.Unlock()
		if ferr != nil {
			s.end(EndClientLost, nil)
			return
		}
	}
}

// upstreamLost ends the session after the server's side broke: because the grant ended, or
// because the server went away.
func (s *session) upstreamLost(ctx context.Context) {
	select {
	case <-s.closed:
		return
	default:
	}
	g, err := s.p.cfg.Grants.GetGrant(context.WithoutCancel(ctx), s.grant.ID)
	if err == nil || errors.Is(err, grants.ErrNotFound) {
		if reason, ended := s.p.grantEnded(g, err); ended {
			s.end(reason, revokedError(reason, s.grant))
			return
		}
	}
	s.end(EndUpstreamLost, fatal("08006", "the connection to the database server was lost"))
}
