package main

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	ghprov "github.com/accessbroker/accessbroker/integrations/github"
)

// registerGitHubWebhook mounts POST /github/webhook on the main listener's mux when
// activity.github.webhook_secret is set: organisation webhooks as the activity source of
// github-team grants (docs/activity.md).
func registerGitHubWebhook(a *app, mux *http.ServeMux) error {
	gc := a.cfg.Activity.GitHub
	if !gc.WebhookSecret.IsSet() {
		return nil
	}
	m, err := newWebhookMetrics(a)
	if err != nil {
		return err
	}
	hook, err := ghprov.NewWebhook(ghprov.WebhookConfig{
		Secret: gc.WebhookSecret.Reveal(), Store: a.store, Recorder: a.manager, Clock: a.clock,
		AfterEnd: gc.LookbackAfterEnd, Metrics: m, Logger: a.log,
	})
	if err != nil {
		return fmt.Errorf("activity.github.webhook_secret: %w", err)
	}
	mux.Handle("POST "+ghprov.WebhookPath, hook)
	return nil
}

// webhookMetrics counts webhook activity in accessbroker_activity_events_total{source="github-webhook"}.
type webhookMetrics struct{ events *prometheus.CounterVec }

// ActivityRecorded implements ghprov.WebhookMetrics.
func (m webhookMetrics) ActivityRecorded(source string, n int) {
	m.events.WithLabelValues(source).Add(float64(n))
}

// newWebhookMetrics shares the collector's counter when it registered one.
func newWebhookMetrics(a *app) (webhookMetrics, error) {
	c := prometheus.NewCounterVec(activityEventsOpts, []string{"source"})
	if err := a.metrics.reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return webhookMetrics{}, fmt.Errorf("register activity metrics: %w", err)
		}
		existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
		if !ok {
			return webhookMetrics{}, fmt.Errorf("register activity metrics: %w", err)
		}
		c = existing
	}
	c.WithLabelValues(ghprov.SourceWebhook)
	return webhookMetrics{events: c}, nil
}
