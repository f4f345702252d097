package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/config"
	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/health"
	"github.com/accessbroker/accessbroker/grants"
)

// checkOnline is `config check --online`: serve's dependency checks (readiness.go), run once
// and in parallel, each bounded by checkTimeout. It prints one line per dependency,
// "NAME: ok" or "NAME: failing: why" (secrets scrubbed), and returns exitOK when every one
// passes, exitFailure when one fails, exitUsage when the providers cannot even be built from
// the configuration. The store is not contacted: opening it would apply migrations.
func checkOnline(ctx context.Context, cfg *config.Config, stdout, stderr io.Writer, opts appOptions) int {
	clock := opts.clock
	if clock == nil {
		clock = grants.RealClock{}
	}
	log := slog.New(slog.DiscardHandler) // the operator reads the lines below, not JSON logs
	providers, closers, err := buildProviders(ctx, cfg, clock, log, opts.aws)
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker config check: %v\n", err)
		return exitUsage
	}
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	checks, err := dependencyChecks(ctx, cfg, checkOptions{clock: clock, log: log, transport: opts.transport, aws: opts.aws, providers: providers})
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker config check: %v\n", err)
		return exitUsage
	}
	reg, err := health.New(clock, checks, health.Options{Timeout: checkTimeout, Secrets: cfg.SecretValues()})
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker config check: %v\n", err)
		return exitUsage
	}
	failing := 0
	for _, res := range reg.RunOnce(ctx) {
		if res.OK {
			fmt.Fprintf(stdout, "%s: ok\n", res.Name)
			continue
		}
		failing++
		fmt.Fprintf(stdout, "%s: failing: %s\n", res.Name, strings.Join(strings.Fields(res.Error), " "))
	}
	if len(checks) == 0 {
		fmt.Fprintln(stdout, "no dependency to check (no slack, pagerduty or checkable provider configured)")
	}
	if failing > 0 {
		fmt.Fprintf(stderr, "accessbroker config check: %d of %d %s failing\n", failing, len(checks), plural(len(checks), "dependency", "dependencies"))
		return exitFailure
	}
	return exitOK
}
