package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/audit"
)

// commandPaths is every command and sub-command of the dispatcher, as argument lists.
func commandPaths(t *testing.T) [][]string {
	t.Helper()
	var paths [][]string
	for _, name := range commandNames() {
		paths = append(paths, []string{name})
		for _, sub := range subcommands[name] {
			paths = append(paths, []string{name, sub})
		}
	}
	if len(paths) < 15 {
		t.Fatalf("only %d commands and sub-commands: %v", len(paths), paths)
	}
	return paths
}

// TestHelpOnEveryCommand: -h and --help on every command and sub-command, wherever they
// stand, print its usage to stdout, nothing to stderr, and exit 0.
func TestHelpOnEveryCommand(t *testing.T) {
	for _, path := range commandPaths(t) {
		for _, args := range [][]string{
			append(append([]string{}, path...), "--help"),
			append(append([]string{}, path...), "-h"),
			append([]string{"help"}, path...),
		} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				var out, errOut bytes.Buffer
				code := run(context.Background(), args, &out, &errOut)
				if code != exitOK || errOut.Len() > 0 {
					t.Fatalf("exit %d (want 0), stderr %q (want nothing)", code, errOut.String())
				}
				want := "usage: accessbroker " + path[0]
				if path[0] != "completion" && len(path) > 1 { // completion's sub-commands are shells, with one usage
					want += " " + path[1]
				}
				if !strings.HasPrefix(out.String(), want) {
					t.Fatalf("stdout does not start with %q:\n%s", want, out.String())
				}
			})
		}
	}
	// After an argument and between flags: a leaf command reads its whole command line.
	for _, args := range [][]string{
		{"grants", "revoke", "g_aaaaaaaaaaaaaaaa", "--reason", "x", "--help"},
		{"grants", "list", "--state", "active", "-h", "--bogus"},
		{"audit", "export", "--format", "csv", "--help"},
		{"demo", "--interactive", "--help"},
		{"completion", "bash", "--help"},
	} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != exitOK || errOut.Len() > 0 ||
			!strings.HasPrefix(out.String(), "usage: accessbroker "+args[0]) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 0, the usage on stdout, nothing on stderr", args, code, out.String(), errOut.String())
		}
	}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != exitOK || errOut.Len() > 0 ||
			!strings.HasPrefix(out.String(), "usage: accessbroker <command>") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 0, the usage on stdout, nothing on stderr", args, code, out.String(), errOut.String())
		}
	}
}

// TestFlagsAnywhere: parse accepts flags before, between and after positional arguments,
// and takes everything after "--" as positional.
func TestFlagsAnywhere(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		wantPos   []string
		wantFlags string // config,reason
	}{
		{[]string{"ID", "--config", "F", "--reason", "X"}, []string{"ID"}, "F,X"},
		{[]string{"--config", "F", "ID", "--reason", "X"}, []string{"ID"}, "F,X"},
		{[]string{"--config", "F", "--reason", "X", "ID"}, []string{"ID"}, "F,X"},
		{[]string{"A", "--config=F", "B", "-reason", "X", "C"}, []string{"A", "B", "C"}, "F,X"},
		{[]string{"--config", "F", "--", "--reason", "X"}, []string{"--reason", "X"}, "F,"},
		{[]string{"--reason", "--", "ID"}, []string{"ID"}, ",--"},
		{nil, nil, ","},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			c := newCLI("test", "usage: accessbroker test", io.Discard, io.Discard)
			config := c.String("config", "", "")
			reason := c.String("reason", "", "")
			pos, code, ok := c.parse(tc.args)
			if !ok {
				t.Fatalf("parse refused the arguments: exit %d", code)
			}
			if diff := cmp.Diff(tc.wantPos, pos); diff != "" {
				t.Errorf("positional arguments (-want +got):\n%s", diff)
			}
			if got := *config + "," + *reason; got != tc.wantFlags {
				t.Errorf("flags config,reason = %q, want %q", got, tc.wantFlags)
			}
		})
	}
}

// TestRevokeWithFlagsAroundTheID: `grants revoke --config F ID --reason X` revokes.
func TestRevokeWithFlagsAroundTheID(t *testing.T) {
	p := newInProcess(t)
	out := p.mustRun("grants", "issue", "--config", p.config, "--resource", "prod-db", "--slack-user", "U0ALICE",
		"--duration", "30m", "--reason", "flags anywhere", "--operator", "tester")
	id := strings.Fields(out)[1][:len("g_")+16]
	out = p.mustRun("grants", "revoke", "--config", p.config, id, "--reason", "done", "--operator", "tester")
	if want := "grant " + id + ": revoked"; !strings.Contains(out, want) {
		t.Fatalf("grants revoke printed %q, want %q", out, want)
	}
}

// jsonLogLines returns stderr's lines that are JSON objects with a "level" key.
func jsonLogLines(stderr string) []string {
	var lines []string
	for _, l := range strings.Split(stderr, "\n") {
		var rec struct{ Level string }
		if json.Unmarshal([]byte(l), &rec) == nil && rec.Level != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// TestOneShotCommandsLogOnlyWhenAsked: grants issue (here the first command on a new
// database, which applies the migrations), a failing grants revoke and a refused issue print
// no log lines without --log-level: the revoke's outcome and the refusal are the commands'
// own plain messages. With --log-level warn the failing revoke's warnings are JSON lines on
// stderr, and with --log-level error the warnings are left out.
func TestOneShotCommandsLogOnlyWhenAsked(t *testing.T) {
	p := newInProcess(t)
	issue := func(extra ...string) string {
		t.Helper()
		out, errOut, code := p.run(append([]string{"grants", "issue", "--config", p.config, "--resource", "prod-db", "--slack-user", "U0ALICE",
			"--duration", "30m", "--reason", "log level test", "--operator", "tester"}, extra...)...)
		if code != exitOK || errOut != "" {
			t.Fatalf("grants issue %v: exit %d, stderr %q; want 0 and nothing", extra, code, errOut)
		}
		return strings.Fields(out)[1][:len("g_")+16]
	}
	ids := []string{issue(), issue(), issue("--log-level", "error")}

	p.fake.FailRevokes(100, 400)
	revoke := func(id string, extra ...string) string {
		t.Helper()
		out, errOut, code := p.run(append([]string{"grants", "revoke", id, "--config", p.config, "--reason", "done"}, extra...)...)
		if code != exitFailure || !strings.Contains(out, "grant "+id+": revoke_failed") {
			t.Fatalf("grants revoke %v against a failing service: exit %d, stdout %q; want 1 and revoke_failed", extra, code, out)
		}
		return errOut
	}
	if errOut := revoke(ids[0]); len(jsonLogLines(errOut)) > 0 {
		t.Errorf("grants revoke without --log-level printed log lines:\n%s", errOut)
	}
	errOut := revoke(ids[1], "--log-level", "warn")
	lines := jsonLogLines(errOut)
	if len(lines) == 0 || !strings.Contains(errOut, `"level":"WARN"`) || strings.Contains(errOut, `"level":"INFO"`) {
		t.Errorf("grants revoke --log-level warn: want its warnings as JSON lines and nothing below warn:\n%s", errOut)
	}
	if errOut := revoke(ids[2], "--log-level", "error"); strings.Contains(errOut, `"level":"WARN"`) {
		t.Errorf("grants revoke --log-level error printed warnings:\n%s", errOut)
	}

	_, errOut, code := p.run("grants", "issue", "--config", p.config, "--resource", "prod-db", "--slack-user", "U0MALLORY",
		"--reason", "not listed", "--operator", "tester")
	if code != exitUsage || strings.Count(errOut, "\n") != 1 || len(jsonLogLines(errOut)) > 0 ||
		!strings.Contains(errOut, "U0MALLORY is not listed under identities") {
		t.Fatalf("refused grants issue: exit %d, stderr %q; want 2 and one plain line saying why", code, errOut)
	}
}

// TestKeygenWritesThePublicKey: audit keygen writes FILE (0600) and FILE.pub (the public key
// it prints, which audit verify --public-key accepts), and refuses when either exists.
func TestKeygenWritesThePublicKey(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "audit.key")
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"audit", "keygen", "--out", key}, &out, &errOut); code != exitOK {
		t.Fatalf("keygen: exit %d: %s", code, errOut.String())
	}
	priv, err := readSigningKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatalf("keygen wrote no public key next to the private one: %v", err)
	}
	pub, err := audit.ParsePublicKey(pubPEM)
	if err != nil {
		t.Fatalf("%s.pub: %v", key, err)
	}
	if !pub.Equal(audit.PublicKeyOf(priv)) {
		t.Fatal("the .pub file is not the private key's public key")
	}
	if !strings.Contains(out.String(), key+".pub") || !strings.Contains(out.String(), string(pubPEM)) {
		t.Errorf("keygen's output does not name %s.pub and show the key:\n%s", key, out.String())
	}
	for name, mode := range map[string]os.FileMode{key: 0o600, key + ".pub": 0o644} {
		if fi, err := os.Stat(name); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v (%v), want %v", name, fi.Mode().Perm(), err, mode)
		}
	}

	other := filepath.Join(dir, "other.key")
	if err := os.WriteFile(other+".pub", []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"audit", "keygen", "--out", other}, io.Discard, &errOut); code != exitFailure ||
		!strings.Contains(errOut.String(), other+".pub already exists") {
		t.Fatalf("keygen over an existing .pub: exit %d, stderr %q; want 1 saying it exists", code, errOut.String())
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Errorf("keygen wrote %s although it refused: %v", other, err)
	}
}
