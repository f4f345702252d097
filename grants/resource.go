package grants

import (
	"fmt"
	"time"
)

// Resource is something access can be granted to, as configured.
type Resource struct {
	Name            string
	Provider        string // provider kind
	DefaultDuration time.Duration
	MaxDuration     time.Duration
	Policy          Policy
}

// Policy says who may get access to a resource and how.
type Policy struct {
	OnCallEscalationPolicies []string
	OnCallSchedules          []string
	OnCallLevels             []int // allowed escalation levels; empty means all
	AutoApproveOnCall        bool
	ApproverSlackUsers       []string
	ApproverSlackUsergroup   string
	MinApprovals             int
	BreakGlass               bool
	CapToShift               bool
	// MaxPendingPerPerson is how many undecided requests one person may have open for the
	// resource at once; 0 means DefaultMaxPending. See PendingCap.
	MaxPendingPerPerson int
}

// DefaultMaxPending is the pending-request cap per person and resource when the policy sets
// none.
const DefaultMaxPending = 1

// PendingCap is the policy's cap on one person's pending requests for the resource: its
// MaxPendingPerPerson, or DefaultMaxPending when that is not positive.
func (p Policy) PendingCap() int {
	if p.MaxPendingPerPerson > 0 {
		return p.MaxPendingPerPerson
	}
	return DefaultMaxPending
}

// CheckDuration validates a requested duration against the resource's limits. The error
// says what was wrong in words a requester understands.
func (r Resource) CheckDuration(d time.Duration) error {
	switch {
	case d <= 0:
		return fmt.Errorf("duration must be positive: %w", ErrInvalid)
	case d < MinDuration:
		return fmt.Errorf("duration %s is below the minimum of %s: %w", d, MinDuration, ErrInvalid)
	case r.MaxDuration > 0 && d > r.MaxDuration:
		return fmt.Errorf("duration %s is over %s's maximum of %s: %w", d, r.Name, r.MaxDuration, ErrInvalid)
	}
	return nil
}

// MinDuration is the shortest grant accessbroker issues.
const MinDuration = time.Minute
