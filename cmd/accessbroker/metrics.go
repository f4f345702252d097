package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// metrics is the Prometheus side of accessbroker. It also decorates the store to time audit
// appends, so that no domain package imports Prometheus.
type metrics struct {
	reg            *prometheus.Registry
	auditSuspect   prometheus.Gauge
	auditWriteFail prometheus.Counter
	clockSkew      prometheus.Gauge
	wallSteps      *prometheus.CounterVec
	issued         *prometheus.CounterVec
	revoked        *prometheus.CounterVec
	revokeFailed   *prometheus.CounterVec
	lag            *prometheus.HistogramVec
	appendLat      prometheus.Histogram
	witnessFail    *prometheus.CounterVec
	witnessPub     *prometheus.CounterVec
	timedStore     grants.Store
}

func newMetrics(st *sqlstore.Store, log *slog.Logger) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.issued = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "accessbroker_grants_issued_total", Help: "Grants that became active."}, []string{"provider"})
	m.revoked = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "accessbroker_grants_revoked_total", Help: "Completed revocations."}, []string{"provider"})
	m.revokeFailed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "accessbroker_revoke_failures_total", Help: "Failed revocation attempts (each is retried)."}, []string{"provider", "class"})
	m.lag = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "accessbroker_revocation_lag_seconds", Help: "Time from a grant's revocation deadline to its completed revocation.",
		Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900},
	}, []string{"provider"})
	m.appendLat = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "accessbroker_audit_append_seconds", Help: "Latency of one store change with its audit events.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	m.witnessFail = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "accessbroker_witness_failures_total",
		Help: "Failed attempts to publish an audit checkpoint to a witness (each is retried)."}, []string{"witness"})
	m.witnessPub = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "accessbroker_witness_published_total",
		Help: "Audit checkpoints published to a witness."}, []string{"witness"})
	build := readBuildInfo()
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "accessbroker_build_info", Help: "Always 1; its labels say which build is running (see accessbroker version).",
	}, []string{"version", "commit", "go_version"})
	buildInfo.WithLabelValues(build.Version, build.Commit, build.GoVersion).Set(1)
	m.clockSkew = prometheus.NewGauge(prometheus.GaugeOpts{Name: "accessbroker_clock_skew_seconds",
		Help: "How far this process's clock is ahead of its PostgreSQL store's (negative: behind); serve refuses to start beyond 2 s and /readyz fails."})
	m.wallSteps = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "accessbroker_wall_clock_steps_total",
		Help: "Steps of this host's wall clock (against its monotonic clock, 0.5 s or more) the revoker noticed and re-armed after; direction forward or backward."}, []string{"direction"})
	m.auditWriteFail = prometheus.NewCounter(prometheus.CounterOpts{Name: "accessbroker_audit_write_failures_total",
		Help: "Store changes (each with its audit events) that could not be written: the action they carried was not done (no audit, no access)."})
	m.auditSuspect = prometheus.NewGauge(prometheus.GaugeOpts{Name: "accessbroker_audit_suspect",
		Help: "1 while the audit log fails verification and no grant is issued or extended; 0 otherwise."})
	m.reg.MustRegister(m.issued, m.revoked, m.revokeFailed, m.lag, m.appendLat, m.witnessFail, m.witnessPub, m.auditSuspect, m.auditWriteFail, m.clockSkew, m.wallSteps, buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&stateCollector{st: st})
	m.timedStore = &timedStore{Store: st, m: m, log: log}
	return m
}

// The class label values of accessbroker_revoke_failures_total.
const (
	classRetryable     = "retryable"
	classNeedsOperator = "needs_operator"
)

// startAtZero creates every labelled series for the given provider kinds and witness names,
// so that a scrape shows each at 0 before its first event (rate() and absent-series alerts
// need the series to exist from the start).
func (m *metrics) startAtZero(providers, witnesses []string) {
	for _, p := range providers {
		m.issued.WithLabelValues(p)
		m.revoked.WithLabelValues(p)
		m.lag.WithLabelValues(p)
		for _, class := range []string{classRetryable, classNeedsOperator} {
			m.revokeFailed.WithLabelValues(p, class)
		}
	}
	m.wallSteps.WithLabelValues("forward")
	m.wallSteps.WithLabelValues("backward")
	for _, w := range witnesses {
		m.witnessFail.WithLabelValues(w)
		m.witnessPub.WithLabelValues(w)
	}
}

// WallClockStepped counts a step of the wall clock the revoker noticed (grants.WallStepMetrics).
func (m *metrics) WallClockStepped(step time.Duration) {
	dir := "forward"
	if step < 0 {
		dir = "backward"
	}
	m.wallSteps.WithLabelValues(dir).Inc()
}

// Revoked implements grants.RevokerMetrics.
func (m *metrics) Revoked(provider string, lag time.Duration) {
	m.revoked.WithLabelValues(provider).Inc()
	m.lag.WithLabelValues(provider).Observe(max(lag, 0).Seconds())
}

// RevokeFailed implements grants.RevokerMetrics.
func (m *metrics) RevokeFailed(provider string, needsOperator bool) {
	class := classRetryable
	if needsOperator {
		class = classNeedsOperator
	}
	m.revokeFailed.WithLabelValues(provider, class).Inc()
}

// WitnessFailed implements grants.WitnessMetrics.
func (m *metrics) WitnessFailed(witness string) { m.witnessFail.WithLabelValues(witness).Inc() }

// WitnessPublished implements grants.WitnessMetrics.
func (m *metrics) WitnessPublished(witness string) { m.witnessPub.WithLabelValues(witness).Inc() }

// timedStore times every Apply and counts grants that became active.
type timedStore struct {
	*sqlstore.Store // every other method (Seen, Search, …) passes through
	m               *metrics
	log             *slog.Logger
}

func (t *timedStore) Apply(ctx context.Context, c *grants.Change) error {
	sw := grants.StartStopwatch() // elapsed process time for a latency metric, not domain time
	err := t.Store.Apply(ctx, c)
	t.m.appendLat.Observe(sw.Elapsed().Seconds())
	if err != nil && !errors.Is(err, grants.ErrConflict) && !errors.Is(err, grants.ErrPendingLimit) && ctx.Err() == nil {
		// A conflict or a full pending cap is an answer, not a failure to write.
		t.m.auditWriteFail.Inc()
		if t.log != nil {
			var actions []string
			for _, e := range c.Events {
				actions = append(actions, string(e.Action))
			}
			t.log.ErrorContext(ctx, "audit write failed; the action was not done", "actions", strings.Join(actions, ","), "error", err)
		}
	}
	if err == nil {
		for _, e := range c.Events {
			if e.Action == "grant.issued" {
				t.m.issued.WithLabelValues(providerOf(c, e.GrantID)).Inc()
			}
		}
	}
	return err
}

func providerOf(c *grants.Change, id string) string {
	for _, g := range c.Grants {
		if g.Grant.ID == id {
			return g.Grant.Provider
		}
	}
	return ""
}

// stateCollector reports grants by state at scrape time.
type stateCollector struct{ st *sqlstore.Store }

var grantsDesc = prometheus.NewDesc("accessbroker_grants", "Grants by state.", []string{"state"}, nil)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- grantsDesc }

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := c.st.CountByState(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(grantsDesc, err)
		return
	}
	for _, s := range grants.States {
		ch <- prometheus.MustNewConstMetric(grantsDesc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}
