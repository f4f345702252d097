package slack

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/accessbroker/accessbroker/audit"
)

// sumMostWrites lists the n grants with the most upstream write activity (AWS calls that
// were not read-only, plus GitHub actions), most first, one line each; "" when no grant has
// any.
func sumMostWrites(rows []audit.GrantRow, n int) string {
	writes := func(g audit.GrantRow) int { return g.Activity.AWSWrites + g.Activity.GitHubActions }
	var top []audit.GrantRow
	for _, g := range rows {
		if writes(g) > 0 {
			top = append(top, g)
		}
	}
	slices.SortStableFunc(top, func(a, b audit.GrantRow) int {
		return cmp.Or(cmp.Compare(writes(b), writes(a)), cmp.Compare(a.GrantID, b.GrantID))
	})
	var lines []string
	for _, g := range top[:min(n, len(top))] {
		a := g.Activity
		line := fmt.Sprintf("• %s %s → %s: %d write(s)", sumCode(g.GrantID), Escape(g.Person), Escape(g.Resource), writes(g))
		if a.AWSCalls > 0 {
			line += fmt.Sprintf(" · %d AWS calls, %d denied", a.AWSCalls, a.AWSDenied)
		}
		if a.GitHubActions > 0 {
			line += fmt.Sprintf(" · %d GitHub actions", a.GitHubActions)
		}
		if a.AfterRevocation > 0 {
			line += fmt.Sprintf(" · :warning: %d after revocation", a.AfterRevocation)
		}
		lines = append(lines, sumCut(line, summaryLineRunes))
	}
	return strings.Join(lines, "\n")
}
