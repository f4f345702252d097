package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/fixtures/slackfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	slackapp "github.com/accessbroker/accessbroker/integrations/slack"
)

// Report is abslack's output.
type Report struct {
	Setup Setup `json:"setup"`
	// Warmup is a first round of "/access help" commands: it opens the connections the
	// measured rounds reuse, as Slack keeps connections to an app alive. Help is a second one,
	// on open connections: verified, parsed and answered with no database write, the floor of
	// the ack path.
	Warmup Latency `json:"warmup_round"`
	Help   Latency `json:"help_round"`
	// Ack is over every request command of every round; Rounds is each round.
	Ack    Latency   `json:"ack"`
	Rounds []Latency `json:"rounds"`
	// Issued counts the requests the background work finished with a grant before the next
	// round (each round waits for its own, up to -settle).
	Issued  int     `json:"issued"`
	Durable Durable `json:"durable"`
	RSS     RSS     `json:"server_rss_mib"`
	// ServerCPUS is the CPU time serve used from ready to the end of the last round (the
	// acknowledgements and all but the last round's background work); ServerCPUMSPerRound is
	// the mean over the measured rounds of the CPU it used from a round's first command to its
	// last answer. Both do not depend on the machine's load as latency does.
	ServerCPUS          float64 `json:"server_cpu_s"`
	ServerCPUMSPerRound float64 `json:"server_cpu_ms_per_round"`
}

// Setup says what was measured.
type Setup struct {
	Concurrent int    `json:"concurrent"`
	Client     string `json:"client"`
	Rounds     int    `json:"rounds"`
	GoVersion  string `json:"go_version"`
	CPUs       int    `json:"cpus"`
}

// Latency is the time from sending a command to having read its whole answer.
type Latency struct {
	N     int     `json:"n"`
	OK    int     `json:"ok"` // answered 200 with the expected acknowledgement
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
	MaxMS float64 `json:"max_ms"`
	// Failures are the first few answers that were not the expected acknowledgement.
	Failures []string `json:"failures,omitempty"`
}

// Durable is what the store held after serve was killed (SIGKILL) right after the last
// round's answers: every acknowledged request must be there with its request.created event.
type Durable struct {
	Acked     int `json:"acked"`
	Found     int `json:"found"`
	WithEvent int `json:"with_event"`
	// ChainOK says the audit chain of the killed server's store verifies.
	ChainOK bool `json:"chain_ok"`
}

// RSS is serve's VmRSS when ready and after the last round.
type RSS struct {
	Ready float64 `json:"ready"`
	End   float64 `json:"end"`
}

func (w *world) progress(msg string, args ...any) {
	if w.o.progress != nil {
		fmt.Fprintln(w.o.progress, append([]any{"abslack:", wall().Format(time.TimeOnly), msg}, args...)...)
	}
}

func (w *world) measure(ctx context.Context) (rep Report, err error) {
	rep.Setup = Setup{Concurrent: w.o.concurrent, Client: w.o.client, Rounds: w.o.rounds, GoVersion: runtime.Version(), CPUs: runtime.NumCPU()}
	if rep.RSS.Ready, err = w.rssMiB(); err != nil {
		return rep, err
	}
	client, err := newSender(w.o.client, w.base, w.o.concurrent)
	if err != nil {
		return rep, err
	}
	defer client.close()

	next := 0                                           // the next unused user
	warm, _, err := w.round(ctx, client, "help", &next) // opens the connections
	if err != nil {
		return rep, err
	}
	rep.Warmup = warm.stats()
	help, _, err := w.round(ctx, client, "help", &next)
	if err != nil {
		return rep, err
	}
	rep.Help = help.stats()
	w.progress("help round", "stats", rep.Help)

	var all batch
	var acked []string
	cpuStart, err := w.cpuSeconds()
	if err != nil {
		return rep, err
	}
	var roundCPU float64
	for r := range w.o.rounds {
		before, err := w.cpuSeconds()
		if err != nil {
			return rep, err
		}
		b, ids, err := w.round(ctx, client, "request", &next)
		if err != nil {
			return rep, err
		}
		after, err := w.cpuSeconds()
		if err != nil {
			return rep, err
		}
		roundCPU += after - before
		all.merge(b)
		acked = append(acked, ids...)
		rep.Rounds = append(rep.Rounds, b.stats())
		w.progress("round", "n", r+1, "stats", rep.Rounds[r])
		if r == w.o.rounds-1 {
			break // the last round's background work is cut short by the kill
		}
		if err := w.waitIssued(ctx, len(acked)); err != nil {
			w.progress("background work unfinished", "error", err)
		}
	}
	rep.Ack = all.stats()
	rep.Issued = w.issued()
	cpuEnd, err := w.cpuSeconds()
	if err != nil {
		return rep, err
	}
	rep.ServerCPUS = round(cpuEnd - cpuStart)
	rep.ServerCPUMSPerRound = round(roundCPU * 1000 / float64(w.o.rounds))
	if rep.RSS.End, err = w.rssMiB(); err != nil {
		return rep, err
	}
	// Durable before the answer: kill at once, then look.
	if err := w.kill(); err != nil {
		return rep, err
	}
	rep.Durable, err = w.checkDurable(ctx, acked)
	return rep, err
}

// batch is one round's outcomes.
type batch struct {
	lat      []time.Duration
	ok       int
	failures []string
}

func (b *batch) merge(o batch) {
	b.lat = append(b.lat, o.lat...)
	b.ok += o.ok
	for _, f := range o.failures {
		if len(b.failures) < 5 {
			b.failures = append(b.failures, f)
		}
	}
}

func (b batch) stats() Latency {
	d := slices.Clone(b.lat)
	slices.Sort(d)
	l := Latency{N: len(d), OK: b.ok, Failures: b.failures}
	if len(d) > 0 {
		l.P50MS, l.P99MS, l.MaxMS = ms(quantile(d, 0.50)), ms(quantile(d, 0.99)), ms(d[len(d)-1])
	}
	return l
}

var requestID = regexp.MustCompile(`\br_[a-z2-7]{16}\b`)

// round sends -concurrent commands at once ("help", or a request each from a new user) and
// returns their latencies and, for requests, the request ids the answers named.
func (w *world) round(ctx context.Context, client sender, kind string, next *int) (batch, []string, error) {
	n := w.o.concurrent
	reqs := make([]prepared, n)
	for i := range reqs {
		id, _, _ := user(*next)
		*next++
		text := "help"
		if kind == "request" {
			text = resourceName + " 1h abslack: measuring the acknowledgement"
		}
		form, err := slackfake.CommandForm(slackfake.Command{TeamID: teamID, UserID: id, UserName: strings.ToLower(id),
			ChannelID: "C0OPS", Command: "/access", Text: text, ResponseURL: w.slack.NewResponseURL()})
		if err != nil {
			return batch{}, nil, err
		}
		// Signed as Slack signs: v0=HMAC-SHA256("v0:" + timestamp + ":" + body), now.
		r, err := slackfake.SignedRequest(ctx, w.base+slackapp.CommandsPath, w.signing, wall(), []byte(form.Encode()))
		if err != nil {
			return batch{}, nil, err
		}
		if reqs[i], err = client.prepare(r); err != nil {
			return batch{}, nil, err
		}
	}
	type outcome struct {
		d    time.Duration
		body string
		err  error
		code int
	}
	outs := make([]outcome, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			sw := grants.StartStopwatch()
			code, raw, err := client.send(i, r)
			outs[i] = outcome{d: sw.Elapsed(), body: string(raw), err: err, code: code}
		}()
	}
	close(gate)
	wg.Wait()
	var b batch
	var ids []string
	for _, o := range outs {
		b.lat = append(b.lat, o.d)
		var text string
		if o.err == nil && o.code == http.StatusOK {
			var msg struct {
				Text string `json:"text"`
			}
			if json.Unmarshal([]byte(o.body), &msg) == nil {
				text = msg.Text
			}
		}
		id := requestID.FindString(text)
		good := text != "" && (kind == "help" && strings.Contains(text, "Commands:") || kind == "request" && id != "" && strings.Contains(text, "received"))
		switch {
		case good:
			b.ok++
			if id != "" {
				ids = append(ids, id)
			}
		case len(b.failures) < 5:
			b.failures = append(b.failures, fmt.Sprintf("status %d, error %v: %.200s", o.code, o.err, o.body))
		}
	}
	return b, ids, ctx.Err()
}

// issued counts successful issues at the webhook fake.
func (w *world) issued() int {
	n := 0
	for _, c := range w.wh.Calls() {
		if c.Path == "/issue" && c.Status == http.StatusOK {
			n++
		}
	}
	return n
}

// waitIssued waits (up to -settle) until want grants have been issued and serve is then
// quiet (its CPU time unchanged over 200 ms: the deliveries and audit-channel notes after the
// issue are done too), so that one round's background work does not overlap the next round.
func (w *world) waitIssued(ctx context.Context, want int) error {
	giveUp := wall().Add(w.o.settle)
	last := -1.0
	for {
		if w.issued() >= want {
			cpu, err := w.cpuSeconds()
			if err != nil {
				return err
			}
			if cpu == last {
				return nil
			}
			last = cpu
		}
		if wall().After(giveUp) {
			return fmt.Errorf("%d of %d grants issued after %s, or serve still busy", w.issued(), want, w.o.settle)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// checkDurable opens the killed server's store and looks for every acknowledged request and
// its request.created event, and verifies the chain.
func (w *world) checkDurable(ctx context.Context, acked []string) (Durable, error) {
	d := Durable{Acked: len(acked)}
	st, err := sqlstore.Open(ctx, "sqlite", "file:"+w.db, grants.RealClock{}, nil)
	if err != nil {
		return d, fmt.Errorf("open the killed server's store: %w", err)
	}
	defer st.Close()
	for _, id := range acked {
		if _, err := st.GetRequest(ctx, id); err == nil {
			d.Found++
		} else if !errors.Is(err, grants.ErrNotFound) {
			return d, fmt.Errorf("read request %s: %w", id, err)
		}
	}
	created := map[string]bool{}
	var events []audit.Event
	for after := int64(0); ; {
		page, err := st.ReadEvents(ctx, after, 1000)
		if err != nil {
			return d, fmt.Errorf("read events: %w", err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			if e.Action == audit.ActionRequestCreated {
				created[e.RequestID] = true
			}
		}
		events = append(events, page...)
		after = page[len(page)-1].Seq
	}
	for _, id := range acked {
		if created[id] {
			d.WithEvent++
		}
	}
	d.ChainOK = verifyChain(events)
	return d, nil
}

// verifyChain recomputes the hash chain (audit.Next) over events read from seq 1.
func verifyChain(events []audit.Event) bool {
	prev := audit.Genesis
	for i, e := range events {
		if e.Seq != int64(i+1) || e.PrevHash != prev {
			return false
		}
		h, err := audit.Next(prev, e)
		if err != nil || h != e.Hash {
			return false
		}
		prev = h
	}
	return true
}

// quantile is the nearest-rank q-quantile of sorted d.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(d)))) - 1
	return d[min(max(i, 0), len(d)-1)]
}

func ms(d time.Duration) float64 { return round(float64(d) / float64(time.Millisecond)) }

func round(f float64) float64 { return math.Round(f*10) / 10 }
