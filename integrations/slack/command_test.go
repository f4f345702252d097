package slack

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	slackfixtures "github.com/accessbroker/accessbroker/fixtures/slack"
)

const gid = "g_abcdefghijklmnop"

func TestParseCommandAccepts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		text string
		want Command
	}{
		{"", Command{Kind: CmdHelp}},
		{"   ", Command{Kind: CmdHelp}},
		{"help", Command{Kind: CmdHelp}},
		{"HELP me", Command{Kind: CmdHelp}},
		{"list", Command{Kind: CmdList}},
		{"resources", Command{Kind: CmdResources}},
		{"prod-db 1h checking replication lag", Command{Kind: CmdRequest, Resource: "prod-db", Duration: time.Hour, Reason: "checking replication lag"}},
		{"prod-db 30m checking replication lag", Command{Kind: CmdRequest, Resource: "prod-db", Duration: 30 * time.Minute, Reason: "checking replication lag"}},
		{"prod-db 1h30m checking replication lag", Command{Kind: CmdRequest, Resource: "prod-db", Duration: 90 * time.Minute, Reason: "checking replication lag"}},
		{"prod-db 90m checking replication lag", Command{Kind: CmdRequest, Resource: "prod-db", Duration: 90 * time.Minute, Reason: "checking replication lag"}},
		{"prod-db 1H  two  spaces kept ", Command{Kind: CmdRequest, Resource: "prod-db", Duration: time.Hour, Reason: "two  spaces kept"}},
		{"prod.db_2 2m INC-42: <!channel> & co", Command{Kind: CmdRequest, Resource: "prod.db_2", Duration: 2 * time.Minute, Reason: "INC-42: <!channel> & co"}},
		{"prod-db\t1h\tfix the thing now", Command{Kind: CmdRequest, Resource: "prod-db", Duration: time.Hour, Reason: "fix the thing now"}},
		{"break-glass prod-db 15m database is on fire", Command{Kind: CmdBreakGlass, Resource: "prod-db", Duration: 15 * time.Minute, Reason: "database is on fire"}},
		{"revoke " + gid, Command{Kind: CmdRevoke, GrantID: gid}},
		{"done " + gid, Command{Kind: CmdDone, GrantID: gid}},
		{"extend " + gid + " 30m still debugging it", Command{Kind: CmdExtend, GrantID: gid, Duration: 30 * time.Minute, Reason: "still debugging it"}},
	}
	for _, tc := range cases {
		t.Run(tc.text, func(t *testing.T) {
			got, err := ParseCommand(tc.text, Grammar{})
			if err != nil {
				t.Fatalf("ParseCommand(%q): %v", tc.text, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("ParseCommand(%q) (-want +got):\n%s", tc.text, diff)
			}
		})
	}
}

func TestParseCommandRejects(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, text string
		kind       CommandKind
		want       string // substring of the problem
	}{
		{"missing duration", "prod-db", CmdRequest, "missing duration"},
		{"missing reason", "prod-db 1h", CmdRequest, "a reason is required"},
		{"short reason", "prod-db 1h fix", CmdRequest, `the reason "fix" is too short: write at least 8 characters`},
		{"zero", "prod-db 0m checking replication", CmdRequest, `duration "0m" is zero`},
		{"zero hours", "prod-db 0h0m checking replication", CmdRequest, "is zero"},
		{"negative", "prod-db -1h checking replication", CmdRequest, `duration "-1h" is negative`},
		{"sub-minute", "prod-db 30s checking replication", CmdRequest, `duration "30s" is below the minimum of 1m`},
		{"unknown unit days", "prod-db 2d checking replication", CmdRequest, `unknown unit "d" in duration "2d"`},
		{"unknown unit words", "prod-db 1hour checking replication", CmdRequest, `unknown unit "hour"`},
		{"no unit", "prod-db 90 checking replication", CmdRequest, `duration "90" has no unit: did you mean 90m`},
		{"fraction", "prod-db 1.5h checking replication", CmdRequest, "has a fraction"},
		{"reordered", "prod-db 30m1h checking replication", CmdRequest, "repeats or reorders units"},
		{"repeated", "prod-db 1h1h checking replication", CmdRequest, "repeats or reorders units"},
		{"absurd", "prod-db 200h checking replication", CmdRequest, "is absurd"},
		{"overflow", "prod-db 99999999999999999999h checking replication", CmdRequest, "is absurd"},
		{"not a duration", "prod-db soon checking replication", CmdRequest, `"soon" is not a duration`},
		{"plus sign", "prod-db +1h checking replication", CmdRequest, `"+1h" is not a duration`},
		{"bad resource", "Prod-DB 1h checking replication", CmdRequest, `"Prod-DB" is not a resource name`},
		{"mention as resource", "<@U123> 1h checking replication", CmdRequest, `"<@U123>" is not a resource name`},
		{"control char in reason", "prod-db 1h checking \x00replication", CmdRequest, "control character"},
		{"reason too long", "prod-db 1h " + strings.Repeat("x", 501), CmdRequest, "the limit is 500"},
		{"list args", "list everything", CmdList, `list takes no arguments, but got "everything"`},
		{"resources args", "resources now", CmdResources, "resources takes no arguments"},
		{"revoke no id", "revoke", CmdRevoke, "revoke needs the id of a grant"},
		{"revoke bad id", "revoke 42", CmdRevoke, `"42" is not a grant id`},
		{"revoke two ids", "revoke " + gid + " " + gid, CmdRevoke, "takes exactly one grant id"},
		{"done no id", "done", CmdDone, "done needs the id of a grant"},
		{"done request id", "done r_abcdefghijklmnop", CmdDone, "is not a grant id"},
		{"extend nothing", "extend", CmdExtend, "extend needs the id of a grant, a duration and a reason"},
		{"extend no duration", "extend " + gid, CmdExtend, "missing duration"},
		{"extend no reason", "extend " + gid + " 30m", CmdExtend, "a reason is required"},
		{"extend bad duration", "extend " + gid + " 30x still debugging", CmdExtend, `unknown unit "x"`},
		{"break-glass nothing", "break-glass", CmdBreakGlass, "break-glass needs a resource"},
		{"invalid utf8", "prod-db 1h \xff\xfe reason text", "", "not valid UTF-8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCommand(tc.text, Grammar{})
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("ParseCommand(%q) error = %v, want a *UsageError", tc.text, err)
			}
			if ue.Kind != tc.kind {
				t.Errorf("kind = %q, want %q", ue.Kind, tc.kind)
			}
			if !strings.Contains(ue.Problem, tc.want) {
				t.Errorf("problem = %q, want it to contain %q", ue.Problem, tc.want)
			}
		})
	}
}

func TestGrammarMinReasonConfigurable(t *testing.T) {
	t.Parallel()
	if _, err := ParseCommand("prod-db 1h fix", Grammar{MinReason: 3}); err != nil {
		t.Fatalf("MinReason 3: %v", err)
	}
	if _, err := ParseCommand("prod-db 1h a longer reason", Grammar{MinReason: 40}); err == nil {
		t.Fatal("MinReason 40 accepted a short reason")
	}
}

func TestUsageNamesTheSubcommandFirst(t *testing.T) {
	t.Parallel()
	u := Usage("/access", CmdExtend)
	if !strings.HasPrefix(u, "Usage: `/access extend &lt;grant-id&gt; &lt;duration&gt; &lt;reason…&gt;`") {
		t.Fatalf("usage starts %q", u[:min(len(u), 80)])
	}
	for _, l := range usageLines {
		if !strings.Contains(u, "/access "+Escape(l.line)) {
			t.Errorf("usage misses %q", l.line)
		}
	}
}

func TestEscape(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"plain":                      "plain",
		"<!channel> now":             "&lt;!channel&gt; now",
		"<@U012ABCDEF>":              "&lt;@U012ABCDEF&gt;",
		"<http://evil.example|bank>": "&lt;http://evil.example|bank&gt;",
		"a & b":                      "a &amp; b",
		"&lt;":                       "&amp;lt;",
	}
	for in, want := range cases {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

// fixtureTexts returns the "text" fields of the documented slash-command payloads.
func fixtureTexts(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, name := range []string{"slash-command.txt", "signature-vector-body.txt"} {
		v, err := url.ParseQuery(string(slackfixtures.Read(name)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, v.Get("text"))
	}
	return out
}

// FuzzParseCommand: the parser never panics; what it accepts is within every bound it
// promises, and what it refuses is a UsageError.
func FuzzParseCommand(f *testing.F) {
	for _, s := range fixtureTexts(f) {
		f.Add(s)
	}
	for _, s := range []string{
		"prod-db 1h checking replication lag", "prod-db 1h30m <!channel> please", "extend " + gid + " 30m more time please",
		"revoke " + gid, "done " + gid, "list", "resources", "help", "break-glass prod-db 5m fire fire fire",
		"prod-db 99999999999h reason reason", "prod-db 0s reasonable reason", "prod-db 1h\u00a0nbsp reason here",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ParseCommand(text, Grammar{})
		if err != nil {
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("ParseCommand(%q) returned %T, want *UsageError", text, err)
			}
			return
		}
		switch c.Kind {
		case CmdRequest, CmdBreakGlass, CmdExtend:
			if c.Duration < time.Minute || c.Duration > MaxAnyDuration {
				t.Fatalf("ParseCommand(%q) accepted duration %s", text, c.Duration)
			}
			if n := utf8.RuneCountInString(c.Reason); n < DefaultMinReason || n > DefaultMaxReason {
				t.Fatalf("ParseCommand(%q) accepted a reason of %d runes", text, n)
			}
			if c.Kind != CmdExtend && strings.ContainsAny(c.Resource, "<>&@! ") {
				t.Fatalf("ParseCommand(%q) accepted resource %q", text, c.Resource)
			}
		}
		if strings.ContainsAny(Escape(c.Reason), "<>") {
			t.Fatalf("Escape left a bracket in %q", c.Reason)
		}
	})
}
