package grants

import (
	"context"
	"fmt"
	"sync"
)

// BatchRevoker is an optional Provider ability: removing the access of many grants in one
// call, in fewer upstream round trips than one Revoke each (the postgres provider drops many
// roles with one statement). The revoker hands it the grants of one resource that are due
// and waiting for that provider at the same time, at most RevokerOptions.ProviderBatch at
// once; one batch call takes one of the provider's ConcurrencyPerProvider slots. A provider
// that is not a BatchRevoker is called one grant at a time, as before.
//
// RevokeBatch returns exactly one result per request, in the order of reqs. Each is what
// RevokeWithResult (or Revoke) would have returned for that request alone: idempotent, nil
// when the access is already gone, ErrNeedsOperator for what retrying will not fix. A failure
// must be reported for the grants it concerns only; the others are still revoked where
// possible (the revoker records each grant's outcome on its own and retries only the failed
// ones).
type BatchRevoker interface {
	RevokeBatch(ctx context.Context, reqs []RevokeRequest) []BatchResult
}

// BatchResult is one grant's answer in RevokeBatch: its RevokeResult and its error.
type BatchResult struct {
	RevokeResult
	Err error
}

// BatchAccessChecker is an optional ability of an AccessChecker: reading back the access of
// many grants in one call. The revoker uses it after RevokeBatch for the grants the batch
// revoked. HasAccessBatch returns one answer per request, in the order of reqs, each as
// HasAccess would have answered; an error answers none of them (each is retried).
type BatchAccessChecker interface {
	HasAccessBatch(ctx context.Context, reqs []RevokeRequest) ([]bool, error)
}

// DefaultProviderBatch is RevokerOptions.ProviderBatch's default.
const DefaultProviderBatch = 100

// batchJob is one grant waiting in a revokeBatcher.
type batchJob struct {
	ctx  context.Context
	req  RevokeRequest
	res  RevokeResult
	err  error
	done chan struct{}
}

// revokeBatcher gathers the revocations of one resource whose provider is a BatchRevoker:
// a grant that arrives while earlier batches are in flight waits for the next call, so a
// burst of due grants costs a few provider calls, and a lone grant is sent at once (no
// waiting for company).
type revokeBatcher struct {
	r    *Revoker
	p    BatchRevoker
	kind string

	mu      sync.Mutex
	queue   []*batchJob
	running int
}

// batcher returns the resource's batcher, made on first use.
func (r *Revoker) batcher(resource, kind string, p BatchRevoker) *revokeBatcher {
	r.semMu.Lock()
	defer r.semMu.Unlock()
	b, ok := r.batchers[resource]
	if !ok {
		b = &revokeBatcher{r: r, p: p, kind: kind}
		r.batchers[resource] = b
	}
	return b
}

// revoke revokes req in a batch (with read-back) and returns its own result.
func (b *revokeBatcher) revoke(ctx context.Context, req RevokeRequest) (RevokeResult, error) {
	j := &batchJob{ctx: ctx, req: req, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, j)
	start := b.running < min(b.r.opts.ConcurrencyPerProvider, batchCallsInFlight)
	if start {
		b.running++
	}
	b.mu.Unlock()
	if start {
		go b.run()
	}
	<-j.done // a runner always answers: with the provider's result or ctx's error
	return j.res, j.err
}

// run sends batches until the queue is empty. A batch holds jobs of one context only (one
// sweep's), at most ProviderBatch of them.
func (b *revokeBatcher) run() {
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.running--
			b.mu.Unlock()
			return
		}
		ctx := b.queue[0].ctx
		var jobs []*batchJob
		rest := b.queue[:0:0]
		for _, j := range b.queue {
			if j.ctx == ctx && len(jobs) < b.r.opts.ProviderBatch {
				jobs = append(jobs, j)
			} else {
				rest = append(rest, j)
			}
		}
		b.queue = rest
		b.mu.Unlock()
		b.call(ctx, jobs)
		for _, j := range jobs {
			close(j.done)
		}
	}
}

// call makes one RevokeBatch call for jobs (one provider slot) and reads back the access of
// those it revoked.
func (b *revokeBatcher) call(ctx context.Context, jobs []*batchJob) {
	sem := b.r.sem(b.kind)
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		for _, j := range jobs {
			j.err = ctx.Err()
		}
		return
	}
	defer func() { <-sem }()
	actx, cancel := context.WithTimeout(ctx, b.r.opts.AttemptTimeout)
	defer cancel()
	reqs := make([]RevokeRequest, len(jobs))
	for i, j := range jobs {
		reqs[i] = j.req
	}
	results := b.p.RevokeBatch(actx, reqs)
	var revoked []*batchJob
	for i, j := range jobs {
		if i >= len(results) {
			j.err = fmt.Errorf("revoke grant %s: the provider's batch answered %d of %d grants", j.req.GrantID, len(results), len(jobs))
			continue
		}
		j.res, j.err = results[i].RevokeResult, results[i].Err
		if j.err != nil {
			j.err = fmt.Errorf("revoke grant %s: %w", j.req.GrantID, j.err)
			continue
		}
		revoked = append(revoked, j)
	}
	b.readBack(actx, revoked)
}

// readBack confirms that the access of the revoked jobs is gone (see Revoker.attempt), in one
// call when the provider is a BatchAccessChecker; jobs the provider read back itself
// (RevokeResult.ReadBack) need no call.
func (b *revokeBatcher) readBack(ctx context.Context, jobs []*batchJob) {
	unread := jobs[:0:0]
	for _, j := range jobs {
		if j.res.ReadBack {
			j.res.Evidence = mergeEvidence(map[string]string{"read_back": "gone"}, j.res.Evidence)
		} else {
			unread = append(unread, j)
		}
	}
	jobs = unread
	c, ok := b.p.(AccessChecker)
	if !ok || len(jobs) == 0 {
		return
	}
	has := make([]bool, len(jobs))
	errs := make([]error, len(jobs))
	if bc, ok := b.p.(BatchAccessChecker); ok && len(jobs) > 1 { // one alone: HasAccess
		reqs := make([]RevokeRequest, len(jobs))
		for i, j := range jobs {
			reqs[i] = j.req
		}
		got, err := bc.HasAccessBatch(ctx, reqs)
		if err == nil && len(got) != len(jobs) {
			err = fmt.Errorf("the provider answered %d of %d grants", len(got), len(jobs))
		}
		for i := range jobs {
			if err != nil {
				errs[i] = err
			} else {
				has[i] = got[i]
			}
		}
	} else {
		for i, j := range jobs {
			has[i], errs[i] = c.HasAccess(ctx, j.req)
		}
	}
	for i, j := range jobs {
		switch {
		case errs[i] != nil:
			j.err = fmt.Errorf("revoke grant %s: read back after revoke: %w", j.req.GrantID, errs[i])
		case has[i]:
			j.err = fmt.Errorf("revoke grant %s: read back after revoke: the access is still there", j.req.GrantID)
		default:
			j.res.Evidence = mergeEvidence(map[string]string{"read_back": "gone"}, j.res.Evidence)
		}
	}
}

// batchCallsInFlight bounds a resource's batch calls in flight (and ConcurrencyPerProvider
// below that): with a slot for every due grant the first grants of a burst would each take
// one and go alone, one by one; with a few, the grants that arrive meanwhile gather into the
// next calls.
const batchCallsInFlight = 4
