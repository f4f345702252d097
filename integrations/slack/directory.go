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
	SlackUserID string
	Email       string
	GitHubLogin string
	PagerDutyID string
}

// Directory resolves Slack users to people: first through the configured identities, then
// through Slack's users.info, and only for the configured workspace. It is the
// broker.Directory port. A person is identified by team and user id; the email is a property
// Slack reports for that id, never a key to find someone else.
type Directory struct {
	api  *slackgo.Client
	team string
	ids  map[string]Identity
	log  *slog.Logger
}

var _ broker.Directory = (*Directory)(nil)

// Resolution paths recorded in grants.Person.ResolvedBy.
const (
	ResolvedByConfig    = "config"
	ResolvedByUsersInfo = "slack_users_info"
)

// NewDirectory returns a directory for workspace teamID (see AuthTeam). Identities with an
// empty or repeated Slack user id are refused.
func NewDirectory(api *slackgo.Client, teamID string, identities []Identity, logger *slog.Logger) (*Directory, error) {
	if teamID == "" {
		return nil, errors.New("slack directory: the workspace (team) id is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := &Directory{api: api, team: teamID, ids: map[string]Identity{}, log: logger}
	for i, id := range identities {
		if id.SlackUserID == "" {
			return nil, fmt.Errorf("identities[%d]: slack (the Slack user id, e.g. U0ALICE) is required", i)
		}
		if _, dup := d.ids[id.SlackUserID]; dup {
			return nil, fmt.Errorf("identities[%d]: Slack user %s is listed twice", i, id.SlackUserID)
		}
		if id.Email == "" {
			return nil, fmt.Errorf("identities[%d]: email is required for Slack user %s", i, id.SlackUserID)
		}
		d.ids[id.SlackUserID] = id
	}
	return d, nil
}

// howToLink is appended to every refusal.
const howToLink = "Ask an accessbroker administrator to add you to the identities list in its configuration (your Slack user id and email)."

func unknown(format string, args ...any) error {
	return fmt.Errorf("%w: %s. %s", broker.ErrUnknownPerson, fmt.Sprintf(format, args...), howToLink)
}

// Resolve implements broker.Directory. Refusals wrap broker.ErrUnknownPerson and say how to
// get linked; other errors (Slack unreachable) do not.
func (d *Directory) Resolve(ctx context.Context, teamID, userID string) (grants.Person, error) {
	if teamID != d.team {
		return grants.Person{}, unknown("requests are accepted from Slack workspace %s only, not %s", d.team, teamID)
	}
	if id, ok := d.ids[userID]; ok {
		return grants.Person{
			SlackTeamID: teamID, SlackUserID: userID, Email: strings.ToLower(id.Email),
			GitHubLogin: id.GitHubLogin, PagerDutyID: id.PagerDutyID, ResolvedBy: ResolvedByConfig,
		}, nil
	}
	u, err := d.api.GetUserInfoContext(ctx, userID)
	if err != nil {
		var se slackgo.SlackErrorResponse
		if errors.As(err, &se) && (se.Err == "user_not_found" || se.Err == "user_not_visible") {
			return grants.Person{}, unknown("Slack does not know user %s", userID)
		}
		return grants.Person{}, fmt.Errorf("look up Slack user %s: %w", userID, err)
	}
	switch {
	case u.ID != userID:
		return grants.Person{}, unknown("Slack answered for user %s instead of %s", u.ID, userID)
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
	}
	d.log.DebugContext(ctx, "resolved Slack user through users.info", "slack_user", userID)
	return grants.Person{SlackTeamID: teamID, SlackUserID: userID, Email: strings.ToLower(u.Profile.Email), ResolvedBy: ResolvedByUsersInfo}, nil
}

// ResolvedByEmailLookup marks a person found from a PagerDuty user's email through Slack's
// users.lookupByEmail.
const ResolvedByEmailLookup = "slack_lookup_by_email"

// ByPagerDuty implements broker.PagePeople: the person behind a PagerDuty user. The
// identities map is consulted first (by PagerDuty id, then by email); otherwise Slack's
// users.lookupByEmail must find exactly one active, non-guest, non-bot member of the
// configured workspace whose Slack email equals the PagerDuty email. Refusals wrap
// broker.ErrUnknownPerson.
func (d *Directory) ByPagerDuty(ctx context.Context, pdUserID, email string) (grants.Person, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	for _, id := range d.ids {
		if (pdUserID != "" && id.PagerDutyID == pdUserID) || (email != "" && strings.EqualFold(id.Email, email)) {
			return grants.Person{SlackTeamID: d.team, SlackUserID: id.SlackUserID, Email: strings.ToLower(id.Email),
				GitHubLogin: id.GitHubLogin, PagerDutyID: pdUserID, ResolvedBy: ResolvedByConfig}, nil
		}
	}
	if email == "" {
		return grants.Person{}, unknown("PagerDuty user %s has no email and is not in the identities list", pdUserID)
	}
	u, err := d.api.GetUserByEmailContext(ctx, email)
	if err != nil {
		var se slackgo.SlackErrorResponse
		if errors.As(err, &se) && (se.Err == "users_not_found" || se.Err == "user_not_found") {
			return grants.Person{}, unknown("no Slack user has the email of PagerDuty user %s", pdUserID)
		}
		return grants.Person{}, fmt.Errorf("look up Slack user by email for PagerDuty user %s: %w", pdUserID, err)
	}
	switch {
	case u.Deleted, u.IsBot, u.IsAppUser, u.IsRestricted, u.IsUltraRestricted:
		return grants.Person{}, unknown("the Slack account matching PagerDuty user %s is deactivated, a bot or a guest", pdUserID)
	case u.TeamID != d.team:
		return grants.Person{}, unknown("the Slack account matching PagerDuty user %s is in another workspace", pdUserID)
	case !strings.EqualFold(u.Profile.Email, email):
		return grants.Person{}, unknown("Slack answered with a different email for PagerDuty user %s", pdUserID)
	}
	return grants.Person{SlackTeamID: d.team, SlackUserID: u.ID, Email: email, PagerDutyID: pdUserID, ResolvedBy: ResolvedByEmailLookup}, nil
}
