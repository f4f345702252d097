package main

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"net/http"
	"time"

	"github.com/accessbroker/accessbroker/integrations/console"
)

// consoleSessionKey derives the console's cookie-signing key from the Slack client secret:
// every replica has the secret, so every replica accepts the others' sessions, and the key
// is never the secret itself.
func consoleSessionKey(secret string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("accessbroker console session key v1"))
	return m.Sum(nil)
}

// buildConsole wires the web console (console section) into mux under /ui/. It needs the
// Slack front end: the same broker, directory and usergroups as slash commands.
func buildConsole(a *app, f *frontends, key ed25519.PrivateKey, mux *http.ServeMux) (*console.Console, error) {
	cc := a.cfg.Console
	if cc == nil {
		return nil, nil
	}
	if f.broker == nil {
		return nil, errors.New("console: needs the slack section (people sign in with Slack)")
	}
	// A plain client, not the retrying one: an authorization code is good once, so the token
	// exchange must not be retried behind the browser's back.
	hc := &http.Client{Timeout: 15 * time.Second, Transport: a.transport}
	cfg := console.Config{
		BaseURL: cc.BaseURL, IssuerURL: cc.IssuerURL, ClientID: cc.SlackClientID, ClientSecret: cc.SlackClientSecret.Reveal(),
		HTTPClient: hc, TeamID: f.team, SessionKey: consoleSessionKey(cc.SlackClientSecret.Reveal()), SessionTTL: cc.SessionTTL,
		AuditorUsers: cc.Auditors.SlackUsers, AuditorUsergroup: cc.Auditors.SlackUsergroup,
		Broker: f.broker, Store: a.store, Audit: a.store, Revoker: a.manager, Directory: f.dir, Groups: f.groups,
		Checkpoints: a.checkpoints, PublicKey: key.Public().(ed25519.PublicKey), Clock: a.clock, Logger: a.log,
		StandIn: a.consoleStandIn,
	}
	if f.notifier != nil { // the audit channel hears of an auditor's revocation, as of /access revoke
		cfg.AuditChannel = f.notifier
	}
	c, err := console.New(cfg)
	if err != nil {
		return nil, err
	}
	mux.Handle(console.Prefix, c)
	return c, nil
}
