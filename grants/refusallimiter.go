package grants

import (
	"sync"
	"time"
)

// RefusalLimiter bounds how many refusals of unauthenticated input (forged webhooks, bad
// signatures) are written to the audit log: a token bucket of Burst tokens refilled one per
// Every, on the caller's clock. It is safe for concurrent use; the zero value of its
// unexported fields is ready once Burst and Every are set.
type RefusalLimiter struct {
	Burst int
	Every time.Duration

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	started    bool
	suppressed int
}

// Allow takes a token if there is one at now. When it does, it also returns (and resets)
// how many calls were refused since the last allowed one, so the next record can say how
// many it stands for.
func (l *RefusalLimiter) Allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started {
		l.tokens, l.last, l.started = float64(l.Burst), now, true
	}
	if elapsed := now.Sub(l.last); elapsed > 0 {
		l.tokens = min(float64(l.Burst), l.tokens+float64(elapsed)/float64(l.Every))
		l.last = now
	}
	if l.tokens < 1 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	s := l.suppressed
	l.suppressed = 0
	return true, s
}
