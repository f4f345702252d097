package broker

import (
	"context"

	"github.com/accessbroker/accessbroker/grants"
)

// NobodyOnCall is the OnCall of a broker with no on-call source configured (no pagerduty
// block): nobody is ever on call, so every request goes to its approvers.
type NobodyOnCall struct{}

// Check implements OnCall: never on call.
func (NobodyOnCall) Check(context.Context, grants.Person, grants.Policy) (OnCallStatus, error) {
	return OnCallStatus{}, nil
}
