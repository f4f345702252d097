package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/accessbroker/accessbroker/grants"
)

var (
	_ grants.AccessLister  = (*Provider)(nil)
	_ grants.AccessChecker = (*Provider)(nil)
)

// ListAccess implements grants.AccessLister: the login roles named as this provider names
// them (ab_<person>_<grant>) that are members of one of the resource's roles (postgres.roles),
// each with the grant its name gives. A role with the prefix outside those roles gives no
// access through this resource and is not listed, so two resources (or a test) on one
// cluster with different roles never see each other's roles. One query.
func (p *Provider) ListAccess(ctx context.Context) ([]grants.Access, error) {
	if _, err := p.ready(ctx); err != nil {
		return nil, fmt.Errorf("postgres list roles: %w", err)
	}
	rows, err := p.pool.Query(ctx, `SELECT r.rolname FROM pg_roles r
		WHERE starts_with(r.rolname, $1) AND EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
			WHERE m.member = r.oid AND g.rolname = ANY($2::text[]))
		ORDER BY r.rolname`, rolePrefix, p.roles)
	if err != nil {
		return nil, p.scrub(fmt.Errorf("postgres list roles: %w", classify(err)))
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, p.scrub(fmt.Errorf("postgres list roles: %w", classify(err)))
	}
	out := make([]grants.Access, 0, len(names))
	for _, name := range names {
		id, ok := grantOfRole(name)
		if !ok {
			continue // a prefix look-alike made by someone else: not a name this provider gives
		}
		out = append(out, grants.Access{
			Key: name, GrantID: id, Name: "role " + name,
			Handle: grants.Handle{Key: name, Data: map[string]string{"role": name}},
		})
	}
	return out, nil
}

// grantOfRole returns the grant id a role name made by RoleName encodes: ab_<person>_<the
// 16 characters of the id after "g_">.
func grantOfRole(name string) (string, bool) {
	i := strings.LastIndexByte(name, '_')
	if i < 0 {
		return "", false
	}
	id := "g_" + name[i+1:]
	if !grants.ValidID("g", id) || !ownRole(name, id) || len(name) <= len(rolePrefix)+1+16 {
		return "", false
	}
	return id, true
}

// HasAccess implements grants.AccessChecker: whether the grant's role exists. With a handle
// it looks the role up by name (the catalog's unique index: one cheap query however many
// roles the server has); with an empty handle (an interrupted issue) it finds the roles by
// the grant id, as Revoke does. The revoker calls it after Revoke, so a revocation is
// recorded only once the role is gone.
func (p *Provider) HasAccess(ctx context.Context, req grants.RevokeRequest) (bool, error) {
	if name := req.Handle.Data["role"]; name != "" && ownRole(name, req.GrantID) {
		if _, err := p.ready(ctx); err != nil {
			return false, fmt.Errorf("postgres read back grant %s: %w", req.GrantID, err)
		}
		var exists bool
		if err := p.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, name).Scan(&exists); err != nil {
			return false, p.scrub(fmt.Errorf("postgres read back grant %s: %w", req.GrantID, classify(err)))
		}
		return exists, nil
	}
	found, err := p.findRoles(ctx, "read back", req)
	if err != nil {
		return false, err
	}
	return len(found) > 0, nil
}
