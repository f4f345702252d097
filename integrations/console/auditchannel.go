package console

import (
	"context"
	"fmt"

	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

// revocationLine is the audit channel's line for an auditor's revocation from the console,
// worded as /access revoke's (broker's "Revocation of grant … requested by …"), with the
// auditor's reason cleaned of mention marks so that it cannot ping anyone.
func revocationLine(g grants.Grant, auditor, reason string) string {
	return fmt.Sprintf("Revocation of grant %s (%s for %s) requested by %s: revoked by auditor in the console: %s.",
		g.ID, g.Resource, g.Person.Label(), broker.Mention(auditor), broker.Clean(reason))
}

// tellAuditChannel posts line to the audit channel when one is configured. A failure is
// logged, not shown: the revocation is recorded and under way (as the broker does).
func (c *Console) tellAuditChannel(ctx context.Context, line string) {
	if c.cfg.AuditChannel == nil {
		return
	}
	if err := c.cfg.AuditChannel.PostAudit(ctx, line); err != nil {
		c.log.WarnContext(ctx, "post to audit channel failed", "error", err)
	}
}
