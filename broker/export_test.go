package broker

import "time"

// SleepUntil makes b behave as if its scheduler slept until t (armedState.until).
func SleepUntil(b *Broker, t time.Time) {
	b.armed.mu.Lock()
	defer b.armed.mu.Unlock()
	b.armed.ticking, b.armed.until = false, t
}

// TakeWake reports (and consumes) a pending wake-up of b's scheduler.
func TakeWake(b *Broker) bool { return woken(b) }
