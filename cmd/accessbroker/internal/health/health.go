// Package health is the readiness of serve and of `config check --online`: one named check
// per dependency (Slack, PagerDuty, AWS, each provider's target), run together with a timeout
// each, at start and then periodically. /readyz answers from the cached results, so a slow
// upstream never makes the probe slow, and a failing one never stops the process: the revoker
// keeps retrying that provider's revocations while everything else runs.
package health

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/accessbroker/accessbroker/grants"
)

// Func checks one dependency; nil means it answers and can do what accessbroker needs of it.
// It must honour ctx (the registry bounds each run with a timeout).
type Func func(ctx context.Context) error

// Check is one dependency. Name says which ("slack", "pagerduty", "aws",
// "postgres:prod-db", "github-team:infra-admins"); it is the metric label and what /readyz
// names when the check fails.
type Check struct {
	Name string
	Run  Func
}

// Result is the outcome of a check's latest run.
type Result struct {
	Name string
	OK   bool
	// Error says why the check failed, with every configured secret replaced by
	// [REDACTED]; empty when OK.
	Error string
	// CheckedAt is when the run finished; zero before the first run.
	CheckedAt time.Time
	// Err is the check's own error (unscrubbed) for errors.Is; never shown.
	Err error
}

// Defaults of Options.
const (
	DefaultTimeout  = 10 * time.Second
	DefaultInterval = 30 * time.Second
)

// Options configure a Registry.
type Options struct {
	// Timeout bounds each run of each check; 0 means DefaultTimeout.
	Timeout time.Duration
	// Interval is the wait between two rounds of Run; 0 means DefaultInterval.
	Interval time.Duration
	// Secrets are removed from error texts (results, logs, /readyz).
	Secrets []string
	// Logger receives one line when a check starts failing, changes its reason or recovers;
	// nil discards.
	Logger *slog.Logger
	// Observe, when set, is told every result (the accessbroker_dependency_up metric).
	Observe func(name string, ok bool)
}

// Registry runs a fixed set of checks and keeps their latest results. It is safe for
// concurrent use.
type Registry struct {
	clock  grants.Clock
	checks []Check
	opts   Options
	log    *slog.Logger

	mu      sync.Mutex
	results map[string]Result
	running map[string]bool // checks whose previous run has not returned (it ignored its timeout)
}

// New returns a registry of checks; names must be unique and non-empty and every check must
// have a Run.
func New(clock grants.Clock, checks []Check, opts Options) (*Registry, error) {
	if clock == nil {
		return nil, errors.New("health: a clock is required")
	}
	seen := map[string]bool{}
	for _, c := range checks {
		if c.Name == "" || c.Run == nil {
			return nil, fmt.Errorf("health: check %q has no name or no function", c.Name)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("health: check %q registered twice", c.Name)
		}
		seen[c.Name] = true
	}
	opts.Timeout = cmp.Or(opts.Timeout, DefaultTimeout)
	opts.Interval = cmp.Or(opts.Interval, DefaultInterval)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{clock: clock, checks: slices.Clone(checks), opts: opts, log: log, results: map[string]Result{}, running: map[string]bool{}}, nil
}

// Names lists the checks in registration order.
func (r *Registry) Names() []string {
	out := make([]string, len(r.checks))
	for i, c := range r.checks {
		out[i] = c.Name
	}
	return out
}

// RunOnce runs every check at once, each bounded by Options.Timeout, records the results and
// returns them in registration order. It returns when the last check has returned or timed
// out.
func (r *Registry) RunOnce(ctx context.Context) []Result {
	out := make([]Result, len(r.checks))
	var wg sync.WaitGroup
	for i, c := range r.checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
			defer cancel()
			err := r.runOnce(cctx, c)
			res := Result{Name: c.Name, OK: err == nil, CheckedAt: r.clock.Now(), Err: err}
			if err != nil {
				res.Error = scrub(err.Error(), r.opts.Secrets)
			}
			out[i] = res
		})
	}
	wg.Wait()
	for _, res := range out {
		r.record(ctx, res)
	}
	return out
}

// runOnce runs c bounded by ctx, but never twice at once: a check that ignored its timeout
// and still runs is reported as such instead of being started again (which would leave one
// more goroutine, and often a connection, behind every interval).
func (r *Registry) runOnce(ctx context.Context, c Check) error {
	r.mu.Lock()
	if r.running[c.Name] {
		r.mu.Unlock()
		return errors.New("the previous check has not returned yet (it ignored its timeout)")
	}
	r.running[c.Name] = true
	r.mu.Unlock()
	return runBounded(ctx, c.Run, func() {
		r.mu.Lock()
		delete(r.running, c.Name)
		r.mu.Unlock()
	})
}

// runBounded runs fn, returning at ctx's end even when fn ignores ctx; returned is called
// when fn itself returns.
func runBounded(ctx context.Context, fn Func, returned func()) error {
	done := make(chan error, 1)
	go func() {
		defer returned()
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("check panicked: %v", p)
			}
		}()
		done <- fn(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no answer within the check timeout: %w", context.Cause(ctx))
	}
}

func (r *Registry) record(ctx context.Context, res Result) {
	r.mu.Lock()
	prev, had := r.results[res.Name]
	r.results[res.Name] = res
	r.mu.Unlock()
	if r.opts.Observe != nil {
		r.opts.Observe(res.Name, res.OK)
	}
	switch {
	case !res.OK && (!had || prev.OK || prev.Error != res.Error):
		r.log.WarnContext(ctx, "dependency failing", "dependency", res.Name, "error", res.Error)
	case res.OK && had && !prev.OK:
		r.log.InfoContext(ctx, "dependency recovered", "dependency", res.Name)
	}
}

// Run repeats RunOnce every Options.Interval (on the registry's clock) until ctx ends; it
// returns nil then. It does not run a round at once: serve runs the first one before it
// starts.
func (r *Registry) Run(ctx context.Context) error {
	for {
		t := r.clock.NewTimer(r.opts.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
		r.RunOnce(ctx)
	}
}

// Results returns the latest result of every check in registration order. A check that has
// not finished a run yet is reported as failing ("not checked yet").
func (r *Registry) Results() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Result, len(r.checks))
	for i, c := range r.checks {
		res, ok := r.results[c.Name]
		if !ok {
			res = Result{Name: c.Name, Error: "not checked yet"}
		}
		out[i] = res
	}
	return out
}

// Failing returns the results that are not OK, in registration order.
func (r *Registry) Failing() []Result {
	var out []Result
	for _, res := range r.Results() {
		if !res.OK {
			out = append(out, res)
		}
	}
	return out
}

// Handler serves /readyz: 200 "ready" when store answers nil and every check passes;
// otherwise 503 with one line naming each failing dependency and why. With ?verbose it
// answers JSON {"status":"ok|failing","checks":[{"name","ok","error","checked_at"}]}, the
// store first (checked live at each request, as "store"), then the cached checks.
func (r *Registry) Handler(store Func, storeTimeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ctx, cancel := context.WithTimeout(req.Context(), storeTimeout)
		defer cancel()
		st := Result{Name: "store", OK: true, CheckedAt: r.clock.Now()}
		if err := store(ctx); err != nil {
			st.OK, st.Err, st.Error = false, err, scrub(err.Error(), r.opts.Secrets)
		}
		all := append([]Result{st}, r.Results()...)
		var failing []string
		for _, res := range all {
			if !res.OK {
				failing = append(failing, res.Name+": "+oneLine(res.Error))
			}
		}
		status := http.StatusOK
		if len(failing) > 0 {
			status = http.StatusServiceUnavailable
		}
		if _, verbose := req.URL.Query()["verbose"]; verbose {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(report(all, len(failing) == 0))
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		if len(failing) == 0 {
			io.WriteString(w, "ready\n")
			return
		}
		fmt.Fprintf(w, "not ready: %s\n", strings.Join(failing, "; "))
	})
}

type reportJSON struct {
	Status string      `json:"status"`
	Checks []checkJSON `json:"checks"`
}

type checkJSON struct {
	Name      string `json:"name"`
	OK        bool   `json:"ok"`
	Error     string `json:"error,omitempty"`
	CheckedAt string `json:"checked_at,omitempty"`
}

func report(all []Result, ok bool) reportJSON {
	rep := reportJSON{Status: "ok", Checks: make([]checkJSON, 0, len(all))}
	if !ok {
		rep.Status = "failing"
	}
	for _, res := range all {
		c := checkJSON{Name: res.Name, OK: res.OK, Error: res.Error}
		if !res.CheckedAt.IsZero() {
			c.CheckedAt = grants.Timestamp(res.CheckedAt)
		}
		rep.Checks = append(rep.Checks, c)
	}
	return rep
}

// oneLine keeps a reason on one line of the plain-text answer.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// scrub is grants.ScrubText: one rule for what a secret in a message becomes.
func scrub(msg string, secrets []string) string { return grants.ScrubText(msg, secrets) }
