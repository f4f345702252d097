package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/fixtures/sinkfake"
)

// sinkLines reads the file sink's lines (nil when the file does not exist yet).
func sinkLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, bytes.Clone(sc.Bytes()))
	}
	return out
}

// TestFileSinkSurvivesSIGKILL is the issue's "must show" for the file sink, on the real
// binary: serve streams every audit event to a JSON-lines file one fsync per event and is
// killed with SIGKILL again and again while it does, with grants issued in between; after
// the last restart the file holds every event of the log exactly once, in seq order, each
// line the log's own export of that event.
func TestFileSinkSurvivesSIGKILL(t *testing.T) {
	e := newE2E(t)
	e.config = filepath.Join("testdata", "e2e", "sinks.yaml")
	sinkPath := filepath.Join(e.dir, "sink", "audit.jsonl")
	mkdirAll(t, filepath.Dir(sinkPath))
	e.env = append(e.env, "AB_SINK="+sinkPath)

	issue := func(n int) {
		t.Helper()
		for i := range n {
			out, code := e.run("grants", "issue", "--config", e.config, "--resource", "prod-db", "--slack-user", "U0ALICE",
				"--duration", "1h", "--reason", "sink crash test "+strconv.Itoa(i), "--operator", "tester")
			if code != 0 {
				t.Fatalf("grants issue exit %d: %s", code, out)
			}
		}
	}
	head := func() int {
		t.Helper()
		out, code := e.run("audit", "export", "--config", e.config)
		if code != 0 {
			t.Fatalf("audit export exit %d: %s", code, out)
		}
		return strings.Count(out, "\n")
	}

	issue(12)
	var logs []*syncBuffer
	killedMidStream := 0
	for round := range 4 {
		serve := e.command("serve", "--config", e.config)
		out := &syncBuffer{}
		logs = append(logs, out)
		serve.Stdout, serve.Stderr = out, out
		if err := serve.Start(); err != nil {
			t.Fatal(err)
		}
		before := len(sinkLines(t, sinkPath))
		// Kill as soon as this process has written something new: with one fsync per
		// event it is usually in the middle of catching up.
		within(t, 60*time.Second, "the sink to grow", func() bool { return len(sinkLines(t, sinkPath)) > before })
		if err := serve.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = serve.Wait()
		if n := len(sinkLines(t, sinkPath)); n < head() {
			killedMidStream++
		}
		t.Logf("round %d: killed with %d of %d events in the file", round, len(sinkLines(t, sinkPath)), head())
		issue(3) // grants go on while the broker is down
	}

	// The last start catches up and stops cleanly.
	serve := e.command("serve", "--config", e.config)
	out := &syncBuffer{}
	logs = append(logs, out)
	serve.Stdout, serve.Stderr = out, out
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	want := head()
	within(t, 60*time.Second, "the sink to catch up", func() bool { return len(sinkLines(t, sinkPath)) >= want })
	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := serve.Wait(); err != nil {
		t.Fatalf("serve did not stop cleanly: %v\n%s", err, out.String())
	}

	exported, code := e.run("audit", "export", "--config", e.config)
	if code != 0 {
		t.Fatalf("audit export exit %d: %s", code, exported)
	}
	events, err := audit.ReadJSONL(strings.NewReader(exported))
	if err != nil {
		t.Fatal(err)
	}
	lines := sinkLines(t, sinkPath)
	if len(lines) != len(events) {
		t.Fatalf("the sink file has %d lines, the log %d events", len(lines), len(events))
	}
	for i, line := range lines {
		seq, _, err := audit.EventJSON.Locate(line)
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if seq != int64(i+1) {
			t.Fatalf("line %d holds seq %d: a gap or a duplicate", i+1, seq)
		}
		wantLine, _ := events[i].MarshalJSON()
		if !bytes.Equal(line, wantLine) {
			t.Fatalf("line %d is\n%s\nthe log's event is\n%s", i+1, line, wantLine)
		}
	}
	t.Logf("%d events, %d of 4 kills landed while the sink was behind", len(events), killedMidStream)
	if out, code := e.run("audit", "verify", "--config", e.config); code != 0 {
		t.Fatalf("audit verify exit %d: %s", code, out)
	}
	for _, l := range logs {
		if strings.Contains(l.String(), e2eToken) {
			t.Fatal("the webhook token leaked into serve's log")
		}
	}
}

// TestAuditExportOCSF: `audit export --format ocsf` writes every event, in seq order, as one
// OCSF event per line: grants as Account Change (3001), seq in metadata.sequence and the
// chain hash in unmapped, matching the JSON export.
func TestAuditExportOCSF(t *testing.T) {
	p := newInProcess(t)
	p.history()
	events, err := audit.ReadJSONL(strings.NewReader(p.mustRun("audit", "export", "--config", p.config)))
	if err != nil {
		t.Fatal(err)
	}
	out := p.mustRun("audit", "export", "--config", p.config, "--format", "ocsf")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(events) || len(events) == 0 {
		t.Fatalf("%d OCSF lines for %d events", len(lines), len(events))
	}
	classes := map[int]int{}
	for i, line := range lines {
		var o audit.OCSFEvent
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if o.Metadata.Sequence != events[i].Seq || o.Unmapped.Hash != events[i].Hash || o.Unmapped.Action != events[i].Action {
			t.Fatalf("line %d: seq %d hash %s action %s; the log has %d %s %s", i+1, o.Metadata.Sequence, o.Unmapped.Hash,
				o.Unmapped.Action, events[i].Seq, events[i].Hash, events[i].Action)
		}
		classes[o.ClassUID]++
	}
	if classes[3001] == 0 {
		t.Fatalf("no Account Change events among %v", classes)
	}
	if _, stderr, code := p.run("audit", "search", "--config", p.config, "--format", "ocsf"); code != exitUsage || !strings.Contains(stderr, "not supported") {
		t.Fatalf("audit search --format ocsf: exit %d, %s", code, stderr)
	}
}

// TestServeStreamsToHTTPSSink: serve, configured with an https sink in OCSF, delivers every
// event recorded (by serve and by the CLI beside it) to the receiver, signed, once each; the
// sink's series are on /metrics and its secret is in no log.
func TestServeStreamsToHTTPSSink(t *testing.T) {
	p := newInProcess(t)
	p.config = filepath.Join("testdata", "e2e", "sinks-https.yaml")
	const secret = "e2e-sink-hmac-secret-0123456789abcdef"
	fake := sinkfake.New(secret, time.Now)
	t.Cleanup(fake.Close)
	t.Setenv("AB_SINK_URL", fake.URL())
	t.Setenv("AB_SINK_SECRET", secret)
	p.history()
	base, logs := startServer(t, p)
	events, err := audit.ReadJSONL(strings.NewReader(p.mustRun("audit", "export", "--config", p.config)))
	if err != nil {
		t.Fatal(err)
	}
	within(t, 60*time.Second, "the receiver to hold every event", func() bool { return len(fake.Received()) >= len(events) })
	for i, seq := range fake.Received() {
		if seq != int64(i+1) {
			t.Fatalf("received %v: not 1..%d in order", fake.Received(), len(events))
		}
	}
	if d := fake.Duplicates(); len(d) != 0 {
		t.Fatalf("received twice: %v", d)
	}
	// The sink counts a batch after the receiver has answered it, so the series may trail
	// what the receiver holds for a moment: wait for them.
	name := `sink="https ` + fake.URL() + `"`
	wants := []string{"accessbroker_sink_delivered_total{" + name + "} " + strconv.Itoa(len(events)),
		"accessbroker_sink_failures_total{" + name + "} 0", "accessbroker_sink_lag_events{" + name + "} 0"}
	var body string
	within(t, 60*time.Second, "the sink's series on /metrics", func() bool {
		_, body = get(t, base+"/metrics")
		for _, want := range wants {
			if !strings.Contains(body, want) {
				return false
			}
		}
		return true
	})
	if strings.Contains(logs.String()+body, secret) {
		t.Fatal("the sink's HMAC secret leaked")
	}
}
