package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// sessions registers itself (as completion does) so that main.go's table stays as it is.
func init() {
	commands["sessions"] = command{summary: "proxied database sessions from the audit log: sessions list [--grant G] [--active] | show ID --config FILE", run: runSessions}
	subcommands["sessions"] = []string{"list", "show"}
}

const (
	sessionsListUsage = "usage: accessbroker sessions list --config FILE [--grant G] [--active] [--format table|json] [--limit N]"
	sessionsShowUsage = "usage: accessbroker sessions show ID --config FILE [--format table|json]"
)

func runSessions(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return dispatch(ctx, "sessions", []string{"list", "show"}, map[string]func(context.Context, []string, io.Writer, io.Writer) int{
		"list": sessionsList, "show": sessionsShow,
	}, args, stdout, stderr)
}

// sessionsApp parses the shared flags and opens the store.
// It returns a nil app, and the command's exit code, when the command ends there (--help, a
// usage error, a store that cannot be opened).
// check validates the positional arguments and the command's own flags before the store is
// opened; its error is the usage error's message.
func sessionsApp(ctx context.Context, fs *cli, configPath, format *string, args []string, check func(rest []string) error) (*app, []string, int) {
	rest, code, ok := fs.parse(args)
	if !ok {
		return nil, nil, code
	}
	if *format != "table" && *format != "json" {
		return nil, nil, fs.usageError("--format %q: want table or json", *format)
	}
	if err := check(rest); err != nil {
		return nil, nil, fs.usageError("%v", err)
	}
	cfg, ok := loadConfigFlag(*configPath, fs.stderr)
	if !ok {
		return nil, nil, exitUsage
	}
	a, err := newApp(ctx, cfg, fs.appOptions(appOptions{}))
	if err != nil {
		fmt.Fprintf(fs.stderr, "accessbroker %s: %v\n", fs.name, err)
		return nil, nil, exitFailure
	}
	return a, rest, exitOK
}

func writeJSONOut(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return exitFailure
	}
	return exitOK
}

func sessionsList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newCLI("sessions list", sessionsListUsage, stdout, stderr).withLogLevel()
	configPath := fs.String("config", "", "configuration file")
	grant := fs.String("grant", "", "only this grant's sessions")
	active := fs.Bool("active", false, "only sessions that have not ended")
	format := fs.String("format", "table", "table or json")
	limit := fs.Int("limit", 100, "at most this many sessions, newest first")
	a, _, code := sessionsApp(ctx, fs, configPath, format, args, func(rest []string) error {
		switch {
		case len(rest) > 0:
			return fmt.Errorf("unexpected arguments %q", rest)
		case *limit < 1:
			return fmt.Errorf("--limit %d: want 1 or more", *limit)
		case *grant != "" && !grants.ValidID("g", *grant):
			return fmt.Errorf("--grant %q is not a grant id (g_ followed by 16 characters)", *grant)
		}
		return nil
	})
	if a == nil {
		return code
	}
	defer a.Close()
	list, err := audit.ListSessions(ctx, a.store, audit.SessionFilter{GrantID: *grant, ActiveOnly: *active, Limit: *limit})
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker sessions list: %v\n", err)
		return exitFailure
	}
	if *format == "json" {
		if list == nil {
			list = []audit.Session{}
		}
		return writeJSONOut(stdout, list)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tGRANT\tRESOURCE\tPERSON\tROLE\tCLIENT\tSTARTED (UTC)\tDURATION\tSTATEMENTS\tEND")
	for _, s := range list {
		end, dur := "active", "-"
		if !s.Active() {
			end, dur = s.EndReason, s.Duration
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", s.ID, s.GrantID, s.Resource, s.Person, s.Role, s.ClientAddr,
			grants.Timestamp(s.Started), dur, s.StatementCount, end)
	}
	tw.Flush()
	return exitOK
}

func sessionsShow(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newCLI("sessions show", sessionsShowUsage, stdout, stderr).withLogLevel()
	configPath := fs.String("config", "", "configuration file")
	format := fs.String("format", "table", "table or json")
	a, rest, code := sessionsApp(ctx, fs, configPath, format, args, func(rest []string) error {
		if len(rest) != 1 || !grants.ValidID("s", rest[0]) {
			return fmt.Errorf("want one session id (s_ followed by 16 characters, from sessions list), got %q", rest)
		}
		return nil
	})
	if a == nil {
		return code
	}
	defer a.Close()
	id := rest[0]
	s, err := audit.GetSession(ctx, a.store, id)
	if errors.Is(err, audit.ErrNoSession) {
		fmt.Fprintf(stderr, "accessbroker sessions show: no session %s in the audit log (sessions list shows them)\n", id)
		return exitFailure
	}
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker sessions show: %v\n", err)
		return exitFailure
	}
	if *format == "json" {
		return writeJSONOut(stdout, s)
	}
	end := "active"
	if !s.Active() {
		end = fmt.Sprintf("%s at %s after %s", s.EndReason, grants.Timestamp(*s.Ended), s.Duration)
	}
	fmt.Fprintf(stdout, "session %s of grant %s (%s) by %s as %s from %s, database %s, application %q\nstarted %s; %s; %d bytes in, %d bytes out\n\n",
		s.ID, s.GrantID, s.Resource, s.Person, s.Role, s.ClientAddr, s.Database, s.ApplicationName, grants.Timestamp(s.Started), end, s.BytesIn, s.BytesOut)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tTIME (UTC)\tDURATION\tRESULT\tPARAMS\tSTATEMENT")
	for _, st := range s.Statements {
		result := st.Tag
		switch {
		case st.Interrupted:
			result = "INTERRUPTED " + st.SQLState
		case st.SQLState != "":
			result = "ERROR " + st.SQLState
		}
		text := strings.Join(strings.Fields(st.Text), " ")
		if len(text) > 100 || st.Truncated {
			text = firstLine(text, 100)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", st.Order, grants.Timestamp(st.Time), st.Duration, result, st.Params, text)
	}
	tw.Flush()
	return exitOK
}
