package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestCommandLineMistakes: every malformed command line exits 2 with a message that says
// what was wrong, before any configuration or database is touched.
func TestCommandLineMistakes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "usage: accessbroker <command>"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"grants"}, "usage: accessbroker grants list|issue|revoke"},
		{[]string{"grants", "delete"}, `unknown sub-command "delete" (want one of list, issue, revoke)`},
		{[]string{"audit"}, "usage: accessbroker audit verify|search|export|keygen"},
		{[]string{"audit", "erase"}, `unknown sub-command "erase"`},
		{[]string{"grants", "list", "--state", "gone"}, `unknown grant state "gone"`},
		{[]string{"grants", "list", "--format", "yaml"}, `--format "yaml": want table or json`},
		{[]string{"grants", "list", "--limit", "-3"}, "--limit -3: want 0 (all) or more"},
		{[]string{"grants", "revoke", "--reason", "x"}, "usage: accessbroker grants revoke GRANT_ID"},
		{[]string{"grants", "revoke", "../etc", "--reason", "x"}, "is not a grant id"},
		{[]string{"grants", "revoke", "g_aaaaaaaaaaaaaaaa"}, "--reason is required"},
		{[]string{"grants", "issue", "--resource", "prod-db"}, "usage: accessbroker grants issue"},
		{[]string{"audit", "keygen"}, "usage: accessbroker audit keygen --out FILE"},
		{[]string{"audit", "search", "--format", "xml"}, `--format "xml" is not supported`},
		{[]string{"audit", "export", "--format", "table"}, `--format "table" is not supported`},
		{[]string{"sessions", "show", "../etc", "--config", "x.yaml"}, "want one session id"},
		{[]string{"sessions", "list", "--limit", "0", "--config", "x.yaml"}, "--limit 0: want 1 or more"},
		{[]string{"sessions", "list", "--grant", "nope", "--config", "x.yaml"}, `--grant "nope" is not a grant id`},
		{[]string{"audit", "clear-suspect", "--config", "x.yaml"}, "--reason is required"},
		{[]string{"healthcheck", "--url", "http://127.0.0.1:1", "--timeout", "-1s"}, "--timeout must be positive"},
		{[]string{"serve"}, "--config FILE is required"},
		{[]string{"serve", "--config", "x.yaml", "extra"}, `unexpected argument "extra"`},
		{[]string{"grants", "list", "extra"}, `unexpected argument "extra"`},
		{[]string{"grants", "revoke", "g_aaaaaaaaaaaaaaaa", "g_bbbbbbbbbbbbbbbb", "--reason", "x"}, `one grant at a time: unexpected argument "g_bbbbbbbbbbbbbbbb"`},
		{[]string{"grants", "list", "--log-level", "loud"}, `"loud" is not a log level: want debug, info, warn or error`},
		{[]string{"report", "--log-level"}, "flag needs an argument: -log-level"},
		{[]string{"audit", "verify", "--format", "yaml"}, `--format "yaml": want text or json`},
		{[]string{"grants", "issue", "--bogus"}, "flag provided but not defined: -bogus"},
		// testdata is not empty: a usage error, found before anything starts.
		{[]string{"demo", "--keep", "testdata"}, "--keep testdata: the directory is not empty"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(context.Background(), tc.args, &out, &errOut); code != exitUsage {
				t.Fatalf("exit %d, want %d\n%s%s", code, exitUsage, out.String(), errOut.String())
			}
			if !strings.Contains(errOut.String(), tc.want) {
				t.Fatalf("stderr %q does not say %q", errOut.String(), tc.want)
			}
		})
	}
}
