package demo

// --interactive: the broker keeps serving and reads commands from standard input.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

const demoHelp = `Commands (Slack users: alice, bob, carol; alice is on call, carol approves everything):
  as <user> /access <text>          type a slash command as that user, e.g. as bob /access prod-db 30m checking the backlog
  approve <request-id> as <user>    click Approve on a request in #approvals
  deny <request-id> as <user>       click Deny
  advance <duration>                move the simulated clock, e.g. advance 10m (grants expire, reminders go out)
  grants                            list every grant
  help                              this text
  quit                              stop (end of input does too)`

func (d *demo) interactive(ctx context.Context, in io.Reader) {
	d.section("Your turn (--interactive): the broker keeps serving")
	d.plain("Web console: %s/ui/ (open it in a browser; sign in as alice, bob or carol: carol is the auditor)", d.base)
	d.plain("%s", demoHelp)
	// Lines are read in the background so that an interrupt ends the loop at once.
	lines, done := make(chan string), make(chan struct{})
	defer close(done)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-done:
				return
			}
		}
	}()
	for {
		fmt.Fprint(d.out, "\ndemo> ")
		var line string
		var ok bool
		select {
		case line, ok = <-lines:
		case <-ctx.Done():
		}
		if !ok {
			fmt.Fprintln(d.out)
			return
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		fmt.Fprintln(d.out)
		if f := strings.Fields(line); f[0] == "quit" || f[0] == "exit" {
			return
		}
		if err := d.do(ctx, line); err != nil {
			d.say("✗ %v", err)
		}
	}
}

func (d *demo) do(ctx context.Context, line string) error {
	f := strings.Fields(line)
	switch strings.ToLower(f[0]) {
	case "help", "?":
		d.plain("%s", demoHelp)
		return nil
	case "grants":
		d.plain("%s", quoteLines(d.grantsTable(ctx)))
		return nil
	case "advance":
		if len(f) != 2 {
			return errors.New("usage: advance <duration>, e.g. advance 10m")
		}
		by, err := time.ParseDuration(f[1])
		if err != nil || by <= 0 || by > 7*24*time.Hour {
			return fmt.Errorf("%q is not a duration between 1s and 168h (write it like 90s, 10m or 2h)", f[1])
		}
		d.advance(by, audit.FormatDuration(by)+" later")
	case "as":
		if len(f) < 3 {
			return errors.New("usage: as <user> /access <text>")
		}
		who, ok := d.person(f[1])
		if !ok {
			return fmt.Errorf("no Slack user %q here: use alice, bob or carol", f[1])
		}
		text := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line[strings.Index(line, f[1])+len(f[1]):]), "/access"))
		d.say("%s types:  /access %s", who.Name, text)
		ack, err := d.command(ctx, who, text)
		if err != nil {
			return err
		}
		d.say("Slack → %s, ephemeral (the command's immediate answer):\n%s", who.Name, quoteLines(ack))
	case "approve", "deny":
		if len(f) != 4 || f[2] != "as" {
			return fmt.Errorf("usage: %s <request-id> as <user>", f[0])
		}
		if !grants.ValidID("r", f[1]) {
			return fmt.Errorf("%q is not a request id (they look like r_abcdefghijklmnop)", f[1])
		}
		who, ok := d.person(f[3])
		if !ok {
			return fmt.Errorf("no Slack user %q here: use alice, bob or carol", f[3])
		}
		d.say("%s clicks %s on request %s", who.Name, strings.ToUpper(f[0][:1])+f[0][1:], f[1])
		if _, err := d.click(ctx, who, strings.ToLower(f[0]), f[1]); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown command %q: type help", f[0])
	}
	d.settle(ctx)
	d.showSlack()
	return nil
}
