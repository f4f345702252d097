package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// cli is one command's command line, with the conventions every command follows:
//
//   - flags are accepted before, between and after positional arguments (everything after
//     "--" is positional);
//   - -h, -help and --help print the usage and the flags to stdout and exit 0;
//   - a bad flag or argument prints what was wrong and the usage to stderr and exits 2;
//   - with withLogLevel, --log-level debug|info|warn|error turns on JSON log lines on
//     stderr; without it the command logs nothing, and its errors reach the operator as its
//     own plain messages.
//
// Commands build one with newCLI, declare their flags on its FlagSet, and call parse.
type cli struct {
	*flag.FlagSet
	name           string // "grants revoke"
	usage          string // the usage line(s), "usage: accessbroker …"
	stdout, stderr io.Writer
	logLevel       *logLevelFlag // nil unless withLogLevel
}

// newCLI returns the command line of `accessbroker name`; usage is its usage text, starting
// with "usage: accessbroker name".
func newCLI(name, usage string, stdout, stderr io.Writer) *cli {
	fs := flag.NewFlagSet("accessbroker "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &cli{FlagSet: fs, name: name, usage: usage, stdout: stdout, stderr: stderr}
	// The flag package calls Usage before it returns ErrHelp or a parse error; parse prints
	// the usage itself, to stdout or stderr as the case may be.
	fs.Usage = func() {}
	return c
}

// withLogLevel adds the --log-level flag of the one-shot commands.
func (c *cli) withLogLevel() *cli {
	c.logLevel = &logLevelFlag{}
	c.Var(c.logLevel, "log-level", "print JSON log lines at `LEVEL` and above to stderr: debug, info, warn or error (default: none)")
	return c
}

// parse parses args. It returns the positional arguments in order and ok=true, or ok=false
// and the exit code the command returns at once: exitOK after --help (the usage is on
// stdout), exitUsage after a bad flag (the error and the usage are on stderr).
func (c *cli) parse(args []string) (positional []string, code int, ok bool) {
	for {
		err := c.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			c.printUsage(c.stdout)
			return nil, exitOK, false
		}
		if err != nil {
			// The flag package has printed the error ("flag provided but not defined: -x").
			c.printUsage(c.stderr)
			return nil, exitUsage, false
		}
		rest := c.Args()
		if len(rest) == 0 {
			return positional, exitOK, true
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), exitOK, true
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// parseNone is parse for a command that takes no positional arguments.
func (c *cli) parseNone(args []string) (code int, ok bool) {
	pos, code, ok := c.parse(args)
	if !ok {
		return code, false
	}
	if len(pos) > 0 {
		return c.usageError("unexpected argument %q (this command takes only flags)", pos[0]), false
	}
	return exitOK, true
}

// usageError prints "accessbroker NAME: message" and the usage line to stderr and returns
// exitUsage.
func (c *cli) usageError(format string, a ...any) int {
	fmt.Fprintf(c.stderr, "accessbroker %s: %s\n", c.name, fmt.Sprintf(format, a...))
	fmt.Fprintln(c.stderr, firstUsageLine(c.usage))
	return exitUsage
}

// printUsage writes the usage text and the flags with their defaults to w.
func (c *cli) printUsage(w io.Writer) {
	fmt.Fprintln(w, strings.TrimRight(c.usage, "\n"))
	hasFlags := false
	c.VisitAll(func(*flag.Flag) { hasFlags = true })
	if !hasFlags {
		return
	}
	fmt.Fprintln(w, "\nflags (each also accepted after the arguments):")
	c.SetOutput(w)
	c.PrintDefaults()
	c.SetOutput(c.stderr)
}

// appOptions returns base with the log output the command line asked for: nothing without
// --log-level, JSON lines on stderr at that level with it.
func (c *cli) appOptions(base appOptions) appOptions {
	if c.logLevel == nil || !c.logLevel.set {
		base.logOut = io.Discard
		return base
	}
	base.logOut = c.stderr
	base.logLevel = c.logLevel.level
	return base
}

func firstUsageLine(usage string) string {
	line, _, _ := strings.Cut(usage, "\n")
	return line
}

// logLevelFlag is the value of --log-level.
type logLevelFlag struct {
	set   bool
	level slog.Level
}

// String implements flag.Value.
func (l *logLevelFlag) String() string {
	if l == nil || !l.set {
		return ""
	}
	return strings.ToLower(l.level.String())
}

// Set implements flag.Value: debug, info, warn or error.
func (l *logLevelFlag) Set(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		l.level = slog.LevelDebug
	case "info":
		l.level = slog.LevelInfo
	case "warn", "warning":
		l.level = slog.LevelWarn
	case "error":
		l.level = slog.LevelError
	default:
		return fmt.Errorf("%q is not a log level: want debug, info, warn or error", s)
	}
	l.set = true
	return nil
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}
