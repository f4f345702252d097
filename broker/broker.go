package broker

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// Manager is the part of *grants.Manager the broker uses.
type Manager interface {
	Issue(ctx context.Context, in grants.IssueInput) (grants.Grant, grants.Credential, error)
	Revoke(ctx context.Context, grantID string, cause grants.RevokeCause, actor audit.Actor, reason string) (grants.Grant, error)
	Extend(ctx context.Context, in grants.ExtendInput) (grants.Grant, error)
	Resource(name string) (grants.Resource, bool)
	Resources() []grants.Resource
	Record(ctx context.Context, events ...*audit.Event) error
}

var _ Manager = (*grants.Manager)(nil)

// Deps are the broker's collaborators. All but Groups, Logger and Options are required;
// Groups is needed only when a policy names an approver usergroup.
type Deps struct {
	Manager Manager
	// Store is the store Manager writes to: the broker reads requests and grants from it and
	// records requests in it.
	Store grants.Store
	Clock grants.Clock
	// Leases serializes the grants of one page acknowledgement across every broker process on
	// the database.
	Leases Leaser
	// Once records a key once across every broker process on the database, so that replicas
	// send each reminder once between them.
	Once      Once
	OnCall    OnCall
	Directory Directory
	Notifier  Notifier
	Groups    Groups
	Logger    *slog.Logger
	Options   Options
}

// Options tune the broker. Zero values take the defaults.
type Options struct {
	// PendingTTL is how long a request waits for approvals before it expires (default 1h).
	PendingTTL time.Duration
	// RemindBefore is how long before a grant's expiry its owner is reminded (default 5m).
	RemindBefore time.Duration
	// ExtendStep is how much the reminder's extension button asks for (default 30m, capped at
	// the resource's maximum, and at the shift end for an on-call extension capped to it).
	ExtendStep time.Duration
	// ReplyWindow is how long after a command its response_url is used for private answers
	// (Slack allows 30 minutes; default 25m leaves a margin). Later answers go by DM.
	ReplyWindow time.Duration
	// IdleWait is the longest the scheduler sleeps without a known deadline (default 1m).
	IdleWait time.Duration
	// RecoverWindow is how old an undecided request may be for Recover to still decide it
	// (default 10m); older ones are rejected with an apology rather than granted long after
	// they were asked for.
	RecoverWindow time.Duration
}

func (o Options) withDefaults() Options {
	if o.PendingTTL <= 0 {
		o.PendingTTL = time.Hour
	}
	if o.RemindBefore <= 0 {
		o.RemindBefore = 5 * time.Minute
	}
	if o.ExtendStep <= 0 {
		o.ExtendStep = 30 * time.Minute
	}
	if o.ReplyWindow <= 0 {
		o.ReplyWindow = 25 * time.Minute
	}
	if o.IdleWait <= 0 {
		o.IdleWait = time.Minute
	}
	if o.RecoverWindow <= 0 {
		o.RecoverWindow = 10 * time.Minute
	}
	return o
}

// Broker runs accessbroker's use cases: recording and deciding requests, approvals, issuing
// and delivering credentials, extending and ending grants, expiring pending requests and
// reminding owners. It is safe for concurrent use.
type Broker struct {
	m      Manager
	store  grants.Store
	clock  grants.Clock
	leases Leaser
	once   Once
	oncall OnCall
	dir    Directory
	notify Notifier
	groups Groups
	log    *slog.Logger
	opts   Options
	wake   chan struct{}
	sched  *schedState
	armed  armedState
}

// armedState is what the scheduler is sleeping until, so that WakeAt wakes it only for an
// earlier deadline.
type armedState struct {
	mu sync.Mutex
	// ticking: a Tick is running; deadlines given meanwhile are kept in early (the Tick may
	// have read the store before they were written) and the next sleep ends no later.
	ticking bool
	early   time.Time
	// until is the end of the current sleep (zero: not sleeping, e.g. Run not started).
	until time.Time
}

// New returns a broker over its dependencies.
func New(d Deps) *Broker {
	if d.Manager == nil || d.Store == nil || d.Clock == nil || d.Leases == nil || d.Once == nil ||
		d.OnCall == nil || d.Directory == nil || d.Notifier == nil {
		panic("broker.New: Manager, Store, Clock, Leases, Once, OnCall, Directory and Notifier are required")
	}
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Broker{
		m: d.Manager, store: d.Store, clock: d.Clock, leases: d.Leases, once: d.Once, oncall: d.OnCall,
		dir: d.Directory, notify: d.Notifier, groups: d.Groups, log: log.With("component", "broker"),
		opts: d.Options.withDefaults(), wake: make(chan struct{}, 1), sched: newSchedState(),
	}
}

// WakeAt tells the scheduler that something is due at t (a new pending request's expiry). It
// wakes the scheduler only when t is before the end of its current sleep: a burst of
// requests, each due a whole PendingTTL from now, does not make the scheduler list every
// pending request and active grant once per request (which it did, on the acknowledgement's
// CPU and database).
func (b *Broker) WakeAt(t time.Time) {
	a := &b.armed
	a.mu.Lock()
	if a.ticking {
		if a.early.IsZero() || t.Before(a.early) {
			a.early = t
		}
		a.mu.Unlock()
		return
	}
	wake := a.until.IsZero() || t.Before(a.until)
	a.mu.Unlock()
	if wake {
		b.Wake()
	}
}

// Wake makes the scheduler look again now (a request or grant changed).
func (b *Broker) Wake() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// notifyState is what the broker keeps in Request.Notify: where to answer the requester and
// which approval messages to update. None of it is secret.
type notifyState struct {
	ResponseURL string       `json:"response_url,omitempty"`
	ChannelID   string       `json:"channel_id,omitempty"`
	Approvals   []MessageRef `json:"approval_messages,omitempty"`
}

func decodeNotify(s string) notifyState {
	var n notifyState
	if s != "" {
		_ = json.Unmarshal([]byte(s), &n) // a foreign or corrupt value only loses the reply path
	}
	return n
}

func (n notifyState) encode() string {
	b, _ := json.Marshal(n)
	return string(b)
}

// Evidence keys the broker writes on requests.
const (
	evPath       = "path"
	evBreakGlass = "break_glass"
)

func userActor(p grants.Person) audit.Actor {
	return audit.Actor{Kind: audit.ActorUser, ID: p.SlackUserID, Email: p.Email}
}

func slackActor(userID string) audit.Actor {
	return audit.Actor{Kind: audit.ActorUser, ID: userID}
}

func (b *Broker) now() time.Time { return b.clock.Now().UTC().Truncate(time.Millisecond) }

func (b *Broker) requestEvent(action audit.Action, actor audit.Actor, r *grants.Request, reason string, evidence map[string]string) *audit.Event {
	ev := map[string]string{}
	for k, v := range evidence {
		if v != "" {
			ev[k] = v
		}
	}
	if r.Requester.Label() != "" {
		ev["person"] = r.Requester.Label()
	}
	if len(ev) == 0 {
		ev = nil
	}
	now := b.now()
	return &audit.Event{
		ID: grants.NewOrderedID("e", now), Time: now, Actor: actor, Action: action,
		RequestID: r.ID, Resource: r.Resource, Reason: reason, Evidence: ev,
	}
}

// Rejection is an audit-only record of something refused (bad input, an unauthenticated
// request, a click by someone who may not approve).
type Rejection struct {
	Actor     audit.Actor
	RequestID string
	GrantID   string
	Resource  string
	Reason    string
	Evidence  map[string]string
}

// RecordRejection writes a request.rejected audit event.
func (b *Broker) RecordRejection(ctx context.Context, r Rejection) error {
	return b.m.Record(ctx, &audit.Event{
		Actor: r.Actor, Action: audit.ActionRequestRejected, RequestID: r.RequestID, GrantID: r.GrantID,
		Resource: r.Resource, Reason: truncate(r.Reason, 500), Evidence: r.Evidence,
	})
}

// refuseAndRecord records a rejection and returns the refusal for the person. If the audit
// event cannot be written the refusal still stands (nothing was granted) and the failure is
// logged.
func (b *Broker) refuseAndRecord(ctx context.Context, r Rejection) *Refusal {
	if err := b.RecordRejection(ctx, r); err != nil {
		b.log.ErrorContext(ctx, "record rejection", "error", err, "reason", r.Reason)
	}
	return &Refusal{Message: r.Reason}
}

// audit posts one line to the audit channel; failures are logged, never fatal.
func (b *Broker) auditLine(ctx context.Context, line string) {
	if err := b.notify.PostAudit(ctx, line); err != nil {
		b.log.WarnContext(ctx, "post to audit channel failed", "error", err)
	}
}

func (b *Broker) tell(ctx context.Context, to Recipient, text string) {
	if err := b.notify.Tell(ctx, to, text); err != nil {
		b.log.WarnContext(ctx, "tell person failed", "slack_user", to.Person.SlackUserID, "error", err)
	}
}

// requesterRecipient is where to answer a request's requester: the command's response_url
// while it is fresh, else a DM.
func (b *Broker) requesterRecipient(r grants.Request) Recipient {
	n := decodeNotify(r.Notify)
	to := Recipient{Person: r.Requester, ChannelID: n.ChannelID}
	if n.ResponseURL != "" && b.now().Sub(r.CreatedAt) < b.opts.ReplyWindow {
		to.ResponseURL = n.ResponseURL
	}
	return to
}

func stamp(t time.Time) string {
	return t.UTC().Format("15:04 UTC")
}
