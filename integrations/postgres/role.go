package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/accessbroker/accessbroker/grants"
)

// rolePrefix starts every role this provider creates. Revoke refuses to touch anything else.
const rolePrefix = "ab_"

const (
	personPartMax = 24
	terminateWait = 5 * time.Second
)

// grantSuffix is the part of the role name derived from the grant id alone, so that a role
// can be found from the grant id after an interrupted issue. Ids made by grants.NewID give
// their 16 random characters; any other id gives 16 hex digits of its SHA-256.
func grantSuffix(grantID string) string {
	if grants.ValidID("g", grantID) {
		return strings.TrimPrefix(grantID, "g_")
	}
	sum := sha256.Sum256([]byte(grantID))
	return hex.EncodeToString(sum[:8])
}

// personPart is a readable, sanitized name for the person: the email's local part, else the
// Slack user id, else the GitHub login; [a-z0-9_] only, at most 24 bytes.
func personPart(p grants.Person) string {
	src := p.Email
	if i := strings.IndexByte(src, '@'); i >= 0 {
		src = src[:i]
	}
	if src == "" {
		src = p.SlackUserID
	}
	if src == "" {
		src = p.GitHubLogin
	}
	var b strings.Builder
	lastUnderscore := true // also trims leading underscores
	for _, r := range strings.ToLower(src) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			lastUnderscore = false
		} else if !lastUnderscore {
			b.WriteByte('_')
			lastUnderscore = true
		}
		if b.Len() >= personPartMax {
			break
		}
	}
	s := strings.Trim(b.String(), "_")
	if s == "" {
		return "user"
	}
	return s
}

// RoleName is the role a grant gets: ab_<person>_<grant suffix>, at most 3+24+1+16 = 44 bytes
// for ids made by grants.NewID (PostgreSQL's limit is 63).
func RoleName(grantID string, p grants.Person) string {
	return rolePrefix + personPart(p) + "_" + grantSuffix(grantID)
}

// ownRole reports whether name is a role this provider would create for the grant.
func ownRole(name, grantID string) bool {
	rest, ok := strings.CutPrefix(name, rolePrefix)
	if !ok || len(name) > 63 || !strings.HasSuffix(rest, "_"+grantSuffix(grantID)) {
		return false
	}
	for _, r := range rest {
		if !(r >= 'a' && r <= 'z') && !(r >= '0' && r <= '9') && r != '_' {
			return false
		}
	}
	return true
}

func sqlTime(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05.000") + "+00"
}

// Issue creates the grant's login role with a fresh random password. If the role already
// exists (a retried Issue), it is given a new password and expiry. Errors never contain the
// password.
func (p *Provider) Issue(ctx context.Context, req grants.IssueRequest) (grants.Issued, error) {
	st, err := p.roleStatements(ctx, req)
	if err != nil {
		return grants.Issued{}, err
	}
	reissued := false
	// Each change is one round trip: a multi-statement query runs as one implicit
	// transaction, all of it or none.
	err = p.execScript(ctx, st.create)
	if err != nil && st.spare != nil {
		retry, e := st.spareFailed(p, err)
		if e != nil {
			return grants.Issued{}, st.failed(p, e)
		}
		if retry {
			err = p.execScript(ctx, st.create)
		}
	}
	if pgCode(err) == "42710" { // duplicate_object: this grant's role exists; issue again
		reissued = true
		err = p.execScript(ctx, st.reissue)
	}
	if err != nil {
		return grants.Issued{}, st.failed(p, err)
	}
	return p.issued(ctx, req, st, reissued), nil
}

// roleSQL is one issue's role, password and the statements that make it.
type roleSQL struct {
	grantID                  string
	req                      grants.IssueRequest
	name, password, verifier string
	spare                    *spare // the spare role create renames, if any
	create                   string // CREATE ROLE …; COMMENT ON ROLE … (or a spare's rename, useSpare)
	reissue                  string // ALTER ROLE …; GRANT … (the role exists already)
}

// roleStatements checks req, makes the password and its SCRAM verifier and builds the
// statements that create the role.
func (p *Provider) roleStatements(ctx context.Context, req grants.IssueRequest) (roleSQL, error) {
	if req.GrantID == "" {
		return roleSQL{}, fmt.Errorf("postgres issue: empty grant id: %w", grants.ErrInvalid)
	}
	if !req.ExpiresAt.After(p.clock.Now()) {
		return roleSQL{}, fmt.Errorf("postgres issue grant %s: expiry %s is not in the future: %w", req.GrantID, grants.Timestamp(req.ExpiresAt), grants.ErrInvalid)
	}
	if _, err := p.ready(ctx); err != nil {
		return roleSQL{}, fmt.Errorf("postgres issue grant %s: %w", req.GrantID, err)
	}
	st := roleSQL{grantID: req.GrantID, name: RoleName(req.GrantID, req.Person), req: req}
	if p.proxy == nil {
		if sp, ok := p.spares.take(); ok {
			st.useSpare(p, sp)
			return st, nil
		}
	}
	if err := st.useNewPassword(p); err != nil {
		return roleSQL{}, err
	}
	return st, nil
}

// Only CREATE states the attributes a temporary role must not have: a CREATEROLE admin may
// not even mention SUPERUSER, REPLICATION or BYPASSRLS in ALTER ROLE.
const safeAttributes = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"

// useNewPassword makes st create its role with CREATE ROLE and a fresh password (derived
// for the proxy, or made ahead by the secret pool).
func (st *roleSQL) useNewPassword(p *Provider) error {
	st.spare = nil
	var err error
	if p.proxy != nil {
		// Proxied: the role's password is derived for the proxy and never delivered; only
		// the proxy's own client logs in with it (proxyVerifier says why few iterations).
		st.password = p.proxy.Passwords.Upstream(st.grantID, st.name)
		st.verifier, err = proxyVerifier(st.password)
	} else {
		st.password, st.verifier, err = p.secrets.take()
	}
	if err != nil {
		return fmt.Errorf("postgres issue grant %s: %w", st.grantID, err)
	}
	role, granted, comment := st.parts(p)
	// DDL takes no bind parameters. Every piece below is either quoted by pgx.Identifier or
	// built here from a restricted alphabet (time, integer, base64 verifier).
	login := fmt.Sprintf("LOGIN CONNECTION LIMIT %d VALID UNTIL '%s' PASSWORD '%s'", p.limit, sqlTime(st.req.ExpiresAt), st.verifier)
	st.create = "CREATE ROLE " + role + " " + safeAttributes + " " + login + " IN ROLE " + granted + ";\n" +
		"COMMENT ON ROLE " + role + " IS '" + comment + "'"
	st.reissue = "ALTER ROLE " + role + " " + login + ";\n" + "GRANT " + granted + " TO " + role
	return nil
}

// useSpare makes st turn spare role sp into its role: rename, LOGIN with the grant's limit
// and expiry, membership, comment. None of these hashes a password (a rename keeps a SCRAM
// verifier), so the server does no PBKDF2. st.reissue (the grant's role exists already)
// does not use the spare.
func (st *roleSQL) useSpare(p *Provider, sp spare) {
	st.spare = &sp
	st.password, st.verifier = sp.password, sp.verifier
	role, granted, comment := st.parts(p)
	st.create = "ALTER ROLE " + quoteIdent(sp.name) + " RENAME TO " + role + ";\n" +
		fmt.Sprintf("ALTER ROLE %s LOGIN CONNECTION LIMIT %d VALID UNTIL '%s';\n", role, p.limit, sqlTime(st.req.ExpiresAt)) +
		"GRANT " + granted + " TO " + role + ";\n" +
		"COMMENT ON ROLE " + role + " IS '" + comment + "'"
	st.reissue = ""
}

// parts are the quoted role, the quoted granted roles and the role's comment.
func (st *roleSQL) parts(p *Provider) (role, granted, comment string) {
	quoted := make([]string, len(p.roles))
	for i, r := range p.roles {
		quoted[i] = quoteIdent(r)
	}
	comment = fmt.Sprintf("accessbroker grant %s for %s, valid until %s", safeText(st.req.GrantID), safeText(st.req.Person.Label()), grants.Timestamp(st.req.ExpiresAt))
	return quoteIdent(st.name), strings.Join(quoted, ", "), comment
}

// spareFailed handles a failed attempt to turn st's spare into the role: the server refused
// (so the transaction rolled back and the spare is still a spare) gives the spare back, and
// makes st create its role instead; an unknown outcome (a broken connection) forgets the
// spare (it is dropped by age if it still exists). It reports whether st was changed and
// should be tried again: not for duplicate_object, the grant's role existing already (a
// retried issue, handled as Issue handles it).
func (st *roleSQL) spareFailed(p *Provider, err error) (retry bool, _ error) {
	sp := st.spare
	if sp == nil {
		return false, nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code != "42704" { // not undefined_object: the spare exists
		p.spares.giveBack(*sp)
	}
	if e := st.useNewPassword(p); e != nil {
		return false, e
	}
	return pgCode(err) != "42710", nil
}

// failed is the error of a failed creation of st's role, without its password or verifier.
func (st roleSQL) failed(p *Provider, err error) error {
	return p.scrub(fmt.Errorf("postgres issue grant %s: create role %s: %w", st.grantID, st.name, classify(err)), st.password, st.verifier)
}

// issued logs the created role and returns what Issue answers.
func (p *Provider) issued(ctx context.Context, req grants.IssueRequest, st roleSQL, reissued bool) grants.Issued {
	p.log.InfoContext(ctx, "postgres role created", "grant_id", req.GrantID, "role", st.name,
		"member_of", p.roles, "valid_until", grants.Timestamp(req.ExpiresAt), "reissued", reissued)
	return grants.Issued{
		Handle:     grants.Handle{Key: st.name, Data: map[string]string{"role": st.name}},
		Credential: p.credential(req.GrantID, st.name, st.password),
	}
}

// credential is what the person receives: the role and its password on the server, or, for
// a proxied resource, the proxy's address and the proxy-only password (TLS required).
func (p *Provider) credential(grantID, name, password string) grants.Credential {
	host, port, sslmode := p.host, p.port, p.sslmode
	if p.proxy != nil {
		host, port, _ = net.SplitHostPort(p.proxy.Address) // validated by Config.Validate
		sslmode = "require"
		password = p.proxy.Passwords.Client(grantID, name)
	}
	return grants.NewCredential(Kind,
		"connection_string", connString(host, port, p.db, sslmode, name, password),
		"user", name,
		"password", password,
		"host", host,
		"port", port,
		"database", p.db,
		"sslmode", sslmode,
	)
}

func connString(host, port, db, sslmode, user, password string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Path: "/" + db}
	q := url.Values{}
	if strings.HasPrefix(host, "/") { // Unix socket directory
		q.Set("host", host)
		q.Set("port", port)
	} else {
		u.Host = net.JoinHostPort(host, port)
	}
	q.Set("sslmode", sslmode)
	u.RawQuery = q.Encode()
	return u.String()
}

// safeText keeps a comment literal to characters that need no quoting.
func safeText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("@._+-", r):
			return r
		}
		return '_'
	}, s)
}

// findRolesSQL finds a grant's roles by its suffix ($3, of length $2), a scan of pg_authid;
// findRoleByNameSQL finds the role a handle names, an index lookup.
const (
	findRolesSQL      = `SELECT oid, rolname FROM pg_roles WHERE starts_with(rolname, $1) AND right(rolname, $2) = $3 ORDER BY rolname`
	findRoleByNameSQL = `SELECT oid, rolname FROM pg_roles WHERE rolname = $1`
)

type grantRole struct {
	oid  uint32
	name string
}

// findRoles returns the roles that exist for the grant: the role its Handle names (refused
// unless it is one this provider makes for the grant), or, with an empty Handle (an issue
// interrupted before the provider answered) or when the named role is gone, every role with
// the grant id suffix.
func (p *Provider) findRoles(ctx context.Context, op string, req grants.RevokeRequest) ([]grantRole, error) {
	if req.GrantID == "" {
		return nil, fmt.Errorf("postgres %s: empty grant id: %w", op, grants.ErrInvalid)
	}
	if r := req.Handle.Data["role"]; r != "" && !ownRole(r, req.GrantID) {
		return nil, fmt.Errorf("postgres %s grant %s: handle names role %q, which is not a role accessbroker makes for this grant; refusing to touch it: %w", op, req.GrantID, r, grants.ErrNeedsOperator)
	}
	if _, err := p.ready(ctx); err != nil {
		return nil, fmt.Errorf("postgres %s grant %s: %w", op, req.GrantID, err)
	}
	var (
		found []grantRole
		err   error
	)
	if name := req.Handle.Data["role"]; name != "" {
		// The role the issue made (checked above to be one of the grant's): an index lookup,
		// whatever pg_authid holds. HasAccess reads back the same role.
		found, err = p.queryRoles(ctx, findRoleByNameSQL, name)
	}
	if err == nil && len(found) == 0 {
		// No handle, or its role is gone: any role of the grant, under whatever name.
		suffix := "_" + grantSuffix(req.GrantID)
		found, err = p.queryRoles(ctx, findRolesSQL, rolePrefix, len(suffix), suffix)
	}
	if err != nil {
		return nil, p.scrub(fmt.Errorf("postgres %s grant %s: find role: %w", op, req.GrantID, classify(err)))
	}
	out := found[:0]
	for _, r := range found {
		if ownRole(r.name, req.GrantID) {
			out = append(out, r)
		}
	}
	return out, nil
}

// queryRoles runs a lookup of roles (oid, name).
func (p *Provider) queryRoles(ctx context.Context, sql string, args ...any) ([]grantRole, error) {
	rows, err := p.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (grantRole, error) {
		var r grantRole
		err := row.Scan(&r.oid, &r.name)
		return r, err
	})
}

// Revoke drops the grant's role: no new logins, live sessions terminated, routines it owns
// dropped, other objects it owns reassigned to the orphan owner, privileges dropped, role
// dropped. A role that does not exist is success. A handle naming a role this provider would
// not have made is refused with ErrNeedsOperator. RevokeWithResult says what it did.
func (p *Provider) Revoke(ctx context.Context, req grants.RevokeRequest) error {
	_, err := p.RevokeWithResult(ctx, req)
	return err
}

// RevokeWithResult is Revoke, reporting in the result's evidence the objects the role left
// behind: orphan_owner, reassigned and reassigned_count (objects handed to the orphan owner),
// dropped and dropped_count (routines, and what depended on them). Each list names at most
// maxListed objects as "database: kind schema.name" and then says how many more there were.
// A failed attempt reports what it finished before failing.
func (p *Provider) RevokeWithResult(ctx context.Context, req grants.RevokeRequest) (grants.RevokeResult, error) {
	if req.Handle.Preexisting {
		return grants.RevokeResult{}, nil // never set by this provider; honoured per the contract
	}
	found, err := p.findRoles(ctx, "revoke", req)
	if err != nil {
		return grants.RevokeResult{}, err
	}
	return p.revokeFound(ctx, req, found)
}

// revokeFound drops the grant's roles found already (RevokeWithResult after its lookup).
func (p *Provider) revokeFound(ctx context.Context, req grants.RevokeRequest, found []grantRole) (grants.RevokeResult, error) {
	var left leftBehind
	readBack := false
	for _, r := range found {
		var err error
		if readBack, err = p.dropRole(ctx, req, r, &left); err != nil {
			return left.result(p.orphan), p.scrub(fmt.Errorf("postgres revoke grant %s: role %s: %w", req.GrantID, r.name, err))
		}
	}
	res := left.result(p.orphan)
	// The last drop's round trip read the grant's access back, as HasAccess does, and found
	// none left.
	res.ReadBack = readBack
	return res, nil
}

// maxListed bounds each object list in the audit evidence.
const maxListed = 50

// leftBehind is what revoked roles left: objects handed to the orphan owner and routines
// dropped (with their dependents), as "database: kind identity".
type leftBehind struct {
	reassigned, dropped []string
}

func (l *leftBehind) result(orphan string) grants.RevokeResult {
	if len(l.reassigned) == 0 && len(l.dropped) == 0 {
		return grants.RevokeResult{}
	}
	ev := map[string]string{}
	if n := len(l.reassigned); n > 0 {
		ev["orphan_owner"] = orphan
		ev["reassigned"] = listed(l.reassigned)
		ev["reassigned_count"] = strconv.Itoa(n)
	}
	if n := len(l.dropped); n > 0 {
		ev["dropped"] = listed(l.dropped)
		ev["dropped_count"] = strconv.Itoa(n)
	}
	return grants.RevokeResult{Evidence: ev}
}

func listed(items []string) string {
	if len(items) <= maxListed {
		return strings.Join(items, "; ")
	}
	return strings.Join(items[:maxListed], "; ") + fmt.Sprintf("; … and %d more", len(items)-maxListed)
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Begin(ctx context.Context) (pgx.Tx, error)
}

// inDatabase runs fn on an admin connection to database db.
func (p *Provider) inDatabase(ctx context.Context, db string, fn func(execer) error) error {
	if db == p.adminDB {
		return p.pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error { return fn(c) })
	}
	cfg := p.pool.Config().ConnConfig.Copy()
	cfg.Database = db
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return classify(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return fn(conn)
}

// dropRole ends r in as few round trips as PostgreSQL allows, on one connection: one
// multi-statement round trip takes away its login, gives the admin the right to act as it,
// ends its sessions and asks pg_shdepend where it owns objects or holds privileges; when it
// has none anywhere (the common case) the owned-objects steps are skipped and one more round
// trip ends any late session and, only if none is left, drops the role and reads back the
// grant's roles (finalDropSQL): readBack says that round trip committed and found none left.
// Otherwise every such database (and always the configured one) is cleaned first
// (cleanDatabase). Should anything come to depend on the role meanwhile, DROP ROLE fails
// (2BP01) and the attempt is retried, then with the cleaning.
func (p *Provider) dropRole(ctx context.Context, req grants.RevokeRequest, r grantRole, left *leftBehind) (readBack bool, _ error) {
	role := quoteIdent(r.name)
	var (
		terminated int
		dbs        []string
	)
	info := p.server.Load() // set: findRoles ran the server check
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return false, classify(err)
	}
	defer func() {
		if conn != nil {
			conn.Release()
		}
	}()
	pc := conn.Conn().PgConn()
	grant := ""
	if !info.superuser {
		// The right to terminate r's sessions and reassign its objects comes from
		// membership in r; it disappears with r.
		grant = "GRANT " + role + " TO CURRENT_USER"
		if info.version >= 160000 {
			grant += " WITH INHERIT TRUE"
		}
		grant += ";\n"
	}
	// One implicit transaction; the oid is a number, the role name is quoted.
	res, err := pc.Exec(ctx, "ALTER ROLE "+role+" NOLOGIN;\n"+grant+terminateSQL(r.oid)+fmt.Sprintf(`;
		SELECT DISTINCT d.datname, d.datallowconn FROM pg_shdepend s
			JOIN pg_database d ON d.oid = s.dbid
			WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = %d ORDER BY 1`, r.oid)).ReadAll()
	if err == nil {
		err = resultErr(res)
	}
	if pgCode(err) == "42704" { // undefined_object: dropped meanwhile
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("take the role's login, end its sessions, find where it owns objects: %w", classify(err))
	}
	last := res[len(res)-4:] // terminate, clear snapshot, count, databases
	n, err := terminated1(last[:3])
	terminated += n
	if err != nil {
		return false, err
	}
	var blocked []string
	for _, row := range last[3].Rows {
		db := string(row[0])
		if string(row[1]) != "t" {
			blocked = append(blocked, db)
		}
		dbs = append(dbs, db)
	}
	if len(blocked) > 0 {
		return false, fmt.Errorf("the role owns objects in databases %q that accept no connections; allow connections or run REASSIGN OWNED/DROP OWNED there by hand: %w", blocked, grants.ErrNeedsOperator)
	}
	if len(dbs) > 0 {
		conn.Release() // cleaning takes a connection per database
		conn = nil
		if err := p.cleanDatabases(ctx, r, dbs, left); pgCode(err) == "42704" {
			return false, nil // dropped meanwhile
		} else if err != nil {
			return false, err
		}
		if conn, err = p.pool.Acquire(ctx); err != nil {
			return false, classify(err)
		}
		pc = conn.Conn().PgConn()
	}
	p.afterRevokeStep("role logins ended")
	// A second sweep, for a session that authenticated just before NOLOGIN was committed and
	// was not yet visible (once the role is dropped, a non-superuser admin can no longer
	// signal it), and the drop, in one round trip: the drop runs only if no session is left.
	n, readBack, err = finalDrop(ctx, pc, req, r)
	terminated += n
	if err != nil {
		return false, err
	}
	p.log.InfoContext(ctx, "postgres role dropped", "role", r.name, "sessions_terminated", terminated, "databases_cleaned", dbs,
		"objects_reassigned", len(left.reassigned), "objects_dropped", len(left.dropped), "orphan_owner", p.orphan)
	return readBack, nil
}

// finalDropSQL ends the role's sessions once more, counts those left (terminateSQL), stops
// if any is (a division by zero: the implicit transaction ends there, so DROP ROLE does
// not run), drops the role and reads the grant's access back as HasAccess does (the role the
// handle names, else every role with the grant id suffix): six statements, one round trip,
// one implicit transaction.
func finalDropSQL(req grants.RevokeRequest, r grantRole) string {
	readBack := fmt.Sprintf(`SELECT rolname FROM pg_roles WHERE rolname = %s`, quoteLiteral(req.Handle.Data["role"]))
	if name := req.Handle.Data["role"]; name == "" || !ownRole(name, req.GrantID) {
		suffix := "_" + grantSuffix(req.GrantID)
		readBack = fmt.Sprintf(`SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s) AND right(rolname, %d) = %s`,
			quoteLiteral(rolePrefix), len(suffix), quoteLiteral(suffix))
	}
	return terminateSQL(r.oid) + fmt.Sprintf(`;
		SELECT 1 / (count(*) = 0)::int FROM pg_stat_activity WHERE usesysid = %d;
		DROP ROLE IF EXISTS %s;
		`, r.oid, quoteIdent(r.name)) + readBack
}

// finalDrop runs finalDropSQL: the sessions ended, whether the read-back after the drop found
// no access left (the answer arrives only once the transaction committed), and an error (to
// retry) if a session survived or the drop failed. A role dropped meanwhile is success, not
// read back.
func finalDrop(ctx context.Context, pc *pgconn.PgConn, req grants.RevokeRequest, r grantRole) (terminated int, readBack bool, _ error) {
	res, err := pc.Exec(ctx, finalDropSQL(req, r)).ReadAll()
	if err == nil {
		err = resultErr(res)
	}
	if len(res) >= 3 && res[0].Err == nil && res[1].Err == nil && res[2].Err == nil {
		if n, aliveErr := terminated1(res[:3]); aliveErr != nil {
			return n, false, aliveErr // the guard stopped the drop
		} else if err == nil {
			return n, len(res) == 6 && noneOwn(res[5], req.GrantID), nil
		}
	}
	switch pgCode(err) {
	case "42704":
		return 0, false, nil
	case "2BP01": // dependent_objects_still_exist
		return 0, false, classify(fmt.Errorf("DROP ROLE: objects still depend on the role (created meanwhile?); will retry: %w", err))
	case "22012": // the guard, though the count said none was left
		return 0, false, fmt.Errorf("terminate sessions: a session is still alive; will retry")
	}
	return 0, false, classify(fmt.Errorf("terminate sessions and DROP ROLE: %w", err))
}

// noneOwn says no row of res (role names) is a role this provider makes for the grant.
func noneOwn(res *pgconn.Result, grantID string) bool {
	for _, row := range res.Rows {
		if ownRole(string(row[0]), grantID) {
			return false
		}
	}
	return true
}

// quoteLiteral quotes s as an SQL string literal. s must hold no backslash (it is the role
// prefix or a grant id suffix: letters, digits and underscores), so the literal means the
// same whatever standard_conforming_strings says.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// cleanDatabases runs cleanDatabase, in a transaction, in each of dbs and in the configured
// database, and notes what it reassigned and dropped.
func (p *Provider) cleanDatabases(ctx context.Context, r grantRole, dbs []string, left *leftBehind) error {
	if !slices.Contains(dbs, p.db) {
		dbs = append([]string{p.db}, dbs...)
	}
	for _, db := range dbs {
		var reassigned, dropped []string
		err := p.inDatabase(ctx, db, func(c execer) error {
			return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
				var err error
				reassigned, dropped, err = p.cleanDatabase(ctx, tx, r)
				return err
			})
		})
		if err != nil {
			return fmt.Errorf("clean database %s: %w", db, classify(err))
		}
		for _, o := range reassigned {
			left.reassigned = append(left.reassigned, db+": "+o)
		}
		for _, o := range dropped {
			left.dropped = append(left.dropped, db+": "+o)
		}
	}
	return nil
}

// dropKinds maps the kinds of object (pg_identify_object's type) that revocation drops
// rather than hands to the orphan owner to their DROP keyword. Routines are code the grantee
// wrote; the others are schema-bound metadata that PostgreSQL lets a non-superuser give away
// only to a role with CREATE on their schema, which the orphan owner must not have.
var dropKinds = map[string]string{
	"function": "ROUTINE", "procedure": "ROUTINE", "aggregate": "ROUTINE",
	"collation": "COLLATION", "conversion": "CONVERSION", "operator": "OPERATOR",
	"operator class": "OPERATOR CLASS", "operator family": "OPERATOR FAMILY",
	"statistics object": "STATISTICS", "text search configuration": "TEXT SEARCH CONFIGURATION",
	"text search dictionary": "TEXT SEARCH DICTIONARY",
}

// ownedObject is one object the role owns in the current database.
type ownedObject struct {
	classID, objID uint32
	kind, identity string
	definer        bool // a SECURITY DEFINER routine
}

// ownedObjects lists what the role owns in tx's database (pg_shdepend), kind then identity.
func ownedObjects(ctx context.Context, tx pgx.Tx, role uint32) ([]ownedObject, error) {
	rows, err := tx.Query(ctx, `SELECT s.classid::oid, s.objid, o.type, o.identity, coalesce(p.prosecdef, false)
		FROM pg_shdepend s
		CROSS JOIN LATERAL pg_identify_object(s.classid, s.objid, s.objsubid) o
		LEFT JOIN pg_proc p ON s.classid = 'pg_proc'::regclass AND p.oid = s.objid
		WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND s.refclassid = 'pg_authid'::regclass AND s.refobjid = $1 AND s.deptype = 'o'
		ORDER BY o.type, o.identity`, role)
	if err != nil {
		return nil, fmt.Errorf("list objects the role owns: %w", err)
	}
	objs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ownedObject, error) {
		var o ownedObject
		err := row.Scan(&o.classID, &o.objID, &o.kind, &o.identity, &o.definer)
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("list objects the role owns: %w", err)
	}
	return objs, nil
}

// cleanDatabase leaves the role owning nothing in tx's database, in one transaction:
//
//   - Every routine it owns (function, procedure, aggregate) is dropped, with CASCADE: code a
//     grantee wrote must not outlive the grant. A SECURITY DEFINER function would run with its
//     new owner's rights, and any function can be wired to run implicitly with the rights of
//     whoever touches a table (a trigger the grantee put on a table it could write to, a
//     column default, a policy), so making it SECURITY INVOKER is not enough. The
//     schema-bound metadata in dropKinds (operators, collations, statistics objects, …) is
//     dropped the same way. The direct dependents of each are listed and dropped with it.
//   - Everything else it owns (tables and their data, sequences, views, types) is reassigned
//     to the orphan owner, a NOLOGIN role with no privileges: a view it owns reads only what
//     that role may read, which is nothing beyond the orphaned objects themselves.
//   - DROP OWNED removes the privileges granted to the role and its default privileges.
//
// It returns the objects reassigned and dropped, as "kind identity".
func (p *Provider) cleanDatabase(ctx context.Context, tx pgx.Tx, r grantRole) (reassigned, dropped []string, err error) {
	owned, err := ownedObjects(ctx, tx, r.oid)
	if err != nil {
		return nil, nil, err
	}
	for _, o := range owned {
		keyword, ok := dropKinds[o.kind]
		if !ok {
			continue
		}
		rows, err := tx.Query(ctx, `SELECT o.type || ' ' || o.identity
			FROM pg_depend d CROSS JOIN LATERAL pg_identify_object(d.classid, d.objid, d.objsubid) o
			WHERE d.refclassid = $1 AND d.refobjid = $2 AND d.deptype = 'n'
			ORDER BY 1`, o.classID, o.objID)
		if err != nil {
			return nil, nil, fmt.Errorf("list what depends on %s %s: %w", o.kind, o.identity, err)
		}
		deps, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, nil, fmt.Errorf("list what depends on %s %s: %w", o.kind, o.identity, err)
		}
		// The identity comes from the server, quoted. IF EXISTS: an earlier CASCADE (a
		// routine whose body calls another, an operator class of a dropped family) may
		// have taken it already.
		if _, err := tx.Exec(ctx, "DROP "+keyword+" IF EXISTS "+o.identity+" CASCADE"); err != nil {
			return nil, nil, fmt.Errorf("DROP %s %s: %w", keyword, o.identity, err)
		}
		what := o.kind + " " + o.identity
		if o.definer {
			what += " (security definer)"
		}
		dropped = append(dropped, what)
		for _, d := range deps {
			dropped = append(dropped, d+" (depended on "+o.kind+" "+o.identity+")")
		}
	}
	left, err := ownedObjects(ctx, tx, r.oid)
	if err != nil {
		return nil, nil, err
	}
	for _, o := range left {
		reassigned = append(reassigned, o.kind+" "+o.identity)
	}
	if _, err := tx.Exec(ctx, "REASSIGN OWNED BY "+quoteIdent(r.name)+" TO "+quoteIdent(p.orphan)); err != nil {
		if info := p.server.Load(); pgCode(err) == "42501" && info != nil && !info.superuser {
			return nil, nil, fmt.Errorf("REASSIGN OWNED to orphan owner %s: the admin role lost its membership of the orphan owner (restart the broker, which grants it again, or as a superuser GRANT %s TO the admin role), or the role left an object the orphan owner may not receive (see them with SELECT pg_describe_object(classid, objid, objsubid) FROM pg_shdepend WHERE refobjid = %d, and drop them): %w",
				p.orphan, quoteIdent(p.orphan), r.oid, err)
		}
		return nil, nil, fmt.Errorf("REASSIGN OWNED: %w", err)
	}
	if _, err := tx.Exec(ctx, "DROP OWNED BY "+quoteIdent(r.name)); err != nil {
		return nil, nil, fmt.Errorf("DROP OWNED: %w", err)
	}
	return reassigned, dropped, nil
}

// terminateSQL ends every session of the role, drops the statistics snapshot of the
// transaction (pg_stat_activity is read once per transaction otherwise) and counts the
// sessions left: three statements for a multi-statement round trip.
func terminateSQL(oid uint32) string {
	return fmt.Sprintf(`SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, %d)) FROM pg_stat_activity WHERE usesysid = %d AND pid <> pg_backend_pid();
		SELECT pg_stat_clear_snapshot();
		SELECT count(*) FROM pg_stat_activity WHERE usesysid = %d`, terminateWait.Milliseconds(), oid, oid)
}

// terminated1 reads terminateSQL's three results: sessions ended, and an error if any is left.
func terminated1(res []*pgconn.Result) (int, error) {
	if len(res) != 3 || len(res[0].Rows) != 1 || len(res[2].Rows) != 1 {
		return 0, fmt.Errorf("terminate sessions: unexpected answer (%d results)", len(res))
	}
	terminated, err := strconv.Atoi(string(res[0].Rows[0][0]))
	if err != nil {
		return 0, fmt.Errorf("terminate sessions: %w", err)
	}
	alive, err := strconv.Atoi(string(res[2].Rows[0][0]))
	if err != nil {
		return terminated, fmt.Errorf("count sessions: %w", err)
	}
	if alive > 0 {
		return terminated, fmt.Errorf("%d session(s) still alive after pg_terminate_backend; will retry", alive)
	}
	return terminated, nil
}

// execScript runs a multi-statement script in one round trip on an admin connection; the
// statements run in one implicit transaction.
func (p *Provider) execScript(ctx context.Context, script string) error {
	return p.pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		res, err := c.Conn().PgConn().Exec(ctx, script).ReadAll()
		if err != nil {
			return err
		}
		return resultErr(res)
	})
}

// resultErr is the first error among a multi-statement round trip's results.
func resultErr(res []*pgconn.Result) error {
	for _, r := range res {
		if r.Err != nil {
			return r.Err
		}
	}
	return nil
}

// Extend moves the role's VALID UNTIL to newExpiry. A role that no longer exists gives an
// error wrapping grants.ErrGone.
func (p *Provider) Extend(ctx context.Context, req grants.RevokeRequest, newExpiry time.Time) error {
	if !newExpiry.After(p.clock.Now()) {
		return fmt.Errorf("postgres extend grant %s: new expiry %s is not in the future: %w", req.GrantID, grants.Timestamp(newExpiry), grants.ErrInvalid)
	}
	found, err := p.findRoles(ctx, "extend", req)
	if err != nil {
		return err
	}
	if len(found) == 0 {
		return fmt.Errorf("postgres extend grant %s: no role exists for the grant: %w", req.GrantID, grants.ErrGone)
	}
	for _, r := range found {
		_, err := p.pool.Exec(ctx, "ALTER ROLE "+quoteIdent(r.name)+" VALID UNTIL '"+sqlTime(newExpiry)+"'")
		if pgCode(err) == "42704" {
			return fmt.Errorf("postgres extend grant %s: role %s was dropped: %w", req.GrantID, r.name, grants.ErrGone)
		}
		if err != nil {
			return p.scrub(fmt.Errorf("postgres extend grant %s: role %s: %w", req.GrantID, r.name, classify(err)))
		}
		p.log.InfoContext(ctx, "postgres role extended", "grant_id", req.GrantID, "role", r.name, "valid_until", grants.Timestamp(newExpiry))
	}
	return nil
}

// String describes the provider without secrets.
func (p *Provider) String() string {
	return "postgres(" + p.host + ":" + p.port + "/" + p.db + ", roles " + strings.Join(p.roles, ",") + ", limit " + strconv.Itoa(p.limit) + ")"
}
