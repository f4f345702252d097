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

// loginFailureBursts finds runs of RejectionBurst or more refused proxy logins within
// RejectionWindow, per person and per database role (the same refusals can make one finding
// of each). A refusal names a person when its actor is one, else through the grant whose
// role was tried; a refusal naming no role and no person (a plaintext probe) counts for
// neither. Runs do not overlap.
func (b *reportBuilder) loginFailureBursts() []Anomaly {
	type key struct{ person, role string }
	by := map[key][]loginFailure{}
	for _, l := range b.logins {
		who := b.resolve(l.person)
		if g := b.grants[l.grant]; who == "" && g != nil {
			who = g.person
		}
		if who != "" {
			by[key{person: who}] = append(by[key{person: who}], l)
		}
		if l.role != "" {
			by[key{role: l.role}] = append(by[key{role: l.role}], l)
		}
	}
	var out []Anomaly
	for k, ls := range by {
		slices.SortStableFunc(ls, func(x, y loginFailure) int { return x.at.Compare(y.at) })
		for i := 0; i < len(ls); {
			j := i
			for j < len(ls) && ls[j].at.Sub(ls[i].at) <= b.opts.RejectionWindow {
				j++
			}
			n := j - i
			if n < b.opts.RejectionBurst {
				i++
				continue
			}
			a := Anomaly{Kind: AnomalyLoginFailures, Time: ls[i].at, Person: k.person, Role: k.role, Count: n}
			whose := k.person
			if k.role != "" {
				whose = "role " + k.role
				if g := b.grants[ls[i].grant]; g != nil {
					a.GrantID, a.Resource, a.Person = g.id, g.resource, g.person
				}
			}
			a.Detail = fmt.Sprintf("%d refused logins at the database proxy for %s between %s and %s", n, whose, FormatTime(ls[i].at), FormatTime(ls[j-1].at))
			out = append(out, a)
			i = j
		}
	}
	return out
}

// sessionAnomalies applies the per-grant rules over the grant's proxied sessions:
// statements after the incident was resolved, statements refused for lack of privilege, and
// a grant that ended unused on a resource whose grants are used through the proxy.
func (b *reportBuilder) sessionAnomalies(g *grantTrack, row *GrantRow) {
	flag := func(k AnomalyKind, at time.Time, n int, detail string) {
		row.Anomalies = append(row.Anomalies, k)
		b.flag(Anomaly{Kind: k, Time: at, Person: row.Person, Resource: g.resource, GrantID: g.id,
			RequestID: g.requestID, Count: n, Detail: detail})
	}
	if u := g.use; u != nil {
		if u.afterResolved > 0 {
			flag(AnomalyAfterIncidentResolved, u.firstAfterResolved, u.afterResolved,
				fmt.Sprintf("%d statement(s) after the incident was resolved (revocation requested at %s)", u.afterResolved, FormatTime(g.revokeReqAt)))
		}
		if u.PermissionDenied > 0 {
			flag(AnomalyPermissionDenied, u.firstDenied, u.PermissionDenied,
				fmt.Sprintf("%d statement(s) refused with SQLSTATE %s (permission denied)", u.PermissionDenied, SQLStateInsufficientPrivilege))
		}
	}
	ended := row.State == RowRevoked || row.State == RowExpiredNotRevoked
	switch {
	case ended && row.Use.Sessions == 0 && b.sessionRes[g.resource]:
		flag(AnomalyNeverUsed, g.issued, 0, "granted for "+FormatDuration(row.Granted)+" and ended without a session through the database proxy")
	case ended && row.Activity.total() == 0 && b.activityRes[g.resource]:
		flag(AnomalyNeverUsed, g.issued, 0, "granted for "+FormatDuration(row.Granted)+" and ended without any recorded upstream activity (CloudTrail, GitHub)")
	}
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
