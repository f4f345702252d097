package grants_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/grants"
)

// gatedApplyStore holds every Apply after close(gate) is armed until release is closed, and
// counts the grants ClaimDue handed out.
type gatedApplyStore struct {
	grants.Store
	mu      sync.Mutex
	armed   bool
	release chan struct{}
	claimed int
	applies int
}

func (s *gatedApplyStore) arm() {
	s.mu.Lock()
	s.armed = true
	s.mu.Unlock()
}

func (s *gatedApplyStore) Apply(ctx context.Context, c *grants.Change) error {
	s.mu.Lock()
	armed := s.armed
	if armed {
		s.applies++
	}
	s.mu.Unlock()
	if armed {
		<-s.release
	}
	return s.Store.Apply(ctx, c)
}

func (s *gatedApplyStore) ClaimDue(ctx context.Context, owner string, now time.Time, limit int, lease time.Duration) ([]grants.Grant, error) {
	gs, err := s.Store.ClaimDue(ctx, owner, now, limit, lease)
	s.mu.Lock()
	s.claimed += len(gs)
	s.mu.Unlock()
	return gs, err
}

func (s *gatedApplyStore) counts() (claimed, applies int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.claimed, s.applies
}

// TestBurstIsRevokedWhileOutcomesWaitForTheWriter: grants due at the same moment are all
// claimed and revoked at the provider while the recording of the first outcomes is held up
// (a slow writer): a finished revocation never waits for the records of others to be
// written, so a burst's last grant waits for its claim, not for every outcome before it.
// (Before #16.3 the outcomes waited in a channel of Batch and their revocations kept their
// in-flight slots meanwhile: the sweep stopped claiming after about 3 × Batch grants.) No
// outcome counts as revoked before it is recorded, and after the writer is released every
// grant is recorded revoked.
func TestBurstIsRevokedWhileOutcomesWaitForTheWriter(t *testing.T) {
	e := newEnv(t)
	const n = 120
	for i := range n {
		if _, _, err := e.mgr.Issue(context.Background(), grants.IssueInput{Resource: "prod-db",
			Person:   grants.Person{SlackTeamID: "T1", SlackUserID: fmt.Sprintf("U%04d", i)},
			Duration: time.Hour, Reason: "burst", Actor: operator}); err != nil {
			t.Fatalf("Issue: %v", err)
		}
	}
	st := &gatedApplyStore{Store: e.store, release: make(chan struct{})}
	obs := newObserver()
	obs.revoked = make(chan grants.Grant, n)
	r := grants.NewRevoker(st, map[string]grants.Provider{"prod-db": e.prov}, e.clock, nil,
		grants.RevokerOptions{Observer: obs, Batch: 5})
	st.arm()
	released := false
	release := func() {
		if !released {
			released = true
			close(st.release)
		}
	}
	runRevoker(t, r)
	t.Cleanup(release) // registered after runRevoker: runs before the revoker is stopped
	waitSleeping(t, e)
	e.clock.Advance(time.Hour)

	deadline := time.Now().Add(10 * time.Second) // a hang guard, not a timing assertion
	for {
		_, revokes := e.prov.counts()
		claimed, applies := st.counts()
		if revokes == n && claimed == n {
			if applies == 0 {
				t.Fatal("no outcome waited for the writer")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with the writer held up, %d of %d grants were claimed and %d revoked at the provider", claimed, n, revokes)
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case g := <-obs.revoked:
		t.Fatalf("grant %s counted as revoked before its outcome was recorded", g.ID)
	default:
	}
	release()
	for range n {
		recv(t, obs.revoked, "every outcome recorded")
	}
	left, err := e.store.ListGrants(context.Background(), grants.GrantFilter{States: []grants.State{grants.StateActive, grants.StateRevoking, grants.StateRevokeFailed}})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("%d grants not recorded revoked", len(left))
	}
}
