package main

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/config"
	"github.com/accessbroker/accessbroker/grants"
	awsprov "github.com/accessbroker/accessbroker/integrations/aws"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
	"github.com/accessbroker/accessbroker/integrations/sink"
)

// buildSinks opens the configured audit.sinks, in order, with their batching. s3 sinks use
// the aws section's endpoint and the SDK's credential chain (awsOpts replaces it in tests),
// with the sink's region or aws.region. https sinks get a client that does not retry: the
// Streamer retries on the injected clock and signs each attempt afresh.
func buildSinks(ctx context.Context, cfg *config.Config, clock grants.Clock, awsOpts awsOptions) ([]grants.StreamSink, error) {
	var out []grants.StreamSink
	for i, sc := range cfg.Audit.Sinks {
		format := audit.EventFormat(sc.Format)
		var s grants.Sink
		var err error
		switch sc.Kind {
		case config.SinkFile:
			s, err = sink.NewFile(sink.FileConfig{Path: sc.Path, Format: format, MaxBytes: int64(sc.MaxBytes)})
		case config.SinkHTTPS:
			s, err = sink.NewHTTP(sink.HTTPConfig{URL: sc.URL, Secret: sc.HMACSecret.Reveal(), Format: format, Clock: clock,
				Client: httpclient.New(httpclient.Options{RetryMax: -1, ReturnLastResponse: true, Clock: clock})})
		case config.SinkS3:
			s, err = newS3Sink(ctx, cfg, sc.S3SinkConfig(cfg.AWS), awsOpts)
		default:
			err = fmt.Errorf("kind %q is not supported by this build", sc.Kind)
		}
		if err != nil {
			return nil, fmt.Errorf("audit.sinks[%d]: %w", i, err)
		}
		out = append(out, grants.StreamSink{Sink: s, BatchSize: sc.BatchSize, FlushInterval: sc.FlushInterval})
	}
	return out, nil
}

// newS3Sink is the S3 sink of sc on an SDK configuration for its region, with
// aws.endpoint_url when set.
func newS3Sink(ctx context.Context, cfg *config.Config, sc awsprov.S3SinkConfig, awsOpts awsOptions) (*awsprov.S3Sink, error) {
	var endpoint string
	if cfg.AWS != nil {
		endpoint = cfg.AWS.EndpointURL
	}
	ac, err := awsprov.LoadAWSConfig(ctx, sc.Region, endpoint, nil, awsOpts.config...)
	if err != nil {
		return nil, fmt.Errorf("s3 sink s3://%s/%s: %w", sc.Bucket, sc.Prefix, err)
	}
	return awsprov.NewS3Sink(sc, ac)
}

// sinkMetrics are the Prometheus series of audit.sinks; it implements grants.SinkMetrics.
type sinkMetrics struct {
	delivered *prometheus.CounterVec
	failures  *prometheus.CounterVec
	lag       *prometheus.GaugeVec
}

var _ grants.SinkMetrics = (*sinkMetrics)(nil)

// newSinkMetrics registers the sink series on reg, each sink's at zero from the start.
func newSinkMetrics(reg prometheus.Registerer, sinks []grants.StreamSink) *sinkMetrics {
	m := &sinkMetrics{
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "accessbroker_sink_delivered_total",
			Help: "Audit events delivered to a sink (an event delivered again after a crash counts again)."}, []string{"sink"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "accessbroker_sink_failures_total",
			Help: "Failed delivery attempts to an audit sink (each is retried with backoff)."}, []string{"sink"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "accessbroker_sink_lag_events",
			Help: "Audit events recorded but not yet delivered to a sink."}, []string{"sink"}),
	}
	reg.MustRegister(m.delivered, m.failures, m.lag)
	for _, s := range sinks {
		n := s.Sink.Name()
		m.delivered.WithLabelValues(n)
		m.failures.WithLabelValues(n)
		m.lag.WithLabelValues(n)
	}
	return m
}

func (m *sinkMetrics) SinkDelivered(s string, n int) { m.delivered.WithLabelValues(s).Add(float64(n)) }
func (m *sinkMetrics) SinkFailed(s string)           { m.failures.WithLabelValues(s).Inc() }
func (m *sinkMetrics) SinkLag(s string, n int64)     { m.lag.WithLabelValues(s).Set(float64(n)) }
