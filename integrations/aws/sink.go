package awsprov

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// maxSinkObject bounds an event object read back to compare it (a batch of 10000 events of
// a few KiB each).
const maxSinkObject = 256 << 20

// S3SinkConfig configures an S3 audit sink (audit.sinks[] with kind s3).
type S3SinkConfig struct {
	// Bucket is the S3 bucket. Required.
	Bucket string
	// Prefix is put before "events/" in every key; a non-empty prefix without a trailing
	// '/' gets one. It must not start with '/'.
	Prefix string
	// Region is the bucket's region; empty means the aws.Config's region.
	Region string
	// Format is how each event is written. Default audit.EventJSON.
	Format audit.EventFormat
}

// S3Sink writes each batch of audit events as one S3 object of JSON lines (one event per
// line, each with its seq), at <prefix>events/<first seq>-<last seq>.jsonl (seqs in 20
// digits, so keys sort in seq order; ".ocsf.jsonl" for OCSF). It implements grants.Sink.
//
// Each PutObject carries If-None-Match: * and a CRC32 checksum (so a bucket with a default
// Object Lock retention accepts it). A key that already exists is a batch delivered before
// (a restart before the cursor was saved): when it holds the same bytes that is success,
// otherwise an error, and nothing is overwritten. Objects of different batches may overlap
// after such a restart; consumers deduplicate by seq.
type S3Sink struct {
	client *s3.Client
	bucket string
	prefix string // ends in '/' or is empty
	format audit.EventFormat
}

var _ grants.Sink = (*S3Sink)(nil)

// NewS3Sink returns the S3 sink of cfg on awsCfg (path-style addressing when awsCfg has a
// base endpoint, as for aws.endpoint_url and the fakes).
func NewS3Sink(cfg S3SinkConfig, awsCfg aws.Config) (*S3Sink, error) {
	if err := ValidateBucketName(cfg.Bucket); err != nil {
		return nil, fmt.Errorf("s3 sink: %w", err)
	}
	if err := ValidateWitnessPrefix(cfg.Prefix); err != nil {
		return nil, fmt.Errorf("s3 sink: %w", err)
	}
	prefix := cfg.Prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if cfg.Format == "" {
		cfg.Format = audit.EventJSON
	}
	if _, err := audit.ParseEventFormat(string(cfg.Format)); err != nil {
		return nil, fmt.Errorf("s3 sink: %w", err)
	}
	pathStyle := awsCfg.BaseEndpoint != nil && *awsCfg.BaseEndpoint != ""
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Region != "" {
			o.Region = cfg.Region
		}
		o.UsePathStyle = pathStyle
	})
	return &S3Sink{client: client, bucket: cfg.Bucket, prefix: prefix, format: cfg.Format}, nil
}

// Name is "s3 s3://<bucket>/<prefix>".
func (s *S3Sink) Name() string { return "s3 s3://" + s.bucket + "/" + s.prefix }

// Key is the object key of the batch from seq first to last.
func (s *S3Sink) Key(first, last int64) string {
	ext := ".jsonl"
	if s.format == audit.EventOCSF {
		ext = ".ocsf.jsonl"
	}
	return fmt.Sprintf("%sevents/%020d-%020d%s", s.prefix, first, last, ext)
}

// Deliver implements grants.Sink: one object per batch.
func (s *S3Sink) Deliver(ctx context.Context, events []audit.Event) error {
	var body bytes.Buffer
	for _, e := range events {
		line, err := s.format.Encode(e)
		if err != nil {
			return fmt.Errorf("%s: encode seq %d: %w", s.Name(), e.Seq, err)
		}
		body.Write(line)
		body.WriteByte('\n')
	}
	key := s.Key(events[0].Seq, events[len(events)-1].Seq)
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:            aws.String(s.bucket),
		Key:               aws.String(key),
		Body:              bytes.NewReader(body.Bytes()),
		ContentType:       aws.String("application/x-ndjson"),
		IfNoneMatch:       aws.String("*"),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	})
	if err == nil {
		return nil
	}
	if apiCode(err) != "PreconditionFailed" {
		return wrap(fmt.Sprintf("%s: PutObject %s", s.Name(), key), err)
	}
	out, gerr := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if gerr != nil {
		return fmt.Errorf("%s: %s exists but cannot be read back: %w", s.Name(), key, wrap("GetObject", gerr))
	}
	defer out.Body.Close()
	held, rerr := io.ReadAll(io.LimitReader(out.Body, maxSinkObject+1))
	if rerr != nil {
		return fmt.Errorf("%s: GetObject %s: read: %w", s.Name(), key, rerr)
	}
	if !bytes.Equal(held, body.Bytes()) {
		return fmt.Errorf("%s: %s already holds other content (another broker writes this prefix?); not overwritten", s.Name(), key)
	}
	return nil
}
