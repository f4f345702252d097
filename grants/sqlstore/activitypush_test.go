package sqlstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/storetest"
)

// TestRecordActivityPushed: on SQLite and PostgreSQL, ActivityGrants returns the grants of the
// provider that are past issuing and not revoked before since (not other providers, not
// grants ended earlier); RecordActivity records a key once per grant and source (the same key
// again, also from a second replica, records nothing; the same key on another grant does),
// counts the events on the push source's cursor (done, so no collector claims it) and the
// events chain and verify.
func TestRecordActivityPushed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, clock *clocktest.Fake, replica replicaFactory) {
		ctx := context.Background()
		a, b := replica(), replica()
		now := clock.Now()
		live := activityGrant(now, "github-team")
		second := activityGrant(now, "github-team")
		other := activityGrant(now, "postgres")
		old := activityGrant(now.Add(-2*time.Hour), "github-team")
		old.State, old.RevokedAt = grants.StateRevoked, now.Add(-time.Hour)
		recent := activityGrant(now.Add(-time.Hour), "github-team")
		recent.State, recent.RevokedAt = grants.StateRevoked, now.Add(-5*time.Minute)
		for _, g := range []*grants.Grant{live, second, other, old, recent} {
			storetest.MustCreate(t, a, now, g)
		}
		before := len(readAll(t, a))
		list, err := b.ActivityGrants(ctx, "github-team", now.Add(-20*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, g := range list {
			got[g.ID] = true
		}
		if len(got) != 3 || !got[live.ID] || !got[second.ID] || !got[recent.ID] {
			t.Errorf("ActivityGrants = %v, want %s, %s and %s (not the postgres grant, not the one ended an hour ago)", got, live.ID, second.ID, recent.ID)
		}
		item := func(key string) []grants.ActivityItem {
			return []grants.ActivityItem{{Key: key, Event: &audit.Event{ID: grants.NewID("e"), Time: now, GrantID: live.ID, Resource: live.Resource,
				Actor: audit.Actor{Kind: audit.ActorUser, ID: "U0ALICE"}, Action: audit.ActionGitHubActivity, Evidence: map[string]string{"id": key}}}}
		}
		for i, tc := range []struct {
			s interface {
				RecordActivity(context.Context, string, string, time.Time, []grants.ActivityItem) (int, error)
			}
			grant string
			key   string
			want  int
		}{
			{a, live.ID, "webhook:d1", 1},
			{a, live.ID, "webhook:d1", 0},
			{b, live.ID, "webhook:d1", 0},
			{b, live.ID, "webhook:d2", 1},
			{b, second.ID, "webhook:d1", 1},
		} {
			it := item(tc.key)
			it[0].Event.GrantID = tc.grant
			n, err := tc.s.RecordActivity(ctx, tc.grant, "github-webhook", now, it)
			if err != nil || n != tc.want {
				t.Errorf("RecordActivity #%d (%s on %s) = %d, %v; want %d", i, tc.key, tc.grant, n, err, tc.want)
			}
		}
		if _, err := a.RecordActivity(ctx, live.ID, "github-webhook", now, []grants.ActivityItem{{Key: ""}}); err == nil {
			t.Error("RecordActivity of an item without a key succeeded")
		}
		if n := countAction(t, a, audit.ActionGitHubActivity, live.ID); n != 2 {
			t.Errorf("github.activity on the grant: %d, want 2", n)
		}
		curs, err := a.ActivityCursors(ctx, []string{live.ID, second.ID})
		if err != nil {
			t.Fatal(err)
		}
		if len(curs) != 2 || curs[0].Source != "github-webhook" || !curs[0].Done || curs[0].LastOK.IsZero() {
			t.Fatalf("cursors %+v", curs)
		}
		events := map[string]int{}
		for _, c := range curs {
			events[c.GrantID] = c.Events
		}
		if events[live.ID] != 2 || events[second.ID] != 1 {
			t.Errorf("cursor events %v, want 2 and 1", events)
		}
		mustVerify(t, a, int64(before+3))
	})
}
