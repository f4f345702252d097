package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/accessbroker/accessbroker/integrations/console"
	"io"
	"os"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/config"
	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/demo"
	"github.com/accessbroker/accessbroker/grants"
)

// Seams for demo_test.go: the interactive mode's input, and a look at the demo's fakes after
// the story and before they are torn down.
var (
	demoStdin   io.Reader = os.Stdin
	demoInspect func(demo.Inspection)
)

// demoWiring hands the demo the server `serve` runs and the command table; it is filled in by
// init because the table itself names runDemo (a direct reference would be an initialization
// cycle).
var demoWiring demo.Wiring

func init() {
	demoWiring = demo.Wiring{Start: startDemoBroker, Command: run}
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	usage := "usage: accessbroker demo [--interactive] [--keep DIR]\n\n" +
		"Runs the broker with simulated Slack, PagerDuty, AWS and GitHub (and the local PostgreSQL when one answers;\n" +
		demo.PostgresEnv + "=DSN picks another, =none forces the webhook stand-in) and narrates what happens."
	fs := newCLI("demo", usage, stdout, stderr)
	interactive := fs.Bool("interactive", false, "after the story, keep serving and read commands from standard input (help lists them)")
	keep := fs.String("keep", "", "put the demo's files (config, SQLite database, audit key, broker log) in this new or empty directory and keep them")
	if code, ok := fs.parseNone(args); !ok {
		return code
	}
	err := demo.Run(ctx, demoWiring, demo.Options{Interactive: *interactive, Keep: *keep, Stdin: demoStdin, Stdout: stdout, Inspect: demoInspect})
	if err == nil {
		return exitOK
	}
	if errors.Is(err, demo.ErrUsage) {
		return fs.usageError("%v", err)
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap() // the story's error and the cleanup's, one line each
	}
	for _, e := range errs {
		fmt.Fprintf(stderr, "accessbroker demo: %v\n", e)
	}
	return exitFailure
}

// startDemoBroker is demo.Wiring.Start: the server `serve` runs, with the demo's clock, log
// and fake AWS.
func startDemoBroker(ctx context.Context, cfg *config.Config, o demo.BrokerOptions) (demo.Broker, error) {
	var standIn []console.StandInUser
	for _, p := range o.ConsoleStandIn {
		standIn = append(standIn, console.StandInUser{Name: p.Name, TeamID: p.TeamID, UserID: p.UserID, Role: p.Role})
	}
	srv, err := newServer(ctx, cfg, appOptions{clock: o.Clock, logOut: o.LogOut, withProviders: true,
		aws: awsOptions{config: o.AWSConfig, sts: o.AWSSTS}, consoleStandIn: standIn})
	if err != nil {
		return nil, err
	}
	return demoBroker{srv}, nil
}

// demoBroker is the server as the demo drives it.
type demoBroker struct{ *server }

func (b demoBroker) Wake() {
	b.revoker.Wake()
	if br := b.front.broker; br != nil {
		br.Wake()
	}
}

func (b demoBroker) ListGrants(ctx context.Context, f grants.GrantFilter) ([]grants.Grant, error) {
	return b.store.ListGrants(ctx, f)
}

func (b demoBroker) GetRequest(ctx context.Context, id string) (grants.Request, error) {
	return b.store.GetRequest(ctx, id)
}

func (b demoBroker) Search(ctx context.Context, q audit.Query) ([]audit.Event, error) {
	return b.store.Search(ctx, q)
}

func (b demoBroker) Revoke(ctx context.Context, id string, cause grants.RevokeCause, actor audit.Actor, reason string) error {
	_, err := b.manager.Revoke(ctx, id, cause, actor, reason)
	return err
}
