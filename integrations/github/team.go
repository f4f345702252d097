// Package github is the "github-team" grants.Provider: a grant is a membership of one GitHub
// team, added on issue and removed on revocation, through go-github v60.
//
// Issue reads the person's GitHub login from the identities map (Person.GitHubLogin), then:
//
//   - GET /orgs/{org}/teams/{team}/memberships/{login}: if a membership already exists
//     (active or pending), nothing is changed and the handle is marked Preexisting: the
//     membership belongs to someone else (an owner, or an earlier live grant, which the grants
//     layer recognises by the same Handle.Key), and no revocation of this grant removes it.
//   - otherwise PUT the membership with the configured role. GitHub answers "active", or
//     "pending" when the person is not yet a member of the organization: GitHub then e-mails
//     an invitation, and the team gives no access until it is accepted. The credential says
//     which (kind "github-team", fields team, role, state, expires, note); it holds no secret.
//
// Handle.Key is "github-team:<org>/<team>:<login>" (lower case): two grants for the same
// person and team share it, and the grants layer only revokes when the last of them ends.
//
// Revoke deletes the membership (DELETE …/memberships/{login}, which also cancels a pending
// invitation); 404 means it is already gone. A Preexisting handle is left alone. With an empty
// handle (an issue interrupted by a crash) the membership is derived from the configuration
// and the person's login. Caveat: if the crash happened after Issue found a preexisting
// membership but before its answer was stored, that membership is removed; accessbroker
// records the revocation, so an operator can restore it.
//
// Caveat on 404: GitHub also answers 404 when the token cannot see the team. Check (called by
// config check and at start) verifies that the team is visible, so that a 404 on revoke means
// what it says.
//
// All calls go through the *http.Client passed to New; give it integrations/httpclient's
// retrying client so that 5xx, 429 and secondary rate limits (403 with Retry-After) are
// retried with backoff. Errors wrap grants.ErrNeedsOperator for 401, 403 (not rate limits),
// 404 on issue and 422; other failures are retryable. The token never appears in errors.
package github

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	gh "github.com/google/go-github/v60/github"

	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
)

// Kind is the provider kind.
const Kind = "github-team"

// DefaultAPIURL is GitHub.com's REST API.
const DefaultAPIURL = "https://api.github.com/"

// Config configures one github-team resource.
type Config struct {
	Org    string // organization login, e.g. "acme"
	Team   string // team slug, e.g. "infra-admins"
	Role   string // "member" (default) or "maintainer"
	APIURL string // REST API base; default https://api.github.com/ (GHES: https://HOST/api/v3/)
	Token  string // token allowed to manage the team's members (org owner or team maintainer)
}

// Provider implements grants.Provider for GitHub team membership. It is safe for concurrent
// use.
type Provider struct {
	gh    *gh.Client
	org   string
	team  string
	role  string
	token string
	log   *slog.Logger
}

var _ grants.Provider = (*Provider)(nil)

var (
	loginRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$`)
	slugRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)
)

// New validates cfg and returns a provider that sends its calls through client (nil: a plain
// http.Client; pass integrations/httpclient's retrying client in production). It makes no
// call; use Check to verify the token and team.
func New(cfg Config, client *http.Client, logger *slog.Logger) (*Provider, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if !loginRE.MatchString(cfg.Org) {
		return nil, fmt.Errorf("github-team: org %q is not a GitHub organization login (letters, digits, hyphens), e.g. org: acme: %w", cfg.Org, grants.ErrInvalid)
	}
	if !slugRE.MatchString(cfg.Team) || strings.Contains(cfg.Team, "..") {
		return nil, fmt.Errorf("github-team: team %q is not a team slug (the team's URL name, e.g. infra-admins): %w", cfg.Team, grants.ErrInvalid)
	}
	role := cfg.Role
	if role == "" {
		role = "member"
	}
	if role != "member" && role != "maintainer" {
		return nil, fmt.Errorf("github-team: role %q must be member or maintainer: %w", cfg.Role, grants.ErrInvalid)
	}
	if strings.TrimSpace(cfg.Token) == "" {
		return nil, fmt.Errorf("github-team: token is empty; set github.token to a token that can manage %s/%s's members: %w", cfg.Org, cfg.Team, grants.ErrInvalid)
	}
	base, err := ParseAPIURL(cfg.APIURL)
	if err != nil {
		return nil, err
	}
	if client == nil {
		client = &http.Client{}
	}
	c := gh.NewClient(client).WithAuthToken(cfg.Token)
	c.BaseURL = base
	log := logger.With("provider", Kind, "org", cfg.Org, "team", cfg.Team)
	if base.String() != DefaultAPIURL {
		log.Warn("github api_url overridden", "api_url", base.Redacted())
	}
	return &Provider{gh: c, org: cfg.Org, team: cfg.Team, role: role, token: cfg.Token, log: log}, nil
}

// ParseAPIURL checks the API base URL (github.api_url; empty means DefaultAPIURL):
// httpclient.CheckBaseURL's rule (https, or http on a loopback host), and no query or
// fragment; a trailing slash is added. config check and New both call it.
func ParseAPIURL(raw string) (*url.URL, error) {
	if raw == "" {
		raw = DefaultAPIURL
	}
	u, err := httpclient.CheckBaseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("github-team: api_url %w (e.g. https://api.github.com/ or https://ghe.example.com/api/v3/): %w", err, grants.ErrInvalid)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("github-team: api_url must not carry a query or a fragment: %w", grants.ErrInvalid)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return u, nil
}

// Kind returns "github-team".
func (p *Provider) Kind() string { return Kind }

// Check verifies that the token works, can see the team, and may manage its members: the
// token's user (GET /user) is an owner of the organization or an active maintainer of the
// team. A GitHub App installation token has no user (GET /user answers 403); its rights are
// the app's permissions, which GitHub does not report, so the visible team is all that is
// checked then. serve runs it at start and periodically for /readyz; `config check
// --online` runs it once. Missing rights wrap grants.ErrNeedsOperator.
func (p *Provider) Check(ctx context.Context) error {
	if _, _, err := p.gh.Teams.GetTeamBySlug(ctx, p.org, p.team); err != nil {
		if status(err) == http.StatusNotFound {
			return fmt.Errorf("github-team: team %s/%s does not exist or the token cannot see it: %w", p.org, p.team, grants.ErrNeedsOperator)
		}
		return p.fail("check team", err, true)
	}
	user, _, err := p.gh.Users.Get(ctx, "")
	if status(err) == http.StatusForbidden {
		return nil // an installation token: no user to check
	}
	if err != nil {
		return p.fail("check the token's user (GET /user)", err, false)
	}
	login := user.GetLogin()
	m, _, err := p.gh.Organizations.GetOrgMembership(ctx, login, p.org)
	switch {
	case err == nil && m.GetState() == "active" && m.GetRole() == "admin":
		return nil
	case err != nil && status(err) != http.StatusNotFound:
		return p.fail("check the token user's organization role", err, false)
	}
	tm, _, err := p.gh.Teams.GetTeamMembershipBySlug(ctx, p.org, p.team, login)
	switch {
	case err == nil && tm.GetState() == "active" && tm.GetRole() == "maintainer":
		return nil
	case err != nil && status(err) != http.StatusNotFound:
		return p.fail("check the token user's team role", err, false)
	}
	return fmt.Errorf("github-team: the token's user %s is neither an owner of %s nor a maintainer of team %s/%s, so it cannot add or remove members; make %s a maintainer of the team, or use a token of an organization owner: %w",
		login, p.org, p.org, p.team, login, grants.ErrNeedsOperator)
}

func (p *Provider) key(org, team, login string) string {
	return strings.ToLower("github-team:" + org + "/" + team + ":" + login)
}

// login returns the person's GitHub login, or a clear error.
func login(person grants.Person) (string, error) {
	l := person.GitHubLogin
	if l == "" {
		return "", fmt.Errorf("no GitHub login for %s; add `github: <login>` to identities in the config: %w", person.Label(), grants.ErrInvalid)
	}
	if !loginRE.MatchString(l) {
		return "", fmt.Errorf("GitHub login %q of %s is not a valid login; fix `github:` in identities: %w", l, person.Label(), grants.ErrInvalid)
	}
	return l, nil
}

// Issue adds the person to the team, or reports the membership they already have as
// Preexisting without changing it.
func (p *Provider) Issue(ctx context.Context, req grants.IssueRequest) (grants.Issued, error) {
	user, err := login(req.Person)
	if err != nil {
		return grants.Issued{}, fmt.Errorf("github-team issue grant %s: %w", req.GrantID, err)
	}
	team := p.org + "/" + p.team
	h := grants.Handle{Key: p.key(p.org, p.team, user), Data: map[string]string{"org": p.org, "team": p.team, "login": user}}
	expires := grants.Timestamp(req.ExpiresAt)

	existing, _, err := p.gh.Teams.GetTeamMembershipBySlug(ctx, p.org, p.team, user)
	switch {
	case err == nil:
		h.Preexisting = true
		p.log.InfoContext(ctx, "github team membership already exists; left unchanged",
			"grant_id", req.GrantID, "login", user, "state", existing.GetState(), "role", existing.GetRole())
		note := "you were already in this team; accessbroker changed nothing and will not remove you"
		if existing.GetState() == "pending" {
			note = "an invitation to this team was already pending; accept the organization invitation from GitHub to get access"
		}
		if existing.GetRole() != p.role {
			note += fmt.Sprintf(" (your role stays %s, not %s)", existing.GetRole(), p.role)
		}
		return grants.Issued{Handle: h, Credential: grants.NewCredential(Kind,
			"team", team, "role", existing.GetRole(), "state", existing.GetState(), "expires", "not applicable", "note", note)}, nil
	case status(err) != http.StatusNotFound:
		return grants.Issued{}, p.fail("issue grant "+req.GrantID+": read membership of "+user, err, true)
	}

	m, _, err := p.gh.Teams.AddTeamMembershipBySlug(ctx, p.org, p.team, user, &gh.TeamAddTeamMembershipOptions{Role: p.role})
	if err != nil {
		return grants.Issued{}, p.fail("issue grant "+req.GrantID+": add "+user, err, true)
	}
	state := m.GetState()
	note := "access ends at the expiry time"
	if state == "pending" {
		note = "GitHub e-mailed you an invitation to the " + p.org + " organization; accept it to get this team's access (it still ends at the expiry time)"
	}
	p.log.InfoContext(ctx, "github team membership added", "grant_id", req.GrantID, "login", user, "state", state, "role", m.GetRole(), "expires_at", expires)
	return grants.Issued{Handle: h, Credential: grants.NewCredential(Kind,
		"team", team, "role", m.GetRole(), "state", state, "expires", expires, "note", note)}, nil
}

// Revoke removes the membership this grant created. Already gone (404) is success; a
// Preexisting handle is left alone; a person without a GitHub login never got a membership,
// so there is nothing to remove.
func (p *Provider) Revoke(ctx context.Context, req grants.RevokeRequest) error {
	if req.Handle.Preexisting {
		return nil
	}
	org, team, user := req.Handle.Data["org"], req.Handle.Data["team"], req.Handle.Data["login"]
	if org == "" || team == "" {
		org, team = p.org, p.team
	}
	if user == "" {
		if req.Person.GitHubLogin == "" {
			p.log.InfoContext(ctx, "github revoke: person has no GitHub login, so no membership was made", "grant_id", req.GrantID)
			return nil
		}
		user = req.Person.GitHubLogin
	}
	if !loginRE.MatchString(org) || !slugRE.MatchString(team) || strings.Contains(team, "..") || !loginRE.MatchString(user) {
		return fmt.Errorf("github-team revoke grant %s: handle names %q/%q/%q, which is not a valid org/team/login: %w", req.GrantID, org, team, user, grants.ErrNeedsOperator)
	}
	_, err := p.gh.Teams.RemoveTeamMembershipBySlug(ctx, org, team, user)
	if status(err) == http.StatusNotFound {
		p.log.InfoContext(ctx, "github team membership already gone", "grant_id", req.GrantID, "login", user)
		return nil
	}
	if err != nil {
		return p.fail("revoke grant "+req.GrantID+": remove "+user, err, false)
	}
	p.log.InfoContext(ctx, "github team membership removed", "grant_id", req.GrantID, "login", user)
	return nil
}

// status returns the HTTP status of a go-github error, or 0.
func status(err error) int {
	var er *gh.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return er.Response.StatusCode
	}
	return 0
}

// fail wraps err with the operation, classifies it, and scrubs the token. On issue, a 404
// means the team or user does not exist (or is invisible to the token): an operator's job.
func (p *Provider) fail(op string, err error, issuing bool) error {
	var (
		rate  *gh.RateLimitError
		abuse *gh.AbuseRateLimitError
	)
	operator := false
	code := status(err)
	switch {
	case errors.As(err, &rate), errors.As(err, &abuse):
		// throttled: retry later
	case code == http.StatusUnauthorized, code == http.StatusForbidden, code == http.StatusUnprocessableEntity:
		operator = true
	case code == http.StatusNotFound && issuing:
		operator = true
	}
	msg := fmt.Sprintf("github-team %s: %v", op, err)
	if p.token != "" && strings.Contains(msg, p.token) {
		msg = strings.ReplaceAll(msg, p.token, "[REDACTED]")
		err = nil // drop the secret-bearing chain
	}
	hint := ""
	switch code {
	case http.StatusUnauthorized:
		hint = "; the GitHub token is invalid or expired"
	case http.StatusForbidden:
		hint = "; the token may not manage this team (needs org owner or team maintainer, and no IdP team sync)"
	case http.StatusNotFound:
		hint = "; check org, team and the person's GitHub login"
	}
	return &providerError{msg: msg + hint, err: err, operator: operator}
}

// providerError is a classified GitHub failure.
type providerError struct {
	msg      string
	err      error
	operator bool
}

func (e *providerError) Error() string { return e.msg }

// Unwrap exposes the go-github error (for errors.As) and, when retrying will not help,
// grants.ErrNeedsOperator.
func (e *providerError) Unwrap() []error {
	out := []error{}
	if e.err != nil {
		out = append(out, e.err)
	}
	if e.operator {
		out = append(out, grants.ErrNeedsOperator)
	}
	return out
}
