package providertest

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/accessbroker/accessbroker/grants"
)

// Latency is a provider that answers every call after a fixed delay, like a remote API, and
// keeps no state: for benchmarks of the revoker and the stores.
type Latency struct{ Delay time.Duration }

// Kind is "slow".
func (Latency) Kind() string { return "slow" }

// Issue returns an empty grant at once.
func (Latency) Issue(context.Context, grants.IssueRequest) (grants.Issued, error) {
	return grants.Issued{}, nil
}

// Revoke succeeds after Delay, or fails when ctx ends first.
func (p Latency) Revoke(ctx context.Context, _ grants.RevokeRequest) error {
	t := time.NewTimer(p.Delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// LagRecorder is a grants.RevokerMetrics that collects revocation lags and closes Done once
// Want revocations were recorded.
type LagRecorder struct {
	Want int
	Done chan struct{}

	mu   sync.Mutex
	lags []time.Duration
}

// NewLagRecorder waits for want revocations.
func NewLagRecorder(want int) *LagRecorder {
	return &LagRecorder{Want: want, Done: make(chan struct{})}
}

// Revoked records one lag.
func (l *LagRecorder) Revoked(_ string, lag time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lags = append(l.lags, lag)
	if len(l.lags) == l.Want {
		close(l.Done)
	}
}

// RevokeFailed ignores failures.
func (l *LagRecorder) RevokeFailed(string, bool) {}

// Percentile returns the lag at p (0..1) of those recorded.
func (l *LagRecorder) Percentile(p float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := append([]time.Duration(nil), l.lags...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

// BatchLatency is Latency that can also revoke many grants in one call
// (grants.BatchRevoker), after the same fixed delay whatever their number, as a server that
// takes one statement for many (the postgres provider's RevokeBatch): for benchmarks of the
// revoker's batch path.
type BatchLatency struct{ Latency }

// RevokeBatch succeeds for every request after Delay, or fails all of them when ctx ends
// first.
func (p BatchLatency) RevokeBatch(ctx context.Context, reqs []grants.RevokeRequest) []grants.BatchResult {
	out := make([]grants.BatchResult, len(reqs))
	if err := p.Revoke(ctx, grants.RevokeRequest{}); err != nil {
		for i := range out {
			out[i].Err = err
		}
	}
	return out
}
