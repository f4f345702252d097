package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/config"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/integrations/console"
)

// app is one configured broker: store, providers, manager and revoker, built from a Config.
// Every sub-command that touches state builds one; serve also runs its workers.
type app struct {
	cfg          *config.Config
	log          *slog.Logger
	clock        grants.Clock
	store        *sqlstore.Store
	providers    map[string]grants.Provider
	driftMetrics *driftMetrics // drift section metrics; nil until serve builds its reconciler
	manager      *grants.Manager
	transport    http.RoundTripper // appOptions.transport
	gate         guardGate         // refuses new access while the audit guard finds the log suspect
	revoker      *grants.Revoker
	metrics      *metrics
	instance     string
	closers      []io.Closer
	observer     *observerSwitch
	notices      *grants.ObserverQueue // the revoker's observer: a.observer behind a queue
	// proxyWake, when set (serve with postgres_proxy), is called with the revoker's Wake:
	// the session proxy then checks its sessions' grants at once.
	proxyWake func()
	// checkpoints reports the latest checkpoint and its witnesses (serve sets it; the weekly
	// summary and the report API read it). nil elsewhere.
	checkpoints *checkpointInfo
	awsOpts     awsOptions // appOptions.aws, for the readiness checks
	// consoleStandIn is appOptions.consoleStandIn.
	consoleStandIn []console.StandInUser
}

// appOptions are the developer-only knobs kept apart from the config contract.
type appOptions struct {
	clock  grants.Clock
	logOut io.Writer
	// logLevel, when set, replaces the config's log_level (the one-shot commands'
	// --log-level); nil means log_level.
	logLevel slog.Leveler
	// withProviders builds the providers (serve, grants issue/revoke); read-only commands
	// (list, audit) skip them so they work without upstream credentials.
	withProviders bool
	// aws replaces the AWS SDK's default credential chain and the console federation
	// endpoint (the demo's fake AWS); zero means production behaviour.
	aws awsOptions
	// consoleStandIn replaces the web console's Sign in with Slack by these people (the
	// demo); nil means Sign in with Slack.
	consoleStandIn []console.StandInUser
	// transport carries the Slack and PagerDuty clients' requests (tests that run with the
	// production URLs route them to fakes); nil means the network.
	transport http.RoundTripper
}

func newApp(ctx context.Context, cfg *config.Config, opts appOptions) (*app, error) {
	if opts.clock == nil {
		opts.clock = grants.RealClock{}
	}
	if opts.logOut == nil {
		opts.logOut = os.Stderr
	}
	// Every line names the process: replica is its id (as the claims and leases it holds name
	// it), instance the operator's name for it (instance_name), each key once.
	replica := grants.NewID("i")
	var level slog.Leveler = cfg.SlogLevel()
	if opts.logLevel != nil {
		level = opts.logLevel
	}
	log := slog.New(slog.NewJSONHandler(opts.logOut, &slog.HandlerOptions{Level: level})).With("replica", replica)
	if cfg.InstanceName != "" {
		log = log.With("instance", cfg.InstanceName)
	}
	st, err := sqlstore.Open(ctx, cfg.Store.Driver, cfg.Store.DSN.Reveal(), opts.clock, log)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	a := &app{cfg: cfg, log: log, clock: opts.clock, store: st, providers: map[string]grants.Provider{}, instance: replica, observer: &observerSwitch{}, transport: opts.transport, awsOpts: opts.aws, consoleStandIn: opts.consoleStandIn}
	a.metrics = newMetrics(st, log)
	// The owner's and the audit channel's notices of revocations go through a queue, so
	// that a hung Slack never delays the next revocation.
	a.notices = grants.NewObserverQueue(a.observer, 10000, log)
	kinds := map[string]bool{}
	for _, r := range cfg.Resources {
		if !kinds[r.Provider] {
			kinds[r.Provider] = true
			a.metrics.startAtZero([]string{r.Provider}, nil)
		}
	}
	if opts.withProviders {
		if a.providers, a.closers, err = buildProviders(ctx, cfg, opts.clock, log, opts.aws); err != nil {
			a.notices.Close(context.Background())
			st.Close()
			return nil, err
		}
	}
	rc := cfg.Revoker
	a.revoker = grants.NewRevoker(a.metrics.timedStore, a.providers, opts.clock, log, grants.RevokerOptions{
		Instance: a.instance, ConcurrencyPerProvider: rc.ConcurrencyPerProvider, Batch: rc.Batch,
		BackoffBase: rc.BackoffBase, BackoffMax: rc.BackoffMax, ClaimLease: rc.ClaimLease,
		AttemptTimeout: rc.IssueTimeout, ShutdownGrace: rc.ShutdownGrace, IdleWait: 15 * time.Second,
		Metrics: a.metrics, Observer: a.notices, Secrets: cfg.SecretValues(),
	})
	a.manager = grants.NewManager(a.metrics.timedStore, a.providers, cfg.GrantResources(), opts.clock, log, grants.ManagerOptions{
		Instance: a.instance, IssueTimeout: rc.IssueTimeout, Wake: a.wake, WakeAt: a.wakeAt, Secrets: cfg.SecretValues(), Gate: &a.gate,
	})
	return a, nil
}

// wake follows a change that may end a grant sooner: the revoker and the session proxy look.
func (a *app) wake() {
	a.revoker.Wake()
	if a.proxyWake != nil {
		a.proxyWake()
	}
}

// wakeAt follows a change whose grant is due at t: the revoker looks if t is before the
// deadline it sleeps until, and the session proxy looks at once.
func (a *app) wakeAt(t time.Time) {
	a.revoker.WakeAt(t)
	if a.proxyWake != nil {
		a.proxyWake()
	}
}

// Close releases the providers' connections and the store.
func (a *app) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	a.notices.Close(ctx)
	cancel()
	for _, c := range a.closers {
		c.Close()
	}
	return a.store.Close()
}

// signingKey reads the checkpoint signing key named in the config.
func (a *app) signingKey() (ed25519.PrivateKey, error) {
	return readSigningKey(a.cfg.Audit.SigningKeyFile)
}

func readSigningKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("audit.signing_key_file %s does not exist: create it with `accessbroker audit keygen --out %s`", path, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read audit.signing_key_file: %w", err)
	}
	k, err := audit.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("audit.signing_key_file %s: %w", path, err)
	}
	return k, nil
}

// operatorActor names the person at the command line.
func operatorActor(name string) audit.Actor {
	if name == "" {
		name = os.Getenv("USER")
	}
	if name == "" {
		name = "unknown-operator"
	}
	return audit.Actor{Kind: audit.ActorOperator, ID: name}
}

// loadConfigFlag loads --config, printing problems to stderr; ok=false means exit 2.
func loadConfigFlag(path string, stderr io.Writer) (*config.Config, bool) {
	if path == "" {
		fmt.Fprintln(stderr, "accessbroker: --config FILE is required")
		return nil, false
	}
	cfg, err := config.LoadConfig(path, os.LookupEnv)
	if err != nil {
		var ce *config.ConfigError
		if errors.As(err, &ce) {
			fmt.Fprintln(stderr, ce.Error())
		} else {
			fmt.Fprintf(stderr, "accessbroker: %v\n", err)
		}
		return nil, false
	}
	return cfg, true
}
