package slack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

// Service is what the handlers need from the broker (*broker.Broker implements it).
type Service interface {
	Submit(ctx context.Context, in broker.RequestInput) (grants.Request, error)
	Process(ctx context.Context, requestID string) error
	Decide(ctx context.Context, in broker.DecisionInput) error
	List(ctx context.Context, c broker.Caller) (broker.Listing, error)
	Resources() []grants.Resource
	Revoke(ctx context.Context, c broker.Caller, grantID string) (grants.Grant, error)
	Done(ctx context.Context, c broker.Caller, grantID string) (grants.Grant, error)
	SubmitExtension(ctx context.Context, in broker.ExtensionInput) (grants.Request, error)
	ExtendFromReminder(ctx context.Context, in broker.ExtensionInput) (grants.Request, error)
	RecordRejection(ctx context.Context, r broker.Rejection) error
}

var _ Service = (*broker.Broker)(nil)

// Teller answers a person privately after the acknowledgement (*Notifier implements it).
type Teller interface {
	Tell(ctx context.Context, to broker.Recipient, text string) error
}

// HandlerOptions configure the Slack HTTP handlers.
type HandlerOptions struct {
	Verifier *Verifier // required
	Service  Service   // required
	Teller   Teller    // required: reports the outcome of background work
	// Reviews and Modals, when both set, serve the weekly summary's "Mark reviewed"
	// button (a modal, then review.recorded); without them the button says reviews are off.
	Reviews Reviewer
	Modals  ModalOpener
	Clock   grants.Clock
	Logger  *slog.Logger
	Grammar Grammar
	// AckTimeout bounds the work done before answering Slack (recording the request); Slack
	// gives up after 3 s. Default 2s.
	AckTimeout time.Duration
	// WorkTimeout bounds the background work after the acknowledgement. Default 2m.
	WorkTimeout time.Duration
	// RejectEvery is the shortest interval between two request.rejected audit events for
	// unauthenticated requests from one source address (default 1m); at most RejectBurst
	// such events are written per interval in all (default 30).
	RejectEvery time.Duration
	RejectBurst int
	// MaxBackground bounds how many background jobs run at once (default 8); the rest wait
	// their turn without delaying acknowledgements, which share the CPU and the database
	// writer with them.
	MaxBackground int
	// AckFirst is the longest a background job waits, before it starts, for the
	// acknowledgements being answered to be done (default 1s): in a burst of commands the
	// answers Slack is waiting for (3 s at most) get the CPU and the database writer first,
	// and the background work (minutes) follows.
	AckFirst time.Duration
}

// Handler serves POST /slack/commands and POST /slack/interactions. Every request is
// verified (size limit first, then the v0 signature and the 5-minute window) before its body
// is parsed; an unverified request gets 401, changes nothing, and is recorded (rate-limited)
// as a request.rejected audit event. Verified requests are acknowledged at once: a command
// is recorded, answered, and finished in the background with its own timeout.
type Handler struct {
	o       HandlerOptions
	log     *slog.Logger
	wg      sync.WaitGroup
	limiter *rejectLimiter
	slots   chan struct{}
	acks    *ackGate
}

// ackGate counts the requests being answered, so that background work can let them go first.
type ackGate struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed while n is 0; a new one from the moment n rises from 0
}

func newAckGate() *ackGate {
	idle := make(chan struct{})
	close(idle)
	return &ackGate{idle: idle}
}

// enter counts one request being answered; call leave when its answer is written.
func (g *ackGate) enter() {
	g.mu.Lock()
	if g.n == 0 {
		g.idle = make(chan struct{})
	}
	g.n++
	g.mu.Unlock()
}

func (g *ackGate) leave() {
	g.mu.Lock()
	g.n--
	if g.n == 0 {
		close(g.idle)
	}
	g.mu.Unlock()
}

// quiet is closed when no request is being answered (already closed if none is now).
func (g *ackGate) quiet() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.idle
}

// NewHandler checks the options and returns the handlers.
func NewHandler(o HandlerOptions) (*Handler, error) {
	if o.Verifier == nil || o.Service == nil || o.Teller == nil || o.Clock == nil {
		return nil, errors.New("slack handler: Verifier, Service, Teller and Clock are required")
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 2 * time.Second
	}
	if o.WorkTimeout <= 0 {
		o.WorkTimeout = 2 * time.Minute
	}
	if o.RejectEvery <= 0 {
		o.RejectEvery = time.Minute
	}
	if o.RejectBurst <= 0 {
		o.RejectBurst = 30
	}
	if o.MaxBackground <= 0 {
		o.MaxBackground = 8
	}
	if o.AckFirst <= 0 {
		o.AckFirst = time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{o: o, log: log.With("component", "slack_handler"), limiter: newRejectLimiter(o.RejectEvery, o.RejectBurst),
		slots: make(chan struct{}, o.MaxBackground), acks: newAckGate()}, nil
}

// Paths served by Register.
const (
	CommandsPath     = "/slack/commands"
	InteractionsPath = "/slack/interactions"
)

// Register adds both handlers to mux at their contract paths.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle("POST "+CommandsPath, http.HandlerFunc(h.Commands))
	mux.Handle("POST "+InteractionsPath, http.HandlerFunc(h.Interactions))
}

// Wait blocks until background work started by the handlers has finished, or ctx ends.
// Call it on shutdown after the HTTP server stopped accepting requests.
func (h *Handler) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("slack handler: background work still running: %w", ctx.Err())
	}
}

// background runs f after the response, detached from the request's cancellation but with
// its own timeout, and tracked for Wait.
func (h *Handler) background(r *http.Request, what string, f func(ctx context.Context) error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), h.o.WorkTimeout)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer cancel()
		h.afterAcks(ctx)
		select {
		case h.slots <- struct{}{}:
			defer func() { <-h.slots }()
		case <-ctx.Done():
			h.log.ErrorContext(ctx, "background work never started", "work", what, "error", ctx.Err())
			return
		}
		defer func() {
			if p := recover(); p != nil {
				h.log.ErrorContext(ctx, "background work panicked", "work", what, "panic", fmt.Sprint(p))
			}
		}()
		if err := f(ctx); err != nil && !errors.Is(err, broker.ErrRefused) {
			h.log.ErrorContext(ctx, "background work failed", "work", what, "error", err)
		}
	}()
}

// afterAcks waits until no request is being answered, at most AckFirst (or until ctx ends).
func (h *Handler) afterAcks(ctx context.Context) {
	quiet := h.acks.quiet()
	select {
	case <-quiet:
		return
	default:
	}
	t := h.o.Clock.NewTimer(h.o.AckFirst)
	defer t.Stop()
	select {
	case <-quiet:
	case <-t.C():
	case <-ctx.Done():
	}
}

// verify reads and authenticates the request; on failure it answers 401 and returns false.
func (h *Handler) verify(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := h.o.Verifier.ReadRequest(w, r)
	if err == nil {
		return body, true
	}
	src := remoteHost(r)
	h.log.WarnContext(r.Context(), "unauthenticated Slack request refused", "path", r.URL.Path, "source", src, "error", err)
	if h.limiter.allow(src, h.o.Clock.Now()) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), h.o.AckTimeout)
		rerr := h.o.Service.RecordRejection(ctx, broker.Rejection{
			Actor:    audit.Actor{Kind: audit.ActorUnknown, ID: src},
			Reason:   "unauthenticated Slack request: " + err.Error(),
			Evidence: map[string]string{"path": r.URL.Path},
		})
		cancel()
		if rerr != nil {
			h.log.ErrorContext(r.Context(), "record unauthenticated request", "error", rerr)
		}
	}
	http.Error(w, "unauthorized: Slack request signature missing, invalid or outside the 5-minute window", http.StatusUnauthorized)
	return nil, false
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// reply writes the acknowledgement: an ephemeral message to the person who typed the command.
func reply(w http.ResponseWriter, mrkdwn string) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"response_type": "ephemeral", "text": mrkdwn})
}

// Commands handles POST /slack/commands.
func (h *Handler) Commands(w http.ResponseWriter, r *http.Request) {
	h.acks.enter()
	defer h.acks.leave()
	body, ok := h.verify(w, r)
	if !ok {
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		reply(w, "accessbroker could not read this command (malformed form body).")
		return
	}
	if form.Get("ssl_check") == "1" {
		w.WriteHeader(http.StatusOK)
		return
	}
	team, user := form.Get("team_id"), form.Get("user_id")
	if team == "" || user == "" {
		reply(w, "accessbroker could not read this command (no team_id or user_id).")
		return
	}
	name := form.Get("command")
	if name == "" {
		name = "/access"
	}
	text := form.Get("text")
	caller := broker.Caller{TeamID: team, UserID: user}
	to := broker.Recipient{Person: grants.Person{SlackTeamID: team, SlackUserID: user}, ResponseURL: form.Get("response_url"), ChannelID: form.Get("channel_id")}

	cmd, err := ParseCommand(text, h.o.Grammar)
	if err != nil {
		var ue *UsageError
		if !errors.As(err, &ue) {
			ue = &UsageError{Problem: err.Error()}
		}
		h.recordGrammarRejection(r, user, team, text, ue.Problem)
		reply(w, ":no_entry: "+Escape(ue.Problem)+"\n\n"+Usage(Escape(name), ue.Kind))
		return
	}
	switch cmd.Kind {
	case CmdHelp:
		reply(w, Usage(Escape(name), CmdHelp))
	case CmdResources:
		reply(w, ResourcesText(h.o.Service.Resources()))
	case CmdList:
		ctx, cancel := context.WithTimeout(r.Context(), h.o.AckTimeout)
		defer cancel()
		l, err := h.o.Service.List(ctx, caller)
		if err != nil {
			h.log.ErrorContext(ctx, "list", "error", err)
			reply(w, Render(broker.UserMessage(err)))
			return
		}
		reply(w, ListingText(l, h.o.Clock.Now()))
	case CmdRequest, CmdBreakGlass:
		h.request(w, r, form, deliveryKey(form.Get("trigger_id"), r.Header, body), cmd, name)
	case CmdRevoke, CmdDone:
		reply(w, fmt.Sprintf("Ending grant %s…", code(cmd.GrantID)))
		h.background(r, string(cmd.Kind), func(ctx context.Context) error {
			op := h.o.Service.Revoke
			if cmd.Kind == CmdDone {
				op = h.o.Service.Done
			}
			g, err := op(ctx, caller, cmd.GrantID)
			if err != nil {
				return h.tellErr(ctx, to, err)
			}
			return h.o.Teller.Tell(ctx, to, fmt.Sprintf("Grant %s (%s) is being revoked; you will get a message when it is done.", g.ID, g.Resource))
		})
	case CmdExtend:
		h.extend(w, r, form, deliveryKey(form.Get("trigger_id"), r.Header, body), cmd, name)
	}
}

// extend records an extension request before answering, then decides it under the policy in
// the background (the broker tells the owner the outcome).
func (h *Handler) extend(w http.ResponseWriter, r *http.Request, form url.Values, key string, cmd Command, name string) {
	ctx, cancel := context.WithTimeout(r.Context(), h.o.AckTimeout)
	defer cancel()
	req, err := h.o.Service.SubmitExtension(ctx, broker.ExtensionInput{
		Source: grants.SourceSlack, TeamID: form.Get("team_id"), UserID: form.Get("user_id"),
		GrantID: cmd.GrantID, By: cmd.Duration, Reason: cmd.Reason,
		ExternalKey: "slack:" + key, ResponseURL: form.Get("response_url"), ChannelID: form.Get("channel_id"),
	})
	switch {
	case errors.Is(err, broker.ErrDuplicate):
		reply(w, "This request was already received; nothing new was done.")
		return
	case errors.Is(err, broker.ErrRefused):
		reply(w, ":no_entry: "+Render(broker.UserMessage(err))+"\n\n"+Usage(Escape(name), CmdExtend))
		return
	case err != nil:
		h.log.ErrorContext(ctx, "record extension", "error", err)
		reply(w, Render(broker.UserMessage(err)))
		return
	}
	reply(w, fmt.Sprintf("Request %s to extend grant %s by %s received. Checking it against %s's policy…", code(req.ID), code(cmd.GrantID), audit.FormatDuration(cmd.Duration), code(req.Resource)))
	h.background(r, "process extension", func(ctx context.Context) error {
		return h.o.Service.Process(ctx, req.ID)
	})
}

// deliveryKey identifies one delivery of a verified request: its trigger id, or, when Slack
// sent none, "signed:" and the SHA-256 of what the signature covers ("v0:" + timestamp + ":"
// + body). Keying on the signed bytes, not on the signature header's text, makes every
// spelling of one signature (upper-case hex, say) the same delivery; the prefix keeps such
// keys apart from trigger ids. The timestamp has one spelling (parseTimestamp).
func deliveryKey(triggerID string, h http.Header, body []byte) string {
	if triggerID != "" {
		return triggerID
	}
	sum := sha256.New()
	sum.Write([]byte("v0:"))
	sum.Write([]byte(h.Get(HeaderTimestamp)))
	sum.Write([]byte(":"))
	sum.Write(body)
	return "signed:" + hex.EncodeToString(sum.Sum(nil))
}

// tellErr tells the person what went wrong (a refusal's words, or a generic sentence).
func (h *Handler) tellErr(ctx context.Context, to broker.Recipient, err error) error {
	if terr := h.o.Teller.Tell(ctx, to, broker.UserMessage(err)); terr != nil {
		h.log.WarnContext(ctx, "tell error failed", "error", terr)
	}
	return err
}

func (h *Handler) recordGrammarRejection(r *http.Request, user, team, text, problem string) {
	ctx, cancel := context.WithTimeout(r.Context(), h.o.AckTimeout)
	defer cancel()
	err := h.o.Service.RecordRejection(ctx, broker.Rejection{
		Actor:    audit.Actor{Kind: audit.ActorUser, ID: user},
		Reason:   "command refused: " + problem,
		Evidence: map[string]string{"team": team, "command_text": truncate(text, 200)},
	})
	if err != nil {
		h.log.ErrorContext(ctx, "record refused command", "error", err)
	}
}

// request records an access request before answering, then decides it in the background.
func (h *Handler) request(w http.ResponseWriter, r *http.Request, form url.Values, key string, cmd Command, name string) {
	ctx, cancel := context.WithTimeout(r.Context(), h.o.AckTimeout)
	defer cancel()
	req, err := h.o.Service.Submit(ctx, broker.RequestInput{
		Source: grants.SourceSlack, TeamID: form.Get("team_id"), UserID: form.Get("user_id"),
		Resource: cmd.Resource, Duration: cmd.Duration, Reason: cmd.Reason, BreakGlass: cmd.Kind == CmdBreakGlass,
		ExternalKey: "slack:" + key, ResponseURL: form.Get("response_url"), ChannelID: form.Get("channel_id"),
	})
	switch {
	case errors.Is(err, broker.ErrDuplicate):
		reply(w, "This request was already received; nothing new was done.")
		return
	case errors.Is(err, broker.ErrRefused):
		reply(w, ":no_entry: "+Render(broker.UserMessage(err))+"\n\n"+Usage(Escape(name), cmd.Kind))
		return
	case err != nil:
		h.log.ErrorContext(ctx, "record request", "error", err)
		reply(w, Render(broker.UserMessage(err)))
		return
	}
	reply(w, fmt.Sprintf("Request %s for %s (%s) received. Checking your on-call status…", code(req.ID), code(req.Resource), audit.FormatDuration(req.Duration)))
	h.background(r, "process request", func(ctx context.Context) error {
		return h.o.Service.Process(ctx, req.ID)
	})
}

// Interactions handles POST /slack/interactions (button clicks).
func (h *Handler) Interactions(w http.ResponseWriter, r *http.Request) {
	h.acks.enter()
	defer h.acks.leave()
	body, ok := h.verify(w, r)
	if !ok {
		return
	}
	in, err := DecodeInteraction(body)
	if err != nil {
		h.log.WarnContext(r.Context(), "undecodable interaction", "error", err)
		w.WriteHeader(http.StatusOK) // signed by Slack; nothing to retry
		return
	}
	if in.Type == "view_submission" {
		h.reviewSubmission(w, r, body) // answered in the response: the modal shows refusals
		return
	}
	w.WriteHeader(http.StatusOK)
	if in.Type != "block_actions" {
		return
	}
	caller := broker.Caller{TeamID: in.TeamID, UserID: in.UserID}
	to := broker.Recipient{Person: grants.Person{SlackTeamID: in.TeamID, SlackUserID: in.UserID}, ResponseURL: in.ResponseURL}
	switch in.ActionID {
	case ActionApprove, ActionDeny:
		h.background(r, "decide", func(ctx context.Context) error {
			return h.o.Service.Decide(ctx, broker.DecisionInput{TeamID: in.TeamID, UserID: in.UserID, RequestID: in.Value, Approve: in.ActionID == ActionApprove, ResponseURL: in.ResponseURL})
		})
	case ActionExtend:
		// A replay of the same signed click is the same delivery, trigger id or not.
		key := deliveryKey(in.TriggerID, r.Header, body)
		h.background(r, "extend from reminder", func(ctx context.Context) error {
			// Decided under the policy like /access extend; the broker tells the owner.
			ext := broker.ExtensionInput{Source: grants.SourceSlack, TeamID: in.TeamID, UserID: in.UserID, GrantID: in.Value,
				ResponseURL: in.ResponseURL, ChannelID: in.ChannelID, ExternalKey: "slack:" + key}
			_, err := h.o.Service.ExtendFromReminder(ctx, ext)
			if errors.Is(err, broker.ErrDuplicate) {
				h.log.InfoContext(ctx, "repeated Extend click ignored", "grant_id", in.Value)
				return nil
			}
			if err != nil {
				return h.tellErr(ctx, to, err)
			}
			return nil
		})
	case ActionReview:
		h.background(r, "open review", func(ctx context.Context) error { return h.openReview(ctx, in, to) })
	case ActionDone:
		h.background(r, "done from reminder", func(ctx context.Context) error {
			g, err := h.o.Service.Done(ctx, caller, in.Value)
			if err != nil {
				return h.tellErr(ctx, to, err)
			}
			return h.o.Teller.Tell(ctx, to, fmt.Sprintf("Grant %s (%s) is being revoked.", g.ID, g.Resource))
		})
	default:
		h.log.InfoContext(r.Context(), "ignored interaction", "action_id", in.ActionID)
	}
}

// rejectLimiter allows at most one rejection event per source per interval, and at most
// burst events per interval in all, so that a flood of forged requests cannot flood the
// audit log.
type rejectLimiter struct {
	mu          sync.Mutex
	every       time.Duration
	burst       int
	last        map[string]time.Time
	windowStart time.Time
	inWindow    int
}

func newRejectLimiter(every time.Duration, burst int) *rejectLimiter {
	return &rejectLimiter{every: every, burst: burst, last: map[string]time.Time{}}
}

func (l *rejectLimiter) allow(src string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.windowStart) >= l.every {
		l.windowStart, l.inWindow = now, 0
		for k, t := range l.last { // forget sources quiet for a whole interval
			if now.Sub(t) >= l.every {
				delete(l.last, k)
			}
		}
	}
	if t, ok := l.last[src]; ok && now.Sub(t) < l.every {
		return false
	}
	if l.inWindow >= l.burst {
		return false
	}
	l.last[src] = now
	l.inWindow++
	return true
}
