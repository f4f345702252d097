package grants_test

import (
	"errors"
	"testing"

	"github.com/accessbroker/accessbroker/grants"
)

func TestRequestStageOnlyMovesForward(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		from, to grants.RequestStage
		ok       bool
	}{
		{grants.StageRecorded, grants.StageAwaitingApproval, true},
		{grants.StageRecorded, grants.StageDecided, true},
		{grants.StageAwaitingApproval, grants.StageDecided, true},
		{grants.StageDecided, grants.StageDecided, true},
		{grants.StageAwaitingApproval, grants.StageAwaitingApproval, true},
		{grants.StageDecided, grants.StageAwaitingApproval, false},
		{grants.StageDecided, grants.StageRecorded, false},
		{grants.StageAwaitingApproval, grants.StageRecorded, false},
		{grants.StageRecorded, "approved", false},
	} {
		r := grants.Request{ID: "r_1", Stage: tc.from}
		err := r.Advance(tc.to)
		if tc.ok && (err != nil || r.Stage != tc.to) {
			t.Errorf("%q → %q: stage %q, err %v; want moved", tc.from, tc.to, r.Stage, err)
		}
		if !tc.ok && (!errors.Is(err, grants.ErrIllegalTransition) || r.Stage != tc.from) {
			t.Errorf("%q → %q: stage %q, err %v; want refused, unchanged", tc.from, tc.to, r.Stage, err)
		}
	}
}
