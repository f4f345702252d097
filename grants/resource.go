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
