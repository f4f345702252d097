package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/config"
)

const configUsage = "usage: accessbroker config check --config FILE [--online]"

// runConfig is the `config` sub-command. `config check --config FILE` loads and validates
// the file (expanding ${NAME} from the process environment) and exits 0 with a one-line
// summary on stdout, or 2 with every problem on stderr as "FILE:LINE: path: message".
// With --online it then runs serve's dependency checks once (configcheck_online.go): one
// line per dependency on stdout, exit 0 when all pass and 1 when one fails.
func runConfig(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return configCommand(ctx, args, stdout, stderr, os.LookupEnv, appOptions{})
}

// runConfigCommand is runConfig with the environment injected, for tests.
func runConfigCommand(args []string, stdout, stderr io.Writer, getenv func(string) (string, bool)) int {
	return configCommand(context.Background(), args, stdout, stderr, getenv, appOptions{})
}

// configCommand is runConfig with the environment and the developer-only options injected.
func configCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) (string, bool), opts appOptions) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, configUsage)
		return exitUsage
	}
	switch args[0] {
	case "check":
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, configUsage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "accessbroker config: unknown sub-command %q\n%s\n", args[0], configUsage)
		return exitUsage
	}
	fs := newCLI("config check", configUsage, stdout, stderr)
	path := fs.String("config", "", "the YAML configuration file to check (required)")
	online := fs.Bool("online", false, "also contact every dependency (Slack, PagerDuty, AWS, each provider's target) as serve does at start; exit 1 when one fails")
	pos, code, ok := fs.parse(args[1:])
	if !ok {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "accessbroker config check: unexpected arguments %q\n%s\n", pos, configUsage)
		return exitUsage
	}
	if *path == "" {
		fmt.Fprintf(stderr, "accessbroker config check: --config FILE is required\n%s\n", configUsage)
		return exitUsage
	}
	cfg, err := config.LoadConfig(*path, getenv)
	if err != nil {
		var ce *config.ConfigError
		if errors.As(err, &ce) {
			for _, p := range ce.Problems {
				fmt.Fprintln(stderr, ce.Format(p))
			}
			fmt.Fprintf(stderr, "accessbroker config check: %s has %d %s\n", *path, len(ce.Problems), plural(len(ce.Problems), "problem", "problems"))
			return exitUsage
		}
		fmt.Fprintf(stderr, "accessbroker config check: %v\n", err)
		return exitUsage
	}
	names := make([]string, len(cfg.Resources))
	for i, r := range cfg.Resources {
		names[i] = r.Name + " [" + r.Provider + "]"
	}
	if code := checkLiveGrants(ctx, cfg, *online, stdout, stderr); code != exitOK {
		return code
	}
	fmt.Fprintf(stdout, "config OK: %d %s (%s)\n", len(names), plural(len(names), "resource", "resources"), strings.Join(names, ", "))
	if *online {
		return checkOnline(ctx, cfg, stdout, stderr, opts)
	}
	return exitOK
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
