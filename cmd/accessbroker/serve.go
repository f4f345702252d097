package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/config"
	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/health"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/integrations/adminapi"
	"github.com/accessbroker/accessbroker/integrations/console"
	"github.com/accessbroker/accessbroker/integrations/pgproxy"
)

const serveUsage = "usage: accessbroker serve --config FILE\n\n" +
	"Runs the broker: HTTP endpoints, revoker, checkpointer and schedulers. Logs JSON lines to stderr at the config's log_level."

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newCLI("serve", serveUsage, stdout, stderr)
	configPath := fs.String("config", "", "configuration file (YAML)")
	if code, ok := fs.parseNone(args); !ok {
		return code
	}
	cfg, ok := loadConfigFlag(*configPath, stderr)
	if !ok {
		return exitUsage
	}
	srv, err := newServer(ctx, cfg, appOptions{logOut: stderr, withProviders: true})
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker serve: %v\n", err)
		return exitFailure
	}
	defer srv.Close()
	if err := srv.Run(ctx, nil); err != nil {
		fmt.Fprintf(stderr, "accessbroker serve: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// server is `accessbroker serve`: the app plus its HTTP endpoints and background workers.
type server struct {
	*app
	checkpointer *grants.Checkpointer
	publisher    *grants.Publisher // copies checkpoints to audit.witnesses
	streamer     *grants.Streamer  // copies audit events to audit.sinks
	sinks        []grants.StreamSink
	guard        *grants.AuditGuard // stops new grants while the audit log fails verification
	mux          *http.ServeMux     // listen: Slack, PagerDuty, health
	adminMux     *http.ServeMux     // admin_listen: /metrics and /api/v1 (mux itself without admin_listen)
	adminAddr    string             // the bound admin_listen address, once Run listens
	front        *frontends
	health       *health.Registry // readiness of every dependency (readiness.go)
	readyz       http.Handler
	pgproxy      *pgproxy.Proxy            // postgres_proxy; nil without it
	console      *console.Console          // the web console (console section); nil without it
	drift        *grants.DriftReconciler   // drift; nil with drift.action: off
	activity     *grants.ActivityCollector // activity collection; nil when no source is enabled
}

func newServer(ctx context.Context, cfg *config.Config, opts appOptions) (*server, error) {
	a, err := newApp(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	key, err := a.signingKey()
	if err != nil {
		a.Close()
		return nil, err
	}
	if err := a.checkClockSkew(ctx); err != nil {
		a.Close()
		return nil, err
	}
	s := &server{app: a, mux: http.NewServeMux()}
	s.adminMux = s.mux
	if cfg.AdminListen != "" {
		s.adminMux = http.NewServeMux()
	}
	s.drift = a.newDriftReconciler(cfg.Drift)
	s.checkpointer = grants.NewCheckpointer(a.store, key, a.clock, a.log, int64(cfg.Audit.CheckpointEvery), cfg.Audit.CheckpointPeriod)
	s.checkpointer.ShareWith(a.store, a.instance) // one signer among replicas
	ws, err := buildWitnesses(ctx, cfg, a.clock, opts.aws)
	if err != nil {
		a.Close()
		return nil, err
	}
	for _, w := range ws {
		a.metrics.startAtZero(nil, []string{w.Name()})
	}
	alerts := &alertSwitch{}
	s.publisher = grants.NewPublisher(a.store, ws, a.clock, grants.PublisherOptions{Metrics: a.metrics, Logger: a.log, Alerts: alerts})
	s.checkpointer.AfterSign(s.publisher.Enqueue)
	if s.sinks, err = buildSinks(ctx, cfg, a.clock, opts.aws); err != nil {
		a.Close()
		return nil, err
	}
	for _, sk := range s.sinks {
		if c, ok := sk.Sink.(io.Closer); ok {
			a.closers = append(a.closers, c) // the file sink's file and its lock
		}
	}
	s.streamer = grants.NewStreamer(a.store, s.sinks, a.clock, grants.StreamerOptions{Leaser: a.store, Holder: a.instance,
		Metrics: newSinkMetrics(a.metrics.reg, s.sinks), Logger: a.log, Alerts: alerts})
	s.guard = a.newAuditGuard(key, ws, alerts)
	s.checkpointer.GuardWith(s.guard)
	a.checkpoints = &checkpointInfo{store: a.store, publisher: s.publisher}
	for _, m := range uniqueMuxes(s.mux, s.adminMux) {
		m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, "ok\n")
		})
		m.HandleFunc("GET /readyz", s.ready)
	}
	s.adminMux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	if s.front, err = buildFrontends(ctx, a, s.mux); err != nil {
		a.Close()
		return nil, err
	}
	if s.console, err = buildConsole(a, s.front, key, s.mux); err != nil {
		a.Close()
		return nil, err
	}
	if s.pgproxy, err = buildPGProxy(a); err != nil {
		a.Close()
		return nil, err
	}
	if s.pgproxy != nil {
		a.proxyWake = s.pgproxy.Wake
	}
	if s.front.notifier != nil {
		alerts.target = s.front.notifier
	}
	if s.activity, err = buildActivity(ctx, a); err != nil {
		a.Close()
		return nil, err
	}
	if err := registerGitHubWebhook(a, s.mux); err != nil {
		a.Close()
		return nil, err
	}
	if s.health, err = newReadiness(ctx, a); err != nil {
		a.Close()
		return nil, err
	}
	s.readyz = s.health.Handler(a.store.Ready, 2*time.Second)
	s.adminMux.Handle("/api/v1/", adminapi.New(adminapi.Config{
		Token: cfg.API.Token.Reveal(), Grants: a.store, Revoker: a.manager, Searcher: a.store, Recorder: a.manager,
		Reporter: newReporter(a.store, audit.ReportOptions{}).withCheckpoints(a.checkpoints), Clock: a.clock, Logger: a.log,
	}))
	return s, nil
}

// ready is /readyz: not ready while the audit log is suspect; otherwise the store live and
// every dependency from its latest check (readiness.go).
func (s *server) ready(w http.ResponseWriter, r *http.Request) {
	if se := s.guard.Suspect(); se != nil {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %v\n", se)
		return
	}
	s.readyz.ServeHTTP(w, r)
}

// Run reconciles what a previous process left, then serves HTTP and runs the workers until
// ctx ends. listening, when not nil, receives the bound address once the listener is open.
func (s *server) Run(ctx context.Context, listening chan<- string) error {
	if err := checkAtStart(ctx, s.health, s.log); err != nil {
		return err
	}
	n, err := s.manager.ReconcileOnStart(ctx, s.cfg.Store.Driver == "sqlite")
	if err != nil {
		return fmt.Errorf("reconcile on start: %w", err)
	}
	s.log.InfoContext(ctx, "started", "listen", s.cfg.Listen, "resources", len(s.cfg.Resources), "reconciled", n)
	if live, err := s.store.ListGrants(ctx, grants.GrantFilter{States: []grants.State{grants.StateIssuing, grants.StateActive,
		grants.StateRevoking, grants.StateRevokeFailed}}); err == nil {
		var lg []sqlstore.LiveGrant
		for _, g := range live {
			lg = append(lg, sqlstore.LiveGrant{ID: g.ID, Resource: g.Resource, State: g.State})
		}
		for name, ids := range orphanedGrants(s.cfg, lg) {
			s.log.ErrorContext(ctx, "live grants of a resource that is not in the config: their revocation cannot run until it is restored",
				"resource", name, "grants", strings.Join(ids, ","))
		}
	}

	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
	}
	var pln net.Listener
	if s.pgproxy != nil {
		if pln, err = net.Listen("tcp", s.cfg.PostgresProxy.Listen); err != nil {
			ln.Close()
			return fmt.Errorf("listen on postgres_proxy.listen %s: %w", s.cfg.PostgresProxy.Listen, err)
		}
	}
	hs := &http.Server{Handler: s.mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 2 * time.Minute} // a report over a busy week takes seconds
	servers := []*http.Server{hs}
	listeners := []net.Listener{ln}
	if s.cfg.AdminListen != "" {
		aln, err := net.Listen("tcp", s.cfg.AdminListen)
		if err != nil {
			ln.Close()
			if pln != nil {
				pln.Close()
			}
			return fmt.Errorf("listen on admin_listen %s: %w", s.cfg.AdminListen, err)
		}
		s.adminAddr = aln.Addr().String()
		servers = append(servers, &http.Server{Handler: s.adminMux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 2 * time.Minute})
		listeners = append(listeners, aln)
		s.log.InfoContext(ctx, "admin endpoints on their own address", "admin_listen", s.adminAddr)
	}

	workCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	run := func(name string, fn func(context.Context) error) {
		wg.Go(func() {
			if err := fn(workCtx); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				stop()
			}
		})
	}
	run("revoker", s.revoker.Run)
	run("audit guard", s.guard.Run)
	run("checkpointer", s.checkpointer.Run)
	if pln != nil {
		run("postgres proxy", func(ctx context.Context) error { return s.pgproxy.Serve(ctx, pln) })
	}
	if s.publisher.Witnesses() > 0 {
		run("witness publisher", s.publisher.Run)
	}
	if s.streamer.Sinks() > 0 {
		run("audit sinks", s.streamer.Run)
	}
	run("readiness", s.health.Run)
	if s.drift != nil {
		run("drift", s.drift.Run)
	}
	if s.activity != nil {
		run("activity collector", runActivity(s.activity))
	}
	if b := s.front.broker; b != nil {
		if n, err := b.Recover(ctx); err != nil {
			s.log.ErrorContext(ctx, "recover undecided requests", "error", err)
		} else if n > 0 {
			s.log.InfoContext(ctx, "recovered undecided requests", "count", n)
		}
		run("scheduler", b.Run)
	}
	if sum := s.front.summary; sum != nil {
		run("weekly summary", sum.Run)
	}
	if rem := s.front.reminder; rem != nil {
		run("review reminder", rem.Run)
	}
	if s.console != nil {
		run("console chain marks", s.console.Run)
	}
	for i, srv := range servers {
		wg.Go(func() {
			if err := srv.Serve(listeners[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("http: %w", err)
				stop()
			}
		})
	}
	if listening != nil {
		listening <- ln.Addr().String()
	}
	<-workCtx.Done()
	s.log.Info("shutting down")
	shCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Revoker.ShutdownGrace+5*time.Second)
	defer cancel()
	for _, srv := range servers {
		_ = srv.Shutdown(shCtx)
	}
	if s.front.slack != nil {
		if err := s.front.slack.Wait(shCtx); err != nil {
			s.log.Warn("slack background work unfinished at shutdown; recorded requests are finished on the next start", "error", err)
		}
	}
	wg.Wait()
	close(errs)
	var all []error
	for e := range errs {
		all = append(all, e)
	}
	s.log.Info("stopped")
	return errors.Join(all...)
}

// uniqueMuxes returns the distinct muxes among ms, in order.
func uniqueMuxes(ms ...*http.ServeMux) []*http.ServeMux {
	var out []*http.ServeMux
	for _, m := range ms {
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}
