package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// guardGate is the manager's issue gate: the audit guard once one is set, else open (commands
// that issue nothing have no guard).
type guardGate struct {
	guard atomic.Pointer[grants.AuditGuard]
}

// IssueAllowed implements grants.IssueGate.
func (g *guardGate) IssueAllowed() error {
	if guard := g.guard.Load(); guard != nil {
		return guard.IssueAllowed()
	}
	return nil
}

// newAuditGuard builds the guard of the log a (serve, grants issue) appends to and makes it
// the manager's gate: it compares the log with the witnesses ws, alerts through
// alert (may be nil) and records entering the suspect state.
func (a *app) newAuditGuard(key ed25519.PrivateKey, ws []grants.Witness, alert grants.WitnessAlerter) *grants.AuditGuard {
	opts := grants.AuditGuardOptions{Witnesses: ws, Record: a.manager.Record, Logger: a.log, Period: auditGuardPeriod,
		Metric: func(suspect bool) {
			v := 0.0
			if suspect {
				v = 1
			}
			a.metrics.auditSuspect.Set(v)
		}}
	if alert != nil {
		opts.Alert = func(ctx context.Context, line string) {
			if err := alert.PostAudit(ctx, line); err != nil {
				a.log.WarnContext(ctx, "post the audit-suspect alert", "error", err)
			}
		}
	}
	g := grants.NewAuditGuard(a.store, key.Public().(ed25519.PublicKey), a.clock, opts)
	a.gate.guard.Store(g)
	return g
}

// guardBeforeIssue checks the audit log before a command-line issue, as serve does
// continuously: a suspect log refuses the grant (the manager's gate then says why).
func (a *app) guardBeforeIssue(ctx context.Context) error {
	key, err := a.signingKey()
	if err != nil {
		return err
	}
	ws, err := buildWitnesses(ctx, a.cfg, a.clock, a.awsOpts)
	if err != nil {
		return err
	}
	if err := a.newAuditGuard(key, ws, nil).Check(ctx); err != nil && !errors.Is(err, grants.ErrAuditSuspect) {
		return fmt.Errorf("check the audit log before issuing: %w", err)
	}
	return nil
}

// auditClearSuspect is `accessbroker audit clear-suspect`: after an operator has investigated
// a damaged audit log, it records the clearance (signed with the audit key, so that nobody
// who can only write rows can forge one), signs a checkpoint over the head as it is now, and
// publishes that checkpoint to the witnesses. Running brokers resume grants at their next
// check. Exit 0 when the log verifies afterwards (or did already), 1 otherwise, 2 on usage.
func auditClearSuspect(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newCLI("audit clear-suspect", auditClearSuspectUsage, stdout, stderr).withLogLevel()
	configPath := fs.String("config", "", "configuration file")
	reason := fs.String("reason", "", "what was investigated and why the log may be trusted again (recorded in the audit log; required)")
	operator := fs.String("operator", "", "who is clearing (default $USER)")
	if code, ok := fs.parseNone(args); !ok {
		return code
	}
	if r := strings.TrimSpace(*reason); r == "" || len(r) > 1000 {
		return fs.usageError("--reason is required, at most 1000 characters: say what was investigated, it goes into the audit log")
	}
	cfg, ok := loadConfigFlag(*configPath, stderr)
	if !ok {
		return exitUsage
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "accessbroker audit clear-suspect: %v\n", err)
		return exitFailure
	}
	a, err := newApp(ctx, cfg, fs.appOptions(appOptions{}))
	if err != nil {
		return fail(err)
	}
	defer a.Close()
	key, err := a.signingKey()
	if err != nil {
		return fail(err)
	}
	ws, err := buildWitnesses(ctx, cfg, a.clock, a.awsOpts)
	if err != nil {
		return fail(err)
	}
	guard := a.newAuditGuard(key, ws, nil)
	err = guard.Check(ctx)
	var se *grants.AuditSuspectError
	switch {
	case err == nil:
		fmt.Fprintln(stdout, "the audit log verifies; there is nothing to clear")
		return exitOK
	case !errors.As(err, &se):
		return fail(err)
	}
	fmt.Fprintf(stdout, "the audit log is suspect: %s\n", se.Damage)
	now := a.clock.Now()
	ev := grants.SignClearance(key, now, strings.TrimSpace(*reason))
	ev["damage"] = se.Damage
	if err := a.manager.Record(ctx, &audit.Event{Actor: operatorActor(*operator), Action: audit.ActionAuditSuspectCleared,
		Reason: strings.TrimSpace(*reason), Evidence: ev}); err != nil {
		return fail(fmt.Errorf("record the clearance: %w", err))
	}
	seq, head, _, err := a.store.Head(ctx)
	if err != nil {
		return fail(err)
	}
	cp := audit.SignCheckpoint(key, seq, head, a.clock.Now())
	if err := a.store.AppendCheckpoint(ctx, cp); err != nil {
		return fail(fmt.Errorf("sign a checkpoint over the head: %w", err))
	}
	for _, w := range ws {
		if err := w.Publish(ctx, cp); err != nil {
			fmt.Fprintf(stderr, "accessbroker audit clear-suspect: publishing checkpoint %d to witness %s failed (serve publishes it on its next start): %v\n", cp.Seq, w.Name(), err)
		}
	}
	if err := guard.Check(ctx); err != nil {
		return fail(fmt.Errorf("the log still does not verify after the clearance: %w", err))
	}
	fmt.Fprintf(stdout, "cleared by %s: checkpoint %d covers the head; running brokers issue grants again at their next check (within %s)\n",
		operatorActor(*operator).ID, cp.Seq, audit.FormatDuration(auditGuardPeriod))
	return exitOK
}

const auditClearSuspectUsage = "usage: accessbroker audit clear-suspect --config FILE --reason TEXT [--operator NAME]"

// auditGuardPeriod is how often serve checks its audit log.
const auditGuardPeriod = 5 * time.Minute
