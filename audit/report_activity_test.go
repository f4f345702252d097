package audit

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// awsCall adds one aws.activity event of grant g on res, collected at since+at.
func (c *sessionCase) awsCall(g, res string, at time.Duration, readOnly bool, errCode string, afterRevocation bool) {
	c.n++
	c.h.add(fxSince.Add(at), Actor{Kind: ActorUser, ID: "U_" + g}, ActionAWSActivity, "", g, res, "",
		"event_id", fmt.Sprintf("ev-%03d", c.n), EvidenceActivityEventTime, FormatTime(fxSince.Add(at-time.Minute)),
		"service", "s3.amazonaws.com", "api_call", "PutObject", EvidenceActivityReadOnly, fmt.Sprint(readOnly),
		EvidenceActivityErrorCode, errCode, EvidenceActivityAfterRevocation, fmt.Sprint(afterRevocation))
}

// TestReportActivity: a grant's row counts its AWS calls, writes and denied calls and its
// GitHub actions, the report totals them, a successful call after the end is the
// activity_after_revocation anomaly, and a grant that ended without activity on a resource
// whose grants show activity is granted_never_used.
func TestReportActivity(t *testing.T) {
	c := newSessionCase()
	c.grantOn("g_a", "prod-aws", "alice@example.com", time.Hour, time.Hour, 0)
	c.awsCall("g_a", "prod-aws", time.Hour+time.Minute, true, "", false)
	c.awsCall("g_a", "prod-aws", time.Hour+2*time.Minute, false, "", false)
	c.awsCall("g_a", "prod-aws", time.Hour+3*time.Minute, false, "AccessDenied", false)
	c.grantOn("g_b", "prod-aws", "bob@example.com", time.Hour, time.Hour, 0)
	c.awsCall("g_b", "prod-aws", 2*time.Hour+10*time.Minute, false, "", true)
	c.awsCall("g_b", "prod-aws", 2*time.Hour+11*time.Minute, false, "AccessDenied", false)
	c.grantOn("g_c", "prod-aws", "carol@example.com", time.Hour, time.Hour, 0)
	c.grantOn("g_d", "gh-infra", "dave@example.com", time.Hour, time.Hour, 0)
	c.h.add(fxSince.Add(time.Hour+time.Minute), Actor{Kind: ActorUser, ID: "U_g_d"}, ActionGitHubActivity, "", "g_d", "gh-infra", "",
		"github_action", "git.push", "id", "doc-1", EvidenceActivityAfterRevocation, "false")
	r := c.report(t, ReportOptions{})
	rows := map[string]ActivityUse{}
	for _, row := range r.Rows {
		rows[row.GrantID] = row.Activity
	}
	want := map[string]ActivityUse{
		"g_a": {AWSCalls: 3, AWSWrites: 2, AWSDenied: 1},
		"g_b": {AWSCalls: 2, AWSWrites: 2, AWSDenied: 1, AfterRevocation: 1},
		"g_c": {},
		"g_d": {GitHubActions: 1},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("row activity (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ActivityUse{AWSCalls: 5, AWSWrites: 4, AWSDenied: 2, AfterRevocation: 1, GitHubActions: 1}, r.Activity); diff != "" {
		t.Errorf("totals (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"g_b"}, findings(r, AnomalyActivityAfterRevocation)); diff != "" {
		t.Errorf("activity_after_revocation (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"g_c"}, findings(r, AnomalyNeverUsed)); diff != "" {
		t.Errorf("granted_never_used (-want +got):\n%s", diff)
	}
}
