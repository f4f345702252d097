package slack

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/accessbroker/accessbroker/audit"
)

// TestSummaryHighlightsMostWrites: the summary names the grants with the most write activity,
// most first, at most three, and a grant without writes is not among them; each grant line
// shows its AWS calls.
func TestSummaryHighlightsMostWrites(t *testing.T) {
	r := bigReport(6)
	acts := []audit.ActivityUse{
		{AWSCalls: 10, AWSWrites: 2},
		{AWSCalls: 30, AWSWrites: 25, AWSDenied: 3, AfterRevocation: 1},
		{AWSCalls: 5},
		{GitHubActions: 7},
		{AWSCalls: 4, AWSWrites: 1},
	}
	for i := range acts {
		r.Rows[i].Activity = acts[i]
	}
	blocks, _ := SummaryBlocks(r)
	raw, err := json.Marshal(blocks)
	if err != nil {
		t.Fatal(err)
	}
	text := checkBlockLimits(t, raw)
	_, after, ok := strings.Cut(text, "*Most write activity:*")
	if !ok {
		t.Fatalf("no write highlights:\n%s", text)
	}
	top, _, _ := strings.Cut(after, "*Anomalies")
	order := []string{r.Rows[1].GrantID, r.Rows[3].GrantID, r.Rows[0].GrantID}
	last := -1
	for _, id := range order {
		i := strings.Index(top, id)
		if i < 0 || i < last {
			t.Fatalf("highlights %q: want %v in that order", top, order)
		}
		last = i
	}
	for _, not := range []string{r.Rows[2].GrantID, r.Rows[4].GrantID, r.Rows[5].GrantID} {
		if strings.Contains(top, not) {
			t.Errorf("highlights list %s (fewer writes, or none)", not)
		}
	}
	if !strings.Contains(top, "25 write(s) · 30 AWS calls, 3 denied · :warning: 1 after revocation") {
		t.Errorf("highlight line lacks the counts: %q", top)
	}
	if !strings.Contains(text, "30 AWS calls (25 write, 3 denied), 0 GitHub actions") {
		t.Error("grant line lacks its AWS calls")
	}
}
