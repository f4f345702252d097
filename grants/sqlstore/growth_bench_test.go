package sqlstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

var (
	pastOnce sync.Once
	pastPath string
	pastErr  error
)

// pastStore builds (once per run, through Store.Apply) a SQLite store with a past: 100,000
// revoked grants of one resource, each with its grant.revoked event, and filler events up to
// 1,000,000 events in all (#16.7). With ACCESSBROKER_GROWTH_BENCH_DB=FILE it is kept in FILE
// and reused by later runs (and other commits' test binaries) when FILE exists.
func pastStore(b *testing.B) string {
	b.Helper()
	pastOnce.Do(func() {
		if keep := os.Getenv("ACCESSBROKER_GROWTH_BENCH_DB"); keep != "" {
			pastPath = keep
			if _, err := os.Stat(keep); err == nil {
				return
			}
		} else {
			dir, err := os.MkdirTemp("", "ab-growth")
			if err != nil {
				pastErr = err
				return
			}
			pastPath = filepath.Join(dir, "past.db")
		}
		s, err := sqlstore.Open(context.Background(), "sqlite", "file:"+pastPath, grants.RealClock{}, nil)
		if err != nil {
			pastErr = err
			return
		}
		defer s.Close()
		ctx := context.Background()
		start := time.Now().UTC().Add(-90 * 24 * time.Hour).Truncate(time.Millisecond)
		const pastGrants, events = 100_000, 1_000_000
		sys := audit.Actor{Kind: audit.ActorSystem, ID: "bench"}
		for i := 0; i < pastGrants; i += 1000 {
			c := &grants.Change{}
			for j := i; j < i+1000; j++ {
				at := start.Add(time.Duration(j) * time.Minute)
				g := &grants.Grant{ID: grants.NewID("g"), Resource: "prod-db", Provider: "fake", State: grants.StateRevoked,
					Person: grants.Person{SlackUserID: fmt.Sprintf("U%04d", j%500)}, Reason: "past",
					CreatedAt: at, IssuedAt: at, ExpiresAt: at.Add(time.Hour), DueAt: at.Add(time.Hour), RevokedAt: at.Add(time.Hour),
					RevokeCause: grants.CauseExpired, Handle: grants.Handle{Key: fmt.Sprintf("past:%d", j)}}
				c.Grants = append(c.Grants, grants.GrantWrite{Grant: g, Create: true})
				c.Events = append(c.Events, grants.NewGrantEvent(at.Add(time.Hour), sys, audit.ActionGrantRevoked, g, "", nil))
			}
			if err := s.Apply(ctx, c); err != nil {
				pastErr = err
				return
			}
		}
		for i := pastGrants; i < events; i += 5000 {
			c := &grants.Change{}
			for j := i; j < min(i+5000, events); j++ {
				c.Events = append(c.Events, benchEvent(j, start.Add(time.Duration(j)*time.Second)))
			}
			if err := s.Apply(ctx, c); err != nil {
				pastErr = err
				return
			}
		}
	})
	if pastErr != nil {
		b.Fatal(pastErr)
	}
	return pastPath
}

// writeSynced writes a file and syncs it, so that the first checkpoint of a measured run
// does not flush the copy's dirty pages (the setup's work, not the store's).
func writeSynced(path string, raw []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(raw); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func cpuNow(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkGrantLifecycle is one grant's whole way through the store, as the Manager and the
// revoker write and read it: the write-ahead record (grant issuing + event), the outcome
// (active + event), the overlap check by handle, the next deadline, the claim and the
// recorded revocation (revoked + event); on an empty store and on one with 1,000,000 audit
// events and 100,000 past grants (#16.7: within 10%). cpu-us/op is the process's CPU time
// per grant, which load on the machine does not inflate as it does ns/op.
func BenchmarkGrantLifecycle(b *testing.B) {
	for _, past := range []bool{false, true} {
		name := "store=empty"
		if past {
			name = "store=1M-events-100k-grants"
		}
		b.Run(name, func(b *testing.B) {
			dsn := "file:" + filepath.Join(b.TempDir(), "ab.db")
			if past {
				// A copy per run, so that every run starts from the same past.
				raw, err := os.ReadFile(pastStore(b))
				if err != nil {
					b.Fatal(err)
				}
				path := filepath.Join(b.TempDir(), "past.db")
				if err := writeSynced(path, raw); err != nil {
					b.Fatal(err)
				}
				dsn = "file:" + path
			}
			s, err := sqlstore.Open(context.Background(), "sqlite", dsn, grants.RealClock{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			op := audit.Actor{Kind: audit.ActorOperator, ID: "bench"}
			live := []grants.State{grants.StateIssuing, grants.StateActive, grants.StateRevoking, grants.StateRevokeFailed}
			i := 0
			cpu0 := cpuNow(b)
			b.ResetTimer()
			for b.Loop() {
				i++
				now := time.Now().UTC().Truncate(time.Millisecond)
				g := &grants.Grant{ID: grants.NewCompactOrderedID("g", now), Resource: "prod-db", Provider: "fake", State: grants.StateIssuing,
					Person: grants.Person{SlackUserID: fmt.Sprintf("U%04d", i%500)}, Reason: "bench",
					CreatedAt: now, ExpiresAt: now.Add(-time.Millisecond), DueAt: now.Add(-time.Millisecond)}
				if err := s.Apply(ctx, &grants.Change{Grants: []grants.GrantWrite{{Grant: g, Create: true}},
					Events: []*audit.Event{grants.NewGrantEvent(now, op, audit.ActionGrantIssuing, g, "", nil)}}); err != nil {
					b.Fatal(err)
				}
				g.State, g.IssuedAt, g.Handle = grants.StateActive, now, grants.Handle{Key: fmt.Sprintf("live:%d", i)}
				if err := s.Apply(ctx, &grants.Change{Grants: []grants.GrantWrite{{Grant: g}},
					Events: []*audit.Event{grants.NewGrantEvent(now, op, audit.ActionGrantIssued, g, "", nil)}}); err != nil {
					b.Fatal(err)
				}
				if _, err := s.ListGrants(ctx, grants.GrantFilter{HandleKey: g.Handle.Key, States: live}); err != nil {
					b.Fatal(err)
				}
				if _, _, err := s.NextDue(ctx); err != nil {
					b.Fatal(err)
				}
				claimed, err := s.ClaimDue(ctx, "i-bench", now, 256, time.Minute)
				if err != nil || len(claimed) != 1 {
					b.Fatalf("claimed %d grants, %v; want 1", len(claimed), err)
				}
				r := &claimed[0]
				r.State, r.RevokedAt, r.RevokeCause, r.ClaimedBy, r.ClaimedTo = grants.StateRevoked, now, grants.CauseExpired, "", time.Time{}
				if err := s.Apply(ctx, &grants.Change{Grants: []grants.GrantWrite{{Grant: r}},
					Events: []*audit.Event{grants.NewGrantEvent(now, audit.Actor{Kind: audit.ActorSystem, ID: "revoker"}, audit.ActionGrantRevoked, r, "", nil)}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cpuNow(b)-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
		})
	}
}
