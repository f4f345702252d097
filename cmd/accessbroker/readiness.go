package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/config"
	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/health"
	"github.com/accessbroker/accessbroker/grants"
	awsprov "github.com/accessbroker/accessbroker/integrations/aws"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
	"github.com/accessbroker/accessbroker/integrations/pagerduty"
	"github.com/accessbroker/accessbroker/integrations/slack"
)

// checker is a provider that can check its own target (the postgres admin role, the AWS role
// or Identity Center assignment, the GitHub team and the token's rights on it).
type checker interface {
	Check(ctx context.Context) error
}

// checkOptions are what dependencyChecks needs besides the configuration.
type checkOptions struct {
	clock     grants.Clock
	log       *slog.Logger
	transport http.RoundTripper // appOptions.transport: the Slack and PagerDuty requests
	aws       awsOptions
	providers map[string]grants.Provider // by resource name
}

// dependencyChecks returns one check per dependency of cfg, in a stable order: "slack"
// (auth.test and the team it names), "pagerduty" (an authenticated read), "aws" (the
// credentials: sts:GetCallerIdentity, once for every AWS resource), then "<provider>:<resource>"
// for every resource whose provider checks its target. Building them makes no call.
func dependencyChecks(ctx context.Context, cfg *config.Config, o checkOptions) ([]health.Check, error) {
	// One retry: a check is a probe, repeated every interval anyway.
	hc := httpclient.New(httpclient.Options{Logger: o.log, ReturnLastResponse: true, Clock: o.clock, Transport: o.transport, RetryMax: 1})
	var checks []health.Check
	if s := cfg.Slack; s != nil {
		api, err := slack.NewClient(slack.ClientOptions{Token: s.BotToken.Reveal(), APIURL: s.APIURL, HTTPClient: hc})
		if err != nil {
			return nil, err
		}
		team := s.TeamID
		checks = append(checks, health.Check{Name: "slack", Run: func(ctx context.Context) error { return slack.CheckAuth(ctx, api, team) }})
	}
	if p := cfg.PagerDuty; p != nil {
		pd, err := pagerduty.New(pagerduty.Config{APIURL: p.APIURL, Token: p.Token.Reveal(), HTTP: hc, Clock: o.clock, Logger: o.log})
		if err != nil {
			return nil, fmt.Errorf("pagerduty: %w", err)
		}
		checks = append(checks, health.Check{Name: "pagerduty", Run: pd.CheckAccess})
	}
	if usesAWS(cfg) && cfg.AWS != nil {
		awsHTTP := httpclient.New(httpclient.Options{Logger: o.log, ReturnLastResponse: true, Clock: o.clock, RetryMax: 1})
		ac, err := awsprov.LoadAWSConfig(ctx, cfg.AWS.Region, cfg.AWS.EndpointURL, awsHTTP, o.aws.config...)
		if err != nil {
			return nil, err
		}
		checks = append(checks, health.Check{Name: "aws", Run: func(ctx context.Context) error {
			_, err := awsprov.CheckCaller(ctx, ac)
			return err
		}})
	}
	for _, r := range cfg.Resources {
		if c, ok := o.providers[r.Name].(checker); ok {
			checks = append(checks, health.Check{Name: r.Provider + ":" + r.Name, Run: c.Check})
		}
	}
	return checks, nil
}

func usesAWS(cfg *config.Config) bool {
	for _, r := range cfg.Resources {
		if r.Provider == config.ProviderAWSSTS || r.Provider == config.ProviderAWSIdentityCenter {
			return true
		}
	}
	return false
}

// dependencyUp is the accessbroker_dependency_up gauge: 1 while a dependency's latest check
// passed, 0 otherwise.
func dependencyUp(reg *prometheus.Registry) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "accessbroker_dependency_up",
		Help: "1 while the dependency's latest readiness check passed, 0 while it fails (see /readyz?verbose for why).",
	}, []string{"dependency"})
	reg.MustRegister(g)
	return g
}

// newReadiness builds serve's readiness registry over the app's dependencies; every check
// starts at 0 on the metric until its first run.
func newReadiness(ctx context.Context, a *app) (*health.Registry, error) {
	checks, err := dependencyChecks(ctx, a.cfg, checkOptions{clock: a.clock, log: a.log, transport: a.transport, aws: a.awsOpts, providers: a.providers})
	if err != nil {
		return nil, fmt.Errorf("readiness checks: %w", err)
	}
	if a.cfg.Store.Driver == "postgres" {
		checks = append(checks, health.Check{Name: "clock", Run: a.checkClockSkew})
	}
	up := dependencyUp(a.metrics.reg)
	for _, c := range checks {
		up.WithLabelValues(c.Name).Set(0)
	}
	return health.New(a.clock, checks, health.Options{
		Timeout: checkTimeout, Interval: checkInterval, Secrets: a.cfg.SecretValues(), Logger: a.log,
		Observe: func(name string, ok bool) {
			v := 0.0
			if ok {
				v = 1
			}
			up.WithLabelValues(name).Set(v)
		},
	})
}

// The readiness cadence: each check has checkTimeout per run, every checkInterval.
const (
	checkTimeout  = 10 * time.Second
	checkInterval = 30 * time.Second
)

// checkAtStart runs every dependency check once, before serve listens. A dependency that
// does not answer, or refuses for want of rights, is logged and marked unavailable (metric,
// /readyz) and serve starts anyway: its revocations are retried with backoff until it
// answers, and everything else runs. A dependency whose answer shows the configuration
// itself is wrong (grants.ErrInvalid: a granted PostgreSQL role that does not exist, say)
// refuses the start, as a configuration error always has.
func checkAtStart(ctx context.Context, reg *health.Registry, log *slog.Logger) error {
	var refused []string
	for _, res := range reg.RunOnce(ctx) {
		switch {
		case res.OK:
		case errors.Is(res.Err, grants.ErrInvalid):
			refused = append(refused, res.Name+": "+res.Error)
		default:
			log.WarnContext(ctx, "dependency unavailable at start; serving anyway, its work is retried until it answers",
				"dependency", res.Name, "error", res.Error)
		}
	}
	if len(refused) > 0 {
		return fmt.Errorf("the configuration does not match what the dependencies report; fix it and start again: %s", strings.Join(refused, "; "))
	}
	return nil
}
