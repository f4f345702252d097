package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// jsonKeys returns the top-level keys of one JSON object in order, duplicates included
// (encoding/json would keep only the last of a duplicate key).
func jsonKeys(line []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	if _, err := dec.Token(); err != nil { // {
		return nil, err
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// TestLogLinesNameTheProcessOnce: with instance_name set, every line serve logs is JSON with
// each key once, the operator's name under "instance" and the replica id under "replica".
func TestLogLinesNameTheProcessOnce(t *testing.T) {
	e := newE2E(t)
	base, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	e.config = filepath.Join(e.dir, "named.yaml")
	if err := os.WriteFile(e.config, append(base, "instance_name: eu-west-1a\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	serve := e.command("serve", "--config", e.config)
	var out syncBuffer
	serve.Stdout, serve.Stderr = &out, &out
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	within(t, 60*time.Second, "serve to start", func() bool { return strings.Contains(out.String(), `"msg":"started"`) })
	if o, code := e.run("grants", "issue", "--config", e.config, "--resource", "prod-db", "--slack-user", "U0ALICE",
		"--duration", "1h", "--reason", "log keys test", "--operator", "tester"); code != 0 {
		t.Fatalf("grants issue exit %d: %s", code, o)
	}
	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := serve.Wait(); err != nil {
		t.Fatalf("serve did not stop cleanly: %v\n%s", err, out.String())
	}

	replicaRE := regexp.MustCompile(`^i_[a-z0-9]+$`)
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		line := sc.Bytes()
		lines++
		keys, err := jsonKeys(line)
		if err != nil {
			t.Fatalf("log line is not a JSON object (%v): %s", err, line)
		}
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] {
				t.Errorf("key %q appears twice: %s", k, line)
			}
			seen[k] = true
		}
		var rec struct{ Instance, Replica string }
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Instance != "eu-west-1a" || !replicaRE.MatchString(rec.Replica) {
			t.Errorf("line names instance %q, replica %q; want eu-west-1a and i_…: %s", rec.Instance, rec.Replica, line)
		}
	}
	if lines < 3 {
		t.Fatalf("serve logged %d lines; want its start, its work and its stop:\n%s", lines, out.String())
	}
}
