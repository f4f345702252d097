package pagerduty

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	pd "github.com/PagerDuty/go-pagerduty"

	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

var _ broker.OnCall = (*Client)(nil)

// Check implements broker.OnCall: is p on call right now for what pol names?
//
// The person's PagerDuty user is p.PagerDutyID when set (the identities map), else the one
// user whose email equals p.Email (see UserIDByEmail). On-call entries come from
// GET /oncalls?user_ids[]=… with since = until = now (the injected clock), asked once with
// escalation_policy_ids[] = pol.OnCallEscalationPolicies and once with schedule_ids[] =
// pol.OnCallSchedules (PagerDuty ANDs different filters; the policy means either). An entry
// counts only when all of these hold, checked again on our side:
//   - it is this user's;
//   - its escalation policy is one the policy names, or its schedule is one the policy names
//     (being somewhere in some other escalation policy never counts: Teleport #46908);
//   - its escalation level is in pol.OnCallLevels (empty: any level);
//   - it covers now (start ≤ now < end; a missing start or end is open).
//
// A policy that names no escalation policy and no schedule has nobody on call: the answer is
// "not on call" without asking PagerDuty. Any failure (unknown person, PagerDuty unreachable
// or erroring after the HTTP client's retries, an unreadable answer) is returned as an error
// and never as "on call".
func (c *Client) Check(ctx context.Context, p grants.Person, pol grants.Policy) (broker.OnCallStatus, error) {
	if len(pol.OnCallEscalationPolicies) == 0 && len(pol.OnCallSchedules) == 0 {
		return broker.OnCallStatus{}, nil
	}
	userID := p.PagerDutyID
	if userID == "" {
		id, err := c.UserIDByEmail(ctx, p.Email)
		if err != nil {
			return broker.OnCallStatus{}, fmt.Errorf("check on-call status of %s: %w", p.Label(), err)
		}
		userID = id
	}
	now := c.clock.Now()
	base := pd.ListOnCallOptions{
		UserIDs:  []string{userID},
		Since:    formatTime(now),
		Until:    formatTime(now),
		TimeZone: "UTC",
		Limit:    100,
	}
	var entries []pd.OnCall
	if len(pol.OnCallEscalationPolicies) > 0 {
		o := base
		o.EscalationPolicyIDs = pol.OnCallEscalationPolicies
		got, err := c.listOnCalls(ctx, o)
		if err != nil {
			return broker.OnCallStatus{}, fmt.Errorf("check on-call status of %s (PagerDuty user %s) in escalation policies %v: %w", p.Label(), userID, pol.OnCallEscalationPolicies, err)
		}
		entries = append(entries, got...)
	}
	if len(pol.OnCallSchedules) > 0 {
		o := base
		o.ScheduleIDs = pol.OnCallSchedules
		got, err := c.listOnCalls(ctx, o)
		if err != nil {
			return broker.OnCallStatus{}, fmt.Errorf("check on-call status of %s (PagerDuty user %s) in schedules %v: %w", p.Label(), userID, pol.OnCallSchedules, err)
		}
		entries = append(entries, got...)
	}
	shifts, err := matchShifts(entries, userID, pol, now)
	if err != nil {
		return broker.OnCallStatus{}, fmt.Errorf("check on-call status of %s (PagerDuty user %s): %w", p.Label(), userID, err)
	}
	st := broker.OnCallStatus{OnCall: len(shifts) > 0, Shifts: shifts}
	c.log.LogAttrs(ctx, slog.LevelInfo, "on-call checked",
		slog.String("person", p.Label()), slog.String("pagerduty_user", userID),
		slog.Bool("on_call", st.OnCall), slog.Int("entries", len(entries)), slog.Int("matching_shifts", len(shifts)))
	return st, nil
}

// listOnCalls reads every page of GET /oncalls for o.
func (c *Client) listOnCalls(ctx context.Context, o pd.ListOnCallOptions) ([]pd.OnCall, error) {
	var out []pd.OnCall
	for page := 0; ; page++ {
		if page == maxPages {
			return nil, fmt.Errorf("more than %d on-call entries", maxPages*100)
		}
		resp, err := c.api.ListOnCallsWithContext(ctx, o)
		if err != nil {
			return nil, apiErr(err)
		}
		out = append(out, resp.OnCalls...)
		if !resp.More || len(resp.OnCalls) == 0 {
			return out, nil
		}
		o.Offset += uint(len(resp.OnCalls))
	}
}

// matchShifts keeps the entries that satisfy the policy now (see Check), deduplicated and in
// a stable order.
func matchShifts(entries []pd.OnCall, userID string, pol grants.Policy, now time.Time) ([]broker.Shift, error) {
	var out []broker.Shift
	for _, e := range entries {
		if e.User.ID != userID {
			continue
		}
		if !slices.Contains(pol.OnCallEscalationPolicies, e.EscalationPolicy.ID) &&
			(e.Schedule.ID == "" || !slices.Contains(pol.OnCallSchedules, e.Schedule.ID)) {
			continue
		}
		level := int(e.EscalationLevel)
		if len(pol.OnCallLevels) > 0 && !slices.Contains(pol.OnCallLevels, level) {
			continue
		}
		start, err := parseTime(e.Start)
		if err != nil {
			return nil, fmt.Errorf("on-call entry of escalation policy %s: start: %w", e.EscalationPolicy.ID, err)
		}
		end, err := parseTime(e.End)
		if err != nil {
			return nil, fmt.Errorf("on-call entry of escalation policy %s: end: %w", e.EscalationPolicy.ID, err)
		}
		if (!start.IsZero() && start.After(now)) || (!end.IsZero() && !end.After(now)) {
			continue
		}
		sh := broker.Shift{
			EscalationPolicyID: e.EscalationPolicy.ID, EscalationPolicyName: e.EscalationPolicy.Summary,
			ScheduleID: e.Schedule.ID, ScheduleName: e.Schedule.Summary,
			Level: level, Start: start, End: end,
		}
		if !slices.Contains(out, sh) {
			out = append(out, sh)
		}
	}
	slices.SortFunc(out, func(a, b broker.Shift) int {
		return cmp.Or(cmp.Compare(a.EscalationPolicyID, b.EscalationPolicyID), cmp.Compare(a.Level, b.Level),
			cmp.Compare(a.ScheduleID, b.ScheduleID), a.Start.Compare(b.Start))
	})
	return out, nil
}

// parseTime reads a PagerDuty date-time; empty (JSON null) is the zero time.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("PagerDuty sent %q, not an ISO 8601 date-time", s)
	}
	return t.UTC(), nil
}
