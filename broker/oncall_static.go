package broker

import (
	"context"
	"slices"
	"sync"

	"github.com/accessbroker/accessbroker/grants"
)

// StaticOnCall is an OnCall answered from a fixed table (configuration, the demo, tests)
// instead of PagerDuty. A shift counts only if it names one of the policy's escalation
// policies or schedules (and an allowed level, when the policy lists levels) and covers now.
type StaticOnCall struct {
	clock grants.Clock
	mu    sync.Mutex
	by    map[string][]Shift // Slack user id → shifts
	err   error
}

// NewStaticOnCall returns an empty table: nobody is on call.
func NewStaticOnCall(clock grants.Clock) *StaticOnCall {
	return &StaticOnCall{clock: clock, by: map[string][]Shift{}}
}

// Set replaces a person's shifts (by Slack user id).
func (s *StaticOnCall) Set(slackUserID string, shifts ...Shift) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.by[slackUserID] = append([]Shift(nil), shifts...)
}

// Fail makes every Check return err (nil to stop), to exercise the "unknown" path.
func (s *StaticOnCall) Fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

// Check implements OnCall.
func (s *StaticOnCall) Check(_ context.Context, p grants.Person, pol grants.Policy) (OnCallStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return OnCallStatus{}, s.err
	}
	now := s.clock.Now()
	var st OnCallStatus
	for _, sh := range s.by[p.SlackUserID] {
		named := slices.Contains(pol.OnCallEscalationPolicies, sh.EscalationPolicyID) ||
			(sh.ScheduleID != "" && slices.Contains(pol.OnCallSchedules, sh.ScheduleID))
		level := len(pol.OnCallLevels) == 0 || slices.Contains(pol.OnCallLevels, sh.Level)
		current := !sh.Start.After(now) && (sh.End.IsZero() || sh.End.After(now))
		if named && level && current {
			st.Shifts = append(st.Shifts, sh)
		}
	}
	st.OnCall = len(st.Shifts) > 0
	return st, nil
}
