package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/config"
	"github.com/accessbroker/accessbroker/grants"
	awsprov "github.com/accessbroker/accessbroker/integrations/aws"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
	"github.com/accessbroker/accessbroker/integrations/witness"
)

// witnessHTTPClient is the client of https witnesses: retries with capped backoff inside one
// Publish; the Publisher retries beyond that, forever.
func witnessHTTPClient() *http.Client {
	return httpclient.New(httpclient.Options{})
}

// buildWitnesses opens the configured audit.witnesses, in order. s3 witnesses use the aws
// section's endpoint and the SDK's credential chain (awsOpts replaces it in the demo and
// tests), with the witness's region or aws.region.
func buildWitnesses(ctx context.Context, cfg *config.Config, clock grants.Clock, awsOpts awsOptions) ([]grants.Witness, error) {
	var out []grants.Witness
	for i, wc := range cfg.Audit.Witnesses {
		var w grants.Witness
		var err error
		switch wc.Kind {
		case config.WitnessFile:
			w, err = witness.NewFile(wc.Path)
		case config.WitnessHTTPS:
			w, err = witness.NewHTTP(witness.HTTPConfig{URL: wc.URL, BearerToken: wc.BearerToken.Reveal(), Client: witnessHTTPClient()})
		case config.WitnessS3:
			w, err = newS3Witness(ctx, cfg, wc.S3WitnessConfig(cfg.AWS), clock, awsOpts)
		default:
			err = fmt.Errorf("kind %q is not supported by this build", wc.Kind)
		}
		if err != nil {
			return nil, fmt.Errorf("audit.witnesses[%d]: %w", i, err)
		}
		out = append(out, w)
	}
	return out, nil
}

// newS3Witness is the S3 witness of wc on an SDK configuration for its region, with
// aws.endpoint_url when set.
func newS3Witness(ctx context.Context, cfg *config.Config, wc awsprov.S3WitnessConfig, clock grants.Clock, awsOpts awsOptions) (*awsprov.S3Witness, error) {
	var endpoint string
	if cfg.AWS != nil {
		endpoint = cfg.AWS.EndpointURL
	}
	ac, err := awsprov.LoadAWSConfig(ctx, wc.Region, endpoint, nil, awsOpts.config...)
	if err != nil {
		return nil, fmt.Errorf("s3 witness s3://%s/%s: %w", wc.Bucket, wc.Prefix, err)
	}
	return awsprov.NewS3Witness(wc, ac, clock)
}

// witnessFlag opens the witness `audit verify --witness` names: an https:// (or loopback
// http://) URL, an s3://bucket/prefix URL, or else a file path. An https witness gets the
// bearer token of the configured audit.witnesses entry with the same URL, if there is one;
// an s3 witness the region of the configured entry with the same bucket and prefix, else
// aws.region, and the aws section's endpoint and the SDK's credential chain.
func witnessFlag(ctx context.Context, cfg *config.Config, spec string, clock grants.Clock) (grants.Witness, error) {
	switch {
	case strings.HasPrefix(spec, "https://"), strings.HasPrefix(spec, "http://"):
		var token string
		for _, wc := range cfg.Audit.Witnesses {
			if wc.Kind == config.WitnessHTTPS && wc.URL == spec {
				token = wc.BearerToken.Reveal()
			}
		}
		w, err := witness.NewHTTP(witness.HTTPConfig{URL: spec, BearerToken: token, Client: witnessHTTPClient()})
		if err != nil {
			return nil, fmt.Errorf("--witness %s: %w", httpclient.RedactQuery(spec), err)
		}
		return w, nil
	case strings.HasPrefix(spec, "s3://"):
		bucket, prefix, err := awsprov.ParseS3WitnessURL(spec)
		if err != nil {
			return nil, fmt.Errorf("--witness %s: %w", spec, err)
		}
		wc := config.WitnessConfig{Kind: config.WitnessS3, Bucket: bucket, Prefix: prefix}.S3WitnessConfig(cfg.AWS)
		for _, c := range cfg.Audit.Witnesses {
			if c.Kind == config.WitnessS3 && c.Bucket == bucket && strings.TrimSuffix(c.Prefix, "/") == strings.TrimSuffix(prefix, "/") {
				wc.Region = c.S3WitnessConfig(cfg.AWS).Region
			}
		}
		w, err := newS3Witness(ctx, cfg, wc, clock, awsOptions{})
		if err != nil {
			return nil, fmt.Errorf("--witness %s: %w", spec, err)
		}
		return w, nil
	}
	return witness.NewFile(spec)
}

// readWitnesses reads every witness's checkpoints for audit.Verify. A witness that returns
// a partial copy (a torn line) is noted on stderr and its readable checkpoints are used; a
// witness that cannot be read is an error: verify cannot vouch for what it did not see.
func readWitnesses(ctx context.Context, ws []grants.Witness, stderr io.Writer) ([]audit.WitnessedCheckpoint, []int, error) {
	var out []audit.WitnessedCheckpoint
	counts := make([]int, len(ws))
	for i, w := range ws {
		cps, err := w.Checkpoints(ctx)
		switch {
		case errors.Is(err, grants.ErrWitnessIncomplete):
			fmt.Fprintf(stderr, "accessbroker audit verify: note: %v\n", err)
		case err != nil:
			return nil, nil, fmt.Errorf("read witness %s: %w", w.Name(), err)
		}
		counts[i] = len(cps)
		for j, c := range cps {
			out = append(out, audit.WitnessedCheckpoint{Witness: w.Name(), Entry: j + 1, Checkpoint: c})
		}
	}
	return out, counts, nil
}

// checkpointInfo implements broker.SummaryCheckpoints: the store's newest checkpoint and how
// many witnesses hold it.
type checkpointInfo struct {
	store interface {
		LastCheckpoint(ctx context.Context) (audit.Checkpoint, bool, error)
	}
	publisher *grants.Publisher
}

var _ broker.SummaryCheckpoints = (*checkpointInfo)(nil)

func (c *checkpointInfo) LatestCheckpoint(ctx context.Context) (audit.ReportCheckpoint, bool, error) {
	cp, ok, err := c.store.LastCheckpoint(ctx)
	if err != nil || !ok {
		return audit.ReportCheckpoint{}, false, err
	}
	held, total := c.publisher.Holding(ctx, cp)
	return audit.ReportCheckpoint{Seq: cp.Seq, Hash: cp.Hash, Time: cp.Time, Witnesses: total, Published: held}, true, nil
}

// alertSwitch lets the witness Publisher, built before the front ends, alert through the
// Slack notifier once it exists.
type alertSwitch struct{ target grants.WitnessAlerter }

func (a *alertSwitch) PostAudit(ctx context.Context, line string) error {
	if a.target == nil {
		return nil
	}
	return a.target.PostAudit(ctx, line)
}

// summaryCheckpoints is a.checkpoints as the summary's port: nil (no checkpoint line) when
// unset, never a typed nil.
func (a *app) summaryCheckpoints() broker.SummaryCheckpoints {
	if a.checkpoints == nil {
		return nil
	}
	return a.checkpoints
}
