package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
	"github.com/accessbroker/accessbroker/integrations/webhook"
)

// buildProviders returns one configured provider per resource, keyed by resource name. The
// map of provider kinds to constructors is explicit here: no init() registry.
func buildProviders(ctx context.Context, cfg *Config, clock grants.Clock, log *slog.Logger) (map[string]grants.Provider, error) {
	client := httpclient.New(httpclient.Options{Logger: log})
	out := make(map[string]grants.Provider, len(cfg.Resources))
	for _, r := range cfg.Resources {
		var p grants.Provider
		var err error
		switch r.Provider {
		case "webhook":
			p, err = webhook.New(webhook.Config{URL: r.Webhook.URL, Token: r.Webhook.Token.Reveal()}, client)
		default:
			err = fmt.Errorf("provider %q is not available in this build", r.Provider)
		}
		if err != nil {
			return nil, fmt.Errorf("resource %s: %w", r.Name, err)
		}
		out[r.Name] = p
	}
	_ = ctx
	_ = clock
	return out, nil
}
