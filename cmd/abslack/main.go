// Command abslack measures how long Slack waits for accessbroker to acknowledge a slash
// command, from a process of its own: it starts the real `accessbroker serve` (given with
// -accessbroker) on a SQLite store in a temporary directory, with the fake Slack, PagerDuty
// and webhook provider of fixtures/ running in this process, and sends rounds of -concurrent
// slash commands at once, each signed exactly as Slack signs them (X-Slack-Signature v0, an
// HMAC-SHA256 of "v0:timestamp:body" with the signing secret, and
// X-Slack-Request-Timestamp), each from a distinct user asking for access, so that each one
// records a request (and its request.created event) before it is answered. It prints one JSON
// document: p50/p99/max of the time from sending a command to the end of its answer, per round
// and over all, and the server's RSS.
//
// Every acknowledged request must be durable before the answer: after the last round's
// answers abslack kills the server with SIGKILL (no shutdown, no flush) and opens its store
// to check that every request id it was told about is there with its request.created event.
//
//	go build -o /tmp/accessbroker ./cmd/accessbroker
//	go run ./cmd/abslack -accessbroker /tmp/accessbroker
//
// See docs/performance.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"
)

func main() {
	var o options
	fs := flag.NewFlagSet("abslack", flag.ExitOnError)
	o.register(fs)
	_ = fs.Parse(os.Args[1:])
	o.progress = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "abslack:", err)
		os.Exit(1)
	}
}

// options are abslack's flags.
type options struct {
	accessbroker string        // the accessbroker binary to run
	concurrent   int           // commands sent at once in each round
	client       string        // clientRaw or clientNetHTTP
	rounds       int           // rounds of -concurrent commands
	settle       time.Duration // longest wait for a round's background work before the next
	serverLog    string        // where serve's log goes ("" discards it)

	progress io.Writer // where progress lines go (nil: nowhere)
}

func (o *options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.accessbroker, "accessbroker", "", "the accessbroker binary to run (go build -o /tmp/accessbroker ./cmd/accessbroker)")
	fs.IntVar(&o.concurrent, "concurrent", 200, "slash commands sent at once in each round, each from a distinct user")
	fs.StringVar(&o.client, "client", clientRaw, "how commands are sent: raw (pre-serialised requests written on one kept-alive connection each, as wrk does) or net/http (Go's http.Client and its connection pool)")
	fs.IntVar(&o.rounds, "rounds", 5, "rounds of -concurrent commands; before each the previous round's background work (on-call check, issue, answer) is awaited")
	fs.DurationVar(&o.settle, "settle", 2*time.Minute, "longest wait for one round's background work")
	fs.StringVar(&o.serverLog, "server-log", "", "append the server's log (JSON lines) to this file; default: discarded")
}

func (o options) validate() error {
	switch {
	case o.accessbroker == "":
		return errors.New("-accessbroker: the accessbroker binary to run is required (go build -o /tmp/accessbroker ./cmd/accessbroker)")
	case o.concurrent < 1 || o.concurrent > 5000:
		return fmt.Errorf("-concurrent %d: must be between 1 and 5000", o.concurrent)
	case o.client != clientRaw && o.client != clientNetHTTP:
		return fmt.Errorf("-client %q: must be %q or %q", o.client, clientRaw, clientNetHTTP)
	case o.rounds < 1:
		return fmt.Errorf("-rounds %d: must be at least 1", o.rounds)
	case o.settle <= 0:
		return fmt.Errorf("-settle %s: must be positive", o.settle)
	}
	if st, err := os.Stat(o.accessbroker); err != nil || st.IsDir() {
		return fmt.Errorf("-accessbroker %s: not a file", o.accessbroker)
	}
	return nil
}

// run measures and writes the report to out.
func run(ctx context.Context, o options, out io.Writer) error {
	rep, err := measure(ctx, o)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// measure sets up, measures and tears down.
func measure(ctx context.Context, o options) (rep Report, err error) {
	if err := o.validate(); err != nil {
		return rep, err
	}
	w, err := setup(ctx, o)
	if err != nil {
		return rep, err
	}
	defer func() { err = errors.Join(err, w.close()) }()
	return w.measure(ctx)
}
