package postgres

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/accessbroker/accessbroker/grants"
)

var (
	_ grants.BatchRevoker       = (*Provider)(nil)
	_ grants.BatchAccessChecker = (*Provider)(nil)
)

// RevokeBatch implements grants.BatchRevoker: it drops the roles of many grants in a fixed
// number of round trips on one admin connection, whatever their number:
//
//  1. find the grants' roles (one query over pg_roles by grant id suffix, as Revoke finds one;
//     findRolesBatchSQL);
//  2. one multi-statement round trip (one implicit transaction): ALTER ROLE … NOLOGIN for
//     each, one GRANT of all of them TO CURRENT_USER (a non-superuser admin), terminate
//     their sessions, count what is left per role, and ask pg_shdepend where each owns
//     objects or holds privileges;
//  3. for the roles that own nothing and have no session left: terminate once more and count
//     (a session that authenticated just before NOLOGIN), one round trip;
//  4. DROP ROLE IF EXISTS of all of those in one statement (one transaction, one commit).
//
// A role that owns objects somewhere, or whose sessions survived, and every role of a step
// that failed as a whole (a role dropped meanwhile, a lock timeout, a dependency created
// since step 2) are revoked one grant at a time by RevokeWithResult, which reports that
// grant's own outcome: a failure is never reported for another grant, and a grant is never
// reported revoked while its role exists.
func (p *Provider) RevokeBatch(ctx context.Context, reqs []grants.RevokeRequest) []grants.BatchResult {
	out := make([]grants.BatchResult, len(reqs))
	if len(reqs) == 1 {
		out[0].RevokeResult, out[0].Err = p.RevokeWithResult(ctx, reqs[0])
		return out
	}
	var pending []int // requests to look up
	for i, req := range reqs {
		switch {
		case req.Handle.Preexisting:
			// never set by this provider; honoured per the contract: nothing to do
		case req.GrantID == "":
			out[i].Err = fmt.Errorf("postgres revoke: empty grant id: %w", grants.ErrInvalid)
		case req.Handle.Data["role"] != "" && !ownRole(req.Handle.Data["role"], req.GrantID):
			out[i].Err = fmt.Errorf("postgres revoke grant %s: handle names role %q, which is not a role accessbroker makes for this grant; refusing to touch it: %w", req.GrantID, req.Handle.Data["role"], grants.ErrNeedsOperator)
		default:
			pending = append(pending, i)
		}
	}
	if len(pending) == 0 {
		return out
	}
	fail := func(idx []int, err error) {
		for _, i := range idx {
			out[i].Err = p.scrub(fmt.Errorf("postgres revoke grant %s: %w", reqs[i].GrantID, err))
		}
	}
	info, err := p.ready(ctx)
	if err != nil {
		fail(pending, err)
		return out
	}
	roles, err := p.findRolesBatch(ctx, reqs, pending, false)
	if err != nil {
		fail(pending, fmt.Errorf("find role: %w", classify(err)))
		return out
	}
	p.afterRevokeStep("found")
	var batch []grantRole
	owner := map[uint32]int{} // role oid → request index
	for _, i := range pending {
		for _, r := range roles[i] {
			batch = append(batch, r)
			owner[r.oid] = i
		}
	}
	if len(batch) == 0 {
		return out // every role is gone already
	}
	single := map[int]bool{}   // requests to revoke one by one
	readBack := map[int]bool{} // requests whose roles the drop's round trip found gone
	err = p.pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		pc := c.Conn().PgConn()
		dirty, err := p.endLogins(ctx, pc, info, batch)
		if err != nil {
			return err
		}
		p.afterRevokeStep("logins ended")
		for oid := range dirty {
			single[owner[oid]] = true
		}
		var clean []grantRole
		for _, r := range batch {
			if !single[owner[r.oid]] {
				clean = append(clean, r)
			}
		}
		if len(clean) == 0 {
			return nil
		}
		alive, err := terminateMany(ctx, pc, clean)
		if err != nil {
			return err
		}
		p.afterRevokeStep("terminated")
		var drop []grantRole
		for _, r := range clean {
			if alive[r.oid] > 0 {
				single[owner[r.oid]] = true
			}
		}
		for _, r := range clean {
			if !single[owner[r.oid]] {
				drop = append(drop, r)
			}
		}
		if len(drop) == 0 {
			return nil
		}
		names := make([]string, len(drop))
		var dropped []int // request indexes of the dropped roles, once each
		for i, r := range drop {
			names[i] = quoteIdent(r.name)
			if o := owner[r.oid]; !slices.Contains(dropped, o) {
				dropped = append(dropped, o)
			}
		}
		// The drop, then the read-back of the dropped grants' roles (as HasAccessBatch looks
		// them up), in one implicit transaction: the answer comes once it has committed.
		res, err := pc.Exec(ctx, "DROP ROLE IF EXISTS "+strings.Join(names, ", ")+";\n"+readBackLiteralSQL(reqs, dropped)).ReadAll()
		if err == nil {
			err = resultErr(res)
		}
		if err != nil {
			return fmt.Errorf("DROP ROLE: %w", err)
		}
		if len(res) == 2 {
			for _, i := range dropped {
				readBack[i] = noneOwn(res[1], reqs[i].GrantID)
			}
		}
		for _, r := range drop {
			p.log.InfoContext(ctx, "postgres role dropped", "grant_id", reqs[owner[r.oid]].GrantID, "role", r.name, "batch", len(drop))
		}
		return nil
	})
	if err != nil {
		// The failed step changed nothing (one implicit transaction, or one statement): each
		// grant is revoked on its own, and gets its own outcome.
		p.log.WarnContext(ctx, "postgres batch revocation failed; revoking one by one", "grants", len(pending), "error", p.scrub(err))
		for _, i := range pending {
			if len(roles[i]) > 0 {
				single[i] = true
			}
		}
	}
	for _, i := range pending {
		if single[i] {
			// The roles were found above: no second lookup for this grant.
			out[i].RevokeResult, out[i].Err = p.revokeFound(ctx, reqs[i], roles[i])
		} else if err == nil {
			out[i].ReadBack = readBack[i]
		}
	}
	return out
}

// readBackLiteralSQL is readBackBatchSQL's lookup of the roles of reqs[idx...] with the
// suffixes written as literals, for a multi-statement round trip (which takes no parameters).
// Every grant suffix has the same length (grantSuffix), as findRolesBatch assumes too.
func readBackLiteralSQL(reqs []grants.RevokeRequest, idx []int) string {
	lits := make([]string, len(idx))
	for k, i := range idx {
		lits[k] = quoteLiteral("_" + grantSuffix(reqs[i].GrantID))
	}
	return fmt.Sprintf(`SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s) AND right(rolname, %d) = ANY(ARRAY[%s]::text[])`,
		quoteLiteral(rolePrefix), len(grantSuffix(reqs[idx[0]].GrantID))+1, strings.Join(lits, ", "))
}

// afterRevokeStep calls the test hook p.batchStep, if set, once a revocation step has run:
// RevokeBatch's "found", "logins ended", "terminated", and a single role's "role logins
// ended" (dropRole, before its final round trip).
func (p *Provider) afterRevokeStep(step string) {
	if p.batchStep != nil {
		p.batchStep(step)
	}
}

// findRolesBatchSQL finds the roles of many grants by their suffixes ($3): the first
// statement of every RevokeBatch (cmd/accessbroker's drain test counts provider calls by it).
// readBackBatchSQL is the same lookup for HasAccessBatch, worded apart so that a read-back is
// not taken for a revocation on the wire.
const (
	findRolesBatchSQL = `SELECT oid, rolname FROM pg_roles WHERE right(rolname, $2) = ANY($3::text[]) AND starts_with(rolname, $1) ORDER BY rolname`
	readBackBatchSQL  = `SELECT r.oid, r.rolname FROM pg_roles r WHERE starts_with(r.rolname, $1) AND right(r.rolname, $2) = ANY($3::text[])`
)

// findRolesBatch returns, per request index in idx, the roles that exist for its grant (as
// findRoles finds them), in one query.
func (p *Provider) findRolesBatch(ctx context.Context, reqs []grants.RevokeRequest, idx []int, readBack bool) (map[int][]grantRole, error) {
	bySuffix := map[string][]int{}
	suffixes := make([]string, 0, len(idx))
	for _, i := range idx {
		s := "_" + grantSuffix(reqs[i].GrantID)
		if _, ok := bySuffix[s]; !ok {
			suffixes = append(suffixes, s)
		}
		bySuffix[s] = append(bySuffix[s], i)
	}
	q := findRolesBatchSQL
	if readBack {
		q = readBackBatchSQL
	}
	rows, err := p.pool.Query(ctx, q, rolePrefix, len(suffixes[0]), suffixes)
	if err != nil {
		return nil, err
	}
	found, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (grantRole, error) {
		var r grantRole
		err := row.Scan(&r.oid, &r.name)
		return r, err
	})
	if err != nil {
		return nil, err
	}
	out := map[int][]grantRole{}
	for _, r := range found {
		s := r.name[len(r.name)-len(suffixes[0]):]
		for _, i := range bySuffix[s] {
			if ownRole(r.name, reqs[i].GrantID) {
				out[i] = append(out[i], r)
			}
		}
	}
	return out, nil
}

// oidList is the roles' oids for an IN list (numbers only).
func oidList(rs []grantRole) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = strconv.FormatUint(uint64(r.oid), 10)
	}
	return strings.Join(s, ",")
}

// endLogins is step 2 of RevokeBatch for rs, in one round trip: no login, membership for a
// non-superuser admin, sessions terminated. It returns the roles that need the one-by-one
// path: those with sessions left or objects (or privileges) in some database.
func (p *Provider) endLogins(ctx context.Context, pc *pgconn.PgConn, info *serverInfo, rs []grantRole) (map[uint32]bool, error) {
	var b strings.Builder
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = quoteIdent(r.name)
		b.WriteString("ALTER ROLE " + names[i] + " NOLOGIN;\n")
	}
	if !info.superuser {
		b.WriteString("GRANT " + strings.Join(names, ", ") + " TO CURRENT_USER")
		if info.version >= 160000 {
			b.WriteString(" WITH INHERIT TRUE")
		}
		b.WriteString(";\n")
	}
	oids := oidList(rs)
	b.WriteString(terminateManySQL(oids))
	fmt.Fprintf(&b, `;
		SELECT DISTINCT s.refobjid FROM pg_shdepend s
			WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid IN (%s)`, oids)
	res, err := pc.Exec(ctx, b.String()).ReadAll()
	if err == nil {
		err = resultErr(res)
	}
	if err != nil {
		return nil, fmt.Errorf("take the roles' login, end their sessions, find where they own objects: %w", err)
	}
	if len(res) < 4 {
		return nil, fmt.Errorf("take the roles' login: unexpected answer (%d results)", len(res))
	}
	last := res[len(res)-4:]
	alive, err := aliveOf(last[:3])
	if err != nil {
		return nil, err
	}
	dirty := map[uint32]bool{}
	for oid, n := range alive {
		if n > 0 {
			dirty[oid] = true
		}
	}
	for _, row := range last[3].Rows {
		oid, err := strconv.ParseUint(string(row[0]), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("read pg_shdepend: %w", err)
		}
		dirty[uint32(oid)] = true
	}
	return dirty, nil
}

// terminateManySQL ends every session of the roles oids (a list of numbers), drops the
// statistics snapshot and counts the sessions left per role: three statements.
func terminateManySQL(oids string) string {
	return fmt.Sprintf(`SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, %d)) FROM pg_stat_activity WHERE usesysid IN (%s) AND pid <> pg_backend_pid();
		SELECT pg_stat_clear_snapshot();
		SELECT usesysid, count(*) FROM pg_stat_activity WHERE usesysid IN (%s) GROUP BY 1`, terminateWait.Milliseconds(), oids, oids)
}

// terminateMany ends the sessions of rs once more and returns the sessions left per role
// oid, in one round trip.
func terminateMany(ctx context.Context, pc *pgconn.PgConn, rs []grantRole) (map[uint32]int, error) {
	res, err := pc.Exec(ctx, terminateManySQL(oidList(rs))).ReadAll()
	if err == nil {
		err = resultErr(res)
	}
	if err != nil {
		return nil, fmt.Errorf("terminate sessions: %w", err)
	}
	return aliveOf(res)
}

// aliveOf reads terminateManySQL's three results: sessions left per role oid.
func aliveOf(res []*pgconn.Result) (map[uint32]int, error) {
	if len(res) != 3 || len(res[0].Rows) != 1 {
		return nil, fmt.Errorf("terminate sessions: unexpected answer (%d results)", len(res))
	}
	alive := map[uint32]int{}
	for _, row := range res[2].Rows {
		oid, err := strconv.ParseUint(string(row[0]), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("count sessions: %w", err)
		}
		n, err := strconv.Atoi(string(row[1]))
		if err != nil {
			return nil, fmt.Errorf("count sessions: %w", err)
		}
		alive[uint32(oid)] = n
	}
	return alive, nil
}

// HasAccessBatch implements grants.BatchAccessChecker: whether a role exists for each
// grant, found by the grant id suffix as Revoke finds it (any such role counts, also one the
// handle does not name), in one query. A request whose handle names a role this provider
// would not make for the grant fails the call (ErrNeedsOperator), as HasAccess refuses it.
func (p *Provider) HasAccessBatch(ctx context.Context, reqs []grants.RevokeRequest) ([]bool, error) {
	out := make([]bool, len(reqs))
	if len(reqs) == 0 {
		return out, nil
	}
	idx := make([]int, len(reqs))
	for i, req := range reqs {
		if req.GrantID == "" {
			return nil, fmt.Errorf("postgres read back: empty grant id: %w", grants.ErrInvalid)
		}
		if r := req.Handle.Data["role"]; r != "" && !ownRole(r, req.GrantID) {
			return nil, fmt.Errorf("postgres read back grant %s: handle names role %q, which is not a role accessbroker makes for this grant: %w", req.GrantID, r, grants.ErrNeedsOperator)
		}
		idx[i] = i
	}
	if _, err := p.ready(ctx); err != nil {
		return nil, fmt.Errorf("postgres read back %d grants: %w", len(reqs), err)
	}
	found, err := p.findRolesBatch(ctx, reqs, idx, true)
	if err != nil {
		return nil, p.scrub(fmt.Errorf("postgres read back %d grants: %w", len(reqs), classify(err)))
	}
	for i := range reqs {
		out[i] = len(found[i]) > 0
	}
	return out, nil
}
