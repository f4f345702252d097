package main

import (
	"context"
	"fmt"
	"time"

	"github.com/accessbroker/accessbroker/audit"
)

// maxClockSkew is how far a replica's clock may be from its PostgreSQL store's. Grants
// expire, claims lapse and leases pass by comparing this process's time with times other
// replicas wrote: a clock 2 s fast revokes up to 2 s early and may take a claim 2 s before it
// lapses. NTP keeps hosts within milliseconds.
const maxClockSkew = 2 * time.Second

// checkClockSkew returns an error naming the skew when this process's clock is more than
// maxClockSkew from the database's (never on SQLite: one process, one clock).
func (a *app) checkClockSkew(ctx context.Context) error {
	skew, err := a.store.ClockSkew(ctx)
	if err != nil {
		return err
	}
	a.metrics.clockSkew.Set(skew.Seconds())
	if skew > maxClockSkew || skew < -maxClockSkew {
		dir := "ahead of"
		if skew < 0 {
			dir, skew = "behind", -skew
		}
		return fmt.Errorf("this host's clock is %s %s the database's (at most %s is allowed): a fast clock revokes grants early and takes claims other replicas still hold, a slow one revokes late; fix its time synchronisation (chrony, systemd-timesyncd)",
			audit.FormatDuration(skew), dir, audit.FormatDuration(maxClockSkew))
	}
	return nil
}
