// Package postgres is the "postgres" grants.Provider: each grant is its own short-lived
// PostgreSQL login role, dropped on revocation.
//
// # What a grant is
//
// Issue creates a role named after the person and the grant id,
// ab_<person>_<grant id suffix> (for example ab_alice_k3xq7m2a9b4c5d6e), with
//
//	CREATE ROLE "ab_alice_k3xq…" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
//	    NOBYPASSRLS INHERIT CONNECTION LIMIT 10 VALID UNTIL '<grant expiry>'
//	    PASSWORD 'SCRAM-SHA-256$4096:…' IN ROLE "readonly";
//
// The password (40 random characters, 240 bits) is sent as its SCRAM-SHA-256 verifier, so the
// password itself never appears in SQL text, server logs or errors. VALID UNTIL is the second
// line of defence should revocation fail (it applies to password authentication only). The
// credential is a connection string postgres://role:password@host:port/db?sslmode=… plus its
// parts.
//
// Through grants.Manager the role is prepared (PrepareIssue): the statements above run in a
// transaction opened with BEGIN while the grant's write-ahead record commits, and COMMIT is
// sent only once that record is durable, so nobody can see or use the role before. This
// matters because PostgreSQL itself spends the verifier's 4096 PBKDF2 iterations on every
// CREATE ROLE … PASSWORD 'SCRAM-SHA-256$…' (it checks the verifier is not the empty
// password's): the largest step of an issue. For a non-proxied resource the provider
// therefore keeps a few spare roles (NOLOGIN, no membership, password in memory only) made
// ahead, and an issue renames one into the grant's role instead (spares.go); with none ready
// the role is created as above, its password and verifier made ahead by one goroutine (at
// most 8, in memory only, each used once). A proxied role's verifier has 16 iterations
// (proxyIterations).
//
// Revoke is idempotent and works from the grant id alone (a role is found by its suffix).
// On one admin connection, in one round trip (one implicit transaction):
//
//	ALTER ROLE r NOLOGIN;                         -- no new sessions
//	GRANT r TO CURRENT_USER;                      -- non-superuser admin: the right to act as r
//	SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usesysid = <r>;
//	SELECT pg_stat_clear_snapshot(); SELECT count(*) FROM pg_stat_activity WHERE …; -- none left
//	SELECT … FROM pg_shdepend WHERE refobjid = <r>; -- where r owns objects or holds privileges
//
// When pg_shdepend names no database (r owns nothing and holds no privilege anywhere, the
// common case) the owned-objects steps below are skipped. Otherwise, in every database it
// names, and always in the configured database, in one transaction each:
//
//	DROP ROUTINE IF EXISTS <each function, procedure, aggregate r owns> CASCADE;
//	DROP STATISTICS | OPERATOR | COLLATION | … IF EXISTS <each one r owns> CASCADE;
//	REASSIGN OWNED BY r TO accessbroker_orphans; DROP OWNED BY r;
//
// Then pg_terminate_backend once more (one round trip with the count), and DROP ROLE IF
// EXISTS r; should something have come to depend on r meanwhile, DROP ROLE fails and the
// attempt is retried, with the owned-objects steps. The admin pool holds DefaultMaxConns
// connections unless the DSN sets pool_max_conns.
//
// A role that no longer exists is success.
//
// RevokeBatch (grants.BatchRevoker, used by the revoker when many grants are due at once)
// does the same for many roles in a fixed number of round trips on one connection: one
// lookup, one multi-statement round trip with ALTER ROLE … NOLOGIN for each, one GRANT of all
// of them, one terminate and one pg_shdepend query for all, one more terminate, and one DROP
// ROLE IF EXISTS naming all of them (one commit). A role that owns objects or kept a session,
// and every role of a step that failed as a whole, is revoked on its own as above, so each
// grant gets its own outcome. HasAccessBatch reads all of them back in one query.
//
// # What a revoked role leaves behind
//
// Nothing a grantee made may keep running with someone else's rights once the grant ends.
//
//   - Routines (functions, procedures, aggregates) the role owns are dropped, with CASCADE,
//     never kept. A SECURITY DEFINER function given to the admin would run with the admin's
//     rights (a superuser's, if the admin is one) for any later caller. Making it SECURITY
//     INVOKER is not enough: a trigger the grantee put on a table it could write to, a column
//     default or a policy runs an invoker function implicitly with the rights of whoever
//     writes the table next. Their direct dependents (triggers, defaults, views) go with
//     them. Dropping also needs no privilege the orphan owner lacks: PostgreSQL lets a
//     non-superuser hand a function only to a role with CREATE on its schema.
//   - For that same reason operators, operator classes and families, collations,
//     conversions, extended statistics objects and text search configurations and
//     dictionaries it owns are dropped too (CASCADE, dependents listed).
//   - Everything else (tables and their data, sequences, views, types) is kept and
//     reassigned to the orphan owner (Config.OrphanOwner, default accessbroker_orphans): a
//     NOLOGIN role with no attributes and member of no role, which New creates when missing
//     and checks at every start. A view runs with its owner's rights on the tables it
//     reads; owned by the orphan owner it can read only other orphaned objects. GRANTs the
//     grantee made on its own tables survive with the tables.
//   - DROP OWNED removes privileges granted to the role and its default privileges.
//   - Event triggers need a superuser to create, so a temporary role (NOSUPERUSER) has none.
//
// RevokeWithResult reports every object dropped or reassigned ("database: kind
// schema.name", at most 50 per list, then how many more) for the grant.revoked evidence.
//
// A non-superuser admin becomes a member of the orphan owner at start (REASSIGN OWNED
// requires it). Should REASSIGN still fail for want of a privilege, the revocation is retried
// and alerted as needing an operator, with the fix in the error, while the role stays NOLOGIN
// and its sessions ended.
//
// # The admin role (least privilege)
//
// The admin DSN does not need a superuser. Create its role once, as a superuser:
//
//	CREATE ROLE accessbroker LOGIN CREATEROLE INHERIT PASSWORD '…';
//	GRANT readonly TO accessbroker WITH ADMIN OPTION;          -- once per granted role
//	GRANT CONNECT ON DATABASE app TO accessbroker;             -- the configured database
//
// The orphan owner needs no SQL: New creates it (CREATE ROLE accessbroker_orphans NOLOGIN)
// and makes the admin its member. To create it yourself instead, run as a superuser
//
//	CREATE ROLE accessbroker_orphans NOLOGIN;
//	GRANT accessbroker_orphans TO accessbroker;                -- required on 16+ for a role
//	                                                           -- the admin did not create
//
// On PostgreSQL 15 and earlier, CREATEROLE alone lets a role create, alter, drop and grant
// membership in any non-superuser role; ADMIN OPTION on the granted roles is not checked, but
// grant it anyway so that an upgrade to 16 keeps working. The admin role must have INHERIT
// (the default): on 15 the privileges of a temporary role, needed to terminate its sessions
// and reassign its objects, come from the membership GRANT r TO CURRENT_USER.
//
// On PostgreSQL 16 and later, CREATEROLE only gives power over roles the admin created (it
// receives ADMIN OPTION on each automatically) and granting a role requires ADMIN OPTION on
// it: the GRANT … WITH ADMIN OPTION lines above are required, and New checks them. Revoke then
// uses GRANT r TO CURRENT_USER WITH INHERIT TRUE.
//
// Never grant superuser roles through accessbroker: a CREATEROLE admin cannot, and New refuses.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/accessbroker/accessbroker/grants"
)

// Kind is the provider kind.
const Kind = "postgres"

// DefaultConnectionLimit is the CONNECTION LIMIT of a granted role when Config.ConnectionLimit
// is zero.
const DefaultConnectionLimit = 10

// Config configures the postgres provider.
type Config struct {
	// AdminDSN connects as the admin role (see the package doc), e.g.
	// postgres://accessbroker:…@db.internal:5432/app?sslmode=verify-full. Required.
	AdminDSN string
	// Roles are the existing roles each temporary login becomes a member of. Required.
	Roles []string
	// Host, Port, Database and SSLMode go into the delivered connection string; each defaults
	// to the admin DSN's value (SSLMode: "prefer" when the DSN has none).
	Host, Port, Database, SSLMode string
	// ConnectionLimit caps the sessions of each temporary role; 0 means
	// DefaultConnectionLimit.
	ConnectionLimit int
	// LockTimeout bounds how long one admin statement waits for a lock (a busy table, a role
	// row another session is changing) before the attempt fails and is retried later; 0 means
	// DefaultLockTimeout.
	LockTimeout time.Duration
	// OrphanOwner is the role that receives the objects a revoked temporary role leaves
	// behind: a NOLOGIN role with no attributes and no memberships, created by New when
	// missing. "" means DefaultOrphanOwner. It must not be the admin role, one of Roles, or
	// start with "ab_".
	OrphanOwner string
	// Proxy, when set, makes the resource proxied (postgres.proxy: true): each role's
	// password is derived for the session proxy, and the delivered credential connects to
	// the proxy with a password only the proxy accepts.
	Proxy *ProxyConfig
}

// DefaultOrphanOwner is Config.OrphanOwner's default.
const DefaultOrphanOwner = "accessbroker_orphans"

// DefaultMaxConns is how many admin connections the provider opens at most, unless the admin
// DSN sets pool_max_conns: as many as the revoker runs revocations per provider by default
// (grants.RevokerOptions.ConcurrencyPerProvider), so that none waits for a connection.
const DefaultMaxConns = 32

// DefaultLockTimeout is Config.LockTimeout's default.
const DefaultLockTimeout = 10 * time.Second

// Provider implements grants.Provider and grants.Extender for PostgreSQL. It is safe for
// concurrent use. Close releases its connections.
type Provider struct {
	pool    *pgxpool.Pool
	clock   grants.Clock
	log     *slog.Logger
	roles   []string
	limit   int
	host    string
	port    string
	db      string // database of the delivered credential, always cleaned on revoke
	sslmode string

	orphan        string // role that receives what revoked roles leave behind
	adminDB       string // database the pool connects to
	adminPassword string // scrubbed from errors

	proxy *ProxyConfig // postgres.proxy: role passwords derived for the session proxy

	secrets *secretPool // passwords and verifiers made ahead (not proxied)
	spares  *sparePool  // spare roles made ahead (not proxied; spares.go)

	checkMu sync.Mutex                 // one server check at a time
	server  atomic.Pointer[serverInfo] // nil until a server check has passed

	batchStep func(step string) // tests only: called between revocation steps (afterRevokeStep)
}

// serverInfo is what a passed server check learnt about the admin role and the server.
type serverInfo struct {
	admin     string
	superuser bool
	version   int // server_version_num, e.g. 150020
}

var (
	_ grants.Provider       = (*Provider)(nil)
	_ grants.Extender       = (*Provider)(nil)
	_ grants.RevokeReporter = (*Provider)(nil)
	_ grants.IssuePreparer  = (*Provider)(nil)
)

// Validate checks the configuration without connecting: the admin DSN parses, roles,
// connection limit, port, lock timeout and sslmode are in range, and a database is named
// (here or in the DSN). It is the one static rule for this provider: config check and New
// both call it; New then connects and checks the server (roles exist, admin privileges).
// Errors match grants.ErrInvalid and never contain the DSN.
func (cfg Config) Validate() error {
	if strings.TrimSpace(cfg.AdminDSN) == "" {
		return fmt.Errorf("postgres provider: dsn is empty; set it to the admin role's connection string, e.g. postgres://accessbroker:PASSWORD@db.internal:5432/app?sslmode=verify-full: %w", grants.ErrInvalid)
	}
	pcfg, err := pgxpool.ParseConfig(cfg.AdminDSN)
	if err != nil {
		// The parser's message may quote part of the DSN, password included.
		return fmt.Errorf("postgres provider: dsn is not a valid PostgreSQL connection string (want postgres://user:password@host:5432/db?sslmode=require); details withheld because they may contain the password: %w", grants.ErrInvalid)
	}
	if len(cfg.Roles) == 0 {
		return fmt.Errorf("postgres provider: roles is empty; list the existing roles a temporary login gets, e.g. roles: [readonly]: %w", grants.ErrInvalid)
	}
	for _, r := range cfg.Roles {
		if strings.TrimSpace(r) == "" || len(r) > 63 {
			return fmt.Errorf("postgres provider: role name %q in roles is empty or longer than 63 bytes: %w", r, grants.ErrInvalid)
		}
		if strings.HasPrefix(r, sparePrefix) {
			return fmt.Errorf("postgres provider: role %q in roles starts with %q, the prefix of the provider's spare roles; rename the role: %w", r, sparePrefix, grants.ErrInvalid)
		}
	}
	if cfg.ConnectionLimit < 0 {
		return fmt.Errorf("postgres provider: connection_limit %d is negative; use a positive number or 0 for the default %d: %w", cfg.ConnectionLimit, DefaultConnectionLimit, grants.ErrInvalid)
	}
	if cfg.Port != "" {
		if n, err := strconv.Atoi(cfg.Port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("postgres provider: port %q is not a TCP port number: %w", cfg.Port, grants.ErrInvalid)
		}
	}
	if cfg.LockTimeout < 0 {
		return fmt.Errorf("postgres provider: lock_timeout %s is negative: %w", cfg.LockTimeout, grants.ErrInvalid)
	}
	switch cfg.SSLMode {
	case "", "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
	default:
		return fmt.Errorf("postgres provider: sslmode %q is not one of disable, allow, prefer, require, verify-ca, verify-full: %w", cfg.SSLMode, grants.ErrInvalid)
	}

	if cfg.Proxy != nil {
		if err := cfg.Proxy.validate(); err != nil {
			return err
		}
	}

	db := cfg.Database
	if db == "" {
		db = pcfg.ConnConfig.Database
	}
	if db == "" {
		return fmt.Errorf("postgres provider: no database: set database, or name one in the dsn: %w", grants.ErrInvalid)
	}
	return nil
}

// New connects with the admin DSN and checks that the admin role can do its job: it is Open
// followed by Check, and returns Check's error (closing the connections) when the server is
// unreachable or refuses. Errors say what to change.
func New(ctx context.Context, cfg Config, clock grants.Clock, logger *slog.Logger) (*Provider, error) {
	p, err := Open(ctx, cfg, clock, logger)
	if err != nil {
		return nil, err
	}
	if err := p.Check(ctx); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Open validates cfg and returns a provider whose connections are made on first use: it
// does not contact the server, so a database that is down at start costs only that
// provider, not the process. Configuration errors (a DSN that does not parse, a bad
// orphan_owner) wrap grants.ErrInvalid. Until Check has passed, every Issue, Revoke and
// Extend first runs it, so that a provider opened during an outage starts working (and its
// revocations complete) as soon as the server answers and the admin role is found fit.
func Open(ctx context.Context, cfg Config, clock grants.Clock, logger *slog.Logger) (*Provider, error) {
	if clock == nil {
		return nil, errors.New("postgres provider: nil clock")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(cfg.AdminDSN)
	if err != nil { // Validate parsed it already
		return nil, fmt.Errorf("postgres provider: dsn is not a valid PostgreSQL connection string: %w", grants.ErrInvalid)
	}
	lockTimeout := cfg.LockTimeout
	if lockTimeout == 0 {
		lockTimeout = DefaultLockTimeout
	}
	// Every admin statement gives up on a lock after lockTimeout: revocation must fail and be
	// retried, not hang behind a long transaction.
	pcfg.ConnConfig.RuntimeParams["lock_timeout"] = strconv.FormatInt(max(lockTimeout.Milliseconds(), 1), 10)
	if !strings.Contains(cfg.AdminDSN, "pool_max_conns") {
		// pgxpool's default (4, or the CPU count) would queue the revoker's concurrent
		// revocations behind a few connections.
		pcfg.MaxConns = DefaultMaxConns
	}

	orphan := cfg.OrphanOwner
	if orphan == "" {
		orphan = DefaultOrphanOwner
	}
	switch {
	case len(orphan) > 63 || strings.TrimSpace(orphan) != orphan:
		return nil, fmt.Errorf("postgres provider: orphan_owner %q is longer than 63 bytes or has surrounding spaces: %w", orphan, grants.ErrInvalid)
	case strings.HasPrefix(orphan, rolePrefix):
		return nil, fmt.Errorf("postgres provider: orphan_owner %q starts with %q, the prefix of temporary roles; choose another name, e.g. %s: %w", orphan, rolePrefix, DefaultOrphanOwner, grants.ErrInvalid)
	case strings.HasPrefix(orphan, sparePrefix):
		return nil, fmt.Errorf("postgres provider: orphan_owner %q starts with %q, the prefix of spare roles; choose another name, e.g. %s: %w", orphan, sparePrefix, DefaultOrphanOwner, grants.ErrInvalid)
	case slices.Contains(cfg.Roles, orphan):
		return nil, fmt.Errorf("postgres provider: orphan_owner %q is also in roles; it must be a role of its own that nobody is granted: %w", orphan, grants.ErrInvalid)
	}

	p := &Provider{
		orphan:        orphan,
		clock:         clock,
		log:           logger.With("provider", Kind),
		roles:         slices.Clone(cfg.Roles),
		limit:         cfg.ConnectionLimit,
		host:          cfg.Host,
		port:          cfg.Port,
		db:            cfg.Database,
		sslmode:       cfg.SSLMode,
		adminDB:       pcfg.ConnConfig.Database,
		adminPassword: pcfg.ConnConfig.Password,
		proxy:         cfg.Proxy,
		secrets:       newSecretPool(),
	}
	p.spares = newSparePool(p, sparesAhead)
	if cfg.Proxy != nil {
		p.spares.target = 0 // a proxied role's password is known only at issue
	}
	if p.limit == 0 {
		p.limit = DefaultConnectionLimit
	}
	if p.host == "" {
		p.host = pcfg.ConnConfig.Host
	}
	if p.port == "" {
		p.port = strconv.Itoa(int(pcfg.ConnConfig.Port))
	}
	if p.db == "" {
		p.db = pcfg.ConnConfig.Database
	}
	if p.sslmode == "" {
		p.sslmode = sslModeOf(cfg.AdminDSN)
	}

	p.pool, err = pgxpool.NewWithConfig(ctx, pcfg) // connects lazily (MinConns is 0)
	if err != nil {
		return nil, p.scrub(fmt.Errorf("postgres provider: connect with dsn: %w", err))
	}
	return p, nil
}

// Check connects and checks that the admin role can do its job: it is a superuser or has
// CREATEROLE (and INHERIT), every granted role exists and is not a superuser role, on
// PostgreSQL 16+ the admin holds ADMIN OPTION on each, the configured database accepts its
// connections, and the orphan owner exists (created when missing) with the admin its
// member. A server that does not answer gives a plain error (retry later); a configuration
// the server contradicts (a granted role that does not exist, or is a superuser role) wraps
// grants.ErrInvalid; missing rights, a refused login or a missing database wrap
// grants.ErrNeedsOperator. Errors say what to change and never contain the password. serve
// runs it at start and periodically for /readyz.
func (p *Provider) Check(ctx context.Context) error {
	p.checkMu.Lock()
	defer p.checkMu.Unlock()
	return p.checkLocked(ctx)
}

func (p *Provider) checkLocked(ctx context.Context) error {
	info, err := p.checkAdmin(ctx)
	if err != nil {
		return err
	}
	if err := p.ensureOrphanOwner(ctx, info); err != nil {
		return err
	}
	if p.server.Swap(info) == nil {
		p.log.InfoContext(ctx, "postgres provider ready", "admin_role", info.admin, "superuser", info.superuser,
			"server_version", info.version, "roles", p.roles, "database", p.db)
	}
	return nil
}

// ready returns the server check's findings, running the check first if none has passed
// yet (a provider opened while its server was down).
func (p *Provider) ready(ctx context.Context) (*serverInfo, error) {
	if info := p.server.Load(); info != nil {
		return info, nil
	}
	p.checkMu.Lock()
	defer p.checkMu.Unlock()
	if info := p.server.Load(); info != nil {
		return info, nil
	}
	if err := p.checkLocked(ctx); err != nil {
		return nil, err
	}
	return p.server.Load(), nil
}

// ensureOrphanOwner creates the orphan owner role if it is missing, checks that it can do no
// harm (NOLOGIN, no attributes, member of no role), and makes a non-superuser admin a member
// of it, which REASSIGN OWNED … TO it requires.
func (p *Provider) ensureOrphanOwner(ctx context.Context, info *serverInfo) error {
	o := quoteIdent(p.orphan)
	var admin string
	for created := false; ; {
		var (
			login, super, createDB, createRole, repl, bypass bool
			memberOf                                         []string
		)
		err := p.pool.QueryRow(ctx, `
			SELECT current_user, r.rolcanlogin, r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolreplication, r.rolbypassrls,
				ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid ORDER BY 1)
			FROM pg_roles r WHERE r.rolname = $1`, p.orphan).Scan(&admin, &login, &super, &createDB, &createRole, &repl, &bypass, &memberOf)
		if errors.Is(err, pgx.ErrNoRows) && !created {
			err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, "CREATE ROLE "+o+" NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT"); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, "COMMENT ON ROLE "+o+" IS 'accessbroker: owns what revoked temporary roles left behind; no login, no privileges'")
				return err
			})
			switch code := pgCode(err); {
			case err == nil, code == "42710", code == "23505": // made here, or by another broker just now
				created = true
				if err == nil {
					p.log.Info("created the orphan owner role", "role", p.orphan)
				}
				continue
			default:
				return p.scrub(fmt.Errorf("postgres provider: create the orphan owner role %q (orphan_owner); as a superuser run: CREATE ROLE %s NOLOGIN: %w", p.orphan, o, classify(err)))
			}
		}
		if err != nil {
			return p.scrub(fmt.Errorf("postgres provider: look up the orphan owner role %q: %w", p.orphan, classify(err)))
		}
		if login || super || createDB || createRole || repl || bypass {
			return fmt.Errorf("postgres provider: orphan owner role %q (orphan_owner) has LOGIN or a role attribute, but objects revoked roles leave behind must go to a role nobody can use; run: ALTER ROLE %s NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS, or choose another orphan_owner: %w", p.orphan, o, grants.ErrNeedsOperator)
		}
		if len(memberOf) > 0 {
			return fmt.Errorf("postgres provider: orphan owner role %q (orphan_owner) is a member of %q, whose privileges every object it owns would use; run: REVOKE %s FROM %s, or choose another orphan_owner: %w", p.orphan, memberOf, quoteIdents(memberOf), o, grants.ErrNeedsOperator)
		}
		break
	}
	if info.superuser {
		return nil
	}
	var member bool
	if err := p.pool.QueryRow(ctx, `SELECT pg_has_role(current_user, $1::name, 'USAGE')`, p.orphan).Scan(&member); err != nil {
		return p.scrub(fmt.Errorf("postgres provider: check membership of the orphan owner role: %w", err))
	}
	if member {
		return nil
	}
	grant := "GRANT " + o + " TO CURRENT_USER"
	if info.version >= 160000 {
		grant += " WITH INHERIT TRUE"
	}
	if _, err := p.pool.Exec(ctx, grant); err != nil {
		return p.scrub(fmt.Errorf("postgres provider: admin role %q cannot become a member of the orphan owner role %q, which revocation needs to hand it objects; as a superuser run: GRANT %s TO %s: %w", admin, p.orphan, o, quoteIdent(admin), classify(err)))
	}
	return nil
}

func quoteIdents(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quoteIdent(n)
	}
	return strings.Join(q, ", ")
}

func (p *Provider) checkAdmin(ctx context.Context) (*serverInfo, error) {
	var (
		admin                  string
		super, create, inherit bool
		version                int
	)
	err := p.pool.QueryRow(ctx, `
		SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolinherit, current_setting('server_version_num')::int
		FROM pg_roles r WHERE r.rolname = current_user`).Scan(&admin, &super, &create, &inherit, &version)
	if err != nil {
		return nil, p.scrub(fmt.Errorf("postgres provider: check the admin role: %w", classify(err)))
	}
	info := &serverInfo{admin: admin, superuser: super, version: version}
	if !super && !create {
		return nil, fmt.Errorf("postgres provider: admin role %q has neither CREATEROLE nor SUPERUSER; as a superuser run: ALTER ROLE %s CREATEROLE: %w", admin, quoteIdent(admin), grants.ErrNeedsOperator)
	}
	if !super && !inherit && version < 160000 {
		return nil, fmt.Errorf("postgres provider: admin role %q has NOINHERIT, so it cannot act for the roles it revokes; run: ALTER ROLE %s INHERIT: %w", admin, quoteIdent(admin), grants.ErrNeedsOperator)
	}

	rows, err := p.pool.Query(ctx, `
		SELECT rolname, rolsuper, pg_has_role(current_user, oid, 'MEMBER WITH ADMIN OPTION')
		FROM pg_roles WHERE rolname = ANY($1)`, p.roles)
	if err != nil {
		return nil, p.scrub(fmt.Errorf("postgres provider: look up roles: %w", err))
	}
	found := map[string]bool{}
	for rows.Next() {
		var name string
		var roleSuper, adminOption bool
		if err := rows.Scan(&name, &roleSuper, &adminOption); err != nil {
			rows.Close()
			return nil, p.scrub(fmt.Errorf("postgres provider: look up roles: %w", err))
		}
		found[name] = true
		switch {
		case roleSuper:
			rows.Close()
			return nil, fmt.Errorf("postgres provider: role %q in roles is a superuser role; accessbroker grants only non-superuser roles: %w", name, grants.ErrInvalid)
		case !adminOption && !super && version >= 160000:
			rows.Close()
			return nil, fmt.Errorf("postgres provider: admin role %q cannot grant role %q; as a superuser run: GRANT %s TO %s WITH ADMIN OPTION: %w", admin, name, quoteIdent(name), quoteIdent(admin), grants.ErrNeedsOperator)
		case !adminOption && !super && p.server.Load() == nil: // once, not at every readiness check
			p.log.Warn("admin role lacks ADMIN OPTION on a granted role; PostgreSQL 16+ will require it",
				"admin_role", admin, "role", name, "fix", fmt.Sprintf("GRANT %s TO %s WITH ADMIN OPTION", quoteIdent(name), quoteIdent(admin)))
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, p.scrub(fmt.Errorf("postgres provider: look up roles: %w", err))
	}
	var missing []string
	for _, r := range p.roles {
		if !found[r] {
			missing = append(missing, r)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("postgres provider: roles %q do not exist on the server; create them or fix roles in the config: %w", missing, grants.ErrInvalid)
	}

	// Revocation cleans the configured database: the admin must be able to connect to it.
	if p.db != p.adminDB {
		if err := p.inDatabase(ctx, p.db, func(c execer) error { return nil }); err != nil {
			return nil, fmt.Errorf("postgres provider: admin role %q cannot connect to database %q, which revocation must clean; run: GRANT CONNECT ON DATABASE %s TO %s: %w", admin, p.db, quoteIdent(p.db), quoteIdent(admin), err)
		}
	}
	return info, nil
}

// Kind returns "postgres".
func (p *Provider) Kind() string { return Kind }

// Close stops making spare roles, drops this provider's (best effort) and releases the
// admin connections.
func (p *Provider) Close() {
	p.secrets.close()
	p.spares.close()
	p.pool.Close()
}

// sslModeOf reads sslmode from a URL or key=value DSN; "prefer" (libpq's default) if absent.
func sslModeOf(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			if m := u.Query().Get("sslmode"); m != "" {
				return m
			}
		}
		return "prefer"
	}
	for _, f := range strings.Fields(dsn) {
		if v, ok := strings.CutPrefix(f, "sslmode="); ok && v != "" {
			return strings.Trim(v, `'`)
		}
	}
	return "prefer"
}

// scrub removes the admin password from an error's text. If the text had nothing to remove,
// err is returned as is, keeping errors.Is/As on the cause.
func (p *Provider) scrub(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := msg
	for _, s := range append(secrets, p.adminPassword) {
		if s != "" {
			clean = strings.ReplaceAll(clean, s, "[REDACTED]")
		}
	}
	if clean == msg {
		return err
	}
	return &scrubbedError{msg: clean, kind: classOf(err)}
}

// scrubbedError replaces an error whose text held a secret. Only its classification
// survives; the original (secret-bearing) chain is dropped.
type scrubbedError struct {
	msg  string
	kind error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.kind }

func classOf(err error) error {
	for _, k := range []error{grants.ErrNeedsOperator, grants.ErrGone, grants.ErrInvalid} {
		if errors.Is(err, k) {
			return k
		}
	}
	return nil
}

// classify marks PostgreSQL errors retrying will not fix as needing an operator.
func classify(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch {
	case pgErr.Code == "42501", // insufficient_privilege
		pgErr.Code == "3D000",               // invalid_catalog_name: database does not exist
		strings.HasPrefix(pgErr.Code, "28"): // invalid authorization
		return fmt.Errorf("%w (%w)", err, grants.ErrNeedsOperator)
	}
	return err
}

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// quoteIdent quotes a role or database name for SQL.
func quoteIdent(s string) string { return pgx.Identifier{s}.Sanitize() }
