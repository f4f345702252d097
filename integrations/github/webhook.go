package github

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	gh "github.com/google/go-github/v60/github"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// WebhookPath is where organisation webhooks are received on serve's main listener (HTTP
// contract; not under /api/v1).
const WebhookPath = "/github/webhook"

// SourceWebhook is the activity source name of webhook deliveries (cursor key in
// activity_cursors and activity_seen, grants list, metrics label).
const SourceWebhook = "github-webhook"

// Webhook defaults.
const (
	// DefaultWebhookMaxBodyBytes: GitHub caps webhook payloads at 25 MB, but push payloads
	// with up to 20 commits are far smaller; 5 MiB keeps one request's memory bounded.
	DefaultWebhookMaxBodyBytes = 5 << 20
	// DefaultWebhookRejectBurst and DefaultWebhookRejectInterval rate-limit the
	// github.webhook_refused events (a burst of 10, then one per 6 s, as for PagerDuty);
	// suppressed ones are counted in the next event written.
	DefaultWebhookRejectBurst    = 10
	DefaultWebhookRejectInterval = 6 * time.Second
	// MinWebhookSecretLength is the shortest secret accepted (activity.github.webhook_secret).
	MinWebhookSecretLength = 32
)

// WebhookStore is what the webhook needs of the store (grants/sqlstore implements it).
type WebhookStore interface {
	// ActivityGrants returns the grants of the provider kind past issuing and not revoked
	// before since.
	ActivityGrants(ctx context.Context, provider string, since time.Time) ([]grants.Grant, error)
	// RecordActivity records the items whose Key is new for the grant and source, once.
	RecordActivity(ctx context.Context, grantID, source string, now time.Time, items []grants.ActivityItem) (int, error)
}

// WebhookRecorder writes the audit events of refused deliveries (grants.Manager.Record).
type WebhookRecorder interface {
	Record(ctx context.Context, events ...*audit.Event) error
}

// WebhookMetrics counts recorded webhook activity (the collector's metrics). Nil is allowed.
type WebhookMetrics interface {
	ActivityRecorded(source string, n int)
}

// WebhookConfig configures NewWebhook. Secret, Store, Recorder and Clock are required.
type WebhookConfig struct {
	// Secret is the webhook's secret (activity.github.webhook_secret), at least
	// MinWebhookSecretLength characters. Never logged.
	Secret string
	// Store finds the grants and records their activity once per delivery.
	Store WebhookStore
	// Recorder writes github.webhook_refused events.
	Recorder WebhookRecorder
	// Clock is the only source of "now".
	Clock grants.Clock
	// AfterEnd is how long after a grant ended its person's actions are still recorded
	// (labelled after_revocation). Default 20 minutes.
	AfterEnd time.Duration
	// MaxBodyBytes bounds the body read (default DefaultWebhookMaxBodyBytes).
	MaxBodyBytes int64
	// RejectBurst and RejectInterval rate-limit github.webhook_refused events.
	RejectBurst    int
	RejectInterval time.Duration
	Metrics        WebhookMetrics
	Logger         *slog.Logger
}

// Webhook is the http.Handler for POST /github/webhook: GitHub organisation webhooks as the
// activity source of github-team grants where the organisation has no audit log API.
//
// For each delivery: the body is read up to MaxBodyBytes (413 beyond, audited); the
// X-Hub-Signature-256 is verified with github.ValidatePayload (401 when missing or wrong,
// audited as github.webhook_refused, nothing else looked at); X-GitHub-Event and
// X-GitHub-Delivery must be present and the payload must parse (400, audited). ping is
// answered 200; event types other than push, pull_request, repository, team and member are
// answered 200 and ignored. For those five, every github-team grant in the payload's
// organisation whose person (handle login) is the sender and that was live at the delivery
// (or ended less than AfterEnd before it) gets one github.activity event with via
// "webhook" and id the delivery id: a redelivery records nothing more. A store failure
// answers 503 so GitHub's redelivery can fix it.
type Webhook struct {
	cfg     WebhookConfig
	secret  []byte
	log     *slog.Logger
	limiter *grants.RefusalLimiter
}

// NewWebhook validates cfg and returns the handler.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	switch {
	case len(cfg.Secret) < MinWebhookSecretLength:
		return nil, fmt.Errorf("github webhook: activity.github.webhook_secret must be at least %d characters (generate one with `openssl rand -hex 32`): %w", MinWebhookSecretLength, grants.ErrInvalid)
	case cfg.Store == nil, cfg.Recorder == nil, cfg.Clock == nil:
		return nil, fmt.Errorf("github webhook: a store, a recorder and a clock are required: %w", grants.ErrInvalid)
	}
	if cfg.AfterEnd <= 0 {
		cfg.AfterEnd = 20 * time.Minute
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultWebhookMaxBodyBytes
	}
	if cfg.RejectBurst <= 0 {
		cfg.RejectBurst = DefaultWebhookRejectBurst
	}
	if cfg.RejectInterval <= 0 {
		cfg.RejectInterval = DefaultWebhookRejectInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	secret := []byte(cfg.Secret)
	cfg.Secret = ""
	return &Webhook{cfg: cfg, secret: secret, log: log.With("component", "github_webhook"),
		limiter: &grants.RefusalLimiter{Burst: cfg.RejectBurst, Every: cfg.RejectInterval}}, nil
}

// deliveryRE is what a delivery id may look like (GitHub sends a UUID); anything else is
// refused rather than stored.
var deliveryRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// ServeHTTP handles one delivery (see Webhook).
func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed: GitHub webhooks are POSTed", http.StatusMethodNotAllowed)
		return
	}
	remote := remoteHost(r)
	delivery := gh.DeliveryID(r)
	if r.Header.Get(gh.SHA256SignatureHeader) == "" {
		// ValidatePayload would fall back to the SHA-1 X-Hub-Signature: only SHA-256 is accepted.
		h.refuse(ctx, remote, delivery, "signature: no X-Hub-Signature-256 header")
		http.Error(w, "missing X-Hub-Signature-256: set the webhook's secret in GitHub", http.StatusUnauthorized)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes)
	payload, err := gh.ValidatePayload(r, h.secret)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.refuse(ctx, remote, delivery, "body larger than "+strconv.FormatInt(h.cfg.MaxBodyBytes, 10)+" bytes")
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		h.refuse(ctx, remote, delivery, "signature: X-Hub-Signature-256 does not match the body with activity.github.webhook_secret")
		http.Error(w, "invalid X-Hub-Signature-256", http.StatusUnauthorized)
		return
	}
	kind := gh.WebHookType(r)
	if kind == "" || !deliveryRE.MatchString(delivery) {
		h.refuse(ctx, remote, delivery, "malformed: X-GitHub-Event or X-GitHub-Delivery missing or invalid")
		http.Error(w, "X-GitHub-Event and X-GitHub-Delivery (a UUID) are required", http.StatusBadRequest)
		return
	}
	lg := h.log.With("delivery", delivery, "event_type", kind)
	switch kind {
	case "ping":
		writeText(w, http.StatusOK, "pong")
		return
	case "push", "pull_request", "repository", "team", "member":
	default:
		lg.InfoContext(ctx, "GitHub event type not collected; ignored")
		writeText(w, http.StatusOK, "ignored: event type not collected")
		return
	}
	parsed, err := gh.ParseWebHook(kind, payload)
	if err != nil {
		h.refuse(ctx, remote, delivery, "malformed: the "+kind+" payload does not parse as JSON")
		http.Error(w, "the payload is not a GitHub "+kind+" event", http.StatusBadRequest)
		return
	}
	act, ok := webhookActivity(kind, parsed)
	if !ok || act.org == "" || act.sender == "" {
		h.refuse(ctx, remote, delivery, "malformed: the "+kind+" payload names no organisation or sender (the webhook must be an organisation webhook)")
		http.Error(w, "the payload names no organisation or sender: configure an organisation webhook", http.StatusBadRequest)
		return
	}
	now := h.cfg.Clock.Now().UTC().Truncate(time.Millisecond)
	at := now
	if !act.at.IsZero() && !act.at.After(now) && now.Sub(act.at) < 24*time.Hour {
		at = act.at.UTC().Truncate(time.Millisecond)
	}
	n, matched, err := h.record(ctx, act, delivery, at, now)
	if err != nil {
		lg.ErrorContext(ctx, "recording GitHub webhook activity failed; GitHub can redeliver it", "error", err)
		http.Error(w, "could not record the delivery; redeliver it later", http.StatusServiceUnavailable)
		return
	}
	if n > 0 {
		lg.InfoContext(ctx, "github activity recorded", "sender", act.sender, "org", act.org, "events", n)
		if h.cfg.Metrics != nil {
			h.cfg.Metrics.ActivityRecorded(SourceWebhook, n)
		}
	}
	switch {
	case matched == 0:
		writeText(w, http.StatusOK, "ok: no grant of the sender")
	case n == 0:
		writeText(w, http.StatusOK, "duplicate: already recorded")
	default:
		writeText(w, http.StatusOK, "ok: recorded")
	}
}

// activity is what a delivery says: who did what where.
type activity struct {
	org, sender, action, repo string
	at                        time.Time // when it happened, if the payload says (push: pushed_at)
}

// webhookActivity reads a parsed event of one of the collected types.
func webhookActivity(kind string, ev any) (activity, bool) {
	name := func(a *string) string {
		if a == nil || *a == "" {
			return kind
		}
		return kind + "." + *a
	}
	switch e := ev.(type) {
	case *gh.PushEvent:
		a := activity{org: e.GetOrganization().GetLogin(), sender: e.GetSender().GetLogin(), action: "push", repo: e.GetRepo().GetFullName()}
		if e.GetRepo().GetPushedAt().Time.Unix() > 0 {
			a.at = e.GetRepo().GetPushedAt().Time
		}
		return a, true
	case *gh.PullRequestEvent:
		return activity{org: e.GetOrganization().GetLogin(), sender: e.GetSender().GetLogin(), action: name(e.Action), repo: e.GetRepo().GetFullName()}, true
	case *gh.RepositoryEvent:
		return activity{org: e.GetOrg().GetLogin(), sender: e.GetSender().GetLogin(), action: name(e.Action), repo: e.GetRepo().GetFullName()}, true
	case *gh.TeamEvent:
		return activity{org: e.GetOrg().GetLogin(), sender: e.GetSender().GetLogin(), action: name(e.Action), repo: e.GetRepo().GetFullName()}, true
	case *gh.MemberEvent:
		return activity{org: e.GetOrg().GetLogin(), sender: e.GetSender().GetLogin(), action: name(e.Action), repo: e.GetRepo().GetFullName()}, true
	}
	return activity{}, false
}

// record puts the delivery on the timeline of every matching grant; it returns the events
// recorded and the grants matched.
func (h *Webhook) record(ctx context.Context, act activity, delivery string, at, now time.Time) (n, matched int, err error) {
	list, err := h.cfg.Store.ActivityGrants(ctx, Kind, at.Add(-h.cfg.AfterEnd))
	if err != nil {
		return 0, 0, fmt.Errorf("find github-team grants: %w", err)
	}
	for _, g := range list {
		if !strings.EqualFold(g.Handle.Data["org"], act.org) || !strings.EqualFold(g.Handle.Data["login"], act.sender) {
			continue
		}
		from := g.IssuedAt
		if from.IsZero() {
			from = g.CreatedAt
		}
		if at.Before(from) {
			continue // before the grant: not its activity
		}
		ended := g.State == grants.StateRevoked && !g.RevokedAt.IsZero()
		if ended && at.After(g.RevokedAt.Add(h.cfg.AfterEnd)) {
			continue
		}
		matched++
		ev := &audit.Event{
			ID: grants.NewID("e"), Time: now, GrantID: g.ID, Resource: g.Resource, RequestID: g.RequestID,
			Actor:  audit.Actor{Kind: audit.ActorUser, ID: g.Person.SlackUserID, Email: g.Person.Email},
			Action: audit.ActionGitHubActivity,
			Evidence: map[string]string{
				"via": "webhook", "github_action": act.action, audit.EvidenceActivityEventTime: grants.Timestamp(at),
				"repo": act.repo, "actor": act.sender, "id": delivery,
				audit.EvidenceActivityAfterRevocation: strconv.FormatBool(ended && at.After(g.RevokedAt)),
			},
		}
		k, err := h.cfg.Store.RecordActivity(context.WithoutCancel(ctx), g.ID, SourceWebhook, now,
			[]grants.ActivityItem{{Key: "webhook:" + delivery, Event: ev}})
		if err != nil {
			return n, matched, fmt.Errorf("record delivery %s on grant %s: %w", delivery, g.ID, err)
		}
		n += k
	}
	return n, matched, nil
}

// refuse audits a refused delivery as github.webhook_refused, rate-limited; nothing from
// the body is recorded (it is not trusted).
func (h *Webhook) refuse(ctx context.Context, remote, delivery, reason string) {
	h.log.WarnContext(ctx, "GitHub webhook refused", "remote", remote, "reason", reason)
	now := h.cfg.Clock.Now()
	ok, suppressed := h.limiter.Allow(now)
	if !ok {
		return
	}
	evidence := map[string]string{"source": "github", "remote": remote}
	if deliveryRE.MatchString(delivery) {
		evidence["delivery"] = delivery
	}
	if suppressed > 0 {
		evidence["suppressed"] = strconv.Itoa(suppressed)
	}
	e := &audit.Event{ID: grants.NewID("e"), Time: now.UTC().Truncate(time.Millisecond),
		Actor: audit.Actor{Kind: audit.ActorUnknown, ID: remote}, Action: audit.ActionGitHubWebhookRefused,
		Reason: reason, Evidence: evidence}
	if err := h.cfg.Recorder.Record(context.WithoutCancel(ctx), e); err != nil {
		h.log.ErrorContext(ctx, "writing github.webhook_refused failed", "reason", reason, "error", err)
	}
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func writeText(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}
