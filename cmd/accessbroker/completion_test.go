package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestCompletionMatchesDispatcher: the sub-commands the completion scripts offer are exactly
// the ones each command's dispatcher names in its usage line, and each one is accepted.
func TestCompletionMatchesDispatcher(t *testing.T) {
	usageRE := regexp.MustCompile(`usage: accessbroker (\S+) (\S+)`)
	for _, name := range sortedSubcommandKeys() {
		t.Run(name, func(t *testing.T) {
			if _, ok := commands[name]; !ok {
				t.Fatalf("subcommands lists %q, which the dispatcher does not know", name)
			}
			var out, errOut bytes.Buffer
			if code := run(context.Background(), []string{name}, &out, &errOut); code != exitUsage {
				t.Fatalf("%s with no sub-command: exit %d, want %d", name, code, exitUsage)
			}
			m := usageRE.FindStringSubmatch(errOut.String())
			if m == nil || m[1] != name {
				t.Fatalf("%s with no sub-command printed no usage line naming its sub-commands:\n%s", name, errOut.String())
			}
			if diff := cmp.Diff(strings.Split(m[2], "|"), subcommands[name]); diff != "" {
				t.Errorf("completion's sub-commands of %s differ from its usage line %q (-dispatcher +completion):\n%s", name, m[0], diff)
			}
			for _, sub := range subcommands[name] {
				errOut.Reset()
				run(context.Background(), []string{name, sub, "--help"}, &out, &errOut)
				if strings.Contains(errOut.String(), "unknown sub-command") {
					t.Errorf("%s %s: the dispatcher does not know it:\n%s", name, sub, errOut.String())
				}
			}
		})
	}
}

// TestCompletionCommand: `completion` prints a script for bash and zsh and refuses anything
// else with its usage.
func TestCompletionCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string // in stdout for exitOK, in stderr otherwise
	}{
		{[]string{"completion", "bash"}, exitOK, "complete -o default -o bashdefault -F _accessbroker accessbroker"},
		{[]string{"completion", "zsh"}, exitOK, "#compdef accessbroker"},
		{[]string{"completion"}, exitUsage, "usage: accessbroker completion bash|zsh"},
		{[]string{"completion", "fish"}, exitUsage, `unknown sub-command "fish" (want one of bash, zsh)`},
		{[]string{"completion", "bash", "zsh"}, exitUsage, "usage: accessbroker completion bash|zsh"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), tc.args, &out, &errOut)
			got := errOut.String()
			if tc.code == exitOK {
				got = out.String()
			}
			if code != tc.code || !strings.Contains(got, tc.want) {
				t.Fatalf("exit %d (want %d); output lacks %q:\nstdout: %s\nstderr: %s", code, tc.code, tc.want, out.String(), errOut.String())
			}
		})
	}
}

func completionScript(t *testing.T, shell string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"completion", shell}, &out, &errOut); code != exitOK {
		t.Fatalf("completion %s: exit %d\n%s", shell, code, errOut.String())
	}
	path := filepath.Join(t.TempDir(), "accessbroker."+shell)
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBashCompletion loads the bash script into a real bash and asks it to complete command
// lines, as bash does on TAB.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed; the bash completion script cannot be checked")
	}
	script := completionScript(t, "bash")
	if out, err := exec.Command(bash, "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "accessbroker.yaml"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	all := commandNames()
	for _, tc := range []struct {
		words []string // the last one is the word being completed
		want  []string
	}{
		{[]string{"accessbroker", ""}, all},
		{[]string{"accessbroker", "gr"}, []string{"grants"}},
		{[]string{"accessbroker", "ver"}, []string{"version"}},
		{[]string{"accessbroker", "audit", ""}, []string{"verify", "search", "export", "keygen", "clear-suspect"}},
		{[]string{"accessbroker", "grants", "re"}, []string{"revoke"}},
		{[]string{"accessbroker", "config", ""}, []string{"check"}},
		{[]string{"accessbroker", "completion", ""}, []string{"bash", "zsh"}},
		{[]string{"accessbroker", "serve", "--config", filepath.Join(dir, "access")}, []string{filepath.Join(dir, "accessbroker.yaml")}},
		{[]string{"accessbroker", "grants", "list", "--log-level", ""}, []string{"debug", "info", "warn", "error"}},
		{[]string{"accessbroker", "report", "--log-level", "w"}, []string{"warn"}},
		{[]string{"accessbroker", "serve", ""}, nil}, // no sub-commands: bash falls back to file names
	} {
		t.Run(strings.Join(tc.words, " "), func(t *testing.T) {
			quoted := make([]string, len(tc.words))
			for i, w := range tc.words {
				quoted[i] = "'" + w + "'"
			}
			prog := `source "$1" || exit 1
complete -p accessbroker >/dev/null || { echo "not registered" >&2; exit 1; }
COMP_WORDS=(` + strings.Join(quoted, " ") + `)
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
_accessbroker
printf '%s\n' "${COMPREPLY[@]}"`
			out, err := exec.Command(bash, "--norc", "--noprofile", "-c", prog, "bash", script).CombinedOutput()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, out)
			}
			got := slices.DeleteFunc(strings.Split(string(out), "\n"), func(s string) bool { return s == "" })
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("completions (-want +got):\n%s", diff)
			}
		})
	}
}

// TestZshCompletion checks the zsh script's syntax and that zsh's completion system loads it.
func TestZshCompletion(t *testing.T) {
	zsh, err := exec.LookPath("zsh")
	if err != nil {
		t.Skip("zsh is not installed; the zsh completion script cannot be checked (bash's is)")
	}
	script := completionScript(t, "zsh")
	if out, err := exec.Command(zsh, "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	prog := `autoload -Uz compinit && compinit -u -d "$2/zcompdump" && source "$1" && print -r -- ${_comps[accessbroker]}`
	out, err := exec.Command(zsh, "-f", "-c", prog, "zsh", script, t.TempDir()).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "_accessbroker" {
		t.Fatalf("zsh did not register _accessbroker for accessbroker (%v):\n%s", err, out)
	}
}
