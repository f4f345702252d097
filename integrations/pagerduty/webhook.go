package pagerduty

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

// WebhookPath is where PagerDuty v3 webhooks are received (HTTP contract).
const WebhookPath = "/pagerduty/webhook"

// Webhook defaults.
const (
	// DefaultMaxBodyBytes: PagerDuty guarantees deliveries up to 55 KB and drops those over
	// 256 KB, so nothing legitimate is larger.
	DefaultMaxBodyBytes = 256 << 10
	// DefaultFreshness is how old an event's occurred_at may be before it is refused.
	DefaultFreshness = 10 * time.Minute
	// DefaultMaxFutureSkew is how far occurred_at may be ahead of our clock.
	DefaultMaxFutureSkew = 2 * time.Minute
	// DefaultPagesTimeout bounds a Pages call, which runs even if PagerDuty hangs up.
	DefaultPagesTimeout = 30 * time.Second
	// DefaultRejectBurst and DefaultRejectInterval rate-limit the audit events written for
	// refused deliveries: a burst of 10, then one per 6 s. Suppressed ones are counted in the
	// next event written.
	DefaultRejectBurst    = 10
	DefaultRejectInterval = 6 * time.Second
)

// ActionWebhookIgnored is the audit action for an authentic, fresh webhook event that was
// deliberately not acted on (incident.reassigned, incident.unacknowledged, an acknowledgement
// the PagerDuty API does not confirm). Refused deliveries (bad signature, malformed, stale)
// use audit.ActionWebhookRejected.
const ActionWebhookIgnored audit.Action = "webhook.ignored"

// Pages is what the webhook calls once an incident event is authentic, fresh, first seen and,
// for acknowledgements, confirmed through the PagerDuty API. The broker implements it.
//
// Both methods must be idempotent by EventID. Return nil when the event was handled,
// including when it was decided that nothing should happen (no auto_grant rule, not on call:
// audit that yourself). Return an error only for a failure worth retrying (database down): the
// webhook then forgets the event id and answers 500, so PagerDuty redelivers it (until the
// freshness window refuses it). The context is not cancelled when PagerDuty hangs up.
type Pages interface {
	Acknowledged(ctx context.Context, ack broker.PageAck) error
	Resolved(ctx context.Context, res broker.PageResolved) error
}

// Deduper remembers webhook event ids durably, so a redelivery (also after a restart) is
// acted on once. The lead backs it with the store; NewMemoryDeduper is for tests and the demo.
type Deduper interface {
	// Seen records eventID and reports whether this is its first delivery. Concurrent calls
	// with one id: exactly one gets first=true.
	Seen(ctx context.Context, eventID string) (first bool, err error)
	// Forget removes eventID, after processing failed in a way a redelivery may fix.
	Forget(ctx context.Context, eventID string) error
}

// Recorder writes audit events that are not part of a state change (refused and ignored
// webhooks). The store implements it by applying a change with just the event.
type Recorder interface {
	Record(ctx context.Context, e audit.Event) error
}

// IncidentAPI is the PagerDuty REST API as the webhook needs it; *Client implements it.
type IncidentAPI interface {
	Incident(ctx context.Context, id string) (Incident, error)
	UserByID(ctx context.Context, id string) (User, error)
}

// WebhookConfig configures NewWebhook. Secrets, API, Pages, Deduper, Recorder and Clock are
// required.
type WebhookConfig struct {
	// Secrets are the subscription's signing secrets (config pagerduty.webhook_secrets); a
	// delivery is accepted when any v1 signature matches any of them, so that two can be
	// configured during a rotation. They are never logged.
	Secrets []string
	// API confirms acknowledgements and looks up the acknowledging user.
	API IncidentAPI
	// Pages receives confirmed events.
	Pages Pages
	// Deduper remembers event ids.
	Deduper Deduper
	// Recorder writes the audit events for refused and ignored deliveries.
	Recorder Recorder
	// Clock is the only source of "now".
	Clock grants.Clock
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// MaxBodyBytes bounds the body read (default DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// Freshness is the oldest occurred_at accepted, relative to now (default DefaultFreshness).
	Freshness time.Duration
	// MaxFutureSkew is how far in the future occurred_at may be (default DefaultMaxFutureSkew).
	MaxFutureSkew time.Duration
	// PagesTimeout bounds each Pages call (default DefaultPagesTimeout).
	PagesTimeout time.Duration
	// RejectBurst and RejectInterval rate-limit the audit events for refused deliveries
	// (defaults DefaultRejectBurst, DefaultRejectInterval).
	RejectBurst    int
	RejectInterval time.Duration
}

// Webhook is the http.Handler for POST /pagerduty/webhook.
//
// For each delivery, in this order: the body is read up to MaxBodyBytes (413 beyond); the
// X-PagerDuty-Signature is verified against every secret (401 when missing, of an unknown
// version only, or not matching: nothing else is looked at); the body is decoded (400 when it
// is not a v3 event); an occurred_at outside [now-Freshness, now+MaxFutureSkew] is refused
// with 200 (so PagerDuty does not retry it) and audited; unknown event types are answered 200
// and logged; the event id is recorded with the Deduper (a repeat is answered 200 and
// ignored); then:
//
//   - incident.acknowledged: the incident is read through the API. Only if it is still
//     "acknowledged" and the event's agent is among its current acknowledgers or assignees is
//     Pages.Acknowledged called, with the incident's number, title, URL and service from the
//     API and the agent's email from GET /users/{id}. Otherwise nothing is granted and the
//     event is audited as webhook.ignored. So an out-of-order incident.resolved that arrives
//     before the acknowledgement leaves no grant: the API then says "resolved".
//   - incident.resolved: Pages.Resolved.
//   - incident.reassigned, incident.unacknowledged: no new grant and no revocation (grants
//     already issued for the incident keep their expiry, and end at resolution); audited as
//     webhook.ignored.
//
// When the API or Pages fails in a way a retry may fix, the event id is forgotten and the
// answer is 5xx, so PagerDuty redelivers.
type Webhook struct {
	cfg     WebhookConfig
	secrets [][]byte
	log     *slog.Logger
	limiter *grants.RefusalLimiter
}

// NewWebhook validates cfg and returns the handler.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	if len(cfg.Secrets) == 0 {
		return nil, errors.New("pagerduty.webhook_secrets is empty: add the signing secret shown when the v3 webhook subscription was created")
	}
	secrets := make([][]byte, 0, len(cfg.Secrets))
	for i, s := range cfg.Secrets {
		if s == "" {
			return nil, fmt.Errorf("pagerduty.webhook_secrets[%d] is empty: remove it or set the subscription's signing secret", i)
		}
		secrets = append(secrets, []byte(s))
	}
	switch {
	case cfg.API == nil:
		return nil, errors.New("pagerduty webhook: the PagerDuty API client is required")
	case cfg.Pages == nil:
		return nil, errors.New("pagerduty webhook: Pages is required")
	case cfg.Deduper == nil:
		return nil, errors.New("pagerduty webhook: a Deduper is required")
	case cfg.Recorder == nil:
		return nil, errors.New("pagerduty webhook: a Recorder is required")
	case cfg.Clock == nil:
		return nil, errors.New("pagerduty webhook: a clock is required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Freshness <= 0 {
		cfg.Freshness = DefaultFreshness
	}
	if cfg.MaxFutureSkew <= 0 {
		cfg.MaxFutureSkew = DefaultMaxFutureSkew
	}
	if cfg.PagesTimeout <= 0 {
		cfg.PagesTimeout = DefaultPagesTimeout
	}
	if cfg.RejectBurst <= 0 {
		cfg.RejectBurst = DefaultRejectBurst
	}
	if cfg.RejectInterval <= 0 {
		cfg.RejectInterval = DefaultRejectInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Secrets = nil // keep only the bytes
	return &Webhook{
		cfg: cfg, secrets: secrets, log: log.With("component", "pagerduty_webhook"),
		limiter: &grants.RefusalLimiter{Burst: cfg.RejectBurst, Every: cfg.RejectInterval},
	}, nil
}

// ServeHTTP handles one delivery (see Webhook).
func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed: PagerDuty webhooks are POSTed", http.StatusMethodNotAllowed)
		return
	}
	remote := remoteHost(r)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.reject(ctx, remote, "body larger than "+strconv.FormatInt(h.cfg.MaxBodyBytes, 10)+" bytes", nil)
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		h.log.WarnContext(ctx, "reading webhook body failed", "remote", remote, "error", err)
		http.Error(w, "could not read the request body", http.StatusBadRequest)
		return
	}
	if err := verifySignature(r.Header.Get("X-PagerDuty-Signature"), body, h.secrets); err != nil {
		h.reject(ctx, remote, "signature: "+err.Error(), nil)
		http.Error(w, "invalid or missing X-PagerDuty-Signature", http.StatusUnauthorized)
		return
	}

	ev, err := decodeEvent(body)
	if err != nil {
		h.reject(ctx, remote, "malformed: "+err.Error(), nil)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	lg := h.log.With("event_id", ev.ID, "event_type", ev.Type)
	if id := r.Header.Get("X-Webhook-Id"); id != "" && checkID("X-Webhook-Id", id) == nil {
		lg = lg.With("webhook_id", id) // the delivery id, the same on every retry of a delivery
	}
	if ev.Incident != nil {
		lg = lg.With("incident_id", ev.Incident.ID)
	}

	now := h.cfg.Clock.Now()
	switch {
	case ev.OccurredAt.Before(now.Add(-h.cfg.Freshness)):
		lg.WarnContext(ctx, "stale PagerDuty event refused", "occurred_at", grants.Timestamp(ev.OccurredAt))
		h.reject(ctx, remote, fmt.Sprintf("stale: occurred_at %s is more than %s before now", grants.Timestamp(ev.OccurredAt), h.cfg.Freshness), &ev)
		writeText(w, http.StatusOK, "refused: stale event")
		return
	case ev.OccurredAt.After(now.Add(h.cfg.MaxFutureSkew)):
		lg.WarnContext(ctx, "future PagerDuty event refused", "occurred_at", grants.Timestamp(ev.OccurredAt))
		h.reject(ctx, remote, fmt.Sprintf("stale: occurred_at %s is more than %s after now", grants.Timestamp(ev.OccurredAt), h.cfg.MaxFutureSkew), &ev)
		writeText(w, http.StatusOK, "refused: event from the future")
		return
	}

	switch ev.Type {
	case "incident.acknowledged", "incident.resolved", "incident.reassigned", "incident.unacknowledged":
	default:
		lg.InfoContext(ctx, "PagerDuty event type not handled; ignored")
		writeText(w, http.StatusOK, "ignored: event type not handled")
		return
	}

	first, err := h.cfg.Deduper.Seen(ctx, ev.ID)
	if err != nil {
		lg.ErrorContext(ctx, "recording the PagerDuty event id failed; PagerDuty will redeliver", "error", err)
		http.Error(w, "could not record the event; retry later", http.StatusServiceUnavailable)
		return
	}
	if !first {
		lg.InfoContext(ctx, "duplicate PagerDuty delivery ignored")
		writeText(w, http.StatusOK, "duplicate: already handled")
		return
	}

	status, msg := h.handle(ctx, lg, ev)
	if status >= 500 {
		if ferr := h.cfg.Deduper.Forget(context.WithoutCancel(ctx), ev.ID); ferr != nil {
			lg.ErrorContext(ctx, "forgetting a failed PagerDuty event failed; a redelivery will be ignored as a duplicate", "error", ferr)
		}
	}
	writeText(w, status, msg)
}

// handle acts on a first-seen, fresh incident event and returns the answer for PagerDuty.
func (h *Webhook) handle(ctx context.Context, lg *slog.Logger, ev event) (int, string) {
	switch ev.Type {
	case "incident.acknowledged":
		return h.acknowledged(ctx, lg, ev)
	case "incident.resolved":
		res := broker.PageResolved{EventID: ev.ID, IncidentID: ev.Incident.ID, OccurredAt: ev.OccurredAt}
		if ev.Incident.Service != nil {
			res.ServiceID = ev.Incident.Service.ID
		}
		if err := h.callPages(ctx, func(ctx context.Context) error { return h.cfg.Pages.Resolved(ctx, res) }); err != nil {
			lg.ErrorContext(ctx, "handling incident.resolved failed; PagerDuty will redeliver", "error", err)
			return http.StatusInternalServerError, "could not handle the resolution; retry later"
		}
		lg.InfoContext(ctx, "incident resolution handed to the broker")
		return http.StatusOK, "ok"
	default: // incident.reassigned, incident.unacknowledged
		reason := ev.Type + ": no new grant; grants already tied to the incident keep their expiry and end when it is resolved"
		lg.InfoContext(ctx, "PagerDuty event recorded, no action", "reason", reason)
		h.ignore(ctx, ev, reason, nil)
		return http.StatusOK, "ignored: " + ev.Type
	}
}

func (h *Webhook) acknowledged(ctx context.Context, lg *slog.Logger, ev event) (int, string) {
	if ev.Agent == nil || ev.Agent.Type != "user_reference" {
		kind := "no agent"
		if ev.Agent != nil {
			kind = "agent of type " + strconv.Quote(ev.Agent.Type)
		}
		h.ignore(ctx, ev, "acknowledged by "+kind+", not a user: no grant", nil)
		lg.InfoContext(ctx, "acknowledgement not by a user; ignored", "agent", kind)
		return http.StatusOK, "ignored: not acknowledged by a user"
	}
	inc, err := h.cfg.API.Incident(ctx, ev.Incident.ID)
	if errors.Is(err, ErrNotFound) {
		h.ignore(ctx, ev, "PagerDuty API does not know the incident: no grant", nil)
		lg.WarnContext(ctx, "acknowledged incident not found through the API; ignored")
		return http.StatusOK, "ignored: incident not found"
	}
	if err != nil {
		lg.ErrorContext(ctx, "confirming the acknowledgement through the PagerDuty API failed; PagerDuty will redeliver", "error", err)
		return http.StatusServiceUnavailable, "could not confirm the incident with PagerDuty; retry later"
	}
	evidence := map[string]string{"incident_status": inc.Status, "incident_number": strconv.Itoa(inc.Number), "service_id": inc.ServiceID}
	if inc.Status != "acknowledged" {
		h.ignore(ctx, ev, fmt.Sprintf("not confirmed: PagerDuty says the incident is now %q, not acknowledged: no grant", inc.Status), evidence)
		lg.InfoContext(ctx, "acknowledgement not confirmed by the API; ignored", "incident_status", inc.Status)
		return http.StatusOK, "ignored: incident no longer acknowledged"
	}
	if !slices.Contains(inc.Acknowledgers, ev.Agent.ID) && !slices.Contains(inc.Assignees, ev.Agent.ID) {
		h.ignore(ctx, ev, fmt.Sprintf("not confirmed: %s is not among the incident's current acknowledgers or assignees: no grant", ev.Agent.ID), evidence)
		lg.InfoContext(ctx, "acknowledger not confirmed by the API; ignored", "agent", ev.Agent.ID)
		return http.StatusOK, "ignored: acknowledger not confirmed"
	}
	user, err := h.cfg.API.UserByID(ctx, ev.Agent.ID)
	if errors.Is(err, ErrNotFound) {
		h.ignore(ctx, ev, fmt.Sprintf("the acknowledging PagerDuty user %s does not exist: no grant", ev.Agent.ID), evidence)
		return http.StatusOK, "ignored: acknowledging user not found"
	}
	if err != nil {
		lg.ErrorContext(ctx, "looking up the acknowledging PagerDuty user failed; PagerDuty will redeliver", "error", err)
		return http.StatusServiceUnavailable, "could not look up the acknowledging user; retry later"
	}
	ack := broker.PageAck{
		EventID: ev.ID, IncidentID: inc.ID, IncidentNumber: inc.Number, Title: inc.Title, URL: inc.URL,
		ServiceID: inc.ServiceID, AcknowledgerPDUserID: user.ID, AcknowledgerEmail: user.Email, OccurredAt: ev.OccurredAt,
	}
	if ack.IncidentID == "" {
		ack.IncidentID = ev.Incident.ID
	}
	if err := h.callPages(ctx, func(ctx context.Context) error { return h.cfg.Pages.Acknowledged(ctx, ack) }); err != nil {
		if errors.Is(err, broker.ErrBusy) {
			lg.WarnContext(ctx, "the acknowledgement is being handled by another delivery; PagerDuty will redeliver", "error", err)
		} else {
			lg.ErrorContext(ctx, "handling incident.acknowledged failed; PagerDuty will redeliver", "error", err)
		}
		return http.StatusInternalServerError, "could not handle the acknowledgement; retry later"
	}
	lg.InfoContext(ctx, "confirmed acknowledgement handed to the broker", "acknowledger", user.ID, "service_id", inc.ServiceID)
	return http.StatusOK, "ok"
}

// callPages runs f with a context that survives PagerDuty hanging up (a half-done grant must
// be finished and recorded), bounded by PagesTimeout.
func (h *Webhook) callPages(ctx context.Context, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.PagesTimeout)
	defer cancel()
	return f(ctx)
}

// reject audits a refused delivery, rate-limited. ev is nil when the body was not trusted or
// not decoded: nothing from it is recorded then.
func (h *Webhook) reject(ctx context.Context, remote, reason string, ev *event) {
	h.log.WarnContext(ctx, "PagerDuty webhook refused", "remote", remote, "reason", reason)
	ok, suppressed := h.limiter.Allow(h.cfg.Clock.Now())
	if !ok {
		return
	}
	evidence := map[string]string{"source": "pagerduty", "remote": remote}
	if suppressed > 0 {
		evidence["suppressed"] = strconv.Itoa(suppressed)
	}
	actor := audit.Actor{Kind: audit.ActorUnknown, ID: remote}
	if ev != nil {
		actor = eventActor(*ev)
		addEventEvidence(evidence, *ev)
	}
	h.record(ctx, audit.ActionWebhookRejected, actor, reason, evidence)
}

// ignore audits an authentic event that was deliberately not acted on.
func (h *Webhook) ignore(ctx context.Context, ev event, reason string, extra map[string]string) {
	evidence := map[string]string{"source": "pagerduty"}
	addEventEvidence(evidence, ev)
	for k, v := range extra {
		if v != "" {
			evidence[k] = v
		}
	}
	h.record(ctx, ActionWebhookIgnored, eventActor(ev), reason, evidence)
}

func (h *Webhook) record(ctx context.Context, action audit.Action, actor audit.Actor, reason string, evidence map[string]string) {
	now := h.cfg.Clock.Now()
	e := audit.Event{
		ID: grants.NewID("e"), Time: now.UTC().Truncate(time.Millisecond), Actor: actor, Action: action,
		Reason: reason, Evidence: evidence,
	}
	if err := h.cfg.Recorder.Record(context.WithoutCancel(ctx), e); err != nil {
		h.log.ErrorContext(ctx, "writing the audit event for a PagerDuty webhook failed", "action", string(action), "reason", reason, "error", err)
	}
}

func eventActor(ev event) audit.Actor {
	if ev.Agent != nil && ev.Agent.ID != "" {
		return audit.Actor{Kind: audit.ActorPagerDuty, ID: ev.Agent.ID}
	}
	return audit.Actor{Kind: audit.ActorPagerDuty, ID: "pagerduty"}
}

func addEventEvidence(m map[string]string, ev event) {
	m["event_id"] = ev.ID
	m["event_type"] = ev.Type
	m["occurred_at"] = grants.Timestamp(ev.OccurredAt)
	if ev.Incident != nil {
		m["incident_id"] = ev.Incident.ID
		if ev.Incident.Service != nil && ev.Incident.Service.ID != "" {
			m["service_id"] = ev.Incident.Service.ID
		}
	}
	if ev.Agent != nil && ev.Agent.ID != "" {
		m["agent_id"] = ev.Agent.ID
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

// MemoryDeduper is an in-memory Deduper for tests and the single-process demo. It forgets
// everything on restart, so production uses the store-backed one.
type MemoryDeduper struct {
	mu   sync.Mutex
	seen map[string]bool
}

// NewMemoryDeduper returns an empty MemoryDeduper.
func NewMemoryDeduper() *MemoryDeduper { return &MemoryDeduper{seen: map[string]bool{}} }

// Seen implements Deduper.
func (d *MemoryDeduper) Seen(_ context.Context, eventID string) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seen[eventID] {
		return false, nil
	}
	d.seen[eventID] = true
	return true, nil
}

// Forget implements Deduper.
func (d *MemoryDeduper) Forget(_ context.Context, eventID string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.seen, eventID)
	return nil
}
