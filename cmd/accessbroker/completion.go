package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
)

// subcommands are the second words of the commands that take one, in the order each command
// lists them. TestCompletionMatchesDispatcher checks this against the dispatcher, both ways.
var subcommands = map[string][]string{
	"audit":      {"verify", "search", "export", "keygen", "clear-suspect"},
	"completion": {"bash", "zsh"},
	"config":     {"check"},
	"grants":     {"list", "issue", "revoke"},
}

// The completion command is registered here rather than in main.go's table because its
// scripts list that table: a static entry would be an initialization cycle.
func init() {
	commands["completion"] = command{summary: "shell completion script: completion bash|zsh", run: runCompletion}
}

// fileFlags are the flags whose value is a path, completed with file names.
var fileFlags = []string{"--config", "--out", "--keep"}

// logLevels are the values of the one-shot commands' --log-level (cli.withLogLevel).
var logLevels = []string{"debug", "info", "warn", "error"}

const completionUsage = "usage: accessbroker completion bash|zsh\n" +
	"  bash: source <(accessbroker completion bash)   (or save it in /etc/bash_completion.d/accessbroker)\n" +
	"  zsh:  source <(accessbroker completion zsh)    (or save it as _accessbroker in a directory on $fpath)"

// runCompletion prints the shell completion script: `accessbroker completion bash|zsh`.
func runCompletion(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if slices.ContainsFunc(args, isHelp) {
		fmt.Fprintln(stdout, completionUsage)
		return exitOK
	}
	if len(args) != 1 {
		fmt.Fprintln(stderr, completionUsage)
		return exitUsage
	}
	var script string
	switch args[0] {
	case "bash":
		script = bashCompletion()
	case "zsh":
		script = zshCompletion()
	default:
		fmt.Fprintf(stderr, "accessbroker completion: unknown sub-command %q (want one of %s)\n%s\n",
			args[0], strings.Join(subcommands["completion"], ", "), completionUsage)
		return exitUsage
	}
	if _, err := io.WriteString(stdout, script); err != nil {
		fmt.Fprintf(stderr, "accessbroker completion: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// commandNames are the dispatcher's commands, sorted.
func commandNames() []string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func bashCompletion() string {
	var b strings.Builder
	b.WriteString(`# bash completion for accessbroker: source <(accessbroker completion bash)
_accessbroker() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	COMPREPLY=()
	case "$prev" in
	` + strings.Join(fileFlags, "|") + `)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	--log-level)
		COMPREPLY=($(compgen -W "` + strings.Join(logLevels, " ") + `" -- "$cur"))
		return
		;;
	esac
	if [ "$COMP_CWORD" -eq 1 ]; then
		COMPREPLY=($(compgen -W "` + strings.Join(commandNames(), " ") + `" -- "$cur"))
		return
	fi
	if [ "$COMP_CWORD" -eq 2 ]; then
		case "${COMP_WORDS[1]}" in
`)
	for _, c := range sortedSubcommandKeys() {
		fmt.Fprintf(&b, "\t\t%s) COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n", c, strings.Join(subcommands[c], " "))
	}
	b.WriteString(`		esac
	fi
}
complete -o default -o bashdefault -F _accessbroker accessbroker
`)
	return b.String()
}

func zshCompletion() string {
	var b strings.Builder
	b.WriteString(`#compdef accessbroker
# zsh completion for accessbroker: source <(accessbroker completion zsh),
# or save it as _accessbroker in a directory on $fpath.
_accessbroker() {
	local -a cmds
	cmds=(
`)
	for _, n := range commandNames() {
		fmt.Fprintf(&b, "\t\t%s\n", zshQuote(n+":"+commands[n].summary))
	}
	b.WriteString(`	)
	case ${words[CURRENT-1]} in
	` + strings.Join(fileFlags, "|") + `)
		_files
		return
		;;
	--log-level)
		compadd -- ` + strings.Join(logLevels, " ") + `
		return
		;;
	esac
	if (( CURRENT == 2 )); then
		_describe -t commands 'accessbroker command' cmds
		return
	fi
	if (( CURRENT == 3 )); then
		case ${words[2]} in
`)
	for _, c := range sortedSubcommandKeys() {
		fmt.Fprintf(&b, "\t\t%s) compadd -- %s; return ;;\n", c, strings.Join(subcommands[c], " "))
	}
	b.WriteString(`		esac
	fi
	_files
}
if [[ ${zsh_eval_context[-1]} == loadautoload ]]; then
	_accessbroker "$@"
else
	compdef _accessbroker accessbroker
fi
`)
	return b.String()
}

// zshQuote quotes s as one single-quoted zsh word; a ':' in the command name part would
// need escaping too, and command names have none.
func zshQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func sortedSubcommandKeys() []string {
	keys := make([]string, 0, len(subcommands))
	for k := range subcommands {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
