package slack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	slackgo "github.com/slack-go/slack"

	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

// Identity is one entry of the configuration's identities list: an explicit link from a
// Slack user id to the person's email and other accounts.
type Identity struct {
	// SlackTeamID is the workspace of SlackUserID; empty means the directory's workspace.
	SlackTeamID string
	SlackUserID string
	Email       string
	GitHubLogin string
	PagerDutyID string
}

// DirectoryOptions are the identity rules of the configuration (identity: …).
type DirectoryOptions struct {
	// ResolveByEmail (identity.resolve_by_email) lets people who are not in the identities
	// list be resolved through the confirmed email Slack reports for them (users.info), and
	// PagerDuty users through Slack's users.lookupByEmail. When false only listed people are
	// served: Slack-reported emails are used for nothing but detecting impersonation.
	ResolveByEmail bool
}

// Directory resolves Slack users to people: first through the configured identities, then
// (when DirectoryOptions.ResolveByEmail) through Slack's users.info, and only for the
// configured workspace. It is the broker.Directory and broker.PagePeople port.
//
// A person is identified by team and user id; the email is a property Slack reports for
// that id, never a key to find someone else. An email a configured identity claims (compared
// with broker.FoldEmail: case and Unicode compatibility forms do not matter) is never used
// for any other Slack or PagerDuty user: that is refused with a *broker.IdentityConflict. An
// email from Slack counts only when Slack says it is confirmed (is_email_confirmed) and it is
// plain ASCII (broker.CheckEmail); look-alikes are refused, not matched.
type Directory struct {
	api     *slackgo.Client
	team    string
	ids     map[teamUser]Identity
	claimed map[string]teamUser // folded email → the identity claiming it
	byEmail bool
	log     *slog.Logger
}

type teamUser struct{ team, user string }

var (
	_ broker.Directory  = (*Directory)(nil)
	_ broker.PagePeople = (*Directory)(nil)
)

// Resolution paths recorded in grants.Person.ResolvedBy.
const (
	ResolvedByConfig    = "config"
	ResolvedByUsersInfo = "slack_users_info"
)

// NewDirectory returns a directory for workspace teamID (see AuthTeam). Identities with an
// empty or repeated Slack user id, without an email, with an email broker.CheckEmail refuses,
// or with an email another entry already has (after folding) are refused.
func NewDirectory(api *slackgo.Client, teamID string, identities []Identity, logger *slog.Logger, opts ...DirectoryOptions) (*Directory, error) {
	if teamID == "" {
		return nil, errors.New("slack directory: the workspace (team) id is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o := DirectoryOptions{ResolveByEmail: true}
	if len(opts) > 0 {
		o = opts[0]
	}
	d := &Directory{api: api, team: teamID, ids: map[teamUser]Identity{}, claimed: map[string]teamUser{}, byEmail: o.ResolveByEmail, log: logger}
	for i, id := range identities {
		if id.SlackUserID == "" {
			return nil, fmt.Errorf("identities[%d]: slack (the Slack user id, e.g. U0ALICE) is required", i)
		}
		if id.SlackTeamID == "" {
			id.SlackTeamID = teamID
		}
		key := teamUser{id.SlackTeamID, id.SlackUserID}
		if _, dup := d.ids[key]; dup {
			return nil, fmt.Errorf("identities[%d]: Slack user %s is listed twice", i, id.SlackUserID)
		}
		if id.Email == "" {
			return nil, fmt.Errorf("identities[%d]: email is required for Slack user %s", i, id.SlackUserID)
		}
		email, err := broker.CheckEmail(id.Email)
		if err != nil {
			return nil, fmt.Errorf("identities[%d]: email of Slack user %s: %w", i, id.SlackUserID, err)
		}
		if other, dup := d.claimed[email]; dup {
			return nil, fmt.Errorf("identities[%d]: email %s is also the email of Slack user %s; one person per email", i, id.Email, other.user)
		}
		id.Email = email
		d.ids[key] = id
		d.claimed[email] = key
	}
	return d, nil
}

// howToLink is appended to every refusal.
const howToLink = "Ask an accessbroker administrator to add you to the identities list in its configuration (your Slack user id and email)."

func unknown(format string, args ...any) error {
	return fmt.Errorf("%w: %s. %s", broker.ErrUnknownPerson, fmt.Sprintf(format, args...), howToLink)
}

func (id Identity) person(via string) grants.Person {
	return grants.Person{SlackTeamID: id.SlackTeamID, SlackUserID: id.SlackUserID, Email: id.Email,
		GitHubLogin: id.GitHubLogin, PagerDutyID: id.PagerDutyID, ResolvedBy: via}
}

// conflict returns the *broker.IdentityConflict for a folded email presented by (team, user)
// when a configured identity of someone else claims it, or nil.
func (d *Directory) conflict(email, team, user, pdUser, via string) error {
	owner, ok := d.claimed[email]
	if !ok || (owner.team == team && owner.user == user) {
		return nil
	}
	return &broker.IdentityConflict{Email: email, ClaimedBySlackUser: owner.user, ClaimedByTeam: owner.team,
		SlackUser: user, SlackTeam: team, PagerDutyUser: pdUser, Via: via}
}

// Resolve implements broker.Directory. A listed (team, user id) is the configured person;
// anyone else is looked up with users.info and, when email resolution is on, served with
// the email Slack confirmed for them, unless a configured identity claims that email.
// Refusals wrap broker.ErrUnknownPerson (a *broker.IdentityConflict for a claimed email) and
// say how to get linked; other errors (Slack unreachable) do not.
func (d *Directory) Resolve(ctx context.Context, teamID, userID string) (grants.Person, error) {
	if teamID != d.team {
		return grants.Person{}, unknown("requests are accepted from Slack workspace %s only, not %s", d.team, teamID)
	}
	if id, ok := d.ids[teamUser{teamID, userID}]; ok {
		return id.person(ResolvedByConfig), nil
	}
	u, err := d.api.GetUserInfoContext(ctx, userID)
	if err != nil {
		var se slackgo.SlackErrorResponse
		if errors.As(err, &se) && (se.Err == "user_not_found" || se.Err == "user_not_visible") {
			return grants.Person{}, unknown("Slack does not know user %s", userID)
		}
		if !d.byEmail {
			// Slack was asked only to detect impersonation; the answer is no either way.
			d.log.WarnContext(ctx, "users.info failed; an unlisted user is refused anyway", "slack_user", userID, "error", err)
			return grants.Person{}, d.notListed(userID)
		}
		return grants.Person{}, fmt.Errorf("look up Slack user %s: %w", userID, err)
	}
	if u.ID != userID {
		return grants.Person{}, unknown("Slack answered for user %s instead of %s", u.ID, userID)
	}
	// An email someone else is configured with is refused first, whatever else is true of
	// the account: that is the impersonation the audit trail must show.
	if u.Profile.Email != "" {
		if err := d.conflict(broker.FoldEmail(u.Profile.Email), u.TeamID, userID, "", ResolvedByUsersInfo); err != nil {
			return grants.Person{}, err
		}
	}
	if !d.byEmail {
		return grants.Person{}, d.notListed(userID)
	}
	switch {
	case u.Deleted:
		return grants.Person{}, unknown("your Slack account is deactivated")
	case u.IsBot || u.IsAppUser:
		return grants.Person{}, unknown("bots and apps cannot request access")
	case u.IsRestricted || u.IsUltraRestricted:
		return grants.Person{}, unknown("guest accounts cannot request access")
	case u.TeamID != d.team:
		return grants.Person{}, unknown("your account belongs to Slack workspace %s, not %s", u.TeamID, d.team)
	case u.Profile.Email == "":
		return grants.Person{}, unknown("Slack did not share an email address for your account")
	case !u.IsEmailConfirmed:
		return grants.Person{}, unknown("Slack has not confirmed the email address of your account (%s); confirm it in Slack and try again", u.Profile.Email)
	}
	email, err := broker.CheckEmail(u.Profile.Email)
	if err != nil {
		return grants.Person{}, unknown("the email address of your Slack account cannot be used: %s", strings.TrimPrefix(err.Error(), broker.ErrEmailRefused.Error()+": "))
	}
	d.log.DebugContext(ctx, "resolved Slack user through users.info", "slack_user", userID)
	return grants.Person{SlackTeamID: teamID, SlackUserID: userID, Email: email, ResolvedBy: ResolvedByUsersInfo}, nil
}

func (d *Directory) notListed(userID string) error {
	return unknown("accessbroker serves only the people in its identities list (identity.resolve_by_email is off), and Slack user %s is not listed", userID)
}

// ResolvedByEmailLookup marks a person found from a PagerDuty user's email through Slack's
// users.lookupByEmail.
const ResolvedByEmailLookup = "slack_lookup_by_email"

// ByPagerDuty implements broker.PagePeople: the person behind a PagerDuty user, by the same
// rules as Resolve. The identities list is consulted first: the entry naming this PagerDuty
// user id, else the entry whose email equals the PagerDuty email (after folding) provided it
// names no other PagerDuty user (if it does: a *broker.IdentityConflict). Otherwise, only
// when email resolution is on, Slack's users.lookupByEmail must find an active, non-guest,
// non-bot member of the configured workspace whose confirmed Slack email equals the PagerDuty
// email and whom no identity entry contradicts. Refusals wrap broker.ErrUnknownPerson.
func (d *Directory) ByPagerDuty(ctx context.Context, pdUserID, email string) (grants.Person, error) {
	if pdUserID != "" {
		for _, id := range d.ids {
			if id.PagerDutyID == pdUserID {
				return id.person(ResolvedByConfig), nil
			}
		}
	}
	folded := broker.FoldEmail(email)
	if email == "" || folded == "" {
		return grants.Person{}, unknown("PagerDuty user %s has no email and is not in the identities list", pdUserID)
	}
	if owner, ok := d.claimed[folded]; ok {
		id := d.ids[owner]
		if id.PagerDutyID != "" && id.PagerDutyID != pdUserID {
			return grants.Person{}, &broker.IdentityConflict{Email: folded, ClaimedBySlackUser: owner.user, ClaimedByTeam: owner.team,
				PagerDutyUser: pdUserID, Via: "pagerduty"}
		}
		p := id.person(ResolvedByConfig)
		p.PagerDutyID = pdUserID
		return p, nil
	}
	checked, err := broker.CheckEmail(email)
	if err != nil {
		return grants.Person{}, unknown("the email of PagerDuty user %s cannot be used: %s", pdUserID, strings.TrimPrefix(err.Error(), broker.ErrEmailRefused.Error()+": "))
	}
	if !d.byEmail {
		return grants.Person{}, unknown("accessbroker serves only the people in its identities list (identity.resolve_by_email is off), and PagerDuty user %s is not listed", pdUserID)
	}
	u, err := d.api.GetUserByEmailContext(ctx, checked)
	if err != nil {
		var se slackgo.SlackErrorResponse
		if errors.As(err, &se) && (se.Err == "users_not_found" || se.Err == "user_not_found") {
			return grants.Person{}, unknown("no Slack user has the email of PagerDuty user %s", pdUserID)
		}
		return grants.Person{}, fmt.Errorf("look up Slack user by email for PagerDuty user %s: %w", pdUserID, err)
	}
	if id, listed := d.ids[teamUser{u.TeamID, u.ID}]; listed {
		// Slack names a listed person, yet the identities list gives that person another
		// email: the list decides who they are, so this PagerDuty user is not linked to them.
		return grants.Person{}, unknown("PagerDuty user %s has the email %s, but the identities list gives the matching Slack user %s the email %s; "+
			"map the PagerDuty user in the identities list", pdUserID, checked, id.SlackUserID, id.Email)
	}
	switch {
	case u.Deleted, u.IsBot, u.IsAppUser, u.IsRestricted, u.IsUltraRestricted:
		return grants.Person{}, unknown("the Slack account matching PagerDuty user %s is deactivated, a bot or a guest", pdUserID)
	case u.TeamID != d.team:
		return grants.Person{}, unknown("the Slack account matching PagerDuty user %s is in another workspace", pdUserID)
	case broker.FoldEmail(u.Profile.Email) != checked:
		return grants.Person{}, unknown("Slack answered with a different email for PagerDuty user %s", pdUserID)
	case !u.IsEmailConfirmed:
		return grants.Person{}, unknown("Slack has not confirmed the email of the account matching PagerDuty user %s", pdUserID)
	}
	return grants.Person{SlackTeamID: d.team, SlackUserID: u.ID, Email: checked, PagerDutyID: pdUserID, ResolvedBy: ResolvedByEmailLookup}, nil
}
