package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/storetest"
)

// TestPostgresLostCommitAnswerFailsTheGroup: when the connection is lost after the server
// got a group's COMMIT but before its answer reached the store, the outcome is unknown.
// Every caller of the group gets an error, none a definite "not written" (a conflict) that
// would be false, and the change is not retried (a retry would append its events a second
// time, or fail on them as duplicates). What the server committed is there exactly once, the
// chain verifies, and the store goes on appending after it.
func TestPostgresLostCommitAnswerFailsTheGroup(t *testing.T) {
	dsn := newPGSchema(t)
	u, _ := url.Parse(dsn)
	if u == nil || u.Host == "" {
		t.Skipf("%s must be a postgres:// URL for this test", pgEnv)
	}
	wc := newWireCounter(t, u.Host)
	_, proxied := viaAddr(t, dsn, wc.Addr(), nil)
	clock := clocktest.New(storetest.Start)
	s := openPG(t, proxied, clock)
	admin := pgConn(t, pgDSN(t))
	now := clock.Now()
	ctx := context.Background()

	// One change before, so the chain does not start at the lost transaction.
	first := storetest.NewGrant(now, "db-first", time.Hour)
	storetest.MustCreate(t, s, now, first)

	// The group: a leader that writes a grant, waiting for the chain lock, and callers with
	// only events queued behind it, who join its transaction once it holds the lock.
	release := holdChain(t, dsn, s)
	const joiners = 6
	lead := storetest.NewGrant(now, "db-lead", time.Hour)
	changes := []*grants.Change{{Grants: []grants.GrantWrite{{Grant: lead, Create: true}},
		Events: []*audit.Event{storetest.Event(now, audit.ActionGrantIssued, lead)}}}
	for i := range joiners {
		g := storetest.NewGrant(now, fmt.Sprintf("db-%d", i), time.Hour)
		changes = append(changes, &grants.Change{Events: []*audit.Event{storetest.Event(now, audit.ActionGrantIssued, g)}})
	}
	errs := make([]error, len(changes))
	var wg sync.WaitGroup
	wg.Go(func() { errs[0] = s.Apply(ctx, changes[0]) })
	waitForLockWaiter(t, admin, s.Schema())
	for i := 1; i < len(changes); i++ {
		wg.Go(func() { errs[i] = s.Apply(ctx, changes[i]) })
		waitQueued(t, s, i)
	}
	cut := wc.CutAtNextCommit()
	release()
	wg.Wait()
	<-cut // the server ran the COMMIT and ended the session

	for i, err := range errs {
		switch {
		case err == nil:
			t.Errorf("caller %d: Apply succeeded, but the COMMIT's answer was lost", i)
		case errors.Is(err, grants.ErrConflict) || errors.Is(err, grants.ErrPendingLimit):
			t.Errorf("caller %d: %v; want the lost connection's error (the change was written, it must not be retried nor called a conflict)", i, err)
		}
	}
	if n := wc.BeginsAfterCut(); n != 0 {
		t.Errorf("%d transactions begun after the COMMIT's answer was lost; want 0 (no retry of a change whose outcome is unknown)", n)
	}

	// A fresh store, straight to the server, sees the group's transaction once.
	fresh := openPG(t, dsn, clock)
	count := map[string]int{}
	for _, ev := range readAll(t, fresh) {
		count[ev.ID]++
	}
	for i, c := range changes {
		if n := count[c.Events[0].ID]; n != 1 {
			t.Errorf("caller %d's event stored %d times; want once (the server committed it)", i, n)
		}
	}
	if _, err := fresh.GetGrant(ctx, lead.ID); err != nil {
		t.Errorf("the leader's grant, committed with its event: %v", err)
	}
	if len(count) != 1+len(changes) {
		t.Errorf("%d events stored; want %d (the first change's and the group's)", len(count), 1+len(changes))
	}

	// The store that lost the answer appends after what was committed, and the chain
	// verifies.
	after := storetest.NewGrant(now, "db-after", time.Hour)
	storetest.MustCreate(t, s, now, after)
	mustVerify(t, fresh, int64(2+len(changes)))
}
