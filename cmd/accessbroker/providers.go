package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/config"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/github"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
	"github.com/accessbroker/accessbroker/integrations/postgres"
	"github.com/accessbroker/accessbroker/integrations/webhook"
)

// buildProviders returns one configured provider per resource, keyed by resource name, and
// the closers of those that hold connections. The map of provider kinds to constructors is
// explicit here: no init() registry.
func buildProviders(ctx context.Context, cfg *config.Config, clock grants.Clock, log *slog.Logger, awsOpts awsOptions) (map[string]grants.Provider, []io.Closer, error) {
	// ReturnLastResponse hands the SDKs the upstream's own last answer when retries run out,
	// so their typed errors (AWS codes, GitHub rate limits) survive.
	client := httpclient.New(httpclient.Options{Logger: log, ReturnLastResponse: true, Clock: clock})
	awsc := awsConfigs{opts: awsOpts}
	out := make(map[string]grants.Provider, len(cfg.Resources))
	var closers []io.Closer
	closeAll := func() {
		for _, c := range closers {
			c.Close()
		}
	}
	var proxyPW *postgres.ProxyPasswords // derived on first use: only proxied resources need it
	for _, r := range cfg.Resources {
		var p grants.Provider
		var err error
		switch r.Provider {
		case config.ProviderWebhook:
			p, err = webhook.New(r.Webhook.ProviderConfig(), client)
		case config.ProviderPostgres:
			var pp *postgres.Provider
			pc := r.Postgres.ProviderConfig()
			if r.Postgres.Proxy && proxyPW == nil {
				proxyPW, err = proxyPasswords(cfg)
			}
			if r.Postgres.Proxy && err == nil {
				pc.Proxy = proxyProviderConfig(cfg, proxyPW)
			}
			if err == nil {
				// Open, not New: a database that is down must not stop the process (and every
				// other provider's revocations); serve's readiness checks it (readiness.go).
				pp, err = postgres.Open(ctx, pc, clock, log)
			}
			if err == nil {
				closers = append(closers, closerFunc(pp.Close))
				p = pp
			}
		case config.ProviderGitHubTeam:
			p, err = github.New(r.GitHubTeam.ProviderConfig(cfg.GitHub), client, log)
		default:
			p, err = awsc.build(ctx, cfg, r, clock, log, client)
		}
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("resource %s (%s): %w", r.Name, r.Provider, err)
		}
		out[r.Name] = p
	}
	return out, closers, nil
}

type closerFunc func()

func (f closerFunc) Close() error { f(); return nil }
