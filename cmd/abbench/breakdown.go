package main

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/accessbroker/accessbroker/grants"
)

// Breakdown says where a revocation phase's lag came from, seen from inside the broker: the
// revoker's own lag (deadline to the provider's answer, as RevokerMetrics.Revoked reports
// it, before the outcome is recorded) and how long the revoker's writes to the store took
// (a claim and a record are one synced SQLite transaction each). A PostgreSQL-side lag much
// above the revoker's is the poller or the server; a revoker's lag that follows the slow
// writes is the store.
type Breakdown struct {
	RevokerLagP50MS float64 `json:"revoker_lag_p50_ms"`
	RevokerLagP99MS float64 `json:"revoker_lag_p99_ms"`
	RevokerLagMaxMS float64 `json:"revoker_lag_max_ms"`
	// ClaimedLag is each grant's time from its deadline to the return of the claim that
	// took it (the revoker's wake-up and the claim itself).
	ClaimedLag Writes `json:"claimed_lag"`
	Claims     Writes `json:"claims"`
	Records    Writes `json:"records"`
	// Provider is the time of each provider call the revoker made (RevokeBatch and the
	// read-back after it).
	Provider Writes `json:"provider_calls"`
}

// Writes is the time of one kind of store write.
type Writes struct {
	N      int     `json:"n"`
	P50MS  float64 `json:"p50_ms"`
	P99MS  float64 `json:"p99_ms"`
	MaxMS  float64 `json:"max_ms"`
	Over20 int     `json:"over_20ms"`
}

// timedStore times the revoker's claims and records and collects its lags (RevokerMetrics).
type timedStore struct {
	grants.Store
	mu       sync.Mutex
	on       bool
	lags     []time.Duration
	claimed  []time.Duration
	claims   []time.Duration
	records  []time.Duration
	provider []time.Duration
}

func (s *timedStore) ClaimDue(ctx context.Context, owner string, now time.Time, limit int, lease time.Duration) ([]grants.Grant, error) {
	sw := grants.StartStopwatch()
	gs, err := s.Store.ClaimDue(ctx, owner, now, limit, lease)
	if len(gs) > 0 {
		s.note(&s.claims, sw.Elapsed())
		at := wall()
		for _, g := range gs {
			s.note(&s.claimed, at.Sub(g.DueAt))
		}
	}
	return gs, err
}

func (s *timedStore) Apply(ctx context.Context, c *grants.Change) error {
	sw := grants.StartStopwatch()
	err := s.Store.Apply(ctx, c)
	s.note(&s.records, sw.Elapsed())
	return err
}

// Revoked implements grants.RevokerMetrics.
func (s *timedStore) Revoked(_ string, lag time.Duration) { s.note(&s.lags, lag) }

// RevokeFailed implements grants.RevokerMetrics.
func (s *timedStore) RevokeFailed(string, bool) {}

func (s *timedStore) note(to *[]time.Duration, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.on {
		*to = append(*to, d)
	}
}

// start begins a phase: what was noted before is dropped.
func (s *timedStore) start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.on, s.lags, s.claimed, s.claims, s.records, s.provider = true, nil, nil, nil, nil, nil
}

// stop ends the phase and summarises it.
func (s *timedStore) stop() Breakdown {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.on = false
	lags := slices.Sorted(slices.Values(s.lags))
	var b Breakdown
	if len(lags) > 0 {
		b.RevokerLagP50MS, b.RevokerLagP99MS, b.RevokerLagMaxMS = ms(quantile(lags, 0.5)), ms(quantile(lags, 0.99)), ms(lags[len(lags)-1])
	}
	b.ClaimedLag, b.Claims, b.Records, b.Provider = writes(s.claimed), writes(s.claims), writes(s.records), writes(s.provider)
	return b
}

func writes(d []time.Duration) Writes {
	d = slices.Sorted(slices.Values(d))
	w := Writes{N: len(d)}
	if len(d) == 0 {
		return w
	}
	w.P50MS, w.P99MS, w.MaxMS = ms(quantile(d, 0.5)), ms(quantile(d, 0.99)), ms(d[len(d)-1])
	for _, x := range d {
		if x > 20*time.Millisecond {
			w.Over20++
		}
	}
	return w
}

// revokeProvider is the revoker's view of the postgres provider: the abilities the revoker
// uses (batch revoke, batch read-back), each call timed into the breakdown.
type revokeProvider interface {
	grants.Provider
	grants.BatchRevoker
	grants.AccessChecker
	grants.BatchAccessChecker
}

type timedProvider struct {
	revokeProvider
	s *timedStore
}

func (p timedProvider) RevokeBatch(ctx context.Context, reqs []grants.RevokeRequest) []grants.BatchResult {
	sw := grants.StartStopwatch()
	defer func() { p.s.note(&p.s.provider, sw.Elapsed()) }()
	return p.revokeProvider.RevokeBatch(ctx, reqs)
}

func (p timedProvider) HasAccess(ctx context.Context, req grants.RevokeRequest) (bool, error) {
	sw := grants.StartStopwatch()
	defer func() { p.s.note(&p.s.provider, sw.Elapsed()) }()
	return p.revokeProvider.HasAccess(ctx, req)
}

func (p timedProvider) HasAccessBatch(ctx context.Context, reqs []grants.RevokeRequest) ([]bool, error) {
	sw := grants.StartStopwatch()
	defer func() { p.s.note(&p.s.provider, sw.Elapsed()) }()
	return p.revokeProvider.HasAccessBatch(ctx, reqs)
}
