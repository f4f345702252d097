package awsprov

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/fixtures/awsfake"
)

const witnessBucket = "acme-audit-witness"

// witnessKey signs these tests' checkpoints. Not a secret.
func witnessKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("s3 witness test key (not a secret)"))
	return ed25519.NewKeyFromSeed(seed[:])
}

// testCheckpoints returns n signed checkpoints at seq 10, 20, … an hour apart, ending at
// the env clock's time.
func testCheckpoints(e *env, n int) []audit.Checkpoint {
	var out []audit.Checkpoint
	start := e.clock.Now().Add(-time.Duration(n-1) * time.Hour)
	for i := range int64(n) {
		h := sha256.Sum256([]byte(strconv.FormatInt(i, 10)))
		out = append(out, audit.SignCheckpoint(witnessKey(), (i+1)*10, audit.Hash(h), start.Add(time.Duration(i)*time.Hour)))
	}
	return out
}

// newWitnessEnv is a fake AWS with an Object Lock bucket and a witness on it.
func newWitnessEnv(t *testing.T, cfg S3WitnessConfig) (*env, *S3Witness) {
	t.Helper()
	e := newEnv(t, awsfake.Options{})
	e.fake.CreateBucket(witnessBucket, true)
	if cfg.Bucket == "" {
		cfg.Bucket = witnessBucket
	}
	if cfg.Retention == 0 {
		cfg.Retention = 90 * 24 * time.Hour
	}
	w, err := NewS3Witness(cfg, e.cfg, e.clock)
	if err != nil {
		t.Fatal(err)
	}
	return e, w
}

func mustPublish(t *testing.T, w *S3Witness, cps ...audit.Checkpoint) {
	t.Helper()
	for _, c := range cps {
		if err := w.Publish(t.Context(), c); err != nil {
			t.Fatalf("Publish seq %d: %v", c.Seq, err)
		}
	}
}

func mustCheckpoints(t *testing.T, w *S3Witness) []audit.Checkpoint {
	t.Helper()
	got, err := w.Checkpoints(t.Context())
	if err != nil {
		t.Fatalf("Checkpoints: %v", err)
	}
	return got
}

// rawS3 is a plain S3 client on the fake, signed with the test key: what someone holding
// the bucket's credentials could do directly.
func rawS3(e *env) *s3.Client {
	return s3.NewFromConfig(e.cfg, func(o *s3.Options) { o.UsePathStyle = true })
}

func wantAPICode(t *testing.T, err error, code string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != code {
		t.Fatalf("error = %v, want AWS error code %s", err, code)
	}
}

// TestS3WitnessPublishesLockedCheckpoints: each checkpoint becomes one object at the
// documented key, locked in the configured mode until its time + retention, with the
// checksum S3 requires, and reads back exactly.
func TestS3WitnessPublishesLockedCheckpoints(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, mode, prefix, wantMode, wantPrefix string
	}{
		{"default mode, no prefix", "", "", LockCompliance, ""},
		{"governance, prefix without slash", LockGovernance, "prod/audit", LockGovernance, "prod/audit/"},
		{"compliance, prefix with slash", LockCompliance, "audit/", LockCompliance, "audit/"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			retention := 30 * 24 * time.Hour
			e, w := newWitnessEnv(t, S3WitnessConfig{Prefix: tt.prefix, Mode: tt.mode, Retention: retention})
			cps := testCheckpoints(e, 3)
			mustPublish(t, w, cps...)

			if want := "s3://" + witnessBucket + "/" + tt.wantPrefix; w.Name() != want {
				t.Errorf("Name = %q, want %q", w.Name(), want)
			}
			var wantKeys []string
			for _, c := range cps {
				wantKeys = append(wantKeys, tt.wantPrefix+"checkpoints/"+strings.Repeat("0", 18)+strconv.FormatInt(c.Seq, 10)+"-"+
					strings.ReplaceAll(audit.FormatTime(c.Time), ":", "-")+".json")
			}
			if d := cmp.Diff(wantKeys, e.fake.Keys(witnessBucket)); d != "" {
				t.Errorf("object keys (-want +got):\n%s", d)
			}
			for _, c := range cps {
				o, ok := e.fake.Object(witnessBucket, w.Key(c))
				if !ok {
					t.Fatalf("no object for seq %d", c.Seq)
				}
				if o.LockMode != tt.wantMode || !o.RetainUntil.Equal(c.Time.Add(retention)) {
					t.Errorf("seq %d locked %s until %s, want %s until %s", c.Seq, o.LockMode, o.RetainUntil, tt.wantMode, c.Time.Add(retention))
				}
				if o.Checksums["CRC32"] == "" || o.ContentType != "application/json" {
					t.Errorf("seq %d: checksums %v, content type %q", c.Seq, o.Checksums, o.ContentType)
				}
			}
			if d := cmp.Diff(cps, mustCheckpoints(t, w)); d != "" {
				t.Errorf("Checkpoints (-want +got):\n%s", d)
			}
		})
	}
}

// TestS3WitnessRepublishIsIdempotent: publishing a checkpoint the bucket holds succeeds
// without writing (If-None-Match: * answers 412, the object is read and compared); a
// different checkpoint at the same key is an error and the object is unchanged.
func TestS3WitnessRepublishIsIdempotent(t *testing.T) {
	t.Parallel()
	e, w := newWitnessEnv(t, S3WitnessConfig{})
	c := testCheckpoints(e, 1)[0]
	mustPublish(t, w, c, c)
	puts := e.fake.CallsTo(awsfake.ServiceS3, "PutObject")
	if len(puts) != 2 || puts[0].Status != http.StatusOK || puts[1].ErrorCode != "PreconditionFailed" {
		t.Fatalf("PutObject calls = %+v, want 200 then 412 PreconditionFailed", puts)
	}
	if got := mustCheckpoints(t, w); len(got) != 1 {
		t.Fatalf("%d checkpoints after a republish, want 1", len(got))
	}

	forged := c
	forged.Hash[0] ^= 0xff
	err := w.Publish(t.Context(), forged)
	if err == nil || !strings.Contains(err.Error(), "already holds a different checkpoint") {
		t.Fatalf("Publish of a different checkpoint at the same key = %v", err)
	}
	if d := cmp.Diff([]audit.Checkpoint{c}, mustCheckpoints(t, w)); d != "" {
		t.Errorf("the stored checkpoint changed (-want +got):\n%s", d)
	}
}

// TestS3WitnessListsEveryPage: Checkpoints follows ListObjectsV2's continuation tokens past
// the first page.
func TestS3WitnessListsEveryPage(t *testing.T) {
	t.Parallel()
	e, w := newWitnessEnv(t, S3WitnessConfig{Prefix: "audit"})
	w.pageSize = 2
	cps := testCheckpoints(e, 5)
	mustPublish(t, w, cps...)
	// An object outside the checkpoints/ folder is not listed.
	if _, err := rawS3(e).PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(witnessBucket), Key: aws.String("audit/README"), Body: strings.NewReader("x")}); err != nil {
		t.Fatal(err)
	}
	e.fake.ResetCalls()
	if d := cmp.Diff(cps, mustCheckpoints(t, w)); d != "" {
		t.Errorf("Checkpoints (-want +got):\n%s", d)
	}
	lists := e.fake.CallsTo(awsfake.ServiceS3, "ListObjectsV2")
	if len(lists) != 3 {
		t.Fatalf("%d ListObjectsV2 calls, want 3 pages of at most 2", len(lists))
	}
	for i, c := range lists {
		if c.Params["prefix"] != "audit/checkpoints/" || c.Params["max-keys"] != "2" || (i > 0) != (c.Params["continuation-token"] != nil) {
			t.Errorf("page %d params %v", i+1, c.Params)
		}
	}
	if n := len(e.fake.CallsTo(awsfake.ServiceS3, "GetObject")); n != len(cps) {
		t.Errorf("%d GetObject calls, want %d", n, len(cps))
	}
}

// TestS3WitnessObjectsCannotBeRemoved: with the bucket's own credentials, a published
// checkpoint can be neither overwritten nor deleted before its retention ends; a GOVERNANCE
// lock gives way to anyone allowed to bypass it, a COMPLIANCE lock does not; after the
// retention ends the object can go.
func TestS3WitnessObjectsCannotBeRemoved(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{LockCompliance, LockGovernance} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e, w := newWitnessEnv(t, S3WitnessConfig{Mode: mode, Retention: 48 * time.Hour})
			c := testCheckpoints(e, 1)[0]
			mustPublish(t, w, c)
			raw, key := rawS3(e), aws.String(w.Key(c))
			_, err := raw.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(witnessBucket), Key: key, Body: strings.NewReader(`{"seq":1}`)})
			wantAPICode(t, err, "AccessDenied")
			_, err = raw.DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: aws.String(witnessBucket), Key: key})
			wantAPICode(t, err, "AccessDenied")
			_, err = raw.DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: aws.String(witnessBucket), Key: key, BypassGovernanceRetention: aws.Bool(true)})
			if mode == LockCompliance {
				wantAPICode(t, err, "AccessDenied")
				if d := cmp.Diff([]audit.Checkpoint{c}, mustCheckpoints(t, w)); d != "" {
					t.Fatalf("checkpoint changed (-want +got):\n%s", d)
				}
				e.clock.Advance(48*time.Hour + time.Second)
				if _, err := raw.DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: aws.String(witnessBucket), Key: key}); err != nil {
					t.Fatalf("delete after the retention ended: %v", err)
				}
			} else if err != nil {
				t.Fatalf("GOVERNANCE delete with bypass: %v", err)
			}
			if got := mustCheckpoints(t, w); len(got) != 0 {
				t.Errorf("%d checkpoints left after the delete", len(got))
			}
		})
	}
}

// TestS3WitnessRetriesSlowDown: S3's 503 SlowDown is retried by the shared HTTP client, on
// publish and on read.
func TestS3WitnessRetriesSlowDown(t *testing.T) {
	t.Parallel()
	e, w := newWitnessEnv(t, S3WitnessConfig{})
	e.fake.Fail5xx(awsfake.ServiceS3, "PutObject", http.StatusServiceUnavailable, 2)
	e.fake.Fail5xx(awsfake.ServiceS3, "ListObjectsV2", http.StatusServiceUnavailable, 1)
	e.fake.Fail5xx(awsfake.ServiceS3, "GetObject", http.StatusInternalServerError, 1)
	c := testCheckpoints(e, 1)[0]
	mustPublish(t, w, c)
	var codes []string
	for _, call := range e.fake.CallsTo(awsfake.ServiceS3, "PutObject") {
		codes = append(codes, strconv.Itoa(call.Status)+" "+call.ErrorCode)
	}
	if d := cmp.Diff([]string{"503 SlowDown", "503 SlowDown", "200 "}, codes); d != "" {
		t.Errorf("PutObject attempts (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]audit.Checkpoint{c}, mustCheckpoints(t, w)); d != "" {
		t.Errorf("Checkpoints (-want +got):\n%s", d)
	}
	// An outage longer than the client's retries is an error for the Publisher to retry.
	e.fake.Fail5xx(awsfake.ServiceS3, "PutObject", http.StatusServiceUnavailable, -1)
	err := w.Publish(t.Context(), testCheckpoints(e, 2)[0])
	wantAPICode(t, err, "SlowDown")
}

// TestS3WitnessLateCheckpointKeepsFullRetention: a checkpoint whose time + retention has
// passed (published after a long outage) is locked for the retention from now, which S3
// accepts; a retain-until date in the past would be refused.
func TestS3WitnessLateCheckpointKeepsFullRetention(t *testing.T) {
	t.Parallel()
	e, w := newWitnessEnv(t, S3WitnessConfig{Retention: 24 * time.Hour})
	c := testCheckpoints(e, 1)[0]
	e.clock.Advance(72 * time.Hour)
	mustPublish(t, w, c)
	o, _ := e.fake.Object(witnessBucket, w.Key(c))
	if want := e.clock.Now().Add(24 * time.Hour).Truncate(time.Second); !o.RetainUntil.Equal(want) {
		t.Errorf("retain until %s, want %s", o.RetainUntil, want)
	}
}

// TestS3WitnessRefusesWhatIsNotACheckpoint: an object under checkpoints/ that does not
// parse makes Checkpoints fail naming its key (verify cannot vouch for it).
func TestS3WitnessRefusesWhatIsNotACheckpoint(t *testing.T) {
	t.Parallel()
	e, w := newWitnessEnv(t, S3WitnessConfig{})
	mustPublish(t, w, testCheckpoints(e, 1)...)
	key := "checkpoints/99999999999999999999-junk.json"
	if _, err := rawS3(e).PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(witnessBucket), Key: aws.String(key), Body: strings.NewReader(`{"seq":"many"}`)}); err != nil {
		t.Fatal(err)
	}
	_, err := w.Checkpoints(t.Context())
	if err == nil || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "is not a checkpoint") {
		t.Fatalf("Checkpoints = %v, want an error naming %s", err, key)
	}
}

// TestS3WitnessErrors: a missing bucket, a bucket without Object Lock and a read-only
// witness fail with errors that say so.
func TestS3WitnessErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, awsfake.Options{})
	e.fake.CreateBucket("plain-bucket", false)
	c := testCheckpoints(e, 1)[0]
	for _, tt := range []struct {
		name string
		cfg  S3WitnessConfig
		want string
	}{
		{"no such bucket", S3WitnessConfig{Bucket: "no-such-bucket", Retention: 24 * time.Hour}, "NoSuchBucket"},
		{"bucket without object lock", S3WitnessConfig{Bucket: "plain-bucket", Retention: 24 * time.Hour}, "Bucket is missing Object Lock Configuration"},
		{"read-only", S3WitnessConfig{Bucket: "plain-bucket"}, "no retention configured"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w, err := NewS3Witness(tt.cfg, e.cfg, e.clock)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Publish(t.Context(), c); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Publish = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestNewS3WitnessValidates(t *testing.T) {
	t.Parallel()
	cfg := aws.Config{Region: "us-east-1"}
	for _, tt := range []struct {
		cfg  S3WitnessConfig
		want string
	}{
		{S3WitnessConfig{Bucket: "ab"}, "3 to 63 characters"},
		{S3WitnessConfig{Bucket: "Audit_Bucket"}, "lowercase letters"},
		{S3WitnessConfig{Bucket: "audit..bucket"}, "two adjacent dots"},
		{S3WitnessConfig{Bucket: "192.168.1.10"}, "IP address"},
		{S3WitnessConfig{Bucket: "xn--audit"}, `must not start with "xn--"`},
		{S3WitnessConfig{Bucket: "audit--ol-s3"}, `must not end with "--ol-s3"`},
		{S3WitnessConfig{Bucket: "audit", Prefix: "/audit"}, `must not start with '/'`},
		{S3WitnessConfig{Bucket: "audit", Prefix: "a/../b"}, "'..'"},
		{S3WitnessConfig{Bucket: "audit", Mode: "compliance"}, `not "compliance"`},
		{S3WitnessConfig{Bucket: "audit", Retention: time.Hour}, "retention 1h must be from 24h"},
	} {
		if _, err := NewS3Witness(tt.cfg, cfg, newClock()); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewS3Witness(%+v) = %v, want %q", tt.cfg, err, tt.want)
		}
	}
	for _, spec := range []string{"s3://Bad", "s3://audit//x", "s3://audit/x?versionId=1", "https://audit/x"} {
		if _, _, err := ParseS3WitnessURL(spec); err == nil {
			t.Errorf("ParseS3WitnessURL(%q) accepted", spec)
		}
	}
	if b, p, err := ParseS3WitnessURL("s3://acme-audit/prod/audit/"); err != nil || b != "acme-audit" || p != "prod/audit/" {
		t.Errorf("ParseS3WitnessURL = %q, %q, %v", b, p, err)
	}
}

// TestS3WitnessReadsEachObjectOnce: a read lists the bucket and fetches only the objects it
// has not read before or whose ETag changed; a replaced object is read again and a deleted
// one is gone.
func TestS3WitnessReadsEachObjectOnce(t *testing.T) {
	t.Parallel()
	e, w := newWitnessEnv(t, S3WitnessConfig{Mode: LockGovernance, Retention: 48 * time.Hour})
	cps := testCheckpoints(e, 4)
	mustPublish(t, w, cps[:3]...)
	gets := func() int {
		t.Helper()
		n := len(e.fake.CallsTo(awsfake.ServiceS3, "GetObject"))
		e.fake.ResetCalls()
		return n
	}
	steps := []struct {
		name     string
		change   func()
		want     []audit.Checkpoint
		wantGets int
	}{
		{"first read fetches every object", func() {}, cps[:3], 3},
		{"a second read fetches none", func() {}, cps[:3], 0},
		{"a new checkpoint is the only fetch", func() { mustPublish(t, w, cps[3]) }, cps, 1},
		{"a replaced object is read again", func() {
			// Someone allowed to bypass GOVERNANCE replaces the first object with another
			// checkpoint's body.
			raw, key := rawS3(e), aws.String(w.Key(cps[0]))
			if _, err := raw.DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: aws.String(witnessBucket), Key: key, BypassGovernanceRetention: aws.Bool(true)}); err != nil {
				t.Fatal(err)
			}
			body, _ := json.Marshal(cps[1])
			if _, err := raw.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(witnessBucket), Key: key, Body: bytes.NewReader(body)}); err != nil {
				t.Fatal(err)
			}
		}, []audit.Checkpoint{cps[1], cps[1], cps[2], cps[3]}, 1},
		{"a deleted object is gone", func() {
			if _, err := rawS3(e).DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: aws.String(witnessBucket), Key: aws.String(w.Key(cps[3])), BypassGovernanceRetention: aws.Bool(true)}); err != nil {
				t.Fatal(err)
			}
		}, []audit.Checkpoint{cps[1], cps[1], cps[2]}, 0},
	}
	gets()
	for _, st := range steps {
		st.change()
		gets()
		got := mustCheckpoints(t, w)
		if d := cmp.Diff(st.want, got); d != "" {
			t.Errorf("%s: checkpoints (-want +got):\n%s", st.name, d)
		}
		if n := gets(); n != st.wantGets {
			t.Errorf("%s: %d GetObject calls, want %d", st.name, n, st.wantGets)
		}
	}
}
