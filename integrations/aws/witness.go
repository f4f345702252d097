package awsprov

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// Object Lock retention modes (audit.witnesses[].mode).
const (
	LockCompliance = "COMPLIANCE"
	LockGovernance = "GOVERNANCE"
)

// MinWitnessRetention is the shortest Object Lock retention an S3 witness accepts: a
// checkpoint must outlive the weekly review that reads it by a margin, and a shorter lock
// protects little.
const MinWitnessRetention = 24 * time.Hour

// MaxWitnessRetention is S3's own limit on a retain-until date (100 years).
const MaxWitnessRetention = 100 * 365 * 24 * time.Hour

// maxCheckpointObject bounds one checkpoint object read back (a checkpoint is ~250 bytes).
const maxCheckpointObject = 64 << 10

// witnessReaders is how many GetObject calls Checkpoints runs at once.
const witnessReaders = 8

// S3WitnessConfig configures an S3 witness (audit.witnesses[] with kind s3).
type S3WitnessConfig struct {
	// Bucket is the S3 bucket, created with Object Lock enabled. Required.
	Bucket string
	// Prefix is put before "checkpoints/" in every key; a non-empty prefix without a
	// trailing '/' gets one. It must not start with '/'.
	Prefix string
	// Region is the bucket's region; empty means the aws.Config's region.
	Region string
	// Retention is how long each checkpoint object is locked, from the checkpoint's time.
	// At least MinWitnessRetention. Required for Publish; a reader (audit verify) may leave
	// it zero.
	Retention time.Duration
	// Mode is LockCompliance (default) or LockGovernance.
	Mode string
}

// S3Witness keeps each signed checkpoint as one S3 object under Object Lock, so that not
// even the bucket's owner can remove or replace it before its retention ends (COMPLIANCE
// mode). It implements grants.Witness.
//
//   - Publish PUTs the checkpoint's JSON at <prefix>checkpoints/<seq, 20 digits>-<time>.json
//     (the time is RFC 3339 with milliseconds, ':' replaced by '-') with If-None-Match: *,
//     Object Lock mode and retain-until date (checkpoint time + retention, or now + retention
//     for a checkpoint published after that has passed) and a CRC32 checksum, which S3
//     requires for puts with Object Lock parameters. A key that already holds the same
//     checkpoint is success; one holding something else is an error.
//   - Checkpoints lists <prefix>checkpoints/ (ListObjectsV2, every page) and reads each
//     object, sorted by seq and time.
//
// Requests go through the aws.Config's HTTP client (integrations/httpclient: retries of
// connection errors, 5xx such as 503 SlowDown, 429) and credentials (docs/audit.md lists
// the IAM permissions).
type S3Witness struct {
	client    *s3.Client
	bucket    string
	prefix    string // ends in '/' or is empty
	retention time.Duration
	mode      types.ObjectLockMode
	clock     grants.Clock
	pageSize  int32 // ListObjectsV2 max-keys; 0 lets S3 choose (1000)

	// read caches the checkpoints already read, by key, with the ETag they had: the
	// broker compares witnesses every few minutes, and a year of checkpoints must not cost
	// a GetObject each every time. An object whose ETag changed is read again.
	mu   sync.Mutex
	read map[string]etagged
}

type etagged struct {
	etag string
	c    audit.Checkpoint
}

var _ grants.Witness = (*S3Witness)(nil)

// bucketRE is S3's general purpose bucket naming rule, less the reserved forms
// ValidateBucketName checks apart.
var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

var ipLikeRE = regexp.MustCompile(`^\d+\.\d+\.\d+\.\d+$`)

// ValidateBucketName checks name against S3's rules for general purpose buckets: 3 to 63
// characters of lowercase letters, digits, dots and hyphens, starting and ending with a
// letter or digit, no two adjacent dots, not shaped like an IP address, and none of the
// reserved prefixes (xn--, sthree-, amzn-s3-demo-) and suffixes (-s3alias, --ol-s3, .mrap,
// --x-s3, --table-s3). The error says which rule failed.
func ValidateBucketName(name string) error {
	switch {
	case len(name) < 3 || len(name) > 63:
		return fmt.Errorf("bucket name %q must be 3 to 63 characters long", name)
	case !bucketRE.MatchString(name):
		return fmt.Errorf("bucket name %q may hold only lowercase letters, digits, '.' and '-', and must start and end with a letter or digit", name)
	case strings.Contains(name, ".."):
		return fmt.Errorf("bucket name %q must not contain two adjacent dots", name)
	case ipLikeRE.MatchString(name):
		return fmt.Errorf("bucket name %q must not be formatted as an IP address", name)
	}
	for _, p := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(name, p) {
			return fmt.Errorf("bucket name %q must not start with %q (reserved by S3)", name, p)
		}
	}
	for _, s := range []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"} {
		if strings.HasSuffix(name, s) {
			return fmt.Errorf("bucket name %q must not end with %q (reserved by S3)", name, s)
		}
	}
	return nil
}

// ValidateWitnessPrefix checks a key prefix: no leading '/', at most 512 bytes, no control
// characters, and no "." or ".." path segment.
func ValidateWitnessPrefix(prefix string) error {
	switch {
	case strings.HasPrefix(prefix, "/"):
		return fmt.Errorf("prefix %q must not start with '/' (S3 keys have no leading slash): write %q", prefix, strings.TrimLeft(prefix, "/"))
	case len(prefix) > 512:
		return fmt.Errorf("prefix is %d bytes; at most 512", len(prefix))
	case strings.IndexFunc(prefix, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return fmt.Errorf("prefix %q must not contain control characters", prefix)
	}
	for _, seg := range strings.Split(strings.TrimSuffix(prefix, "/"), "/") {
		if seg == "." || seg == ".." || (seg == "" && prefix != "") {
			return fmt.Errorf("prefix %q must not contain empty, '.' or '..' segments", prefix)
		}
	}
	return nil
}

// NewS3Witness returns the S3 witness of cfg on awsCfg (LoadAWSConfig's result: region,
// endpoint override, credentials, the retrying HTTP client). With aws.endpoint_url set
// (awsCfg.BaseEndpoint), requests are path-style (/<bucket>/<key>), as S3-compatible
// servers and the fakes expect. clock dates retention for checkpoints published late.
func NewS3Witness(cfg S3WitnessConfig, awsCfg aws.Config, clock grants.Clock) (*S3Witness, error) {
	if err := ValidateBucketName(cfg.Bucket); err != nil {
		return nil, fmt.Errorf("s3 witness: %w", err)
	}
	if err := ValidateWitnessPrefix(cfg.Prefix); err != nil {
		return nil, fmt.Errorf("s3 witness: %w", err)
	}
	prefix := cfg.Prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	mode := cmp.Or(cfg.Mode, LockCompliance)
	if mode != LockCompliance && mode != LockGovernance {
		return nil, fmt.Errorf("s3 witness: mode must be %s or %s, not %q", LockCompliance, LockGovernance, cfg.Mode)
	}
	if cfg.Retention != 0 && (cfg.Retention < MinWitnessRetention || cfg.Retention > MaxWitnessRetention) {
		return nil, fmt.Errorf("s3 witness: retention %s must be from %s to %s", audit.FormatDuration(cfg.Retention),
			audit.FormatDuration(MinWitnessRetention), audit.FormatDuration(MaxWitnessRetention))
	}
	if clock == nil {
		return nil, errors.New("s3 witness: a clock is required")
	}
	pathStyle := awsCfg.BaseEndpoint != nil && *awsCfg.BaseEndpoint != ""
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Region != "" {
			o.Region = cfg.Region
		}
		o.UsePathStyle = pathStyle
	})
	return &S3Witness{client: client, bucket: cfg.Bucket, prefix: prefix, retention: cfg.Retention,
		mode: types.ObjectLockMode(mode), clock: clock}, nil
}

// Name is "s3://<bucket>/<prefix>".
func (w *S3Witness) Name() string { return "s3://" + w.bucket + "/" + w.prefix }

// Key is the object key of checkpoint c.
func (w *S3Witness) Key(c audit.Checkpoint) string {
	return fmt.Sprintf("%scheckpoints/%020d-%s.json", w.prefix, c.Seq, strings.ReplaceAll(audit.FormatTime(c.Time), ":", "-"))
}

// RetainUntil is the retain-until date Publish gives c: its time plus the retention, or,
// when that is not in the future (a checkpoint published late), now plus the retention.
func (w *S3Witness) RetainUntil(c audit.Checkpoint) time.Time {
	until := c.Time.Add(w.retention)
	if now := w.clock.Now(); !until.After(now.Add(time.Minute)) {
		until = now.Add(w.retention)
	}
	return until.UTC().Truncate(time.Second)
}

// Publish stores c as a locked object; see S3Witness.
func (w *S3Witness) Publish(ctx context.Context, c audit.Checkpoint) error {
	if w.retention == 0 {
		return fmt.Errorf("%s: no retention configured; this witness is read-only", w.Name())
	}
	body, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("%s: %w", w.Name(), err)
	}
	key := w.Key(c)
	_, err = w.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:                    aws.String(w.bucket),
		Key:                       aws.String(key),
		Body:                      bytes.NewReader(body),
		ContentType:               aws.String("application/json"),
		IfNoneMatch:               aws.String("*"),
		ObjectLockMode:            w.mode,
		ObjectLockRetainUntilDate: aws.Time(w.RetainUntil(c)),
		ChecksumAlgorithm:         types.ChecksumAlgorithmCrc32,
	})
	if err == nil {
		return nil
	}
	if apiCode(err) != "PreconditionFailed" {
		return wrap(fmt.Sprintf("%s: PutObject %s (checkpoint seq %d)", w.Name(), key, c.Seq), err)
	}
	// The key exists: a republish (another replica, a restart) when it holds c.
	held, gerr := w.get(ctx, key)
	if gerr != nil {
		return fmt.Errorf("%s: %s exists but cannot be read back: %w", w.Name(), key, gerr)
	}
	if held.Seq != c.Seq || held.Hash != c.Hash || !held.Time.Equal(c.Time) || !bytes.Equal(held.Signature, c.Signature) || held.KeyID != c.KeyID {
		return fmt.Errorf("%s: %s already holds a different checkpoint (seq %d, hash %s); not overwritten", w.Name(), key, held.Seq, held.Hash)
	}
	return nil
}

// get reads and parses one checkpoint object.
func (w *S3Witness) get(ctx context.Context, key string) (audit.Checkpoint, error) {
	out, err := w.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(w.bucket), Key: aws.String(key)})
	if err != nil {
		return audit.Checkpoint{}, wrap("GetObject "+key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, maxCheckpointObject+1))
	if err != nil {
		return audit.Checkpoint{}, fmt.Errorf("GetObject %s: read: %w", key, err)
	}
	if len(b) > maxCheckpointObject {
		return audit.Checkpoint{}, fmt.Errorf("object %s is larger than %d bytes: not a checkpoint", key, maxCheckpointObject)
	}
	var c audit.Checkpoint
	if err := json.Unmarshal(b, &c); err != nil {
		return audit.Checkpoint{}, fmt.Errorf("object %s is not a checkpoint: %v", key, err)
	}
	return c, nil
}

// Checkpoints lists and reads every checkpoint object, sorted by seq then time. An object
// under <prefix>checkpoints/ that is not a checkpoint is an error naming its key. Objects
// read before are read again only when their ETag changed: every call lists the bucket,
// only new or changed objects cost a GetObject.
func (w *S3Witness) Checkpoints(ctx context.Context) ([]audit.Checkpoint, error) {
	type listed struct{ key, etag string }
	var objs []listed
	in := &s3.ListObjectsV2Input{Bucket: aws.String(w.bucket), Prefix: aws.String(w.prefix + "checkpoints/")}
	if w.pageSize > 0 {
		in.MaxKeys = aws.Int32(w.pageSize)
	}
	pages := s3.NewListObjectsV2Paginator(w.client, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, wrap(w.Name()+": ListObjectsV2", err)
		}
		for _, o := range page.Contents {
			objs = append(objs, listed{aws.ToString(o.Key), aws.ToString(o.ETag)})
		}
	}
	out := make([]audit.Checkpoint, len(objs))
	var todo []int
	w.mu.Lock()
	for i, o := range objs {
		if r, ok := w.read[o.key]; ok && o.etag != "" && r.etag == o.etag {
			out[i] = r.c
		} else {
			todo = append(todo, i)
		}
	}
	w.mu.Unlock()
	errs := make([]error, len(objs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(witnessReaders, len(todo)) {
		wg.Go(func() {
			for i := range next {
				out[i], errs[i] = w.get(ctx, objs[i].key)
			}
		})
	}
	for _, i := range todo {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("%s: %w", w.Name(), err)
		}
	}
	// Remember what this listing holds, and only that: a deleted object is forgotten.
	read := make(map[string]etagged, len(objs))
	for i, o := range objs {
		if o.etag != "" {
			read[o.key] = etagged{o.etag, out[i]}
		}
	}
	w.mu.Lock()
	w.read = read
	w.mu.Unlock()
	slices.SortStableFunc(out, func(a, b audit.Checkpoint) int {
		return cmp.Or(cmp.Compare(a.Seq, b.Seq), a.Time.Compare(b.Time))
	})
	return out, nil
}

// ParseS3WitnessURL splits s3://bucket/prefix into its bucket and prefix, checked as
// NewS3Witness checks them.
func ParseS3WitnessURL(spec string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(spec, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%q is not an s3://bucket/prefix URL", spec)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if strings.ContainsAny(bucket, "?#") || strings.ContainsAny(prefix, "?#") {
		return "", "", fmt.Errorf("%q: an s3:// witness URL takes no query or fragment", spec)
	}
	if err := ValidateBucketName(bucket); err != nil {
		return "", "", err
	}
	if err := ValidateWitnessPrefix(prefix); err != nil {
		return "", "", err
	}
	return bucket, prefix, nil
}
