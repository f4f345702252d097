package slack

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// CommandKind names what a /access command asks for.
type CommandKind string

// The /access sub-commands.
const (
	CmdRequest    CommandKind = "request"     // /access <resource> <duration> <reason…>
	CmdBreakGlass CommandKind = "break-glass" // /access break-glass <resource> <duration> <reason…>
	CmdList       CommandKind = "list"        // /access list
	CmdRevoke     CommandKind = "revoke"      // /access revoke <grant-id>
	CmdExtend     CommandKind = "extend"      // /access extend <grant-id> <duration> <reason…>
	CmdDone       CommandKind = "done"        // /access done <grant-id>
	CmdResources  CommandKind = "resources"   // /access resources
	CmdHelp       CommandKind = "help"        // /access help (also an empty command)
)

// Command is a parsed /access command. Only the fields its Kind uses are set.
type Command struct {
	Kind     CommandKind
	Resource string
	Duration time.Duration
	Reason   string
	GrantID  string
}

// Grammar limits. The zero value takes the defaults.
type Grammar struct {
	// MinReason is the fewest characters a reason may have (default 8).
	MinReason int
	// MaxReason is the most characters a reason may have (default 500).
	MaxReason int
}

// Grammar defaults, and the bounds every duration must respect whatever the resource says.
const (
	DefaultMinReason = 8
	DefaultMaxReason = 500
	// MaxAnyDuration is the longest duration the parser accepts at all; anything longer is a
	// typo or an attempt, not a plan.
	MaxAnyDuration = 7 * 24 * time.Hour
	maxResourceLen = 64
)

func (g Grammar) withDefaults() Grammar {
	if g.MinReason <= 0 {
		g.MinReason = DefaultMinReason
	}
	if g.MaxReason <= 0 {
		g.MaxReason = DefaultMaxReason
	}
	if g.MaxReason < g.MinReason {
		g.MaxReason = g.MinReason
	}
	return g
}

// UsageError is a command the grammar refuses. Problem says exactly what was wrong, in plain
// text that may quote the user's input (escape it before showing it in mrkdwn); Kind is the
// sub-command whose usage applies ("" for the general usage).
type UsageError struct {
	Kind    CommandKind
	Problem string
}

// Error returns the problem.
func (e *UsageError) Error() string { return e.Problem }

func usageErr(kind CommandKind, format string, args ...any) error {
	return &UsageError{Kind: kind, Problem: fmt.Sprintf(format, args...)}
}

// usageLines are the usage of each sub-command, without the slash command's name.
var usageLines = []struct {
	kind CommandKind
	line string
	help string
}{
	{CmdRequest, "<resource> <duration> <reason…>", "ask for access, e.g. `prod-db 1h checking replication lag`"},
	{CmdList, "list", "your live grants and pending requests"},
	{CmdResources, "resources", "what you may request, with maximum durations"},
	{CmdExtend, "extend <grant-id> <duration> <reason…>", "give one of your grants more time"},
	{CmdDone, "done <grant-id>", "end your own grant now"},
	{CmdRevoke, "revoke <grant-id>", "end a grant now (yours, or one you may approve)"},
	{CmdBreakGlass, "break-glass <resource> <duration> <reason…>", "emergency access where the resource allows it; everyone is told"},
	{CmdHelp, "help", "this message"},
}

// DurationHelp explains the duration syntax.
const DurationHelp = "Durations look like 30m, 1h, 1h30m or 90m: at least 1 minute, at most the resource's maximum."

// Usage returns the usage text for command (e.g. "/access", already escaped): the line for
// kind first when it is set, then every line. The text is mrkdwn made only of our own words,
// escaped for Slack (so "<resource>" is sent as "&lt;resource&gt;").
func Usage(command string, kind CommandKind) string {
	var b strings.Builder
	if kind != "" && kind != CmdHelp {
		for _, u := range usageLines {
			if u.kind == kind {
				fmt.Fprintf(&b, "Usage: `%s %s`\n\n", command, Escape(u.line))
			}
		}
	}
	b.WriteString("Commands:\n")
	for _, u := range usageLines {
		fmt.Fprintf(&b, "• `%s %s` — %s\n", command, Escape(u.line), u.help)
	}
	b.WriteString(DurationHelp)
	return b.String()
}

// ParseCommand parses the text of a /access command (what Slack sends as "text": everything
// after the command name). It checks the syntax and the bounds that do not depend on
// configuration; the resource's own maximum is checked by the broker. An empty text is help.
// Errors are *UsageError.
func ParseCommand(text string, g Grammar) (Command, error) {
	g = g.withDefaults()
	if !utf8.ValidString(text) {
		return Command{}, usageErr("", "the command is not valid UTF-8 text")
	}
	toks := tokens(text)
	if len(toks) == 0 {
		return Command{Kind: CmdHelp}, nil
	}
	head := strings.ToLower(toks[0].s)
	switch CommandKind(head) {
	case CmdHelp:
		return Command{Kind: CmdHelp}, nil
	case CmdList, CmdResources:
		if len(toks) > 1 {
			return Command{}, usageErr(CommandKind(head), "%s takes no arguments, but got %q", head, strings.TrimSpace(text[toks[1].at:]))
		}
		return Command{Kind: CommandKind(head)}, nil
	case CmdRevoke, CmdDone:
		kind := CommandKind(head)
		if len(toks) < 2 {
			return Command{}, usageErr(kind, "%s needs the id of a grant (see `list`)", head)
		}
		if len(toks) > 2 {
			return Command{}, usageErr(kind, "%s takes exactly one grant id, but got %q", head, strings.TrimSpace(text[toks[1].at:]))
		}
		id, err := parseGrantID(kind, toks[1].s)
		if err != nil {
			return Command{}, err
		}
		return Command{Kind: kind, GrantID: id}, nil
	case CmdExtend:
		if len(toks) < 2 {
			return Command{}, usageErr(CmdExtend, "extend needs the id of a grant, a duration and a reason")
		}
		id, err := parseGrantID(CmdExtend, toks[1].s)
		if err != nil {
			return Command{}, err
		}
		d, reason, err := durationAndReason(CmdExtend, text, toks[2:], "by how long to extend", g)
		if err != nil {
			return Command{}, err
		}
		return Command{Kind: CmdExtend, GrantID: id, Duration: d, Reason: reason}, nil
	case CmdBreakGlass:
		if len(toks) < 2 {
			return Command{}, usageErr(CmdBreakGlass, "break-glass needs a resource, a duration and a reason")
		}
		return parseRequest(CmdBreakGlass, text, toks[1:], g)
	}
	return parseRequest(CmdRequest, text, toks, g)
}

func parseRequest(kind CommandKind, text string, toks []token, g Grammar) (Command, error) {
	res := toks[0].s
	if err := checkResourceName(kind, res); err != nil {
		return Command{}, err
	}
	d, reason, err := durationAndReason(kind, text, toks[1:], "for how long (after "+res+")", g)
	if err != nil {
		return Command{}, err
	}
	return Command{Kind: kind, Resource: res, Duration: d, Reason: reason}, nil
}

func durationAndReason(kind CommandKind, text string, toks []token, what string, g Grammar) (time.Duration, string, error) {
	if len(toks) == 0 {
		return 0, "", usageErr(kind, "missing duration: say %s, e.g. 1h", what)
	}
	d, err := ParseDuration(toks[0].s)
	if err != nil {
		return 0, "", &UsageError{Kind: kind, Problem: err.Error()}
	}
	if len(toks) == 1 {
		return 0, "", usageErr(kind, "a reason is required: say why you need it, in at least %d characters", g.MinReason)
	}
	reason := strings.TrimSpace(text[toks[1].at:])
	if err := checkReason(kind, reason, g); err != nil {
		return 0, "", err
	}
	return d, reason, nil
}

func checkReason(kind CommandKind, reason string, g Grammar) error {
	n := utf8.RuneCountInString(reason)
	if n < g.MinReason {
		return usageErr(kind, "the reason %q is too short: write at least %d characters so that reviewers know why", reason, g.MinReason)
	}
	if n > g.MaxReason {
		return usageErr(kind, "the reason is %d characters long; the limit is %d", n, g.MaxReason)
	}
	for _, r := range reason {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return usageErr(kind, "the reason contains a control character (%U); write plain text", r)
		}
	}
	return nil
}

func checkResourceName(kind CommandKind, s string) error {
	if len(s) > maxResourceLen {
		return usageErr(kind, "%q is not a resource name: names are at most %d characters (see `resources`)", truncate(s, 40), maxResourceLen)
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || (i > 0 && (r == '-' || r == '_' || r == '.'))
		if !ok {
			return usageErr(kind, "%q is not a resource name: names use lower-case letters, digits, '-', '_' and '.' (see `resources`)", s)
		}
	}
	return nil
}

func parseGrantID(kind CommandKind, s string) (string, error) {
	if !grants.ValidID("g", s) {
		return "", usageErr(kind, "%q is not a grant id: grant ids look like g_abcdefghijklmnop (see `list`)", truncate(s, 40))
	}
	return s, nil
}

// ParseDuration parses a requested duration: one or more <whole number><unit> parts with the
// units h, m and s, each at most once and largest first ("30m", "1h", "1h30m", "90m"). Zero,
// negative, fractional, unit-less, unknown-unit, sub-minute and absurd (over MaxAnyDuration)
// values are refused with an error that says which and how to write it.
func ParseDuration(s string) (time.Duration, error) {
	orig := s
	s = strings.ToLower(s)
	example := "write it like 30m, 1h or 1h30m"
	if s == "" {
		return 0, fmt.Errorf("missing duration: %s", example)
	}
	if s[0] == '-' {
		return 0, fmt.Errorf("duration %q is negative: %s", orig, example)
	}
	var total time.Duration
	lastRank := 0
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == i {
			return 0, fmt.Errorf("%q is not a duration: %s", truncate(orig, 40), example)
		}
		digits := s[i:j]
		if j < len(s) && (s[j] == '.' || s[j] == ',') {
			return 0, fmt.Errorf("duration %q has a fraction: use whole numbers, e.g. 1h30m instead of 1.5h", truncate(orig, 40))
		}
		k := j
		for k < len(s) && (s[k] < '0' || s[k] > '9') {
			k++
		}
		unit := s[j:k]
		if unit == "" {
			return 0, fmt.Errorf("duration %q has no unit: did you mean %sm (minutes) or %sh (hours)?", truncate(orig, 40), truncate(digits, 12), truncate(digits, 12))
		}
		var per time.Duration
		var rank int
		switch unit {
		case "h":
			per, rank = time.Hour, 1
		case "m":
			per, rank = time.Minute, 2
		case "s":
			per, rank = time.Second, 3
		default:
			return 0, fmt.Errorf("unknown unit %q in duration %q: use h (hours) and m (minutes), e.g. 1h30m", truncate(unit, 12), truncate(orig, 40))
		}
		if rank <= lastRank {
			return 0, fmt.Errorf("duration %q repeats or reorders units: write each unit once, largest first, e.g. 1h30m", truncate(orig, 40))
		}
		lastRank = rank
		if len(strings.TrimLeft(digits, "0")) > 6 {
			return 0, fmt.Errorf("duration %q is absurd: no grant lasts more than %s", truncate(orig, 40), audit.FormatDuration(MaxAnyDuration))
		}
		var n int64
		for _, c := range digits {
			n = n*10 + int64(c-'0')
		}
		total += time.Duration(n) * per // at most 999999h + 999999m + 999999s: no overflow
		i = k
	}
	switch {
	case total == 0:
		return 0, fmt.Errorf("duration %q is zero: ask for at least 1m", truncate(orig, 40))
	case total < grants.MinDuration:
		return 0, fmt.Errorf("duration %q is below the minimum of 1m", truncate(orig, 40))
	case total > MaxAnyDuration:
		return 0, fmt.Errorf("duration %q is absurd: no grant lasts more than %s", truncate(orig, 40), audit.FormatDuration(MaxAnyDuration))
	}
	return total, nil
}

type token struct {
	s  string
	at int // byte offset in the original text
}

// tokens splits on Unicode white space, keeping each token's offset so that the reason can be
// taken verbatim from the original text.
func tokens(text string) []token {
	var out []token
	start := -1
	for i, r := range text {
		if unicode.IsSpace(r) {
			if start >= 0 {
				out = append(out, token{text[start:i], start})
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		out = append(out, token{text[start:], start})
	}
	return out
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// Escape makes user text safe to show in a Slack message: Slack's three control characters
// &, < and > become &amp;, &lt; and &gt;, so "<!channel>", "<@U123>" and "<http://x|y>" are
// shown literally instead of notifying everyone, mentioning someone or spoofing a link.
func Escape(s string) string {
	if !strings.ContainsAny(s, "&<>") {
		return s
	}
	return escaper.Replace(s)
}

var escaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
