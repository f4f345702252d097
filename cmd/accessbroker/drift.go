package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/config"
	"github.com/accessbroker/accessbroker/grants"
)

// driftMetrics implements grants.DriftMetrics on the app's registry.
type driftMetrics struct {
	unmanaged   *prometheus.GaugeVec
	missing     *prometheus.GaugeVec
	checks      *prometheus.CounterVec
	failures    *prometheus.CounterVec
	revocations *prometheus.CounterVec
}

func newDriftMetrics(reg *prometheus.Registry) *driftMetrics {
	m := &driftMetrics{
		unmanaged: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "accessbroker_drift_unmanaged_access",
			Help: "Access the last drift pass found upstream that no live grant gives (drift.found)."}, []string{"resource"}),
		missing: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "accessbroker_drift_missing_access",
			Help: "Live grants whose access the last drift pass found gone upstream (grant.access_missing)."}, []string{"resource"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "accessbroker_drift_checks_total",
			Help: "Drift passes that listed a resource's provider."}, []string{"resource"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "accessbroker_drift_check_failures_total",
			Help: "Drift passes that could not list a resource's provider (nothing concluded for it)."}, []string{"resource"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "accessbroker_drift_revocations_total",
			Help: "Attempts to remove access no live grant gives (drift.action: revoke), by outcome (ok, failed)."}, []string{"resource", "outcome"}),
	}
	reg.MustRegister(m.unmanaged, m.missing, m.checks, m.failures, m.revocations)
	return m
}

// startAtZero makes every series visible before the first pass, so an alert on them has data.
func (m *driftMetrics) startAtZero(resources []string) {
	for _, r := range resources {
		m.unmanaged.WithLabelValues(r)
		m.missing.WithLabelValues(r)
		m.checks.WithLabelValues(r)
		m.failures.WithLabelValues(r)
	}
}

// DriftChecked implements grants.DriftMetrics.
func (m *driftMetrics) DriftChecked(resource string, unmanaged, missing int, err error) {
	if err != nil {
		m.failures.WithLabelValues(resource).Inc()
		return
	}
	m.checks.WithLabelValues(resource).Inc()
	m.unmanaged.WithLabelValues(resource).Set(float64(unmanaged))
	m.missing.WithLabelValues(resource).Set(float64(missing))
}

// DriftRevoked implements grants.DriftMetrics.
func (m *driftMetrics) DriftRevoked(resource string, ok bool) {
	outcome := "ok"
	if !ok {
		outcome = "failed"
	}
	m.revocations.WithLabelValues(resource, outcome).Inc()
}

// newDriftReconciler builds the drift reconciler of serve from the drift section, or nil
// with drift.action: off. Only resources whose provider can list its access take part.
func (a *app) newDriftReconciler(cfg config.DriftConfig) *grants.DriftReconciler {
	if cfg.Action == "off" {
		return nil
	}
	var listed []string
	for name, p := range a.providers {
		if _, ok := p.(grants.AccessLister); ok {
			listed = append(listed, name)
		}
	}
	m := newDriftMetrics(a.metrics.reg)
	m.startAtZero(listed)
	a.driftMetrics = m
	return grants.NewDriftReconciler(a.metrics.timedStore, a.providers, a.clock, a.log, grants.DriftOptions{
		Instance: a.instance, Interval: cfg.Interval, Action: grants.DriftAction(cfg.Action), Lease: a.store,
		Metrics: m, Secrets: a.cfg.SecretValues(), CallTimeout: a.cfg.Revoker.IssueTimeout,
	})
}
