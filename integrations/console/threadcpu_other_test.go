//go:build !linux

package console_test

import "time"

// threadCPU is unavailable off Linux: the benchmark then reports no CPU metrics.
func threadCPU() (time.Duration, bool) { return 0, false }
