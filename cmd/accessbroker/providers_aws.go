package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/config"
	"github.com/accessbroker/accessbroker/grants"
	awsprov "github.com/accessbroker/accessbroker/integrations/aws"
)

// awsConfigs caches one SDK configuration per process: every AWS resource shares the
// region, endpoint override and credential chain of the aws section.
type awsConfigs struct {
	cfg    aws.Config
	loaded bool
	opts   awsOptions
}

// awsOptions are developer-only AWS knobs kept out of the config contract: the demo points
// the credential chain and the console federation endpoint at its fake AWS. The zero value is
// production behaviour (the SDK's default chain, AWS's own sign-in endpoint).
type awsOptions struct {
	config []awsprov.ConfigOption
	sts    []awsprov.STSOption
}

// buildAWSProvider builds the aws-sts and aws-identity-center providers.
func (c *awsConfigs) build(ctx context.Context, cfg *config.Config, r config.ResourceConfig, clock grants.Clock, log *slog.Logger, client *http.Client) (grants.Provider, error) {
	if cfg.AWS == nil {
		return nil, fmt.Errorf("provider %q needs the aws section (region)", r.Provider)
	}
	if !c.loaded {
		ac, err := awsprov.LoadAWSConfig(ctx, cfg.AWS.Region, cfg.AWS.EndpointURL, client, c.opts.config...)
		if err != nil {
			return nil, err
		}
		c.cfg, c.loaded = ac, true
	}
	switch r.Provider {
	case config.ProviderAWSSTS:
		return awsprov.NewSTS(ctx, r.AWSSTS.STSConfig(), c.cfg, clock, log, c.opts.sts...)
	case config.ProviderAWSIdentityCenter:
		return awsprov.NewIdentityCenter(ctx, r.AWSIdentityCenter.IdentityCenterConfig(), c.cfg, clock, log)
	}
	return nil, fmt.Errorf("unknown provider %q", r.Provider)
}
