package sqlstore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/grants/storetest"
)

// TestEventTimesNeverGoBackwards: an event stamped earlier than the chain's head (a concurrent
// writer committed first, or a replica's clock lags) is recorded at the head's time, so time
// order and seq order agree.
func TestEventTimesNeverGoBackwards(t *testing.T) {
	forEachBackend(t, func(t *testing.T, clock *clocktest.Fake, replica replicaFactory) {
		s := replica()
		at := func(d time.Duration) *audit.Event {
			return &audit.Event{ID: grants.NewID("e"), Time: storetest.Start.Add(d), Actor: audit.Actor{Kind: audit.ActorSystem, ID: "t"}, Action: audit.ActionGrantIssued}
		}
		for _, d := range []time.Duration{time.Minute, 30 * time.Second, 2 * time.Minute, time.Second} {
			storetest.MustApply(t, s, &grants.Change{Events: []*audit.Event{at(d)}})
		}
		var got []time.Duration
		for _, e := range readAll(t, s) {
			got = append(got, e.Time.Sub(storetest.Start))
		}
		want := []time.Duration{time.Minute, time.Minute, 2 * time.Minute, 2 * time.Minute}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("stored times (-want +got):\n%s", diff)
		}
		mustVerify(t, s, 4)
	})
}

// TestSearchMatchesReference compares Search with audit.Query.Select (the in-memory reference)
// over a log with several actors, resources and a time span, for each kind of filter and
// both orders, paging through the results.
func TestSearchMatchesReference(t *testing.T) {
	forEachBackend(t, func(t *testing.T, clock *clocktest.Fake, replica replicaFactory) {
		s := replica()
		c := &grants.Change{}
		for i := range 300 {
			c.Events = append(c.Events, &audit.Event{
				ID: grants.NewID("e"), Time: storetest.Start.Add(time.Duration(i) * time.Minute),
				Actor:    audit.Actor{Kind: audit.ActorUser, ID: fmt.Sprintf("U%d", i%7), Email: fmt.Sprintf("u%d@example.com", i%7)},
				Action:   []audit.Action{audit.ActionGrantIssued, audit.ActionGrantRevoked, audit.ActionRequestRejected}[i%3],
				Resource: fmt.Sprintf("res-%d", i%5), GrantID: fmt.Sprintf("g_%d", i%50),
			})
		}
		// Some events' email is another actor's id: an actor search finds either (i = 66,
		// 143, … match "U3" by both columns, and are found once).
		for i, e := range c.Events {
			if i%11 == 0 {
				e.Actor.Email = "U3"
			}
		}
		storetest.MustApply(t, s, c)
		all := readAll(t, s)
		since, until := storetest.Start.Add(40*time.Minute), storetest.Start.Add(200*time.Minute)
		for _, q := range []audit.Query{
			{Actor: "U3"}, {Actor: "u4@example.com"}, {Resource: "res-2"}, {Action: audit.ActionGrantRevoked},
			{GrantID: "g_7"}, {Since: since}, {Until: until}, {Since: since, Until: until, Resource: "res-1"},
			{Since: since, Until: until, Action: audit.ActionGrantIssued, Actor: "U5", Descending: true},
			{Since: storetest.Start.Add(10 * time.Hour)}, {Until: storetest.Start},
			{Actor: "U3", Descending: true}, {Actor: "U3", Resource: "res-1"}, {Actor: "u4@example.com", Descending: true, Action: audit.ActionGrantIssued},
			{Actor: "U3", Since: since, Until: until, Descending: true}, {Actor: "nobody"},
		} {
			full := q
			full.Limit = 10000
			wantAll, err := full.Select(all)
			if err != nil {
				t.Fatal(err)
			}
			q.Limit = 7 // several pages
			got := searchAll(t, s, q)
			if diff := cmp.Diff(seqs(wantAll), seqs(got)); diff != "" {
				t.Errorf("query %+v (-want +got):\n%s", q, diff)
			}
		}
	})
}

// searchAll pages through Search with AfterSeq until a short page.
func searchAll(t *testing.T, s *sqlstore.Store, q audit.Query) []audit.Event {
	t.Helper()
	var out []audit.Event
	for range 1000 {
		evs, err := s.Search(t.Context(), q)
		if err != nil {
			t.Fatalf("Search(%+v): %v", q, err)
		}
		out = append(out, evs...)
		if len(evs) < q.Limit {
			return out
		}
		q.AfterSeq = evs[len(evs)-1].Seq
	}
	t.Fatal("Search never ended")
	return nil
}

func seqs(evs []audit.Event) []int64 {
	out := []int64{}
	for _, e := range evs {
		out = append(out, e.Seq)
	}
	return out
}
