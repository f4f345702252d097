package github

import (
	"context"
	"net/http"

	gh "github.com/google/go-github/v60/github"

	"github.com/accessbroker/accessbroker/grants"
)

var (
	_ grants.AccessLister  = (*Provider)(nil)
	_ grants.AccessChecker = (*Provider)(nil)
)

// ListAccess implements grants.AccessLister: every active member of the team ("List team
// members", role all, 100 a page, every page). A membership carries no name of the
// broker's, so the reconciler counts one as drift only when the newest grant of ours for it
// made it (not preexisting) and is revoked. Pending invitations are not members yet and are
// not listed (HasAccess still sees them). GitHub lists members of child teams too.
func (p *Provider) ListAccess(ctx context.Context) ([]grants.Access, error) {
	opts := &gh.TeamListTeamMembersOptions{Role: "all", ListOptions: gh.ListOptions{PerPage: 100}}
	var out []grants.Access
	for {
		users, resp, err := p.gh.Teams.ListTeamMembersBySlug(ctx, p.org, p.team, opts)
		if err != nil {
			return nil, p.fail("list members of "+p.org+"/"+p.team, err, false)
		}
		for _, u := range users {
			login := u.GetLogin()
			if !loginRE.MatchString(login) {
				continue
			}
			key := p.key(p.org, p.team, login)
			out = append(out, grants.Access{
				Key: key, Person: grants.Person{GitHubLogin: login}, Name: "member " + login + " of " + p.org + "/" + p.team,
				Handle: grants.Handle{Key: key, Data: map[string]string{"org": p.org, "team": p.team, "login": login}},
			})
		}
		if resp == nil || resp.NextPage == 0 {
			return out, nil
		}
		opts.Page = resp.NextPage
	}
}

// HasAccess implements grants.AccessChecker: whether the grant's login has a membership of
// the team (active or pending). A person without a GitHub login has none.
func (p *Provider) HasAccess(ctx context.Context, req grants.RevokeRequest) (bool, error) {
	org, team, user := req.Handle.Data["org"], req.Handle.Data["team"], req.Handle.Data["login"]
	if org == "" || team == "" {
		org, team = p.org, p.team
	}
	if user == "" {
		user = req.Person.GitHubLogin
	}
	if user == "" {
		return false, nil
	}
	_, _, err := p.gh.Teams.GetTeamMembershipBySlug(ctx, org, team, user)
	switch {
	case err == nil:
		return true, nil
	case status(err) == http.StatusNotFound:
		return false, nil
	}
	return false, p.fail("read back membership of "+user, err, false)
}
