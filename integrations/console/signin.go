package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

// DefaultIssuer is Slack's OpenID Connect issuer
// (https://slack.com/.well-known/openid-configuration).
const DefaultIssuer = "https://slack.com"

// Slack's claims in its ID tokens: the workspace and the user, the same pair slash
// commands carry (team_id, user_id).
const (
	claimTeamID = "https://slack.com/team_id"
	claimUserID = "https://slack.com/user_id"
)

// oidcClient is Sign in with Slack: discovery at the first use (retried after a failure),
// the code exchange, and the ID token's verification (signature from the provider's JWKS,
// issuer, audience, expiry from the injected clock, nonce).
type oidcClient struct {
	issuer, clientID, clientSecret, redirect string
	http                                     *http.Client
	clock                                    grants.Clock

	mu       sync.Mutex
	provider *oidc.Provider
}

func (o *oidcClient) discover(ctx context.Context) (*oidc.Provider, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.provider, nil
	}
	// The provider keeps this context for its later JWKS fetches: not the request's, which
	// ends with the request. The HTTP client's timeout bounds each call.
	hc := o.http
	if hc.Timeout == 0 {
		c := *hc
		c.Timeout = 15 * time.Second
		hc = &c
	}
	p, err := oidc.NewProvider(oidc.ClientContext(context.WithoutCancel(ctx), hc), o.issuer)
	if err != nil {
		return nil, fmt.Errorf("discover the OpenID provider %s: %w", o.issuer, err)
	}
	o.provider = p
	return p, nil
}

func (o *oidcClient) config(p *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{ClientID: o.clientID, ClientSecret: o.clientSecret, RedirectURL: o.redirect,
		Endpoint: p.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "profile", "email"}}
}

// authURL is where to send the browser to sign in.
func (o *oidcClient) authURL(ctx context.Context, state, nonce string) (string, error) {
	p, err := o.discover(ctx)
	if err != nil {
		return "", err
	}
	return o.config(p).AuthCodeURL(state, oidc.Nonce(nonce)), nil
}

// identity is who the provider says signed in.
type identity struct {
	TeamID, UserID, Name, Email string
}

// exchange trades the code for tokens and verifies the ID token. Errors never contain the
// code, the client secret or a token.
func (o *oidcClient) exchange(ctx context.Context, code, nonce string) (identity, error) {
	p, err := o.discover(ctx)
	if err != nil {
		return identity{}, err
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, o.http), 15*time.Second)
	defer cancel()
	tok, err := o.config(p).Exchange(ctx, code)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return identity{}, fmt.Errorf("the token endpoint refused the sign-in (HTTP %d %s)", re.Response.StatusCode, re.ErrorCode)
		}
		return identity{}, fmt.Errorf("the token endpoint could not be reached or answered nonsense: %s", scrubURL(err.Error()))
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		if ok, _ := tok.Extra("ok").(bool); !ok {
			e, _ := tok.Extra("error").(string)
			return identity{}, fmt.Errorf("the token endpoint refused the sign-in (%s)", firstNonEmpty(e, "no id_token"))
		}
		return identity{}, errors.New("the token endpoint returned no id_token")
	}
	v := p.Verifier(&oidc.Config{ClientID: o.clientID, Now: o.clock.Now})
	idt, err := v.Verify(ctx, raw)
	if err != nil {
		var exp *oidc.TokenExpiredError
		if errors.As(err, &exp) {
			return identity{}, errors.New("the ID token has expired; sign in again")
		}
		return identity{}, fmt.Errorf("the ID token does not verify: %s", scrubURL(err.Error()))
	}
	if idt.Nonce == "" || idt.Nonce != nonce {
		return identity{}, errors.New("the ID token's nonce is not the one this sign-in asked for")
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return identity{}, fmt.Errorf("the ID token's claims cannot be read: %w", err)
	}
	team, _ := claims[claimTeamID].(string)
	user, _ := claims[claimUserID].(string)
	if team == "" || user == "" {
		return identity{}, fmt.Errorf("the ID token has no %s and %s claims", claimTeamID, claimUserID)
	}
	if idt.Subject != "" && idt.Subject != user {
		return identity{}, errors.New("the ID token's subject is not its Slack user id")
	}
	name, _ := claims["name"].(string)
	email, _ := claims["email"].(string)
	return identity{TeamID: team, UserID: user, Name: name, Email: email}, nil
}

// scrubURL drops query strings from an error text (a code or state would otherwise show).
func scrubURL(s string) string {
	var out []string
	for _, f := range strings.Fields(s) {
		if i := strings.IndexByte(f, '?'); i >= 0 && strings.Contains(f, "://") {
			f = f[:i] + "?…"
		}
		out = append(out, f)
	}
	return strings.Join(out, " ")
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// safeReturn keeps a return path inside the console.
func safeReturn(p string) string {
	if !strings.HasPrefix(p, Prefix) || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n") {
		return Prefix
	}
	return p
}

// signinStart sends the browser to Slack.
func (c *Console) signinStart(w http.ResponseWriter, r *http.Request) {
	if c.oidc == nil {
		http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
		return
	}
	now := c.cfg.Clock.Now()
	st := signinState{State: randomToken(), Nonce: randomToken(), Return: safeReturn(r.URL.Query().Get("return")), Expires: now.Add(signinStateTTL)}
	u, err := c.oidc.authURL(r.Context(), st.State, st.Nonce)
	if err != nil {
		c.log.WarnContext(r.Context(), "sign in with Slack unavailable", "error", err)
		c.signinPage(w, r, http.StatusBadGateway, "Sign in with Slack is unavailable right now (Slack's OpenID configuration could not be read). Try again in a minute; if it persists, tell the operators.")
		return
	}
	if err := c.sessions.setSignin(w, st, now); err != nil {
		c.fail(w, r, err)
		return
	}
	http.Redirect(w, r, u, http.StatusFound)
}

// signinCallback finishes Sign in with Slack.
func (c *Console) signinCallback(w http.ResponseWriter, r *http.Request) {
	if c.oidc == nil {
		http.NotFound(w, r)
		return
	}
	now := c.cfg.Clock.Now()
	q := r.URL.Query()
	st, err := c.sessions.signin(r, now)
	c.sessions.clearSignin(w)
	switch {
	case q.Get("error") != "":
		c.signinPage(w, r, http.StatusForbidden, "Slack did not sign you in ("+truncate(q.Get("error"), 60)+"). Nothing changed; sign in again.")
		return
	case err != nil:
		c.signinPage(w, r, http.StatusBadRequest, "This sign-in was not started here or took longer than 10 minutes. Nothing changed; sign in again.")
		return
	case q.Get("state") == "" || q.Get("state") != st.State:
		c.signinPage(w, r, http.StatusBadRequest, "This sign-in answer does not belong to the sign-in this browser started (state mismatch). Nothing changed; sign in again.")
		return
	case q.Get("code") == "":
		c.signinPage(w, r, http.StatusBadRequest, "Slack's answer has no code. Nothing changed; sign in again.")
		return
	}
	id, err := c.oidc.exchange(r.Context(), q.Get("code"), st.Nonce)
	if err != nil {
		c.log.WarnContext(r.Context(), "sign in with Slack failed", "error", err)
		c.signinPage(w, r, http.StatusForbidden, "Sign in with Slack failed: "+err.Error()+". Nothing changed; sign in again.")
		return
	}
	c.admit(w, r, id, st.Return)
}

// signinStandIn signs in as one of the demo's people.
func (c *Console) signinStandIn(w http.ResponseWriter, r *http.Request) {
	if len(c.cfg.StandIn) == 0 {
		http.NotFound(w, r)
		return
	}
	for _, u := range c.cfg.StandIn {
		if u.UserID == r.PostFormValue("user") {
			c.admit(w, r, identity{TeamID: u.TeamID, UserID: u.UserID, Name: u.Name}, safeReturn(r.PostFormValue("return")))
			return
		}
	}
	c.signinPage(w, r, http.StatusBadRequest, "Choose one of the people listed.")
}

// admit applies the same identity rules as slash commands: the workspace must be the
// broker's, and the directory must link the Slack user to a person. A refusal is explained
// and recorded as request.rejected.
func (c *Console) admit(w http.ResponseWriter, r *http.Request, id identity, ret string) {
	ctx := r.Context()
	refuse := func(status int, msg string, ev map[string]string) {
		ev["via"] = "console_signin"
		ev["team"] = id.TeamID
		if err := c.cfg.Broker.RecordRejection(ctx, broker.Rejection{Actor: audit.Actor{Kind: audit.ActorUser, ID: id.UserID},
			Reason: msg, Evidence: ev}); err != nil {
			c.log.ErrorContext(ctx, "record refused sign-in", "error", err)
		}
		c.signinPage(w, r, status, msg)
	}
	if id.TeamID != c.cfg.TeamID {
		refuse(http.StatusForbidden, fmt.Sprintf("You signed in to Slack workspace %s, but accessbroker serves workspace %s only. Sign in to Slack with your account in that workspace, then try again.", id.TeamID, c.cfg.TeamID),
			map[string]string{"refused": "other_workspace"})
		return
	}
	p, err := c.cfg.Directory.Resolve(ctx, id.TeamID, id.UserID)
	if err != nil {
		if !errors.Is(err, broker.ErrUnknownPerson) {
			c.log.WarnContext(ctx, "identity lookup failed at sign-in", "slack_user", id.UserID, "error", err)
			c.signinPage(w, r, http.StatusServiceUnavailable, "Your identity could not be looked up just now (Slack did not answer). Nothing changed; try again in a minute.")
			return
		}
		refuse(http.StatusForbidden, "You could not be identified, so you may not use the console: "+err.Error(),
			map[string]string{"refused": "unknown_person", "identity_error": truncate(err.Error(), 300)})
		return
	}
	now := c.cfg.Clock.Now().UTC()
	s := Session{ID: randomToken(), TeamID: id.TeamID, UserID: id.UserID, Name: firstNonEmpty(id.Name, p.Email, id.UserID),
		Email: p.Email, Issued: now, Expires: now.Add(c.cfg.SessionTTL)}
	if err := c.sessions.setSession(w, s, now); err != nil {
		c.fail(w, r, err)
		return
	}
	c.log.InfoContext(ctx, "signed in to the console", "slack_user", id.UserID, "team", id.TeamID)
	http.Redirect(w, r, ret, http.StatusSeeOther)
}

// signout ends the session in this browser.
func (c *Console) signout(w http.ResponseWriter, r *http.Request) {
	c.sessions.clearSession(w)
	http.Redirect(w, r, Prefix+"signin?out=1", http.StatusSeeOther)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
