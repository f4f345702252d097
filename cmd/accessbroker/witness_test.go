package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/fixtures/awsfake"
	"github.com/accessbroker/accessbroker/fixtures/witnessfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/witness"
)

// newWitnessed is newInProcess on testdata/e2e/witness.yaml: a checkpoint after every event,
// published to a file witness in its own directory.
func newWitnessed(t *testing.T) (*inProcess, string) {
	t.Helper()
	p := newInProcess(t)
	p.config = filepath.Join("testdata", "e2e", "witness.yaml")
	file := filepath.Join(t.TempDir(), "witness", "checkpoints.jsonl")
	mkdirAll(t, filepath.Dir(file))
	t.Setenv("AB_WITNESS_FILE", file)
	return p, file
}

// newHTTPWitnessed is newInProcess on testdata/e2e/witness-https.yaml: the witness is
// fixtures/witnessfake, checking its bearer token. It returns the witness URL.
func newHTTPWitnessed(t *testing.T) (*inProcess, string) {
	t.Helper()
	p := newInProcess(t)
	p.config = filepath.Join("testdata", "e2e", "witness-https.yaml")
	fake := witnessfake.New("witness-token-for-e2e")
	t.Cleanup(fake.Close)
	t.Setenv("AB_WITNESS_URL", fake.URL())
	t.Setenv("AB_WITNESS_TOKEN", "witness-token-for-e2e")
	return p, fake.URL()
}

// s3WitnessBucket is the Object Lock bucket of testdata/e2e/witness-s3.yaml.
const s3WitnessBucket = "acme-audit-witness"

// newS3Witnessed is newInProcess on testdata/e2e/witness-s3.yaml: the witness is an Object
// Lock bucket in fixtures/awsfake, which checks SigV4 with the key and secret the SDK's
// default chain finds in the environment (no shared config files, no instance metadata).
// It returns the fake and the witness URL.
func newS3Witnessed(t *testing.T) (*inProcess, *awsfake.Server, string) {
	t.Helper()
	p := newInProcess(t)
	p.config = filepath.Join("testdata", "e2e", "witness-s3.yaml")
	const key, secret = "AKIDE2EWITNESS", "e2e-witness-secret-not-real"
	fake := awsfake.New(awsfake.Options{AccessKeyID: key, SecretAccessKey: secret, Region: "us-east-1"})
	t.Cleanup(fake.Close)
	fake.CreateBucket(s3WitnessBucket, true)
	t.Setenv("AB_AWS_URL", fake.URL())
	useFakeAWSCredentials(t, p.dir, key, secret)
	return p, fake, "s3://" + s3WitnessBucket + "/e2e/"
}

// checkpointAndPublish signs a checkpoint of the current head (unless one covers it) and
// publishes the newest checkpoint to every
// configured witness, as serve does. (Each call is a new process; the checkpointer's
// replica lease would keep all but the first from signing, so it is not taken here.)
func (p *inProcess) checkpointAndPublish() audit.Checkpoint {
	p.t.Helper()
	cfg, ok := loadConfigFlag(p.config, io.Discard)
	if !ok {
		p.t.Fatal("config")
	}
	a, err := newApp(context.Background(), cfg, appOptions{logOut: io.Discard})
	if err != nil {
		p.t.Fatal(err)
	}
	defer a.Close()
	key, err := a.signingKey()
	if err != nil {
		p.t.Fatal(err)
	}
	cpr := grants.NewCheckpointer(a.store, key, a.clock, nil, int64(cfg.Audit.CheckpointEvery), cfg.Audit.CheckpointPeriod)
	if _, err := cpr.MaybeCheckpoint(context.Background()); err != nil {
		p.t.Fatal(err)
	}
	cp, ok, err := a.store.LastCheckpoint(context.Background())
	if err != nil || !ok {
		p.t.Fatalf("last checkpoint: %v, %v", ok, err)
	}
	ws, err := buildWitnesses(context.Background(), cfg, a.clock, awsOptions{})
	if err != nil {
		p.t.Fatal(err)
	}
	for _, w := range ws {
		if err := w.Publish(context.Background(), cp); err != nil {
			p.t.Fatal(err)
		}
	}
	return cp
}

// TestAuditVerifyWitnessCatchesTruncation is the attack of issue #11 part 4 on a real
// database: delete the newest checkpoint and every event after the previous one (triggers
// dropped first, as an attacker with database access would). The database alone still
// verifies; against the file witness it is "behind published checkpoint N".
func TestAuditVerifyWitnessCatchesTruncation(t *testing.T) {
	for _, kind := range []struct {
		name  string
		setup func(*testing.T) (*inProcess, string)
		named string // how verify names the witness
	}{
		{"file", newWitnessed, "file "},
		{"https", newHTTPWitnessed, "http://127.0.0.1"},
		{"s3", func(t *testing.T) (*inProcess, string) {
			p, _, spec := newS3Witnessed(t)
			return p, spec
		}, "s3://" + s3WitnessBucket + "/e2e/"},
	} {
		t.Run(kind.name, func(t *testing.T) {
			p, spec := kind.setup(t)
			witnessCatchesTruncation(t, p, spec, kind.named)
		})
	}
}

func witnessCatchesTruncation(t *testing.T, p *inProcess, spec, named string) {
	t.Helper()
	p.history()
	older := p.checkpointAndPublish()
	p.mustRun("grants", "issue", "--config", p.config, "--resource", "prod-db", "--slack-user", "U0ALICE",
		"--duration", "30m", "--reason", "the grant the attacker hides", "--operator", "mallory")
	newest := p.checkpointAndPublish()
	if newest.Seq <= older.Seq {
		t.Fatalf("newest checkpoint seq %d is not after the older one (%d)", newest.Seq, older.Seq)
	}
	out := p.mustRun("audit", "verify", "--config", p.config, "--witness", spec)
	if !strings.Contains(out, "intact") || !strings.Contains(out, "witnessed checkpoints match") {
		t.Fatalf("untouched log against its witness: %s", out)
	}

	db := rawDB(t, filepath.Join(p.dir, "ab.db"))
	for _, trg := range []string{"audit_events_no_delete", "audit_checkpoints_no_delete"} {
		mustExec(t, db, `DROP TRIGGER `+trg)
	}
	mustExec(t, db, `DELETE FROM audit_checkpoints WHERE seq > ?`, older.Seq)
	mustExec(t, db, `DELETE FROM audit_events WHERE seq > ?`, older.Seq)
	db.Close()

	out = p.mustRun("audit", "verify", "--config", p.config)
	if !strings.Contains(out, "intact") {
		t.Fatalf("without a witness the truncated log should still look intact (that is the hole): %s", out)
	}
	out, errOut, code := p.run("audit", "verify", "--config", p.config, "--witness", spec)
	if code != exitFailure {
		t.Fatalf("verify --witness on the truncated log: exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		fmt.Sprintf("log is behind published checkpoint %d", newest.Seq),
		fmt.Sprintf("events %d..%d", older.Seq+1, newest.Seq),
		named,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("verify said:\n%s\nwant it to say %q", out, want)
		}
	}
}

// TestAuditVerifyWitnessProblems: a witness entry that does not verify, one the database
// lost, and a witness that cannot be read each fail verify with exit 1 and say which.
func TestAuditVerifyWitnessProblems(t *testing.T) {
	p, file := newWitnessed(t)
	p.history()
	cp := p.checkpointAndPublish()
	tests := []struct {
		name   string
		tamper func(t *testing.T, db *sql.DB, witnessFile string)
		want   []string
		code   int
	}{
		{"forged witness entry", func(t *testing.T, _ *sql.DB, w string) {
			forged := cp
			forged.Seq += 5
			appendCheckpoint(t, w, forged)
		}, []string{"bad_witness_signature", "entry 2", "does not verify"}, exitFailure},
		{"checkpoint deleted from the database", func(t *testing.T, db *sql.DB, _ string) {
			mustExec(t, db, `DROP TRIGGER audit_checkpoints_no_delete`)
			mustExec(t, db, `DELETE FROM audit_checkpoints WHERE seq = ? AND time_ms = ?`, cp.Seq, cp.Time.UnixMilli())
		}, []string{fmt.Sprintf("log is behind published checkpoint %d", cp.Seq), "missing from the database"}, exitFailure},
		{"unreadable witness line", func(t *testing.T, _ *sql.DB, w string) {
			appendLine(t, w, `{"seq":"many"}`)
		}, []string{"read witness file", "line 2 is not a checkpoint"}, exitFailure},
	}
	src := filepath.Join(p.dir, "ab.db")
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := filepath.Join(p.dir, fmt.Sprintf("w%d.db", i))
			copyDB(t, src, dst)
			w := filepath.Join(t.TempDir(), "checkpoints.jsonl")
			copyFile(t, file, w)
			db := rawDB(t, dst)
			tt.tamper(t, db, w)
			db.Close()
			t.Setenv("AB_DB", dst)
			out, errOut, code := p.run("audit", "verify", "--config", p.config, "--witness", w)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.code, out, errOut)
			}
			for _, s := range tt.want {
				if !strings.Contains(out+errOut, s) {
					t.Errorf("verify said:\n%s%s\nwant %q", out, errOut, s)
				}
			}
		})
	}
}

func mkdirAll(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func appendLine(t *testing.T, path, line string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		t.Fatal(err)
	}
}

func appendCheckpoint(t *testing.T, path string, c audit.Checkpoint) {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	appendLine(t, path, string(b))
}

// waitForWitness waits until the file witness holds a checkpoint at seq or later, as the
// running server publishes it (a safety deadline for a goroutine's effect, not a timing
// assertion).
func waitForWitness(t *testing.T, file string, seq int64) {
	t.Helper()
	w, err := witness.NewFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for range 4000 {
		cps, _ := w.Checkpoints(context.Background())
		if len(cps) > 0 && cps[len(cps)-1].Seq >= seq {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no checkpoint at seq >= %d reached the witness %s", seq, file)
}

// TestServePublishesCheckpointsToTheWitness runs serve with a file witness: the checkpoint
// it signs at start reaches the witness, a bad witness is counted in /metrics, and verify
// --witness on the result is intact.
func TestServePublishesCheckpointsToTheWitness(t *testing.T) {
	p, file := newWitnessed(t)
	p.history()
	base, _ := startServer(t, p)
	waitForWitness(t, file, 8)
	// The counter moves just after the witness has the line: wait for it too.
	waitForMetric(t, base, fmt.Sprintf(`accessbroker_witness_published_total{witness="file %s"}`, file))
	out := p.mustRun("audit", "verify", "--config", p.config, "--witness", file)
	if !strings.Contains(out, "intact") || !strings.Contains(out, "witnessed checkpoints match") {
		t.Fatalf("verify --witness after serve: %s", out)
	}
}

// TestServePublishesCheckpointsToTheS3Witness runs serve with an s3 witness: the
// checkpoints it signs reach the Object Lock bucket as locked objects (COMPLIANCE, until the
// checkpoint's time + retention), and verify --witness s3://… on the result is intact.
func TestServePublishesCheckpointsToTheS3Witness(t *testing.T) {
	p, fake, spec := newS3Witnessed(t)
	p.history()
	base, _ := startServer(t, p)
	waitForMetric(t, base, fmt.Sprintf(`accessbroker_witness_published_total{witness="%s"}`, spec))
	keys := fake.Keys(s3WitnessBucket)
	if len(keys) == 0 {
		t.Fatal("no object in the witness bucket")
	}
	for _, k := range keys {
		o, _ := fake.Object(s3WitnessBucket, k)
		var c audit.Checkpoint
		if err := json.Unmarshal(o.Body, &c); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if !strings.HasPrefix(k, fmt.Sprintf("e2e/checkpoints/%020d-", c.Seq)) || o.LockMode != "COMPLIANCE" || !o.RetainUntil.Equal(c.Time.Add(2160*time.Hour).Truncate(time.Second)) {
			t.Errorf("%s: seq %d locked %s until %s", k, c.Seq, o.LockMode, o.RetainUntil)
		}
	}
	out := p.mustRun("audit", "verify", "--config", p.config, "--witness", spec)
	if !strings.Contains(out, "intact") || !strings.Contains(out, "witnessed checkpoints match") || !strings.Contains(out, "witness "+spec+": ") {
		t.Fatalf("verify --witness after serve: %s", out)
	}
}

// TestAuditVerifyS3WitnessProblems: a malformed s3:// URL is a usage error naming the
// rule; a bucket the endpoint does not have fails verify with S3's answer.
func TestAuditVerifyS3WitnessProblems(t *testing.T) {
	p, _, _ := newS3Witnessed(t)
	p.history()
	for _, tt := range []struct {
		spec string
		code int
		want string
	}{
		{"s3://Acme_Audit/e2e/", exitUsage, `bucket name "Acme_Audit" may hold only lowercase letters`},
		{"s3://acme-audit-witness//e2e", exitUsage, "must not start with '/'"},
		{"s3://no-such-witness-bucket/e2e/", exitFailure, "NoSuchBucket"},
	} {
		t.Run(tt.spec, func(t *testing.T) {
			out, errOut, code := p.run("audit", "verify", "--config", p.config, "--witness", tt.spec)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)\n%s", code, tt.code, errOut, tt.want, out)
			}
		})
	}
}

// TestServeCountsAFailingWitness: a witness whose directory does not exist fails every
// attempt; serve keeps working (health, grants) and counts the failures.
func TestServeCountsAFailingWitness(t *testing.T) {
	p, _ := newWitnessed(t)
	file := filepath.Join(p.dir, "no-such-dir", "checkpoints.jsonl")
	t.Setenv("AB_WITNESS_FILE", file)
	base, logs := startServer(t, p)
	p.mustRun("grants", "issue", "--config", p.config, "--resource", "prod-db", "--slack-user", "U0ALICE", "--reason", "while the witness is down")
	waitForMetric(t, base, fmt.Sprintf(`accessbroker_witness_failures_total{witness="file %s"}`, file))
	if !strings.Contains(logs.String(), "publishing a checkpoint to a witness failed; will retry") {
		t.Errorf("no WARN about the failing witness in the logs:\n%s", logs.String())
	}
}

// TestReportCarriesLatestCheckpoint: `accessbroker report` names the newest checkpoint and
// how many configured witnesses hold it (read from the witnesses themselves).
func TestReportCarriesLatestCheckpoint(t *testing.T) {
	p, _ := newWitnessed(t)
	p.history()
	cfg, _ := loadConfigFlag(p.config, io.Discard)
	a, err := newApp(context.Background(), cfg, appOptions{logOut: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	cp, _, err := a.store.LastCheckpoint(context.Background())
	a.Close()
	if err != nil {
		t.Fatal(err)
	}
	md := p.mustRun("report", "--config", p.config, "--format", "markdown")
	want := fmt.Sprintf("**Latest checkpoint:** #%d `%s` at %s; published to 0 of 1 witnesses.", cp.Seq, cp.Hash, audit.FormatTime(cp.Time))
	if !strings.Contains(md, want) {
		t.Fatalf("report lacks %q:\n%s", want, md)
	}
	p.checkpointAndPublish()
	js := p.mustRun("report", "--config", p.config, "--format", "json")
	if !strings.Contains(js, `"published_to": 1`) || !strings.Contains(js, fmt.Sprintf(`"seq": %d`, cp.Seq)) {
		t.Fatalf("JSON report after publication lacks the published checkpoint:\n%s", js)
	}
}

// waitForMetric waits until /metrics shows want (a safety deadline for a goroutine's effect,
// not a timing assertion).
func waitForMetric(t *testing.T, base, want string) {
	t.Helper()
	for range 4000 {
		_, body := get(t, base+"/metrics")
		for line := range strings.Lines(body) {
			// Counters are exported at 0 from the start: wait for the series to move.
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), want+" "); ok && v != "0" {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("/metrics never showed %s above 0", want)
}
