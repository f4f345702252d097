package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSmoke builds the real accessbroker, runs abslack against it with small numbers and
// checks the report says what happened: every command answered with an acknowledgement, the
// first round's requests issued, every acknowledged request found (with its event) in the
// store of the killed server, the chain intact. Timings are not asserted.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds accessbroker and runs it")
	}
	bin := filepath.Join(t.TempDir(), "accessbroker")
	if out, err := exec.Command("go", "build", "-o", bin, "../accessbroker").CombinedOutput(); err != nil {
		t.Fatalf("go build accessbroker: %v\n%s", err, out)
	}
	// Both load generators: each must send signed commands and read whole answers.
	for _, client := range []string{clientRaw, clientNetHTTP} {
		t.Run(client, func(t *testing.T) {
			o := options{accessbroker: bin, client: client, concurrent: 10, rounds: 2, settle: 2 * time.Minute, serverLog: filepath.Join(t.TempDir(), "serve.log")}
			var out bytes.Buffer
			if err := run(context.Background(), o, &out); err != nil {
				t.Fatalf("run: %v", err)
			}
			var rep Report
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("report is not JSON: %v\n%s", err, out.String())
			}
			for _, key := range []string{`"warmup_round"`, `"help_round"`, `"ack"`, `"p99_ms"`, `"durable"`, `"server_rss_mib"`, `"server_cpu_s"`} {
				if !strings.Contains(out.String(), key) {
					t.Errorf("report lacks %s", key)
				}
			}
			if rep.Help.N != 10 || rep.Help.OK != 10 || rep.Warmup.OK != 10 {
				t.Errorf("help rounds %+v %+v: want 10 of 10 answered", rep.Warmup, rep.Help)
			}
			if a := rep.Ack; a.N != 20 || a.OK != 20 || a.P50MS <= 0 || a.P99MS < a.P50MS || a.MaxMS < a.P99MS || len(rep.Rounds) != 2 {
				t.Errorf("ack %+v, %d rounds: want 20 acknowledgements in 2 rounds with ordered figures", a, len(rep.Rounds))
			}
			if rep.Issued < 10 {
				t.Errorf("issued = %d, want at least the first round's 10", rep.Issued)
			}
			if d := rep.Durable; d.Acked != 20 || d.Found != 20 || d.WithEvent != 20 || !d.ChainOK {
				t.Errorf("durable %+v: want all 20 acknowledged requests, with their events, in the killed server's store", d)
			}
			if rep.RSS.Ready <= 0 || rep.RSS.End <= 0 {
				t.Errorf("rss %+v: want positive figures", rep.RSS)
			}
			if rep.Setup.Client != client {
				t.Errorf("setup.client = %q, want %q", rep.Setup.Client, client)
			}
		})
	}
}

// TestFlagsRefuseBadInput: each bad flag is refused before anything starts, naming the flag.
func TestFlagsRefuseBadInput(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "accessbroker")
	if err := exec.Command("cp", "/bin/true", bin).Run(); err != nil {
		t.Fatal(err)
	}
	good := options{accessbroker: bin, client: clientRaw, concurrent: 1, rounds: 1, settle: time.Second}
	for _, tc := range []struct {
		name string
		edit func(*options)
		want string
	}{
		{"no binary", func(o *options) { o.accessbroker = "" }, "-accessbroker"},
		{"missing binary", func(o *options) { o.accessbroker = filepath.Join(t.TempDir(), "nope") }, "-accessbroker"},
		{"no concurrency", func(o *options) { o.concurrent = 0 }, "-concurrent"},
		{"absurd concurrency", func(o *options) { o.concurrent = 100000 }, "-concurrent"},
		{"no rounds", func(o *options) { o.rounds = 0 }, "-rounds"},
		{"unknown client", func(o *options) { o.client = "curl" }, "-client"},
		{"no settle", func(o *options) { o.settle = 0 }, "-settle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.edit(&o)
			err := run(context.Background(), o, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run = %v, want an error naming %s", err, tc.want)
			}
		})
	}
	if err := good.validate(); err != nil {
		t.Errorf("valid options refused: %v", err)
	}
}
