package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
	"github.com/accessbroker/accessbroker/integrations/pagerduty"
	"github.com/accessbroker/accessbroker/integrations/slack"
)

// frontends are the people-facing parts of serve: Slack (commands, approvals, delivery) and
// PagerDuty (on-call checks, page acknowledgements). Each is optional; without Slack nobody
// can ask for access except through `grants issue`.
type frontends struct {
	broker   *broker.Broker
	slack    *slack.Handler
	notifier *slack.Notifier
	summary  *broker.Summary        // nil without a summary channel
	reminder *broker.ReviewReminder // reminds unreviewed summaries; nil without a summary channel
	// team, dir and groups are the Slack identity rules, shared with the web console.
	team   string
	dir    broker.Directory
	groups broker.Groups
}

// buildFrontends wires Slack and PagerDuty into mux. The revoker's observer is pointed at the
// Slack notifier so owners hear about revocations.
func buildFrontends(ctx context.Context, a *app, mux *http.ServeMux) (*frontends, error) {
	cfg := a.cfg
	f := &frontends{}
	hc := httpclient.New(httpclient.Options{Logger: a.log, ReturnLastResponse: true, Clock: a.clock, Transport: a.transport})
	for _, o := range cfg.URLOverrides() {
		a.log.Warn("upstream API URL overridden; tokens go to this address", "override", o)
	}

	var oncall broker.OnCall = broker.NobodyOnCall{} // without PagerDuty every request needs approval
	var pd *pagerduty.Client
	if cfg.PagerDuty != nil {
		var err error
		pd, err = pagerduty.New(pagerduty.Config{APIURL: cfg.PagerDuty.APIURL, Token: cfg.PagerDuty.Token.Reveal(), HTTP: hc, Clock: a.clock, Logger: a.log})
		if err != nil {
			return nil, fmt.Errorf("pagerduty: %w", err)
		}
		oncall = pd
	}
	if cfg.Slack == nil {
		if cfg.PagerDuty != nil && len(cfg.AutoGrant) > 0 {
			return nil, fmt.Errorf("auto_grant needs the slack section: credentials are delivered by direct message")
		}
		return f, nil
	}
	s := cfg.Slack
	api, err := slack.NewClient(slack.ClientOptions{Token: s.BotToken.Reveal(), APIURL: s.APIURL, HTTPClient: hc})
	if err != nil {
		return nil, err
	}
	team := s.TeamID
	if team == "" {
		if team, err = slack.AuthTeam(ctx, api); err != nil {
			return nil, fmt.Errorf("slack.team_id is not set and the workspace could not be asked: %w", err)
		}
	}
	var ids []slack.Identity
	for _, id := range cfg.Identities {
		ids = append(ids, slack.Identity{SlackTeamID: id.SlackTeam, SlackUserID: id.Slack, Email: id.Email, GitHubLogin: id.GitHub, PagerDutyID: id.PagerDuty})
	}
	dir, err := slack.NewDirectory(api, team, ids, a.log, slack.DirectoryOptions{ResolveByEmail: cfg.Identity.ResolveByEmail})
	if err != nil {
		return nil, err
	}
	no := slack.NotifierOptions{API: api, HTTPClient: hc, ApprovalChannel: s.ApprovalsChannel, DMApprovers: s.ApprovalsChannel == "",
		AuditChannel: s.AuditChannel, Clock: a.clock, Logger: a.log}
	if no.ResponseURLPrefix, err = slack.ResponseURLPrefixFor(s.APIURL); err != nil {
		return nil, err
	}
	f.notifier, err = slack.NewNotifier(no)
	if err != nil {
		return nil, err
	}
	for _, r := range a.manager.Resources() {
		if err := broker.CheckPolicy(r); err != nil {
			return nil, err
		}
	}
	f.team, f.dir, f.groups = team, dir, slack.NewUsergroups(api)
	f.broker = broker.New(broker.Deps{Manager: a.manager, Store: a.store, Clock: a.clock, Leases: a.store, Once: a.store,
		OnCall: oncall, Directory: dir, Notifier: f.notifier,
		Groups: f.groups, Logger: a.log, Options: broker.Options{PendingTTL: s.RequestTTL}})
	var secrets []string
	for _, sec := range s.SigningSecretList() {
		secrets = append(secrets, sec.Reveal())
	}
	verifier, err := slack.NewVerifier(a.clock, 0, secrets...)
	if err != nil {
		return nil, err
	}
	reviews := broker.NewReviews(broker.ReviewDeps{Clock: a.clock, Events: a.store, Recorder: a.manager, Directory: dir,
		Reviewers: s.Summary.Reviewers, Logger: a.log})
	f.slack, err = slack.NewHandler(slack.HandlerOptions{Verifier: verifier, Service: f.broker, Teller: f.notifier, Clock: a.clock,
		Logger: a.log, Grammar: slack.Grammar{MinReason: s.MinReasonLength},
		Reviews: slack.ReviewsAdapter{R: reviews}, Modals: slack.ModalClient{API: api}})
	if err != nil {
		return nil, err
	}
	f.slack.Register(mux)
	a.observer.set(f.notifier)

	if ch := s.Summary.Channel; ch != "" {
		poster, err := slack.NewSummaryPoster(api, 30*time.Second, a.log)
		if err != nil {
			return nil, err
		}
		h, m := s.Summary.HourMinute()
		f.summary = broker.NewSummary(broker.SummaryDeps{Clock: a.clock, Events: a.store, Leases: a.store, Recorder: a.manager,
			Poster: poster, Channel: ch, Weekday: s.Summary.Weekday(), Hour: h, Minute: m, Holder: a.instance, Logger: a.log,
			Checkpoints: a.summaryCheckpoints()})
		f.reminder = broker.NewReviewReminder(broker.ReviewReminderDeps{Clock: a.clock, Events: a.store, Once: a.store, Poster: poster,
			Channel: ch, Reviewers: s.Summary.Reviewers, Logger: a.log})
	}

	if pd != nil {
		var rules []broker.AutoGrantRule
		for _, r := range cfg.AutoGrant {
			rules = append(rules, broker.AutoGrantRule{PagerDutyServices: r.PagerDutyServices, Resources: r.Resources,
				Duration: r.Duration, RevokeOnResolve: r.RevokeOnResolve, GracePeriod: r.GracePeriod})
		}
		var secrets []string
		for _, sec := range cfg.PagerDuty.WebhookSecrets {
			secrets = append(secrets, sec.Reveal())
		}
		hook, err := pagerduty.NewWebhook(pagerduty.WebhookConfig{Secrets: secrets, API: pd,
			Pages:   broker.NewPages(f.broker, rules, dir, a.manager),
			Deduper: a.store, Recorder: recorder{a.manager}, Clock: a.clock, Logger: a.log, Freshness: cfg.PagerDuty.Freshness})
		if err != nil {
			return nil, fmt.Errorf("pagerduty webhook: %w", err)
		}
		mux.Handle("POST "+pagerduty.WebhookPath, hook)
	}
	return f, nil
}

// recorder adapts grants.Manager.Record to the PagerDuty webhook's Recorder port.
type recorder struct{ m *grants.Manager }

func (r recorder) Record(ctx context.Context, e audit.Event) error { return r.m.Record(ctx, &e) }

// observerSwitch lets the revoker, built before the front ends, report to them once they exist.
type observerSwitch struct{ target grants.Observer }

func (o *observerSwitch) set(t grants.Observer) { o.target = t }

func (o *observerSwitch) GrantRevoked(ctx context.Context, g grants.Grant) {
	if o.target != nil {
		o.target.GrantRevoked(ctx, g)
	}
}

func (o *observerSwitch) RevokeFailed(ctx context.Context, g grants.Grant, err error) {
	if o.target != nil {
		o.target.RevokeFailed(ctx, g, err)
	}
}
