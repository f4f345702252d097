// Command accessbroker is the just-in-time access broker: serve, demo, audit, grants, report
// and config sub-commands. This package only wires; the behaviour lives in the packages it
// imports.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"
)

// Exit codes shared by every sub-command.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and found a problem (audit verify) or failed at run time
	exitUsage   = 2 // bad command line or configuration
)

// command is one sub-command. run receives the arguments after the sub-command's name.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

// commands is the explicit table of sub-commands; each lives in its own file.
var commands = map[string]command{
	"config":      {summary: "check a configuration file: config check --config FILE", run: runConfig},
	"serve":       {summary: "run the broker: serve --config FILE", run: runServe},
	"demo":        {summary: "the whole flow on this machine with simulated Slack, PagerDuty, AWS and GitHub: demo [--interactive] [--keep DIR]", run: runDemo},
	"grants":      {summary: "list, issue or revoke grants: grants list|issue|revoke --config FILE", run: runGrants},
	"audit":       {summary: "audit log: audit verify|search|export|keygen", run: runAudit},
	"report":      {summary: "access report from the audit log: report --config FILE --since 168h --format markdown|json|csv", run: runReport},
	"version":     {summary: "module version, commit, commit time and Go version of this binary: version [--json]", run: runVersion},
	"healthcheck": {summary: "ask a local serve whether it is ready, for a container HEALTHCHECK: healthcheck --config FILE [--live]", run: runHealthcheck},
	// "completion" is added by completion.go's init: its scripts list this table.
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	if isHelp(args[0]) {
		if len(args) > 1 && args[0] == "help" {
			// `accessbroker help grants revoke` is `accessbroker grants revoke --help`.
			return run(ctx, append(slices.Clone(args[1:]), "--help"), stdout, stderr)
		}
		usage(stdout)
		return exitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "accessbroker: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	return c.run(ctx, args[1:], stdout, stderr)
}

// dispatch runs the sub-command args[0] of command name from subs (names in order). With no
// sub-command or an unknown one it prints which ones exist to stderr and returns exitUsage;
// with -h or --help it prints them to stdout and returns exitOK.
func dispatch(ctx context.Context, name string, names []string, subs map[string]func(context.Context, []string, io.Writer, io.Writer) int,
	args []string, stdout, stderr io.Writer) int {
	line := fmt.Sprintf("usage: accessbroker %s %s [flags]", name, strings.Join(names, "|"))
	if len(args) == 0 {
		fmt.Fprintln(stderr, line)
		return exitUsage
	}
	if isHelp(args[0]) {
		fmt.Fprintf(stdout, "%s\n\nRun `accessbroker %s SUB-COMMAND --help` for a sub-command's flags.\n", line, name)
		return exitOK
	}
	sub, ok := subs[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "accessbroker %s: unknown sub-command %q (want one of %s)\n%s\n", name, args[0], strings.Join(names, ", "), line)
		return exitUsage
	}
	return sub(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: accessbroker <command> [flags]   (accessbroker <command> --help for its flags)")
	fmt.Fprintln(w)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
}
