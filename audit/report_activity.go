package audit

import "fmt"

// ActivityUse is what a grant's person did upstream, from its aws.activity and
// github.activity events (collected after the fact from CloudTrail and GitHub).
type ActivityUse struct {
	// AWSCalls counts the CloudTrail events of the grant's session; AWSWrites those that were
	// not read-only; AWSDenied those refused (with an error code such as AccessDenied).
	AWSCalls, AWSWrites, AWSDenied int
	// AfterRevocation counts calls or actions after the grant ended that were not refused:
	// the revocation did not hold.
	AfterRevocation int
	// GitHubActions counts the GitHub actions of the person during the grant.
	GitHubActions int
}

// total is every recorded upstream action.
func (u ActivityUse) total() int { return u.AWSCalls + u.GitHubActions }

func (u *ActivityUse) add(o ActivityUse) {
	u.AWSCalls += o.AWSCalls
	u.AWSWrites += o.AWSWrites
	u.AWSDenied += o.AWSDenied
	u.AfterRevocation += o.AfterRevocation
	u.GitHubActions += o.GitHubActions
}

// addActivityEvent records one aws.activity or github.activity event on its grant (whenever
// it was collected: activity arrives minutes after the fact, and a grant's row covers it).
func (b *reportBuilder) addActivityEvent(e *Event) {
	if e.GrantID == "" {
		return
	}
	g := b.grant(e.GrantID)
	if g.activity == nil {
		g.activity = &ActivityUse{}
	}
	u := g.activity
	ev := e.Evidence
	switch e.Action {
	case ActionAWSActivity:
		u.AWSCalls++
		if ev[EvidenceActivityReadOnly] != "true" {
			u.AWSWrites++
		}
		if ev[EvidenceActivityErrorCode] != "" {
			u.AWSDenied++
		}
	case ActionGitHubActivity:
		u.GitHubActions++
	}
	if ev[EvidenceActivityAfterRevocation] == "true" {
		u.AfterRevocation++
		at, ok := parseEvidenceTime(ev[EvidenceActivityEventTime])
		if !ok {
			at = e.Time
		}
		if g.firstAfterEnd.IsZero() || at.Before(g.firstAfterEnd) {
			g.firstAfterEnd = at
		}
	}
	if e.Resource != "" {
		b.activityRes[e.Resource] = true
	}
}

// activityAnomalies flags upstream activity after a grant ended: the revocation did not
// hold (the provider removed access, yet calls still succeeded).
func (b *reportBuilder) activityAnomalies(g *grantTrack, row *GrantRow) {
	u := g.activity
	if u == nil || u.AfterRevocation == 0 {
		return
	}
	row.Anomalies = append(row.Anomalies, AnomalyActivityAfterRevocation)
	b.flag(Anomaly{Kind: AnomalyActivityAfterRevocation, Time: g.firstAfterEnd, Person: row.Person, Resource: g.resource, GrantID: g.id,
		RequestID: g.requestID, Count: u.AfterRevocation,
		Detail: fmt.Sprintf("%d upstream call(s) succeeded after the grant ended at %s: the revocation did not hold", u.AfterRevocation, FormatTime(row.RevokedAt))})
}
