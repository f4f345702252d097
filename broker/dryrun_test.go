package broker_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
)

// TestDryRunRecordsNothing: each policy path is previewed as Process would decide it, and no
// audit event, request or notification is written.
func TestDryRunRecordsNothing(t *testing.T) {
	tests := []struct {
		name      string
		user      string
		onCallEnd time.Duration // 0: not on call
		dur       time.Duration
		reason    string
		wantPath  broker.Path
		wantCap   bool
		refused   string
		approvers []string
	}{
		{name: "on call: granted at once", user: alice, onCallEnd: 4 * time.Hour, dur: time.Hour, reason: "lag", wantPath: broker.PathAutoApprove},
		{name: "on call: capped to the shift", user: alice, onCallEnd: 30 * time.Minute, dur: time.Hour, reason: "lag", wantPath: broker.PathAutoApprove, wantCap: true},
		{name: "not on call: approvers, never the requester", user: bob, dur: time.Hour, reason: "lag", wantPath: broker.PathApproval, approvers: []string{carol}},
		{name: "over the maximum", user: alice, dur: 5 * time.Hour, reason: "lag", wantPath: broker.PathReject, refused: "maximum"},
		{name: "no reason", user: alice, dur: time.Hour, reason: " ", wantPath: broker.PathReject, refused: "reason is required"},
		{name: "unknown person", user: dave, dur: time.Hour, reason: "lag", wantPath: broker.PathReject, refused: "could not be identified"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if tt.onCallEnd > 0 {
				e.setOnCall(tt.user, start.Add(tt.onCallEnd))
			}
			p, err := e.b.DryRun(t.Context(), broker.RequestInput{TeamID: team, UserID: tt.user, Resource: "prod-db", Duration: tt.dur, Reason: tt.reason})
			if err != nil {
				t.Fatal(err)
			}
			if p.Path != tt.wantPath || p.CappedToShift != tt.wantCap {
				t.Fatalf("preview = %+v; want path %s capped %v", p, tt.wantPath, tt.wantCap)
			}
			if tt.refused != "" && !strings.Contains(p.Refused, tt.refused) {
				t.Errorf("Refused = %q; want it to mention %q", p.Refused, tt.refused)
			}
			if tt.refused == "" && p.Refused != "" {
				t.Errorf("Refused = %q; want none", p.Refused)
			}
			if tt.approvers != nil && !slices.Equal(p.Approvers, tt.approvers) {
				t.Errorf("Approvers = %v; want %v", p.Approvers, tt.approvers)
			}
			if tt.wantCap && !p.EndsAt.Equal(start.Add(tt.onCallEnd)) {
				t.Errorf("EndsAt = %s; want the shift end", p.EndsAt)
			}
			evs, err := e.store.Search(t.Context(), audit.Query{})
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 0 || len(e.notes.Notes("")) != 0 || len(e.prov.Issued()) != 0 {
				t.Errorf("dry run wrote %d events, %d notes, issued %v; want nothing", len(evs), len(e.notes.Notes("")), e.prov.Issued())
			}
		})
	}
}
