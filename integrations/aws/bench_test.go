package awsprov

import (
	"strconv"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/fixtures/awsfake"
	"github.com/accessbroker/accessbroker/grants"
)

// BenchmarkSTSIssueRevoke measures one AssumeRole (plus the console link) and one
// per-session revocation through the real SDK against the fake.
func BenchmarkSTSIssueRevoke(b *testing.B) {
	e := newBenchEnv(b)
	role := e.fake.AddRole("oncall-admin", 12*time.Hour)
	p, err := NewSTS(b.Context(), STSConfig{RoleARN: role.ARN}, e.cfg, e.clock, e.logger, WithFederationURL(e.fake.FederationURL()))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		id := grants.NewID("g")
		iss, err := p.Issue(b.Context(), issueReq(alice, id, e.clock.Now().Add(time.Hour)))
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Revoke(b.Context(), grants.RevokeRequest{GrantID: id, Person: alice, Handle: iss.Handle}); err != nil {
			b.Fatal(err)
		}
		if i%100 == 99 {
			e.clock.Advance(2 * time.Hour) // let the policy prune, as real time would
		}
	}
}

// BenchmarkDenyDocAdd measures parsing, adding to and rendering a revocation policy holding
// 150 sessions, the work done under the role lock.
func BenchmarkDenyDocAdd(b *testing.B) {
	d := newDenyDoc()
	for i := range 150 {
		d.add("AROAEXAMPLEROLEID1234:user"+strconv.Itoa(i)+"@example.com-g_abcdefghijklmnop", t0.Add(time.Duration(i)*time.Minute))
	}
	text := d.render()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		doc, err := parseDenyDoc(text)
		if err != nil {
			b.Fatal(err)
		}
		doc.prune(t0)
		doc.add("AROAEXAMPLEROLEID1234:new@example.com-g_zzzzzzzzzzzzzzzz", t0.Add(time.Hour))
		_ = policySize(doc.render())
	}
}

func newBenchEnv(b *testing.B) *env {
	b.Helper()
	var e env
	e.clock = newClock()
	e.fake = awsfake.New(awsfake.Options{Now: e.clock.Now, SecretAccessKey: testSecret, Region: "us-east-1"})
	b.Cleanup(e.fake.Close)
	e.logs = &logBuffer{}
	e.logger = discardLogger()
	cfg, err := LoadAWSConfig(b.Context(), "us-east-1", e.fake.URL(), nil, WithStaticCredentials(testKey, testSecret), WithoutSharedConfigFiles())
	if err != nil {
		b.Fatal(err)
	}
	e.cfg = cfg
	return &e
}

// BenchmarkS3WitnessPublish measures one checkpoint published to an Object Lock bucket
// (PutObject with retention and CRC32, SigV4-checked by the fake).
func BenchmarkS3WitnessPublish(b *testing.B) {
	e := newBenchEnv(b)
	e.fake.CreateBucket(witnessBucket, true)
	w, err := NewS3Witness(S3WitnessConfig{Bucket: witnessBucket, Retention: 90 * 24 * time.Hour}, e.cfg, e.clock)
	if err != nil {
		b.Fatal(err)
	}
	c := testCheckpoints(e, 1)[0]
	for b.Loop() {
		c.Seq++
		if err := w.Publish(b.Context(), c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkS3WitnessRead1000 measures reading back a witness of 1000 checkpoints (one
// ListObjectsV2 page and 1000 GetObject calls, 8 at a time), what audit verify and the
// publisher's start-up reconciliation do.
func BenchmarkS3WitnessRead1000(b *testing.B) {
	e := newBenchEnv(b)
	e.fake.CreateBucket(witnessBucket, true)
	w, err := NewS3Witness(S3WitnessConfig{Bucket: witnessBucket, Retention: 90 * 24 * time.Hour}, e.cfg, e.clock)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range testCheckpoints(e, 1000) {
		if err := w.Publish(b.Context(), c); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		cps, err := w.Checkpoints(b.Context())
		if err != nil || len(cps) != 1000 {
			b.Fatalf("%d checkpoints, %v", len(cps), err)
		}
	}
}
