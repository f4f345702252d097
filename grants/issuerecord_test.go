package grants_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// flakyIssuedStore fails the next n changes that record grant.issued, as a database that
// is briefly unavailable would: nothing of a failed change is written.
type flakyIssuedStore struct {
	grants.Store
	mu    sync.Mutex
	n     int
	fails int
}

func (s *flakyIssuedStore) Apply(ctx context.Context, c *grants.Change) error {
	s.mu.Lock()
	for _, e := range c.Events {
		if e.Action == audit.ActionGrantIssued && s.n != 0 {
			if s.n > 0 {
				s.n--
			}
			s.fails++
			s.mu.Unlock()
			return errors.New("database is locked")
		}
	}
	s.mu.Unlock()
	return s.Store.Apply(ctx, c)
}

func (s *flakyIssuedStore) failures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fails
}

// TestIssuedRecordRetried: the provider issued, the grant.issued record failed once (the
// audit store failing once then recovering): the record is retried and the requester gets
// the credential and an active grant, with one provider call. Before issue #15.6 this
// withheld the credential and revoked the grant, and the requester had to ask again.
func TestIssuedRecordRetried(t *testing.T) {
	e := newEnv(t)
	fs := &flakyIssuedStore{Store: e.store, n: 1}
	mgr := grants.NewManager(fs, map[string]grants.Provider{"prod-db": e.prov}, []grants.Resource{testResource}, e.clock, nil, grants.ManagerOptions{Instance: "i-test"})
	g, cred, err := mgr.Issue(context.Background(), grants.IssueInput{Resource: "prod-db", Person: alice, Duration: time.Hour, Reason: "checking replication lag", Actor: operator})
	if err != nil {
		t.Fatalf("Issue with one failed record: %v", err)
	}
	if cred.Empty() || fs.failures() != 1 {
		t.Fatalf("credential empty %v, %d failed records; want a credential after 1", cred.Empty(), fs.failures())
	}
	got, _ := e.store.GetGrant(context.Background(), g.ID)
	if got.State != grants.StateActive || got.ClaimedBy != "" {
		t.Fatalf("grant after the retried record: %s (claimed by %q), want active and unclaimed", got.State, got.ClaimedBy)
	}
	if issues, _ := e.prov.counts(); issues != 1 {
		t.Fatalf("provider issued %d times, want 1", issues)
	}
	if acts := actions(t, e.store, g.ID); len(acts) != 2 || acts[1] != string(audit.ActionGrantIssued) {
		t.Fatalf("audit trail %v, want grant.issuing, grant.issued", acts)
	}
}

// TestIssuedRecordRetriedWithBackoff: three failures in a row are retried after 1 s and
// 2 s on the injected clock, and the fourth attempt records the grant.
func TestIssuedRecordRetriedWithBackoff(t *testing.T) {
	e := newEnv(t)
	fs := &flakyIssuedStore{Store: e.store, n: 3}
	mgr := grants.NewManager(fs, map[string]grants.Provider{"prod-db": e.prov}, []grants.Resource{testResource}, e.clock, nil, grants.ManagerOptions{Instance: "i-test"})
	type result struct {
		g   grants.Grant
		err error
	}
	done := make(chan result, 1)
	go func() {
		g, _, err := mgr.Issue(context.Background(), grants.IssueInput{Resource: "prod-db", Person: alice, Duration: time.Hour, Reason: "checking replication lag", Actor: operator})
		done <- result{g, err}
	}()
	for _, step := range []time.Duration{time.Second, 2 * time.Second} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // hang guard
		if err := e.clock.BlockUntil(ctx, 1); err != nil {
			cancel()
			t.Fatalf("Issue never waited to retry: %v", err)
		}
		cancel()
		e.clock.Advance(step)
	}
	r := recv(t, done, "Issue")
	if r.err != nil || fs.failures() != 3 {
		t.Fatalf("Issue = %v after %d failed records; want success after 3", r.err, fs.failures())
	}
}

// TestIssuedRecordGivesUpBeforeTheLease: a record that keeps failing is given up before the
// issue lease ends, the credential is withheld (ErrAudit), and the grant is left issuing for
// the revoker, which removes the access once the lease has lapsed.
func TestIssuedRecordGivesUpBeforeTheLease(t *testing.T) {
	e := newEnv(t)
	fs := &flakyIssuedStore{Store: e.store, n: -1}
	mgr := grants.NewManager(fs, map[string]grants.Provider{"prod-db": e.prov}, []grants.Resource{testResource}, e.clock, nil,
		grants.ManagerOptions{Instance: "i-test", IssueTimeout: 20 * time.Second})
	type result struct {
		g   grants.Grant
		err error
	}
	done := make(chan result, 1)
	go func() {
		g, cred, err := mgr.Issue(context.Background(), grants.IssueInput{Resource: "prod-db", Person: alice, Duration: time.Hour, Reason: "checking replication lag", Actor: operator})
		if !cred.Empty() {
			err = errors.New("a credential was delivered for a grant that is not recorded")
		}
		done <- result{g, err}
	}()
	// Advance a second whenever Issue waits to retry, until it gives up.
	var r result
	for waiting := true; waiting; {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // hang guard
		blocked := make(chan error, 1)
		go func() { blocked <- e.clock.BlockUntil(ctx, 1) }()
		select {
		case r = <-done:
			waiting = false
		case err := <-blocked:
			if err != nil {
				cancel()
				t.Fatalf("Issue neither waited nor returned: %v", err)
			}
			e.clock.Advance(time.Second)
		}
		cancel()
	}
	if r.g.ID == "" {
		t.Fatalf("Issue = %v before writing the grant", r.err)
	}
	if !errors.Is(r.err, grants.ErrAudit) {
		t.Fatalf("Issue = %v, want ErrAudit", r.err)
	}
	if now, lease := e.clock.Now(), r.g.CreatedAt.Add(20*time.Second); !now.Before(lease) {
		t.Fatalf("gave up at %s, not before the lease end %s", now, lease)
	}
	got, _ := e.store.GetGrant(context.Background(), r.g.ID)
	if got.State != grants.StateIssuing {
		t.Fatalf("grant %s, want issuing (left for the revoker)", got.State)
	}
	e.clock.Advance(time.Minute)
	if err := grants.NewRevoker(e.store, map[string]grants.Provider{"prod-db": e.prov}, e.clock, nil, grants.RevokerOptions{}).Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.store.GetGrant(context.Background(), r.g.ID); got.State != grants.StateRevoked || e.prov.live(r.g.ID) {
		t.Fatalf("after the lease: %s, access live %v; want revoked, gone", got.State, e.prov.live(r.g.ID))
	}
}
