package slack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	slackgo "github.com/slack-go/slack"

	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
)

// DefaultAPIURL is Slack's Web API base.
const DefaultAPIURL = "https://slack.com/api/"

// ClientOptions configure the Slack Web API client.
type ClientOptions struct {
	// Token is the bot token (xoxb-…); required.
	Token string
	// APIURL overrides the Web API base (tests point it at fixtures/slackfake); empty means
	// DefaultAPIURL. A missing trailing slash is added.
	APIURL string
	// HTTPClient performs the calls; build it with integrations/httpclient so that 429s
	// (honouring Retry-After) and 5xx are retried. Required.
	HTTPClient *http.Client
}

// NewClient returns a slack-go client for the bot, or an error naming the bad setting.
func NewClient(o ClientOptions) (*slackgo.Client, error) {
	if !strings.HasPrefix(o.Token, "xoxb-") {
		return nil, errors.New("slack.bot_token must be the app's bot token (it starts with xoxb-; api.slack.com/apps → OAuth & Permissions)")
	}
	if o.HTTPClient == nil {
		return nil, errors.New("slack client: an HTTP client is required (integrations/httpclient.New)")
	}
	api := o.APIURL
	if api == "" {
		api = DefaultAPIURL
	}
	if _, err := httpclient.CheckBaseURL(api); err != nil {
		return nil, fmt.Errorf("slack.api_url %w, such as %s", err, DefaultAPIURL)
	}
	if !strings.HasSuffix(api, "/") {
		api += "/"
	}
	return slackgo.New(o.Token, slackgo.OptionAPIURL(api), slackgo.OptionHTTPClient(o.HTTPClient)), nil
}

// AuthTeam asks Slack (auth.test) which workspace the bot token belongs to; accessbroker
// serves that workspace only.
func AuthTeam(ctx context.Context, api *slackgo.Client) (string, error) {
	r, err := api.AuthTestContext(ctx)
	if err != nil {
		return "", fmt.Errorf("slack auth.test (is slack.bot_token valid?): %w", err)
	}
	if r.TeamID == "" {
		return "", errors.New("slack auth.test returned no team id")
	}
	return r.TeamID, nil
}

// CheckAuth is the Slack check of serve's readiness and `config check --online`: auth.test
// answers for the bot token and, when teamID (slack.team_id) is set, names that workspace.
// A token Slack refuses or one of another workspace is an error saying which; so is a Slack
// that does not answer.
func CheckAuth(ctx context.Context, api *slackgo.Client, teamID string) error {
	team, err := AuthTeam(ctx, api)
	if err != nil {
		return err
	}
	if teamID != "" && team != teamID {
		return fmt.Errorf("slack auth.test: the bot token belongs to workspace %s, but slack.team_id is %s; use that workspace's bot token or fix slack.team_id", team, teamID)
	}
	return nil
}

// Usergroups looks up Slack usergroup membership live (usergroups.users.list); it is the
// broker.Groups port.
type Usergroups struct{ api *slackgo.Client }

var _ broker.Groups = (*Usergroups)(nil)

// NewUsergroups returns the usergroup port over a client.
func NewUsergroups(api *slackgo.Client) *Usergroups { return &Usergroups{api: api} }

// Members returns the usergroup's current members.
func (g *Usergroups) Members(ctx context.Context, group string) ([]string, error) {
	m, err := g.api.GetUserGroupMembersContext(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("slack usergroups.users.list %s: %w", group, err)
	}
	return m, nil
}
