package broker

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// FoldEmail returns the form in which accessbroker compares email addresses: surrounding
// spaces trimmed, Unicode NFKC, full case folding, and NFKC again (folding can undo it). Two
// addresses that differ only in letter case or in compatibility forms (fullwidth letters, …)
// fold to the same string. It never fails; CheckEmail also refuses what FoldEmail keeps.
func FoldEmail(s string) string {
	s = norm.NFKC.String(strings.TrimSpace(s))
	return norm.NFKC.String(cases.Fold().String(s))
}

// ErrEmailRefused is matched (errors.Is) by CheckEmail's refusals.
var ErrEmailRefused = errors.New("email address refused")

// CheckEmail returns FoldEmail(s) when s may identify a person: one local part and one
// domain, both non-empty, and nothing but printable ASCII in s, before and after
// normalisation. Non-ASCII addresses are refused rather than matched, because a look-alike
// (a Cyrillic "а", a fullwidth "ａ", a dotless "ı") must never pass for another person's
// address, and because an address that only normalises to ASCII is a different mailbox from
// that ASCII address. Refusals wrap ErrEmailRefused and say what was wrong; the address
// itself is included (emails are identifiers here, not secrets).
func CheckEmail(s string) (string, error) {
	folded := FoldEmail(s)
	local, domain, ok := strings.Cut(folded, "@")
	switch {
	case folded == "":
		return "", fmt.Errorf("%w: the address is empty", ErrEmailRefused)
	case !ok || local == "" || domain == "" || strings.Contains(domain, "@"):
		return "", fmt.Errorf("%w: %q is not an address of the form name@domain", ErrEmailRefused, s)
	case strings.ContainsFunc(folded, unicode.IsSpace):
		return "", fmt.Errorf("%w: %q contains a space", ErrEmailRefused, s)
	case !printableASCII(local) || !printableASCII(domain):
		return "", fmt.Errorf("%w: %q contains characters outside ASCII after Unicode normalisation; look-alike letters are not matched to anyone", ErrEmailRefused, s)
	case !printableASCII(strings.TrimSpace(s)):
		return "", fmt.Errorf("%w: %q contains characters outside ASCII (they normalise to %q, which is a different mailbox); look-alike letters are not matched to anyone", ErrEmailRefused, s, folded)
	}
	return folded, nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// IdentityConflict is a refusal to link someone because the email they present is the one a
// configured identity (the identities list) claims for another Slack user: an impostor, or a
// stale configuration. It wraps ErrUnknownPerson. The broker records it as an
// identity.conflict audit event naming both parties and the email, and tells the audit
// channel. It carries no secrets.
type IdentityConflict struct {
	// Email is the folded email both parties have.
	Email string
	// ClaimedBySlackUser is the Slack user id the identities list gives Email to.
	ClaimedBySlackUser string
	// ClaimedByTeam is that identity's Slack team.
	ClaimedByTeam string
	// SlackUser is the other Slack user id that presented Email; empty when the other party
	// is only known as a PagerDuty user.
	SlackUser string
	// SlackTeam is SlackUser's team.
	SlackTeam string
	// PagerDutyUser is the PagerDuty user that presented Email (page acknowledgements).
	PagerDutyUser string
	// Via is where the presented email came from: "slack_users_info",
	// "slack_lookup_by_email" or "pagerduty".
	Via string
}

// Error says who claims the email and who presented it, and how to fix the configuration.
func (c *IdentityConflict) Error() string {
	other := "Slack user " + c.SlackUser
	if c.SlackUser == "" {
		other = "PagerDuty user " + c.PagerDutyUser
	} else if c.PagerDutyUser != "" {
		other += " (PagerDuty user " + c.PagerDutyUser + ")"
	}
	return fmt.Sprintf("%s: the email %s (from %s) belongs to Slack user %s in the identities list, so it is never used for %s. "+
		"If this is really the same person, an administrator must fix the identities entry",
		ErrUnknownPerson, c.Email, c.Via, c.ClaimedBySlackUser, other)
}

// Unwrap returns ErrUnknownPerson.
func (c *IdentityConflict) Unwrap() error { return ErrUnknownPerson }

// evidence is the audit evidence of the conflict (non-secret identifiers only).
func (c *IdentityConflict) evidence() map[string]string {
	ev := map[string]string{
		"email": c.Email, "claimed_by_slack_user": c.ClaimedBySlackUser, "claimed_by_slack_team": c.ClaimedByTeam,
		"slack_user": c.SlackUser, "slack_team": c.SlackTeam, "pagerduty_user": c.PagerDutyUser, "via": c.Via,
	}
	for k, v := range ev {
		if v == "" {
			delete(ev, k)
		}
	}
	return ev
}

// conflictEvent is the identity.conflict audit event for c, tied to a request when there
// is one.
func (b *Broker) conflictEvent(c *IdentityConflict, actor audit.Actor, r *grants.Request) *audit.Event {
	now := b.now()
	ev := &audit.Event{
		ID: grants.NewOrderedID("e", now), Time: now, Actor: actor, Action: audit.ActionIdentityConflict,
		Reason:   truncate(c.Error(), 500),
		Evidence: c.evidence(),
	}
	if r != nil {
		ev.RequestID, ev.Resource = r.ID, r.Resource
	}
	return ev
}

// conflictLine is the audit channel's alert about c.
func conflictLine(c *IdentityConflict) string {
	who := Mention(c.SlackUser)
	if c.SlackUser == "" {
		who = "PagerDuty user " + c.PagerDutyUser
	}
	return fmt.Sprintf("IDENTITY CONFLICT: %s presented the email %s (from %s), which the identities list gives to %s. Nothing was granted; %s was not treated as %s.",
		who, c.Email, c.Via, Mention(c.ClaimedBySlackUser), who, Mention(c.ClaimedBySlackUser))
}
