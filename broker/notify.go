package broker

import (
	"context"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/grants"
)

// Notifier is how the broker talks to people (implemented on Slack by integrations/slack).
// Every text the broker passes is plain text; the implementation escapes it for its medium,
// so user-supplied words (reasons, resource names) can never become mentions or links.
type Notifier interface {
	// AskApproval posts an approval request (with Approve and Deny buttons) where the
	// resource's approvers see it, and returns references to the messages it posted so that
	// they can be updated. An error means no approver could be reached.
	AskApproval(ctx context.Context, ask ApprovalAsk) ([]MessageRef, error)
	// UpdateApproval rewrites the approval messages with the outcome (or the progress of an
	// N-of-M approval) and who decided.
	UpdateApproval(ctx context.Context, refs []MessageRef, ask ApprovalAsk, out ApprovalOutcome) error
	// Tell sends a private message to one person: ephemeral through to.ResponseURL when set,
	// otherwise (or if that fails) a direct message.
	Tell(ctx context.Context, to Recipient, text string) error
	// DeliverCredential sends a grant's credential to its owner only: ephemeral through
	// to.ResponseURL when set, otherwise (or if that fails) a direct message; never a channel.
	// An error means the owner did not receive it.
	DeliverCredential(ctx context.Context, to Recipient, g grants.Grant, cred grants.Credential) error
	// Remind tells a grant's owner that it ends soon, with the extension the policy would
	// allow: a button that extends it at once (OfferExtend), one that asks the approvers
	// (OfferRequest), or none (OfferNone), each with offer.Note saying what it does or why.
	Remind(ctx context.Context, g grants.Grant, offer ExtendOffer) error
	// PostAudit posts one line to the audit channel. The line never holds a secret.
	PostAudit(ctx context.Context, line string) error
}

// Groups looks up approver group membership live (a Slack usergroup).
type Groups interface {
	// Members returns the user ids in the group now.
	Members(ctx context.Context, group string) ([]string, error)
}

// Recipient is a person to reach privately, and how.
type Recipient struct {
	Person grants.Person
	// ResponseURL, when set, answers ephemerally where the person typed the command or
	// clicked the button. Leave empty to send a direct message.
	ResponseURL string
	// ChannelID is where the person typed the command, if known.
	ChannelID string
}

// MessageRef names one posted message that can be updated.
type MessageRef struct {
	Channel string `json:"channel"`
	TS      string `json:"ts"`
}

// ApprovalAsk is what approvers see.
type ApprovalAsk struct {
	// Request carries the requester, duration, reason and, in Evidence, the on-call check
	// (keys on_call = true|false|unknown, on_call_shifts, on_call_until, on_call_error).
	Request  grants.Request
	Resource grants.Resource
	Needed   int // approvals needed in all
}

// ApprovalOutcome is the state of an approval request after a decision.
type ApprovalOutcome struct {
	// State is pending (an approval was recorded, more are needed), approved, denied,
	// expired or rejected.
	State     grants.RequestState
	By        []string // Slack user ids of the approvers (or the denier), in order
	GrantID   string
	ExpiresAt time.Time // grant expiry, when approved
	Note      string    // extra words, e.g. why issuing failed
}

// MentionMark delimits a person mention inside texts the broker passes to a Notifier:
// Mention("U123") is MentionMark+"@U123"+MentionMark. Implementations render a well-formed
// mention as a real one (Slack: <@U123>) and drop any other MentionMark. The broker strips
// the mark from every user-supplied string it embeds (see Clean), so users cannot forge one.
const MentionMark = "\x1f"

// Mention returns a mention of a Slack user for a Notifier text.
func Mention(userID string) string { return MentionMark + "@" + userID + MentionMark }

// Clean removes mention marks from user-supplied text before it is embedded in a message.
func Clean(s string) string { return strings.ReplaceAll(s, MentionMark, "") }
