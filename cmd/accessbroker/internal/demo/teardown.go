package demo

// Teardown: revoke what is live, stop the broker and the fakes, drop the PostgreSQL objects.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/fixtures/slackfake"
	"github.com/accessbroker/accessbroker/grants"
)

// close revokes what is still live (nothing is left behind upstream), stops the broker and the
// fakes, drops the PostgreSQL objects, and removes the directory unless --keep.
func (d *demo) close(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx)
	var errs []error
	if d.broker != nil && d.done != nil && d.base != "" {
		errs = append(errs, d.revokeLeftovers(ctx))
	}
	if d.stop != nil {
		d.stop()
		if err := <-d.done; err != nil {
			errs = append(errs, fmt.Errorf("the broker: %w", err))
		}
	}
	if d.broker != nil {
		if err := d.broker.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close the store: %w", err))
		}
	}
	if d.logFile != nil {
		d.logFile.Close()
	}
	if d.slack != nil {
		d.slack.Close()
	}
	if d.pd != nil {
		d.pd.Close()
	}
	if d.gh != nil {
		d.gh.Close()
	}
	if d.wh != nil {
		d.wh.Close()
	}
	if d.aws != nil {
		d.aws.Close()
	}
	if d.pg != nil {
		d.closeSession(ctx)
		leftovers, err := d.pg.drop(ctx)
		if err != nil {
			errs = append(errs, err)
		}
		if len(leftovers) > 0 {
			d.plain("Dropped PostgreSQL login roles that were still there: %s", strings.Join(leftovers, ", "))
		}
		if err == nil && d.out != nil {
			d.plain("Dropped the PostgreSQL database %s and role %s.", d.pg.db, d.pg.role)
		}
	}
	if d.dir != "" && !d.keep {
		if err := os.RemoveAll(d.dir); err != nil {
			errs = append(errs, err)
		}
	} else if d.keep && d.configPath != "" {
		d.plain("Kept %s: try  accessbroker audit verify --config %s", d.dir, d.configPath)
		// The simulated clock ran ahead of the real one: a report that ends at the real time
		// would cut the story short and show its last grants as still active.
		end := d.clock.Now().Add(time.Second).Truncate(time.Second)
		d.plain("The demo's simulated clock ended at %s, ahead of the real time; until the real time passes it,", grants.Timestamp(end))
		d.plain("give the report that end:  accessbroker report --config %s --until %s", d.configPath, grants.Timestamp(end))
	}
	return errors.Join(errs...)
}

// revokeLeftovers revokes every live grant through the manager (audited, actor the demo) and
// waits for the revoker to finish them.
func (d *demo) revokeLeftovers(ctx context.Context) error {
	live, err := d.broker.ListGrants(ctx, grants.GrantFilter{States: []grants.State{grants.StateIssuing, grants.StateActive,
		grants.StateRevoking, grants.StateRevokeFailed}})
	if err != nil || len(live) == 0 {
		return err
	}
	d.section("Closing: revoking what is still live, so that nothing is left behind")
	actor := audit.Actor{Kind: audit.ActorOperator, ID: "accessbroker-demo"}
	for _, g := range live {
		if err := d.broker.Revoke(ctx, g.ID, grants.CauseManual, actor, "the demo is ending"); err != nil {
			return fmt.Errorf("revoke %s: %w", g.ID, err)
		}
	}
	for _, g := range live {
		rg, err := d.waitGrant(ctx, "the revocation of "+g.ID, func(x grants.Grant) bool { return x.ID == g.ID && x.State == grants.StateRevoked })
		if err != nil {
			return err
		}
		d.say("revoked %s (%s's %s), cause %s", rg.ID, d.nameOf(rg.Person.SlackUserID), rg.Resource, rg.RevokeCause)
		d.mu.Lock()
		key := d.sessions[rg.ID]
		d.mu.Unlock()
		if key != "" {
			if err := d.aws.CheckSession(key, "s3:GetBucketPolicy"); err != nil {
				d.say("  AWS (the fake) now refuses bob's session %s: %v", key, err)
			} else {
				return fmt.Errorf("bob's AWS session %s still works after grant %s was revoked", key, rg.ID)
			}
		}
		if rg.Provider == "github-team" {
			if _, _, ok := d.gh.Membership(demoGitHubOrg, demoGitHubTeam, rg.Person.GitHubLogin); !ok {
				d.say("  GitHub (the fake) no longer lists %s in %s/%s", rg.Person.GitHubLogin, demoGitHubOrg, demoGitHubTeam)
			}
		}
	}
	// The owner's DM and the audit channel's line follow each revocation asynchronously: wait
	// for them, so that the transcript shows them whatever the machine's load.
	for _, g := range live {
		if _, err := d.waitMessage(ctx, "the audit channel's line on revoking "+g.ID, func(m slackfake.Message) bool {
			return m.Channel == demoAuditChannel && strings.Contains(m.Text, "Revoked grant "+g.ID)
		}); err != nil {
			return err
		}
		if _, err := d.waitMessage(ctx, "the owner's message on revoking "+g.ID, func(m slackfake.Message) bool {
			return d.recipient(m) == g.Person.SlackUserID && strings.HasPrefix(m.Channel, "D") && strings.Contains(m.Text, "grant "+g.ID+") was revoked")
		}); err != nil {
			return err
		}
	}
	d.showSlack()
	return nil
}
