package slack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	slackgo "github.com/slack-go/slack"

	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

// DefaultResponseURLPrefix is where Slack's response_urls live. Others are not used.
const DefaultResponseURLPrefix = "https://hooks.slack.com/"

// ResponseURLPrefixFor returns where the response_urls of the Slack whose Web API is at apiURL
// live: DefaultResponseURLPrefix for Slack's own API (https://slack.com/api/, or an empty
// apiURL), and the override's own scheme and host otherwise (a test or demo Slack hands out
// response_urls on its own address), so that an override never widens what is trusted.
func ResponseURLPrefixFor(apiURL string) (string, error) {
	if apiURL == "" {
		return DefaultResponseURLPrefix, nil
	}
	u, err := url.Parse(apiURL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("slack api_url %q is not an absolute URL", apiURL)
	}
	if u.Scheme == "https" && strings.EqualFold(u.Host, "slack.com") {
		return DefaultResponseURLPrefix, nil
	}
	return u.Scheme + "://" + u.Host + "/", nil
}

// NotifierOptions configure a Notifier.
type NotifierOptions struct {
	// API is the bot's Web API client (NewClient); required.
	API *slackgo.Client
	// HTTPClient posts to response_urls (the same retrying client as API's); required.
	HTTPClient *http.Client
	// ApprovalChannel is the channel approval requests are posted to (the bot must be a
	// member). Optional when DMApprovers is set.
	ApprovalChannel string
	// DMApprovers also sends each approver listed by user id a direct message with the
	// buttons. Usergroup members are reached through the channel (the group is mentioned).
	DMApprovers bool
	// AuditChannel receives one line per grant, decision and revocation; empty disables it.
	AuditChannel string
	// ResponseURLPrefix restricts which response_urls are used (default
	// DefaultResponseURLPrefix); tests set the fake's URL.
	ResponseURLPrefix string
	// CallTimeout bounds the Slack calls of one notification (default 30s; retries included).
	CallTimeout time.Duration
	Clock       grants.Clock
	Logger      *slog.Logger
}

// Notifier implements broker.Notifier and grants.Observer on Slack. Credentials go only to
// their owner: ephemerally through the response_url of the owner's own command, or by direct
// message; never to a channel, and the owner is checked against the grant before sending.
type Notifier struct {
	api  *slackgo.Client
	hc   *http.Client
	o    NotifierOptions
	log  *slog.Logger
	clk  grants.Clock
	pref string
}

var (
	_ broker.Notifier = (*Notifier)(nil)
	_ grants.Observer = (*Notifier)(nil)
)

// NewNotifier checks the options and returns the notifier.
func NewNotifier(o NotifierOptions) (*Notifier, error) {
	if o.API == nil || o.HTTPClient == nil || o.Clock == nil {
		return nil, errors.New("slack notifier: API, HTTPClient and Clock are required")
	}
	if o.ApprovalChannel == "" && !o.DMApprovers {
		return nil, errors.New("slack notifier: set an approval channel or enable DMs to approvers, or nobody sees approval requests")
	}
	if o.ResponseURLPrefix == "" {
		o.ResponseURLPrefix = DefaultResponseURLPrefix
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 30 * time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Notifier{api: o.API, hc: o.HTTPClient, o: o, log: log.With("component", "slack_notifier"), clk: o.Clock, pref: o.ResponseURLPrefix}, nil
}

// timeout bounds one notification's Slack calls (retries included) within the caller's
// context.
func (n *Notifier) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, n.o.CallTimeout)
}

// observerTimeout bounds the Slack calls made from the revoker's Observer callbacks, which
// must not hold the revoker up for long.
const observerTimeout = 10 * time.Second

// dm posts a direct message to a user and returns the DM channel and timestamp.
func (n *Notifier) dm(ctx context.Context, userID, fallback string, blocks []slackgo.Block) (broker.MessageRef, error) {
	if userID == "" {
		return broker.MessageRef{}, errors.New("direct message: no Slack user id")
	}
	ch, _, _, err := n.api.OpenConversationContext(ctx, &slackgo.OpenConversationParameters{Users: []string{userID}})
	if err != nil {
		return broker.MessageRef{}, fmt.Errorf("open DM with %s: %w", userID, err)
	}
	if ch == nil || !strings.HasPrefix(ch.ID, "D") {
		return broker.MessageRef{}, fmt.Errorf("open DM with %s: Slack answered no direct-message conversation", userID)
	}
	_, ts, err := n.api.PostMessageContext(ctx, ch.ID, slackgo.MsgOptionText(fallback, false), slackgo.MsgOptionBlocks(blocks...))
	if err != nil {
		return broker.MessageRef{}, fmt.Errorf("post DM to %s: %w", userID, err)
	}
	return broker.MessageRef{Channel: ch.ID, TS: ts}, nil
}

// ephemeral answers privately on a response_url (only the person who typed the command or
// clicked the button sees it).
func (n *Notifier) ephemeral(ctx context.Context, responseURL, fallback string, blocks []slackgo.Block) error {
	if !strings.HasPrefix(responseURL, n.pref) {
		return fmt.Errorf("response_url is not under %s; not used", n.pref)
	}
	msg := &slackgo.WebhookMessage{Text: fallback, ResponseType: slackgo.ResponseTypeEphemeral, Blocks: &slackgo.Blocks{BlockSet: blocks}}
	if err := slackgo.PostWebhookCustomHTTPContext(ctx, responseURL, n.hc, msg); err != nil {
		return fmt.Errorf("post to response_url: %w", err)
	}
	return nil
}

// private tries the response_url, then a DM.
func (n *Notifier) private(ctx context.Context, to broker.Recipient, fallback string, blocks []slackgo.Block) error {
	if to.ResponseURL != "" {
		err := n.ephemeral(ctx, to.ResponseURL, fallback, blocks)
		if err == nil {
			return nil
		}
		n.log.WarnContext(ctx, "ephemeral reply failed; sending a direct message", "slack_user", to.Person.SlackUserID, "error", err)
	}
	_, err := n.dm(ctx, to.Person.SlackUserID, fallback, blocks)
	return err
}

// Tell implements broker.Notifier.
func (n *Notifier) Tell(ctx context.Context, to broker.Recipient, text string) error {
	ctx, cancel := n.timeout(ctx)
	defer cancel()
	if err := n.private(ctx, to, truncate(plainText(text), 300), TextBlocks(text)); err != nil {
		return fmt.Errorf("tell %s: %w", to.Person.SlackUserID, err)
	}
	return nil
}

// DeliverCredential implements broker.Notifier: to the grant's owner only.
func (n *Notifier) DeliverCredential(ctx context.Context, to broker.Recipient, g grants.Grant, cred grants.Credential) error {
	if to.Person.SlackUserID == "" || to.Person.SlackUserID != g.Person.SlackUserID || to.Person.SlackTeamID != g.Person.SlackTeamID {
		return fmt.Errorf("deliver grant %s: the recipient is not the grant's owner; refusing", g.ID)
	}
	ctx, cancel := n.timeout(ctx)
	defer cancel()
	blocks, fallback := CredentialBlocks(g, cred, n.clk.Now())
	if err := n.private(ctx, to, fallback, blocks); err != nil {
		return fmt.Errorf("deliver grant %s to %s: %w", g.ID, to.Person.SlackUserID, err)
	}
	return nil
}

// AskApproval implements broker.Notifier.
func (n *Notifier) AskApproval(ctx context.Context, ask broker.ApprovalAsk) ([]broker.MessageRef, error) {
	ctx, cancel := n.timeout(ctx)
	defer cancel()
	blocks := ApprovalBlocks(ask, nil, n.clk.Now())
	fallback := approvalFallback(ask)
	var refs []broker.MessageRef
	var errs []error
	if ch := n.o.ApprovalChannel; ch != "" {
		gotCh, ts, err := n.api.PostMessageContext(ctx, ch, slackgo.MsgOptionText(fallback, false), slackgo.MsgOptionBlocks(blocks...))
		if err != nil {
			errs = append(errs, fmt.Errorf("post approval request to %s: %w", ch, err))
		} else {
			refs = append(refs, broker.MessageRef{Channel: gotCh, TS: ts})
		}
	}
	if n.o.DMApprovers {
		for _, u := range ask.Resource.Policy.ApproverSlackUsers {
			if u == ask.Request.Requester.SlackUserID {
				continue // never ask requesters to approve themselves
			}
			ref, err := n.dm(ctx, u, fallback, blocks)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			refs = append(refs, ref)
		}
	}
	if len(errs) > 0 {
		n.log.WarnContext(ctx, "approval request not delivered everywhere", "request_id", ask.Request.ID, "error", errors.Join(errs...))
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("ask approvers of %s: no approval message could be posted: %w", ask.Resource.Name, errors.Join(errs...))
	}
	return refs, nil
}

// UpdateApproval implements broker.Notifier.
func (n *Notifier) UpdateApproval(ctx context.Context, refs []broker.MessageRef, ask broker.ApprovalAsk, out broker.ApprovalOutcome) error {
	ctx, cancel := n.timeout(ctx)
	defer cancel()
	blocks := ApprovalBlocks(ask, &out, n.clk.Now())
	fallback := approvalFallback(ask) + ": " + string(out.State)
	var errs []error
	for _, ref := range refs {
		if _, _, _, err := n.api.UpdateMessageContext(ctx, ref.Channel, ref.TS, slackgo.MsgOptionText(fallback, false), slackgo.MsgOptionBlocks(blocks...)); err != nil {
			errs = append(errs, fmt.Errorf("update approval message %s/%s: %w", ref.Channel, ref.TS, err))
		}
	}
	return errors.Join(errs...)
}

// Remind implements broker.Notifier.
func (n *Notifier) Remind(ctx context.Context, g grants.Grant, offer broker.ExtendOffer) error {
	ctx, cancel := n.timeout(ctx)
	defer cancel()
	blocks, fallback := ReminderBlocks(g, offer, n.clk.Now())
	if _, err := n.dm(ctx, g.Person.SlackUserID, fallback, blocks); err != nil {
		return fmt.Errorf("remind owner of %s: %w", g.ID, err)
	}
	return nil
}

// PostAudit implements broker.Notifier.
func (n *Notifier) PostAudit(ctx context.Context, line string) error {
	if n.o.AuditChannel == "" {
		return nil
	}
	ctx, cancel := n.timeout(ctx)
	defer cancel()
	if _, _, err := n.api.PostMessageContext(ctx, n.o.AuditChannel, slackgo.MsgOptionText(truncate(Render(line), 3000), false)); err != nil {
		return fmt.Errorf("post to audit channel %s: %w", n.o.AuditChannel, err)
	}
	return nil
}

// GrantRevoked implements grants.Observer: the owner hears why the access ended, and the
// audit channel gets a line.
func (n *Notifier) GrantRevoked(ctx context.Context, g grants.Grant) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), observerTimeout)
	defer cancel()
	why := revokeWords(g.RevokeCause)
	if err := n.PostAudit(ctx, fmt.Sprintf("Revoked grant %s (%s for %s): %s.", g.ID, g.Resource, g.Person.Label(), why)); err != nil {
		n.log.WarnContext(ctx, "audit line for revocation failed", "grant_id", g.ID, "error", err)
	}
	switch g.RevokeCause {
	case grants.CauseIssueFailed, grants.CauseIssueInterrupted, grants.CauseDeliveryFailed:
		return // the owner never held this access and was told when it failed
	}
	text := fmt.Sprintf("Your access to %s (grant %s) was revoked: %s.", g.Resource, g.ID, why)
	if _, err := n.dm(ctx, g.Person.SlackUserID, text, TextBlocks(text)); err != nil {
		n.log.WarnContext(ctx, "tell owner of revocation failed", "grant_id", g.ID, "error", err)
	}
}

// RevokeFailed implements grants.Observer: every failed attempt is an alert in the audit
// channel (the error text is already scrubbed of secrets by the revoker).
func (n *Notifier) RevokeFailed(ctx context.Context, g grants.Grant, err error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), observerTimeout)
	defer cancel()
	line := fmt.Sprintf("ALERT: revoking grant %s (%s for %s) failed (attempt %d), retrying: %s", g.ID, g.Resource, g.Person.Label(), g.Attempts, truncate(fmt.Sprint(err), 300))
	if perr := n.PostAudit(ctx, line); perr != nil {
		n.log.ErrorContext(ctx, "revocation failure alert not posted", "grant_id", g.ID, "error", perr)
	}
}
