package grants_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/providertest"
)

// processCPU is the CPU time (user and system) this process has used.
func processCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIssue issues grants one after the other through grants.Manager on SQLite with a
// provider that answers at once, so what is measured is the broker's own issue path: the
// overlap check, the write-ahead transaction, the outcome transaction (each synced) and their
// audit events. cpu-us/op is the process's CPU time per issue (stable under load, unlike
// ns/op).
//
//	go test -run '^$' -bench BenchmarkIssue -benchtime 2000x -cpu 1 ./grants/
func BenchmarkIssue(b *testing.B) {
	st := benchStore(b)
	res := grants.Resource{Name: "slow", Provider: "slow", DefaultDuration: time.Hour, MaxDuration: 8 * time.Hour}
	m := grants.NewManager(st, map[string]grants.Provider{"slow": providertest.Latency{}}, []grants.Resource{res}, grants.RealClock{}, nil, grants.ManagerOptions{})
	ctx := context.Background()
	issue := func(i int) {
		user := fmt.Sprintf("U%07d", i)
		if _, _, err := m.Issue(ctx, grants.IssueInput{Resource: "slow", Person: grants.Person{SlackTeamID: "T1", SlackUserID: user},
			Duration: time.Hour, Reason: "bench", Actor: audit.Actor{Kind: audit.ActorUser, ID: user}}); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 50 { // every statement prepared, the first pages cached
		issue(-1 - i)
	}
	cpu := processCPU(b)
	i := 0
	for b.Loop() {
		issue(i)
		i++
	}
	b.ReportMetric(float64((processCPU(b)-cpu).Microseconds())/float64(i), "cpu-us/op")
}
