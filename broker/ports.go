// Package broker holds accessbroker's use cases: requesting access, deciding on it (on call,
// approvals, break-glass), auto-granting on a PagerDuty acknowledgement, extending and ending
// grants. It declares the ports it needs from the outside world as small interfaces that the
// integrations implement; it never imports an integration.
package broker

import (
	"context"
	"errors"
	"time"

	"github.com/accessbroker/accessbroker/grants"
)

// OnCall answers whether a person is on call for a resource's policy right now.
type OnCall interface {
	// Check reports the person's on-call status for the schedules, escalation policies and
	// levels the policy names (and only those). An error means "unknown", never "on call":
	// callers fall back to the approval path.
	Check(ctx context.Context, p grants.Person, pol grants.Policy) (OnCallStatus, error)
}

// OnCallStatus is the answer of OnCall.Check, with the evidence recorded in the audit trail.
type OnCallStatus struct {
	OnCall bool
	Shifts []Shift // the matching on-call entries; empty when not on call
}

// ShiftEnd returns the latest end among the matching shifts, or zero when any of them is open
// ended (or there are none).
func (s OnCallStatus) ShiftEnd() time.Time {
	var end time.Time
	for _, sh := range s.Shifts {
		if sh.End.IsZero() {
			return time.Time{}
		}
		if sh.End.After(end) {
			end = sh.End
		}
	}
	return end
}

// Shift is one on-call entry that matched the policy.
type Shift struct {
	EscalationPolicyID   string
	EscalationPolicyName string
	ScheduleID           string // empty for a direct escalation-policy assignment
	ScheduleName         string
	Level                int
	Start                time.Time
	End                  time.Time // zero when PagerDuty reports no end
}

// Directory resolves a Slack user to a person.
type Directory interface {
	// Resolve returns the person for a Slack team and user id. It returns an error wrapping
	// ErrUnknownPerson when the user cannot be linked (deleted, bot, guest, another team, no
	// verified email), with a message saying how to get linked.
	Resolve(ctx context.Context, teamID, userID string) (grants.Person, error)
}

// ErrUnknownPerson: the caller could not be resolved to a person accessbroker may serve.
var ErrUnknownPerson = errors.New("unknown person")

// Leaser grants a named, expiring lease to one holder at a time across every broker process on
// one database (grants/sqlstore.Store implements it).
type Leaser interface {
	// AcquireLease takes or renews the named lease for holder until now+ttl and reports
	// whether holder has it. A ttl of 0 gives the lease up.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
}

// Once records keys across every broker process on one database (grants/sqlstore.Store
// implements it).
type Once interface {
	// Seen records key and reports whether this call recorded it first. Concurrent calls
	// with one key get true once.
	Seen(ctx context.Context, key string) (first bool, err error)
}
