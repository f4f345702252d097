package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/httpclient"

	awsprov "github.com/accessbroker/accessbroker/integrations/aws"
	ghprov "github.com/accessbroker/accessbroker/integrations/github"
)

// activityMetrics are the collector's Prometheus series: accessbroker_activity_events_total
// and accessbroker_activity_source_up, labelled by source.
type activityMetrics struct {
	events *prometheus.CounterVec
	up     *prometheus.GaugeVec
}

// activityEventsOpts describes accessbroker_activity_events_total (shared by the collector and
// the GitHub webhook).
var activityEventsOpts = prometheus.CounterOpts{Name: "accessbroker_activity_events_total",
	Help: "Upstream activity events recorded on grants' timelines (aws.activity, …), each once."}

func newActivityMetrics(reg *prometheus.Registry, sources []string) *activityMetrics {
	m := &activityMetrics{
		events: prometheus.NewCounterVec(activityEventsOpts, []string{"source"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "accessbroker_activity_source_up",
			Help: "1 when the source's last look-up succeeded, 0 when it failed (throttled, down, refused); grants list shows the error per grant."}, []string{"source"}),
	}
	reg.MustRegister(m.events, m.up)
	for _, s := range sources {
		m.events.WithLabelValues(s)
		m.up.WithLabelValues(s).Set(1) // no look-up yet: not known to be down
	}
	return m
}

// ActivityRecorded implements grants.ActivityMetrics.
func (m *activityMetrics) ActivityRecorded(source string, n int) {
	m.events.WithLabelValues(source).Add(float64(n))
}

// ActivitySourceUp implements grants.ActivityMetrics.
func (m *activityMetrics) ActivitySourceUp(source string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.up.WithLabelValues(source).Set(v)
}

// buildActivity builds the activity collector from the activity section; nil when no source
// is enabled.
func buildActivity(ctx context.Context, a *app) (*grants.ActivityCollector, error) {
	ac := a.cfg.Activity
	var sources []grants.CollectorSource
	if ac.AWS.Enabled {
		// Retries at the HTTP layer would bypass the rate limiter: the source retries
		// through the collector instead.
		client := httpclient.New(httpclient.Options{Logger: a.log, RetryMax: -1, ReturnLastResponse: true, Clock: a.clock})
		cfg, err := awsprov.LoadAWSConfig(ctx, a.cfg.AWS.Region, a.cfg.AWS.EndpointURL, client, a.awsOpts.config...)
		if err != nil {
			return nil, fmt.Errorf("activity.aws: %w", err)
		}
		roles := map[string]string{}
		for _, r := range ac.AWS.AccountRoles {
			roles[r.AccountID] = r.RoleARN
		}
		// aws-identity-center grants are matched by their person's session names, which the
		// resource's own provider resolves (its identity store).
		ic := map[string]awsprov.SSOSessionResolver{}
		for name, p := range a.providers {
			if r, ok := p.(*awsprov.IdentityCenterProvider); ok {
				ic[name] = r
			}
		}
		src := awsprov.NewCloudTrailSource(cfg, a.clock, awsprov.CloudTrailOptions{
			CallsPerSecond: float64(ac.AWS.CallsPerSecond), Lateness: ac.AWS.LookbackAfterEnd, HTTPClient: client, Logger: a.log,
			AccountRoles: roles, IdentityCenter: ic,
		})
		sources = append(sources, grants.CollectorSource{Name: awsprov.SourceCloudTrail, Providers: []string{awsprov.KindSTS, awsprov.KindIdentityCenter},
			Source: src, AfterEnd: ac.AWS.LookbackAfterEnd, Poll: ac.PollInterval})
	}
	if ac.GitHub.AuditLog {
		client := httpclient.New(httpclient.Options{Logger: a.log, ReturnLastResponse: true, Clock: a.clock})
		src, err := ghprov.NewAuditLogSource(a.cfg.GitHub.APIURL, a.cfg.GitHub.Token.Reveal(), client,
			ghprov.AuditLogOptions{Lateness: ac.GitHub.LookbackAfterEnd})
		if err != nil {
			return nil, fmt.Errorf("activity.github: %w", err)
		}
		sources = append(sources, grants.CollectorSource{Name: ghprov.SourceAuditLog, Providers: []string{ghprov.Kind},
			Source: src, AfterEnd: ac.GitHub.LookbackAfterEnd, Poll: ac.PollInterval})
	}
	if len(sources) == 0 {
		return nil, nil
	}
	names := make([]string, len(sources))
	for i, s := range sources {
		names[i] = s.Name
	}
	return grants.NewActivityCollector(a.store, a.store, a.clock, sources, grants.CollectorOptions{
		Instance: a.instance, Metrics: newActivityMetrics(a.metrics.reg, names), Logger: a.log,
	})
}

// runActivity runs the collector until ctx ends; its end with ctx is not an error.
func runActivity(c *grants.ActivityCollector) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := c.Run(ctx); err != nil && ctx.Err() == nil {
			return err
		}
		return nil
	}
}

// activityView is one source's collection state of a grant in `grants list --format json`.
type activityView struct {
	Source    string `json:"source"`
	Events    int    `json:"events"`
	Done      bool   `json:"done"`
	Failures  int    `json:"failures,omitempty"`
	LastError string `json:"last_error,omitempty"`
	LastOK    string `json:"last_ok,omitempty"`
}

func activityViews(curs []grants.ActivityCursor) []activityView {
	var out []activityView
	for _, c := range curs {
		v := activityView{Source: c.Source, Events: c.Events, Done: c.Done, Failures: c.Failures, LastError: c.LastError}
		if !c.LastOK.IsZero() {
			v.LastOK = grants.Timestamp(c.LastOK)
		}
		out = append(out, v)
	}
	return out
}

// activityNote is the table column text of a grant's activity collection: the events recorded
// per source, and a source that is failing with its last error.
func activityNote(curs []grants.ActivityCursor) string {
	var parts []string
	for _, c := range curs {
		switch {
		case c.Failures > 0:
			parts = append(parts, fmt.Sprintf("%s DOWN (%d failures: %s)", c.Source, c.Failures, firstLine(c.LastError, 60)))
		case c.Done && c.LastOK.IsZero() && c.LastError != "":
			parts = append(parts, fmt.Sprintf("%s not collected: %s", c.Source, firstLine(c.LastError, 60)))
		default:
			parts = append(parts, fmt.Sprintf("%s %d", c.Source, c.Events))
		}
	}
	return strings.Join(parts, "; ")
}

// cursorsByGrant reads the activity cursors of the listed grants, by grant id.
func cursorsByGrant(ctx context.Context, st grants.ActivityStore, list []grants.Grant) (map[string][]grants.ActivityCursor, error) {
	ids := make([]string, len(list))
	for i, g := range list {
		ids[i] = g.ID
	}
	curs, err := st.ActivityCursors(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("read activity cursors: %w", err)
	}
	out := map[string][]grants.ActivityCursor{}
	for _, c := range curs {
		out[c.GrantID] = append(out[c.GrantID], c)
	}
	return out, nil
}

// firstOr is s, or def when s is empty.
func firstOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
