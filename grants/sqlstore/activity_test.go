package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/grants/storetest"
)

func activityGrant(now time.Time, provider string) *grants.Grant {
	g := storetest.NewGrant(now, "prod-aws", time.Hour)
	g.Provider = provider
	return g
}

func activityItem(key string) grants.ActivityItem {
	return grants.ActivityItem{Key: key, Event: &audit.Event{Actor: audit.Actor{Kind: audit.ActorUser, ID: "U0ALICE"},
		Action: audit.ActionAWSActivity, Evidence: map[string]string{"event_id": key}}}
}

func claimAll(t *testing.T, s *sqlstore.Store, owner string, now time.Time) []grants.ActivityCursor {
	t.Helper()
	got, err := s.ClaimActivity(context.Background(), grants.ActivityClaim{Owner: owner, Source: "aws-cloudtrail",
		Providers: []string{"aws-sts"}, Now: now, Since: now.Add(-20 * time.Minute), Limit: 1000, Lease: 10 * time.Minute})
	if err != nil {
		t.Fatalf("ClaimActivity: %v", err)
	}
	return got
}

func countAction(t *testing.T, s *sqlstore.Store, action audit.Action, grantID string) int {
	t.Helper()
	n := 0
	for _, e := range readAll(t, s) {
		if e.Action == action && e.GrantID == grantID {
			n++
		}
	}
	return n
}

// TestActivityCursorsClaimAndDedupe: cursors are made only for grants of the source's
// providers that are live or ended within the after-end window; replicas claim them
// disjointly; each key is recorded once per grant (a repeat in a later batch and within a
// batch are dropped), the events chain and verify; a lapsed lease refuses the save.
func TestActivityCursorsClaimAndDedupe(t *testing.T) {
	forEachBackend(t, func(t *testing.T, clock *clocktest.Fake, replica replicaFactory) {
		ctx := context.Background()
		a, b := replica(), replica()
		now := clock.Now()
		live := activityGrant(now, "aws-sts")
		other := activityGrant(now, "postgres")
		old := activityGrant(now.Add(-2*time.Hour), "aws-sts")
		old.State, old.RevokedAt = grants.StateRevoked, now.Add(-time.Hour)
		recent := activityGrant(now.Add(-time.Hour), "aws-sts")
		recent.State, recent.RevokedAt = grants.StateRevoked, now.Add(-5*time.Minute)
		for _, g := range []*grants.Grant{live, other, old, recent} {
			storetest.MustCreate(t, a, now, g)
		}
		before := len(readAll(t, a))

		var mu sync.Mutex
		owners := map[string]string{}
		var wg sync.WaitGroup
		for i, s := range []*sqlstore.Store{a, b, a, b} {
			wg.Go(func() {
				name := fmt.Sprintf("r%d", i)
				for _, c := range claimAll(t, s, name, now) {
					mu.Lock()
					if prev, dup := owners[c.GrantID]; dup {
						t.Errorf("cursor of %s claimed by %s and %s", c.GrantID, prev, name)
					}
					owners[c.GrantID] = name
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(owners) != 2 || owners[live.ID] == "" || owners[recent.ID] == "" {
			t.Fatalf("claimed %v; want the live and the recently revoked aws-sts grants only", owners)
		}

		store := map[string]*sqlstore.Store{"r0": a, "r1": b, "r2": a, "r3": b}[owners[live.ID]]
		cur := grants.ActivityCursor{GrantID: live.ID, Source: "aws-cloudtrail", Cursor: "c1", NextAt: now.Add(5 * time.Minute), LastOK: now}
		items := []grants.ActivityItem{activityItem("ev-1"), activityItem("ev-2"), activityItem("ev-2")}
		for _, it := range items {
			it.Event.ID, it.Event.Time, it.Event.GrantID = grants.NewID("e"), now, live.ID
		}
		if _, err := store.SaveActivity(ctx, "intruder", cur, items); !errors.Is(err, grants.ErrConflict) {
			t.Fatalf("save by a replica without the lease: %v, want ErrConflict", err)
		}
		n, err := store.SaveActivity(ctx, owners[live.ID], cur, items)
		if err != nil || n != 2 {
			t.Fatalf("SaveActivity = %d, %v; want 2 new", n, err)
		}
		// Nothing is due before NextAt; then the same key again and one new.
		if got := claimAll(t, a, "r0", now.Add(time.Minute)); len(got) != 0 {
			t.Fatalf("claimed %d cursors before they are due", len(got))
		}
		clock.Advance(6 * time.Minute)
		got := claimAll(t, b, "r1", clock.Now())
		var again grants.ActivityCursor
		for _, c := range got {
			if c.GrantID == live.ID {
				again = c
			}
		}
		if again.Cursor != "c1" || again.Events != 2 {
			t.Fatalf("cursor read back as %+v; want cursor c1 with 2 events", again)
		}
		items = []grants.ActivityItem{activityItem("ev-2"), activityItem("ev-3")}
		for _, it := range items {
			it.Event.ID, it.Event.Time, it.Event.GrantID = grants.NewID("e"), clock.Now(), live.ID
		}
		again.Done = true
		if n, err := b.SaveActivity(ctx, "r1", again, items); err != nil || n != 1 {
			t.Fatalf("second SaveActivity = %d, %v; want 1 new", n, err)
		}
		if c := countAction(t, a, audit.ActionAWSActivity, live.ID); c != 3 {
			t.Fatalf("%d aws.activity events for the grant; want 3 (ev-1, ev-2, ev-3 once each)", c)
		}
		curs, err := a.ActivityCursors(ctx, []string{live.ID, other.ID})
		if err != nil || len(curs) != 1 || !curs[0].Done || curs[0].Events != 3 {
			t.Fatalf("ActivityCursors = %+v, %v; want one done cursor with 3 events", curs, err)
		}
		clock.Advance(time.Hour)
		for _, c := range claimAll(t, a, "r0", clock.Now()) {
			if c.GrantID == live.ID {
				t.Fatalf("a done cursor was claimed again")
			}
		}
		mustVerify(t, a, int64(before+3))
	})
}

// fakeSource answers Collect from a list of items per grant, recording the windows asked.
type fakeSource struct {
	mu      sync.Mutex
	items   map[string][]grants.ActivityItem
	fail    error
	windows []grants.ActivityWindow
}

func (f *fakeSource) Collect(_ context.Context, g grants.Grant, w grants.ActivityWindow, cursor string) (grants.ActivityBatch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.windows = append(f.windows, w)
	if f.fail != nil {
		return grants.ActivityBatch{}, f.fail
	}
	var out []grants.ActivityItem
	for _, it := range f.items[g.ID] {
		e := *it.Event
		e.Evidence = map[string]string{"event_id": it.Key}
		out = append(out, grants.ActivityItem{Key: it.Key, Event: &e})
	}
	return grants.ActivityBatch{Items: out, Cursor: grants.Timestamp(w.To), Complete: true}, nil
}

type upMetrics struct {
	mu       sync.Mutex
	up       map[string]bool
	recorded int
}

func (m *upMetrics) ActivityRecorded(_ string, n int) { m.mu.Lock(); m.recorded += n; m.mu.Unlock() }
func (m *upMetrics) ActivitySourceUp(s string, up bool) {
	m.mu.Lock()
	m.up[s] = up
	m.mu.Unlock()
}

// TestActivityCollectorSurvivesRestart: a collector records a grant's activity, is replaced
// by a new one on a reopened store (a restart), which records only what is new; after the
// grant ends it keeps collecting through the after-end window and then stops; a failing
// source is reported down and backs off, and recovers.
func TestActivityCollectorSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	clock := clocktest.New(storetest.Start)
	path := "file:" + t.TempDir() + "/ab.db"
	open := func() *sqlstore.Store {
		s, err := sqlstore.Open(ctx, "sqlite", path, clock, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	g := activityGrant(clock.Now(), "aws-sts")
	storetest.MustCreate(t, s, clock.Now(), g)
	src := &fakeSource{items: map[string][]grants.ActivityItem{g.ID: {activityItem("a"), activityItem("b")}}}
	m := &upMetrics{up: map[string]bool{}}
	newCollector := func(s *sqlstore.Store) *grants.ActivityCollector {
		c, err := grants.NewActivityCollector(s, s, clock, []grants.CollectorSource{{Name: "aws-cloudtrail", Providers: []string{"aws-sts"},
			Source: src, AfterEnd: 20 * time.Minute, Poll: 5 * time.Minute}}, grants.CollectorOptions{Instance: "test", Metrics: m})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if n, err := newCollector(s).Pass(ctx, "aws-cloudtrail"); err != nil || n != 2 {
		t.Fatalf("first pass = %d, %v; want 2", n, err)
	}
	s.Close()

	s = open()
	defer s.Close()
	c := newCollector(s)
	clock.Advance(5 * time.Minute)
	src.mu.Lock()
	src.items[g.ID] = append(src.items[g.ID], activityItem("c"))
	src.mu.Unlock()
	if n, err := c.Pass(ctx, "aws-cloudtrail"); err != nil || n != 1 {
		t.Fatalf("pass after restart = %d, %v; want 1 (only c is new)", n, err)
	}

	// The source fails: reported down, the cursor backs off and keeps the error.
	src.mu.Lock()
	src.fail = errors.New("cloudtrail: ThrottlingException: Rate exceeded")
	src.mu.Unlock()
	clock.Advance(5 * time.Minute)
	if _, err := c.Pass(ctx, "aws-cloudtrail"); err != nil {
		t.Fatal(err)
	}
	curs, _ := s.ActivityCursors(ctx, []string{g.ID})
	if len(curs) != 1 || curs[0].Failures != 1 || curs[0].LastError == "" || m.up["aws-cloudtrail"] {
		t.Fatalf("after a failure: cursors %+v, up=%v; want 1 failure recorded and the source down", curs, m.up)
	}
	src.mu.Lock()
	src.fail = nil
	src.mu.Unlock()

	// The grant ends; collection continues through the after-end window, then stops.
	g2, _ := s.GetGrant(ctx, g.ID)
	g2.State, g2.RevokedAt = grants.StateRevoked, clock.Now()
	storetest.MustApply(t, s, &grants.Change{Grants: []grants.GrantWrite{{Grant: &g2}}, Events: []*audit.Event{storetest.Event(clock.Now(), audit.ActionGrantRevoked, &g2)}})
	clock.Advance(10 * time.Minute)
	if _, err := c.Pass(ctx, "aws-cloudtrail"); err != nil {
		t.Fatal(err)
	}
	if !m.up["aws-cloudtrail"] {
		t.Fatal("the source is still reported down after a successful look-up")
	}
	curs, _ = s.ActivityCursors(ctx, []string{g.ID})
	if curs[0].Done || curs[0].Failures != 0 {
		t.Fatalf("cursor %+v: done before the after-end window passed, or failures not reset", curs[0])
	}
	clock.Advance(15 * time.Minute)
	if _, err := c.Pass(ctx, "aws-cloudtrail"); err != nil {
		t.Fatal(err)
	}
	curs, _ = s.ActivityCursors(ctx, []string{g.ID})
	src.mu.Lock()
	last := src.windows[len(src.windows)-1]
	src.mu.Unlock()
	if !curs[0].Done || !last.To.Equal(g2.RevokedAt.Add(20*time.Minute)) || !last.End.Equal(g2.RevokedAt) {
		t.Fatalf("cursor %+v, last window %+v; want done after a look-up up to the end of the after-end window", curs[0], last)
	}
	if got := countAction(t, s, audit.ActionAWSActivity, g.ID); got != 3 {
		t.Fatalf("%d activity events; want 3", got)
	}
}
