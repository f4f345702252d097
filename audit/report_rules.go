package audit

// The anomaly rules: per grant (outside the on-call shift, not on call, break-glass), applied
// as each grant's row is made, and across grants and requests (revocations overdue, bursts of
// rejections, one approver approving one person too often), applied when the report is
// finished.

import (
	"fmt"
	"slices"
	"time"
)

// overdue lists every known grant not revoked more than LateAfter after its expiry, at until.
func (b *reportBuilder) overdue() []Anomaly {
	var out []Anomaly
	for _, g := range b.order {
		if !g.written || g.expires.IsZero() || !g.revokedAt.IsZero() || b.until.Sub(g.expires) <= b.opts.LateAfter {
			continue
		}
		state := "no revocation recorded"
		switch {
		case g.failing:
			state = fmt.Sprintf("revocation failing after %d attempt(s)", g.failures)
		case !g.revokeReqAt.IsZero():
			state = "revocation queued at " + FormatTime(g.revokeReqAt)
		}
		out = append(out, Anomaly{Kind: AnomalyNotRevokedOnTime, Time: g.expires, Person: g.person, Resource: g.resource,
			GrantID: g.id, RequestID: g.requestID,
			Detail: fmt.Sprintf("expired at %s, still not revoked %s later (%s)", FormatTime(g.expires), FormatDuration(b.until.Sub(g.expires)), state)})
	}
	return out
}

// rejectionBursts finds runs of RejectionBurst or more rejections of one person within
// RejectionWindow. Runs do not overlap: after a run, the search resumes after its last event.
func (b *reportBuilder) rejectionBursts() []Anomaly {
	by := map[string][]refusal{}
	for _, r := range b.refusals {
		who := b.resolve(r.who)
		by[who] = append(by[who], r)
	}
	var out []Anomaly
	for who, rs := range by {
		slices.SortStableFunc(rs, func(x, y refusal) int { return x.at.Compare(y.at) })
		for i := 0; i < len(rs); {
			j := i
			for j < len(rs) && rs[j].at.Sub(rs[i].at) <= b.opts.RejectionWindow {
				j++
			}
			if n := j - i; n >= b.opts.RejectionBurst {
				denied := 0
				for _, r := range rs[i:j] {
					if r.what == ActionRequestDenied {
						denied++
					}
				}
				out = append(out, Anomaly{Kind: AnomalyRepeatedRejections, Time: rs[i].at, Person: who, Count: n,
					Detail: fmt.Sprintf("%d refusals (%d rejected, %d denied) between %s and %s", n, n-denied, denied, FormatTime(rs[i].at), FormatTime(rs[j-1].at))})
				i = j
				continue
			}
			i++
		}
	}
	return out
}

// frequentApprovals finds approver–requester pairs over MaxApprovalsPerPair approvals.
func (b *reportBuilder) frequentApprovals() []Anomaly {
	type pair struct{ approver, requester string }
	counts := map[pair]int{}
	first := map[pair]time.Time{}
	for _, a := range b.approvals {
		requester := a.requester
		if requester == "" {
			if r := b.requests[a.req]; r != nil {
				requester = r.requester
			}
		}
		p := pair{b.resolve(a.approver), b.resolve(requester)}
		if counts[p] == 0 {
			first[p] = a.at
		}
		counts[p]++
	}
	var out []Anomaly
	for p, n := range counts {
		if n > b.opts.MaxApprovalsPerPair {
			out = append(out, Anomaly{Kind: AnomalySameApprover, Time: first[p], Person: p.requester, Approver: p.approver, Count: n,
				Detail: fmt.Sprintf("%s approved %s's requests %d times (more than %d)", p.approver, p.requester, n, b.opts.MaxApprovalsPerPair)})
		}
	}
	return out
}

// grantAnomalies applies the per-grant rules to a grant's row: issued or running outside the
// requester's on-call shift, granted to someone not (or not known to be) on call, break-glass.
// It files each finding and lists its kind on the row.
func (b *reportBuilder) grantAnomalies(g *grantTrack, row *GrantRow, kind DecisionKind, by, onCallError string) {
	flag := func(k AnomalyKind, detail string) {
		row.Anomalies = append(row.Anomalies, k)
		b.flag(Anomaly{Kind: k, Time: g.issued, Person: row.Person, Resource: g.resource, GrantID: g.id,
			RequestID: g.requestID, Detail: detail})
	}
	switch row.OnCall {
	case "true":
		if end, ok := parseEvidenceTime(row.OnCallUntil); ok && (g.issued.After(end) || g.expires.After(end)) {
			what := "expires at " + FormatTime(g.expires)
			if g.issued.After(end) {
				what = "issued at " + FormatTime(g.issued)
			}
			flag(AnomalyOutsideShift, "on-call shift ended at "+FormatTime(end)+"; the grant "+what)
		}
	case "false":
		flag(AnomalyNotOnCall, "not on call; decided by "+string(kind)+" ("+by+")")
	case "unknown":
		flag(AnomalyNotOnCall, "on-call status unknown ("+firstOf(onCallError, "check failed")+"); decided by "+string(kind)+" ("+by+")")
	default:
		flag(AnomalyNotOnCall, "no on-call check recorded; decided by "+string(kind)+" ("+by+")")
	}
	if kind == DecisionBreakGlass {
		flag(AnomalyBreakGlass, "break-glass access: "+g.reason)
	}
}
