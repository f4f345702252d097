package slack

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"

	slackgo "github.com/slack-go/slack"
)

// Interaction is the part of an interaction payload accessbroker acts on: one button click.
type Interaction struct {
	Type        string // "block_actions", "view_submission", …
	TeamID      string
	UserID      string
	ActionID    string // ActionApprove, ActionDeny, ActionExtend, ActionDone, or another id
	Value       string // the button's value: a request or grant id
	ResponseURL string
	TriggerID   string
	ChannelID   string
	MessageTS   string
}

// ErrBadPayload: the interaction body is not a form with a JSON "payload" of the documented
// shape.
var ErrBadPayload = errors.New("malformed Slack interaction payload")

// DecodeInteraction decodes a verified interaction request body
// (application/x-www-form-urlencoded with one field, payload, holding JSON) with slack-go's
// InteractionCallback. For block_actions it requires exactly one action, a user and a team;
// other payload types are returned with only Type and the ids set.
func DecodeInteraction(body []byte) (Interaction, error) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return Interaction{}, fmt.Errorf("%w: not a form: %v", ErrBadPayload, err)
	}
	raw := form.Get("payload")
	if raw == "" {
		return Interaction{}, fmt.Errorf("%w: no payload field", ErrBadPayload)
	}
	var cb slackgo.InteractionCallback
	if err := json.Unmarshal([]byte(raw), &cb); err != nil {
		return Interaction{}, fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	in := Interaction{
		Type: string(cb.Type), TeamID: cb.Team.ID, UserID: cb.User.ID, ResponseURL: cb.ResponseURL,
		TriggerID: cb.TriggerID, ChannelID: cb.Container.ChannelID, MessageTS: cb.Container.MessageTs,
	}
	if in.TeamID == "" {
		in.TeamID = cb.User.TeamID
	}
	if in.ChannelID == "" {
		in.ChannelID = cb.Channel.ID
	}
	if in.Type == "" {
		return Interaction{}, fmt.Errorf("%w: no type", ErrBadPayload)
	}
	if cb.Type != slackgo.InteractionTypeBlockActions {
		return in, nil
	}
	if in.UserID == "" || in.TeamID == "" {
		return Interaction{}, fmt.Errorf("%w: block_actions without user or team", ErrBadPayload)
	}
	acts := cb.ActionCallback.BlockActions
	if len(acts) != 1 || acts[0] == nil {
		return Interaction{}, fmt.Errorf("%w: want exactly one action, got %d", ErrBadPayload, len(acts))
	}
	in.ActionID, in.Value = acts[0].ActionID, acts[0].Value
	return in, nil
}
