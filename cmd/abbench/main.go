// Command abbench measures accessbroker's issue and revoke paths end to end, the way
// production runs them: grants.Manager and grants.Revoker over the SQLite store (in a
// temporary directory) with the real postgres provider against a real PostgreSQL server. It
// prints one JSON document: issue latency at 1 and -clients clients, throughput, revocation
// lag at expiry measured from PostgreSQL's side (pg_roles polled every 10 ms), a burst of
// -burst grants due in the same instant, and the process's RSS.
//
//	go run ./cmd/abbench -dsn postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//
// The DSN must be a superuser's: abbench creates a throwaway database, a granted role, a
// least-privilege admin role (as docs/postgres-provider.md says) and drops them all at the
// end. It is a separate program so that the accessbroker binary does not grow. See
// docs/performance.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"time"
)

func main() {
	var o options
	fs := flag.NewFlagSet("abbench", flag.ExitOnError)
	o.register(fs)
	_ = fs.Parse(os.Args[1:])
	o.progress = os.Stderr
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "abbench: -cpuprofile:", err)
			os.Exit(2)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "abbench: -cpuprofile:", err)
			os.Exit(2)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := run(ctx, o, os.Stdout, log); err != nil {
		fmt.Fprintln(os.Stderr, "abbench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// options are abbench's flags.
type options struct {
	dsn     string        // superuser DSN of the server to measure
	clients int           // concurrent clients of the second issue phase and of the burst
	grants  int           // grants per issue phase and in the spread revocation phase
	burst   int           // grants due in the same instant
	wait    time.Duration // real time from issue to expiry in the revocation phases
	timeout time.Duration // longest wait for revocations after the last deadline

	cpuprofile string // write a CPU profile of the whole run here
	memprofile string // write a heap profile when the issue phases' grants are live

	prefillGrants int           // past (revoked) grants written into the store before measuring
	prefillEvents int           // audit events in all written before measuring
	issueOnly     bool          // stop after the two issue phases
	issueGap      time.Duration // each client's pause after each issue in the two issue phases

	progress io.Writer // where progress lines go (nil: nowhere)
}

func (o *options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.dsn, "dsn", os.Getenv("ACCESSBROKER_TEST_POSTGRES_DSN"), "superuser DSN of the PostgreSQL server (default $ACCESSBROKER_TEST_POSTGRES_DSN)")
	fs.IntVar(&o.clients, "clients", 8, "concurrent clients for the multi-client issue phase and the burst")
	fs.IntVar(&o.grants, "grants", 1000, "grants issued in each issue phase and in the spread revocation phase")
	fs.IntVar(&o.burst, "burst", 1000, "grants due in the same instant (0 skips the burst)")
	fs.DurationVar(&o.wait, "wait", time.Minute, "real time from issue to expiry in the revocation phases; below 1m (the shortest grant) the Manager's clock runs behind the wall clock by the difference, so issue times are dated back; the revocation path keeps the wall clock")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "longest wait for revocations after the last deadline")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	fs.StringVar(&o.memprofile, "memprofile", "", "write a heap profile to this file when the issue phases' grants are live (go tool pprof)")
	fs.IntVar(&o.prefillGrants, "prefill-grants", 0, "past grants (revoked, with their requests and 4 events each) written into the store before measuring")
	fs.IntVar(&o.prefillEvents, "prefill-events", 0, "audit events in all written into the store before measuring (the past grants' and filler); at least 4 × -prefill-grants")
	fs.BoolVar(&o.issueOnly, "issue-only", false, "stop after the two issue phases (issue figures and RSS with 2 × -grants live)")
	fs.DurationVar(&o.issueGap, "issue-gap", 0, "each client's pause after each issue in the two issue phases (e.g. 20ms: issues as people make them, not back to back; 0: back to back); latency is per issue, per_second includes the pauses")
}

func (o options) validate() error {
	switch {
	case o.dsn == "":
		return errors.New("no PostgreSQL server: pass -dsn postgres://postgres@127.0.0.1:5432/test?sslmode=disable (a superuser) or set ACCESSBROKER_TEST_POSTGRES_DSN")
	case o.clients < 1:
		return fmt.Errorf("-clients %d: must be at least 1", o.clients)
	case o.grants < 1:
		return fmt.Errorf("-grants %d: must be at least 1", o.grants)
	case o.burst < 0:
		return fmt.Errorf("-burst %d: must be 0 (skip) or more", o.burst)
	case o.wait < time.Second || o.wait > time.Hour:
		return fmt.Errorf("-wait %s: must be between 1s and 1h", o.wait)
	case o.issueGap < 0 || o.issueGap > time.Minute:
		return fmt.Errorf("-issue-gap %s: must be between 0 and 1m", o.issueGap)
	case o.timeout <= 0:
		return fmt.Errorf("-timeout %s: must be positive", o.timeout)
	case o.prefillGrants < 0:
		return fmt.Errorf("-prefill-grants %d: must be 0 or more", o.prefillGrants)
	case o.prefillEvents < 0 || (o.prefillEvents > 0 || o.prefillGrants > 0) && o.prefillEvents < prefillEventsPerGrant*o.prefillGrants:
		return fmt.Errorf("-prefill-events %d: must be at least %d × -prefill-grants (%d)", o.prefillEvents, prefillEventsPerGrant, prefillEventsPerGrant*o.prefillGrants)
	}
	return nil
}

// run sets up, measures, tears down and writes the report to out.
func run(ctx context.Context, o options, out io.Writer, log *slog.Logger) error {
	rep, err := measure(ctx, o, log)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// measure sets up, measures and tears down.
func measure(ctx context.Context, o options, log *slog.Logger) (rep Report, err error) {
	if err := o.validate(); err != nil {
		return rep, err
	}
	b, err := setup(ctx, o, log)
	if err != nil {
		return rep, err
	}
	defer func() { err = errors.Join(err, b.close(context.WithoutCancel(ctx))) }()
	return b.measure(ctx)
}
