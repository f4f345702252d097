package broker

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/grants"
)

// Path is the way a request goes after the policy looked at it.
type Path string

// Decision paths.
const (
	PathAutoApprove Path = "auto_approve" // on call and the policy auto-approves: issue now
	PathApproval    Path = "approval"     // ask the approvers
	PathBreakGlass  Path = "break_glass"  // emergency access the policy allows: issue now, tell everyone
	PathReject      Path = "reject"       // nobody can grant this
)

// Decision is the policy's answer for one request. It is a pure function of the policy, the
// on-call answer and the request; nothing is looked up.
type Decision struct {
	Path   Path
	Reason string    // plain words: why this path
	Needed int       // approvals needed (PathApproval)
	CapAt  time.Time // end of the on-call shift when the policy caps grants to it; zero: no cap
}

// Decide applies a resource's policy. onCallErr non-nil means the on-call status is unknown,
// which never counts as on call.
func Decide(res grants.Resource, st OnCallStatus, onCallErr error, breakGlass bool) Decision {
	pol := res.Policy
	onCall := onCallErr == nil && st.OnCall
	var capAt time.Time
	if onCall && pol.CapToShift {
		capAt = st.ShiftEnd()
	}
	switch {
	case breakGlass && !pol.BreakGlass:
		return Decision{Path: PathReject, Reason: fmt.Sprintf("break-glass access is not allowed for %s; ask for it normally", res.Name)}
	case breakGlass:
		return Decision{Path: PathBreakGlass, Reason: fmt.Sprintf("break-glass access to %s, allowed by its policy", res.Name), CapAt: capAt}
	case onCall && pol.AutoApproveOnCall:
		return Decision{Path: PathAutoApprove, Reason: fmt.Sprintf("on call for %s, which auto-approves on-call engineers", res.Name), CapAt: capAt}
	case HasApprovers(pol):
		why := "not on call for " + res.Name
		switch {
		case onCallErr != nil:
			why = "on-call status unknown (the check failed)"
		case onCall:
			why = res.Name + " does not auto-approve on-call engineers"
		}
		return Decision{Path: PathApproval, Reason: why + "; approval needed", Needed: Needed(pol), CapAt: capAt}
	}
	why := "you are not on call for " + res.Name
	if onCallErr != nil {
		why = "your on-call status could not be checked"
	} else if onCall {
		why = res.Name + " does not auto-approve on-call engineers"
	}
	return Decision{Path: PathReject, Reason: why + ", and it has no approvers configured, so nobody can grant this"}
}

// HasApprovers reports whether a policy names any approver (users or a usergroup). An empty
// approver configuration approves nothing.
func HasApprovers(pol grants.Policy) bool {
	return len(pol.ApproverSlackUsers) > 0 || pol.ApproverSlackUsergroup != ""
}

// Needed is how many distinct approvals a policy requires (at least one).
func Needed(pol grants.Policy) int { return max(1, pol.MinApprovals) }

// CheckPolicy reports configuration mistakes in a resource's policy that would make every
// request fail, naming the fix. cmd calls it when loading the configuration.
func CheckPolicy(res grants.Resource) error {
	pol := res.Policy
	if pol.MinApprovals < 0 {
		return fmt.Errorf("resource %s: policy.min_approvals is %d; use 1 or more", res.Name, pol.MinApprovals)
	}
	if pol.ApproverSlackUsergroup == "" && len(pol.ApproverSlackUsers) > 0 && Needed(pol) > len(pol.ApproverSlackUsers) {
		return fmt.Errorf("resource %s: policy.min_approvals is %d but only %d approvers are listed; list more approvers or set policy.approvers.slack_usergroup",
			res.Name, pol.MinApprovals, len(pol.ApproverSlackUsers))
	}
	return nil
}

// IsApprover decides, at click time, whether userID may approve requests for res: listed in
// the policy's approver users, or a member of its approver usergroup right now. The answer's
// reason is plain words for a refusal. A lookup failure refuses.
func IsApprover(ctx context.Context, res grants.Resource, groups Groups, userID string) (bool, string) {
	pol := res.Policy
	if !HasApprovers(pol) {
		return false, fmt.Sprintf("%s has no approvers configured, so nobody can approve requests for it", res.Name)
	}
	if slices.Contains(pol.ApproverSlackUsers, userID) {
		return true, ""
	}
	if pol.ApproverSlackUsergroup != "" {
		if groups == nil {
			return false, "approver group membership cannot be checked (no usergroup lookup is configured)"
		}
		members, err := groups.Members(ctx, pol.ApproverSlackUsergroup)
		if err != nil {
			return false, "approver group membership could not be checked just now; try again"
		}
		if slices.Contains(members, userID) {
			return true, ""
		}
	}
	return false, fmt.Sprintf("you are not an approver for %s", res.Name)
}

// OnCallEvidence turns an on-call answer into audit evidence (non-secret).
func OnCallEvidence(st OnCallStatus, err error) map[string]string {
	ev := map[string]string{}
	switch {
	case err != nil:
		ev["on_call"] = "unknown"
		ev["on_call_error"] = truncate(err.Error(), 300)
		return ev
	case !st.OnCall:
		ev["on_call"] = "false"
		return ev
	}
	ev["on_call"] = "true"
	var shifts []string
	for _, sh := range st.Shifts {
		s := "escalation policy " + firstNonEmpty(sh.EscalationPolicyName, sh.EscalationPolicyID) + " level " + strconv.Itoa(sh.Level)
		if sh.ScheduleID != "" {
			s += " via schedule " + firstNonEmpty(sh.ScheduleName, sh.ScheduleID)
		}
		if !sh.End.IsZero() {
			s += " until " + grants.Timestamp(sh.End)
		}
		shifts = append(shifts, s)
	}
	if len(shifts) > 0 {
		ev["on_call_shifts"] = strings.Join(shifts, "; ")
	}
	if end := st.ShiftEnd(); !end.IsZero() {
		ev["on_call_until"] = grants.Timestamp(end)
	}
	return ev
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
