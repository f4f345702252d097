package config

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	awsprov "github.com/accessbroker/accessbroker/integrations/aws"
)

// maxSinks bounds audit.sinks: each reads the whole log once and then every new event.
const maxSinks = 8

// Bounds of audit.sinks[] settings.
const (
	maxSinkBatch      = 10000
	maxSinkFlush      = time.Hour
	minSinkMaxBytes   = 1 << 20
	minSinkHMACSecret = 32
)

// sinkDefaults fills each sink's format, batch size and flush interval by kind.
func (c *Config) sinkDefaults() {
	for i := range c.Audit.Sinks {
		sc := &c.Audit.Sinks[i]
		p := fmt.Sprintf("audit.sinks[%d]", i)
		if sc.Format == "" {
			sc.Format = string(audit.EventJSON)
		}
		batch, flush := 500, time.Duration(0)
		switch sc.Kind {
		case SinkHTTPS:
			batch = 100
		case SinkS3:
			batch, flush = 1000, time.Minute
		}
		if !c.has(p + ".batch_size") {
			sc.BatchSize = batch
		}
		if !c.has(p + ".flush_interval") {
			sc.FlushInterval = flush
		}
	}
}

// S3SinkConfig is the integrations/aws form of an s3 sink entry.
func (sc SinkConfig) S3SinkConfig(aws *AWSConfig) awsprov.S3SinkConfig {
	region := sc.Region
	if region == "" && aws != nil {
		region = aws.Region
	}
	return awsprov.S3SinkConfig{Bucket: sc.Bucket, Prefix: sc.Prefix, Region: region, Format: audit.EventFormat(sc.Format)}
}

// validateSinks checks audit.sinks: a known kind and format, that kind's fields and no other
// kind's, bounds on batching, and no two entries writing to the same place.
func (c *Config) validateSinks(v *validator) {
	if n := len(c.Audit.Sinks); n > maxSinks {
		v.add("audit.sinks", "has %d entries; at most %d", n, maxSinks)
	}
	seen := map[string]int{}
	for i, sc := range c.Audit.Sinks {
		p := fmt.Sprintf("audit.sinks[%d]", i)
		fields := map[string]bool{"path": sc.Path != "", "max_bytes": sc.MaxBytes != 0, "url": sc.URL != "",
			"hmac_secret": sc.HMACSecret.IsSet(), "bucket": sc.Bucket != "", "prefix": sc.Prefix != "", "region": sc.Region != ""}
		var allowed []string
		var where string
		switch sc.Kind {
		case SinkFile:
			allowed = []string{"path", "max_bytes"}
			if v.required(p+".path", sc.Path, "the JSON-lines file events are appended to") {
				where = "file:" + filepath.Clean(sc.Path)
			}
			if sc.MaxBytes != 0 && sc.MaxBytes < minSinkMaxBytes {
				v.add(p+".max_bytes", "must be at least %d (1 MiB), not %d; leave it out to never rotate", minSinkMaxBytes, sc.MaxBytes)
			}
		case SinkHTTPS:
			allowed = []string{"url", "hmac_secret"}
			if v.required(p+".url", sc.URL, "the endpoint batches of events are POSTed to") {
				v.checkURL(p+".url", sc.URL)
				where = "url:" + sc.URL
			}
			if !sc.HMACSecret.IsSet() {
				v.add(p+".hmac_secret", "is required: the secret every batch is signed with (HMAC-SHA256), at least %d random characters, e.g. from openssl rand -hex 32", minSinkHMACSecret)
			} else if len(sc.HMACSecret.Reveal()) < minSinkHMACSecret {
				v.add(p+".hmac_secret", "is too short: use at least %d random characters (e.g. openssl rand -hex 32)", minSinkHMACSecret)
			}
		case SinkS3:
			allowed = []string{"bucket", "prefix", "region"}
			if v.required(p+".bucket", sc.Bucket, "the S3 bucket event objects are written to") {
				if err := awsprov.ValidateBucketName(sc.Bucket); err != nil {
					v.add(p+".bucket", "%v", err)
				} else {
					where = "s3:" + sc.Bucket + "/" + strings.TrimSuffix(sc.Prefix, "/")
				}
			}
			if sc.Prefix != "" {
				if err := awsprov.ValidateWitnessPrefix(sc.Prefix); err != nil {
					v.add(p+".prefix", "%v", err)
				}
			}
			if sc.Region != "" {
				v.match(p+".region", sc.Region, awsRegionRE, "an AWS region such as us-east-1")
			} else if c.AWS == nil || c.AWS.Region == "" {
				v.add(p+".region", "is required when aws.region is not set: the bucket's region, e.g. us-east-1")
			}
		case "":
			v.add(p+".kind", "is required: file, https or s3")
			continue
		default:
			v.add(p+".kind", "must be file, https or s3, not %s", v.show(p+".kind", sc.Kind))
			continue
		}
		if _, err := audit.ParseEventFormat(sc.Format); err != nil {
			v.add(p+".format", "must be json or ocsf, not %s", v.show(p+".format", sc.Format))
		}
		v.intRange(p+".batch_size", sc.BatchSize, 1, maxSinkBatch)
		v.duration(p+".flush_interval", sc.FlushInterval, 0, maxSinkFlush)
		for _, f := range sortedKeys(fields) {
			if fields[f] && !slices.Contains(allowed, f) {
				v.add(p+"."+f, "does not apply to a %s sink (its keys: %s)", sc.Kind, strings.Join(allowed, ", "))
			}
		}
		if where != "" {
			if j, dup := seen[where]; dup {
				v.add(p, "writes to the same place as audit.sinks[%d]; each sink needs its own", j)
			} else {
				seen[where] = i
			}
		}
	}
}
