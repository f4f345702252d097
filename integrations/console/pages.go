package console

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

func (c *Console) routes() http.Handler {
	mux := http.NewServeMux()
	p := strings.TrimSuffix(Prefix, "/")
	mux.HandleFunc("GET "+p+"/{$}", c.authed(c.home))
	mux.HandleFunc("GET "+p+"/signin", c.signinGet)
	mux.HandleFunc("GET "+p+"/signin/slack", c.signinStart)
	mux.HandleFunc("GET "+p+"/signin/callback", c.signinCallback)
	mux.HandleFunc("POST "+p+"/signin/standin", c.signinStandIn)
	mux.HandleFunc("POST "+p+"/signout", c.authed(func(w http.ResponseWriter, r *http.Request, _ Viewer) { c.signout(w, r) }))
	mux.HandleFunc("GET "+p+"/static/", c.static)
	mux.HandleFunc("GET "+p+"/grants", c.authed(c.grantsPage))
	mux.HandleFunc("GET "+p+"/grants/{id}", c.authed(c.grantPage))
	mux.HandleFunc("POST "+p+"/grants/{id}/end", c.authed(c.grantEnd))
	mux.HandleFunc("POST "+p+"/grants/{id}/extend", c.authed(c.grantExtend))
	mux.HandleFunc("POST "+p+"/grants/{id}/revoke", c.authed(c.grantRevoke))
	mux.HandleFunc("GET "+p+"/requests/{id}", c.authed(c.requestPage))
	mux.HandleFunc("POST "+p+"/requests/{id}/decide", c.authed(c.requestDecide))
	mux.HandleFunc("GET "+p+"/request", c.authed(c.formPage))
	mux.HandleFunc("POST "+p+"/request", c.authed(c.formSubmit))
	mux.HandleFunc("GET "+p+"/approvals", c.authed(c.approvalsPage))
	mux.HandleFunc("GET "+p+"/audit", c.authed(c.auditPage))
	mux.HandleFunc("GET "+p+"/audit/export", c.authed(c.auditExport))
	mux.HandleFunc("GET "+p+"/report", c.authed(c.reportPage))
	mux.HandleFunc("GET "+p+"/chain", c.authed(c.chainPage))
	mux.HandleFunc(p+"/", func(w http.ResponseWriter, r *http.Request) {
		c.errorPage(w, r, nil, http.StatusNotFound, "There is no such page in the console.")
	})
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.log.WarnContext(r.Context(), "cross-origin change refused", "path", r.URL.Path, "origin", truncate(r.Header.Get("Origin"), 100))
		c.errorPage(w, r, nil, http.StatusForbidden, "This change came from another site (a cross-origin request), so it was refused and nothing was changed. Use the console's own pages.")
	}))
	return headers(cop.Handler(mux))
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// fail answers an internal error without its details (they are logged).
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	c.log.ErrorContext(r.Context(), "console page failed", "path", r.URL.Path, "error", err)
	c.errorPage(w, r, nil, http.StatusInternalServerError, "Something went wrong on accessbroker's side; nothing was changed by this page. Try again; if it persists, tell the operators.")
}

// common is what every page's layout shows.
type common struct {
	Title  string
	Viewer *Viewer
	Flash  string
	Error  string
	Now    time.Time
}

func (c *Console) common(v *Viewer, title string) common {
	return common{Title: title, Viewer: v, Now: c.cfg.Clock.Now().UTC()}
}

func (c *Console) errorPage(w http.ResponseWriter, r *http.Request, v *Viewer, status int, msg string) {
	d := struct {
		common
		Status int
	}{c.common(v, http.StatusText(status)), status}
	d.Error = msg
	c.render(w, r, status, "error", d)
}

func (c *Console) signinGet(w http.ResponseWriter, r *http.Request) {
	msg := ""
	switch {
	case r.URL.Query().Get("expired") != "":
		msg = "Your session expired; sign in again."
	case r.URL.Query().Get("out") != "":
		msg = "You are signed out."
	}
	c.signinPageMsg(w, r, http.StatusOK, "", msg)
}

func (c *Console) signinPage(w http.ResponseWriter, r *http.Request, status int, errMsg string) {
	c.signinPageMsg(w, r, status, errMsg, "")
}

func (c *Console) signinPageMsg(w http.ResponseWriter, r *http.Request, status int, errMsg, flash string) {
	d := struct {
		common
		Slack   bool
		StandIn []StandInUser
		Return  string
	}{common: c.common(nil, "Sign in"), Slack: c.oidc != nil, StandIn: c.cfg.StandIn, Return: safeReturn(r.URL.Query().Get("return"))}
	d.Error, d.Flash = errMsg, flash
	c.render(w, r, status, "signin", d)
}

// liveStates are the grant states that may still give access.
var liveStates = []grants.State{grants.StateIssuing, grants.StateActive, grants.StateRevoking, grants.StateRevokeFailed}

// pageLimit is the longest list a page shows; more is reached through the audit search.
const pageLimit = 100

func (c *Console) home(w http.ResponseWriter, r *http.Request, v Viewer) {
	ctx := r.Context()
	mine, err := c.cfg.Store.ListGrants(ctx, grants.GrantFilter{SlackUser: v.UserID, Limit: 20})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	mine = ownGrants(v, mine)
	reqs, err := c.cfg.Store.ListRequests(ctx, grants.RequestFilter{SlackUser: v.UserID, Limit: 20})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	reqs = ownRequests(v, reqs)
	inbox, err := c.inbox(ctx, v)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d := struct {
		common
		Grants      []grantRow
		Requests    []grants.Request
		GrantRows   template.HTML // Grants rendered (fastrender.go)
		RequestRows template.HTML // Requests rendered
		Inbox       int
	}{common: c.common(&v, "Your access"), Grants: c.grantRows(mine), Requests: reqs, Inbox: len(inbox)}
	d.GrantRows, d.RequestRows = homeGrantRowsHTML(d.Grants), homeRequestRowsHTML(reqs)
	c.render(w, r, http.StatusOK, "home", d)
}

func ownGrants(v Viewer, gs []grants.Grant) []grants.Grant {
	return slices.DeleteFunc(gs, func(g grants.Grant) bool { return !v.ownsGrant(g) })
}

func ownRequests(v Viewer, rs []grants.Request) []grants.Request {
	return slices.DeleteFunc(rs, func(r grants.Request) bool { return !v.ownsRequest(r) })
}

// grantRow is a grant as lists show it: never its handle (the provider's reference).
type grantRow struct {
	ID, Resource, Person, State, Reason, RevokeCause string
	Live                                             bool
	Expires, Issued, Revoked                         time.Time
	Left                                             string
}

func (c *Console) grantRows(gs []grants.Grant) []grantRow {
	now := c.cfg.Clock.Now()
	out := make([]grantRow, 0, len(gs))
	for _, g := range gs {
		row := grantRow{ID: g.ID, Resource: g.Resource, Person: personLabel(g.Person), State: string(g.State), Reason: g.Reason,
			RevokeCause: string(g.RevokeCause), Live: g.State != grants.StateRevoked, Expires: g.ExpiresAt, Issued: g.IssuedAt, Revoked: g.RevokedAt}
		if row.Live && g.ExpiresAt.After(now) {
			row.Left = audit.FormatDuration(g.ExpiresAt.Sub(now).Round(time.Minute))
		}
		out = append(out, row)
	}
	return out
}

func personLabel(p grants.Person) string {
	if p.Email != "" {
		return p.Email + " (" + p.SlackUserID + ")"
	}
	return p.SlackUserID
}

// grantsPage lists live grants: the viewer's own, and for auditors everybody's (filtered
// by resource), plus the viewer's recent history.
func (c *Console) grantsPage(w http.ResponseWriter, r *http.Request, v Viewer) {
	ctx := r.Context()
	q := r.URL.Query()
	all := q.Get("all") != "" && v.Auditor
	f := grants.GrantFilter{States: liveStates, Resource: q.Get("resource"), Limit: pageLimit}
	if !all {
		f.SlackUser = v.UserID
	}
	live, err := c.cfg.Store.ListGrants(ctx, f)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if !all {
		live = ownGrants(v, live)
	}
	var past []grants.Grant
	if !all {
		hist, err := c.cfg.Store.ListGrants(ctx, grants.GrantFilter{SlackUser: v.UserID, States: []grants.State{grants.StateRevoked}, Limit: 50})
		if err != nil {
			c.fail(w, r, err)
			return
		}
		past = ownGrants(v, hist)
	}
	d := struct {
		common
		All       bool
		Resource  string
		Resources []grants.Resource
		Live      []grantRow
		Past      []grantRow
		LiveRows  template.HTML // Live rendered (fastrender.go)
		PastRows  template.HTML
	}{common: c.common(&v, "Grants"), All: all, Resource: q.Get("resource"), Resources: c.cfg.Broker.Resources(), Live: c.grantRows(live), Past: c.grantRows(past)}
	d.LiveRows, d.PastRows = liveRowsHTML(d.Live), pastRowsHTML(d.Past)
	c.render(w, r, http.StatusOK, "grants", d)
}

// loadGrant fetches a grant the viewer may read; refusals are recorded and answered.
func (c *Console) loadGrant(w http.ResponseWriter, r *http.Request, v Viewer) (grants.Grant, bool) {
	id := r.PathValue("id")
	if !grants.ValidID("g", id) {
		c.errorPage(w, r, &v, http.StatusNotFound, fmt.Sprintf("%q is not a grant id (they look like g_…).", truncate(id, 40)))
		return grants.Grant{}, false
	}
	g, err := c.cfg.Store.GetGrant(r.Context(), id)
	if errors.Is(err, grants.ErrNotFound) {
		c.errorPage(w, r, &v, http.StatusNotFound, "There is no grant "+id+".")
		return g, false
	}
	if err != nil {
		c.fail(w, r, err)
		return g, false
	}
	if !c.mayReadGrant(r.Context(), v, g) {
		c.refuse(w, r, &v, broker.Rejection{GrantID: g.ID, RequestID: g.RequestID, Resource: g.Resource,
			Reason:   fmt.Sprintf("Grant %s is not yours, and you are neither an approver for %s nor an auditor, so you may not see it.", g.ID, g.Resource),
			Evidence: map[string]string{"refused": "not_yours"}})
		return g, false
	}
	return g, true
}

func (c *Console) grantPage(w http.ResponseWriter, r *http.Request, v Viewer) {
	g, ok := c.loadGrant(w, r, v)
	if !ok {
		return
	}
	st, err := c.grantStory(r.Context(), g)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	res, _ := c.resource(g.Resource)
	d := struct {
		common
		Grant     grantRow
		Story     story
		Owner     bool
		CanRevoke bool
		CanExtend bool
		MaxExtend string
	}{common: c.common(&v, "Grant "+g.ID), Grant: c.grantRows([]grants.Grant{g})[0], Story: st,
		Owner: v.ownsGrant(g), CanRevoke: v.Auditor && g.State != grants.StateRevoked,
		CanExtend: v.ownsGrant(g) && g.State == grants.StateActive}
	if res.MaxDuration > 0 {
		d.MaxExtend = audit.FormatDuration(res.MaxDuration)
	}
	d.Flash = flashText(r.URL.Query().Get("done"))
	c.render(w, r, http.StatusOK, "grant", d)
}

func flashText(code string) string {
	switch code {
	case "ended":
		return "The grant is being ended now; the revoker removes the access and you will hear in Slack when it is done."
	case "revoked":
		return "Revocation requested; the revoker removes the access now."
	case "extend":
		return "Extension requested; it is decided under the resource's policy, as from Slack."
	case "decided":
		return "Your decision was recorded."
	case "submitted":
		return "Request recorded. A credential, if granted, goes to you by Slack direct message; it is never shown here."
	}
	return ""
}

// grantEnd ends the viewer's own grant (broker.Done, as /access done).
func (c *Console) grantEnd(w http.ResponseWriter, r *http.Request, v Viewer) {
	g, ok := c.loadGrant(w, r, v)
	if !ok {
		return
	}
	if !v.ownsGrant(g) {
		if v.Auditor {
			c.refuseAuditorChange(w, r, v, "end another person's grant early (use Revoke, with a reason)",
				broker.Rejection{GrantID: g.ID, RequestID: g.RequestID, Resource: g.Resource})
			return
		}
	}
	if _, err := c.cfg.Broker.Done(r.Context(), v.caller(), g.ID); err != nil {
		c.brokerError(w, r, v, err)
		return
	}
	http.Redirect(w, r, Prefix+"grants/"+g.ID+"?done=ended", http.StatusSeeOther)
}

// grantExtend asks for more time on the viewer's own grant, decided under the policy
// (broker.SubmitExtension then Process, as /access extend).
func (c *Console) grantExtend(w http.ResponseWriter, r *http.Request, v Viewer) {
	g, ok := c.loadGrant(w, r, v)
	if !ok {
		return
	}
	if !v.ownsGrant(g) && v.Auditor {
		c.refuseAuditorChange(w, r, v, "extend another person's grant", broker.Rejection{GrantID: g.ID, RequestID: g.RequestID, Resource: g.Resource})
		return
	}
	by, err := time.ParseDuration(strings.TrimSpace(r.PostFormValue("by")))
	if err != nil || by <= 0 {
		c.refuse(w, r, &v, broker.Rejection{GrantID: g.ID, Resource: g.Resource,
			Reason: fmt.Sprintf("%q is not a duration: write it like 30m or 1h. Nothing was changed.", truncate(r.PostFormValue("by"), 20))})
		return
	}
	req, err := c.cfg.Broker.SubmitExtension(r.Context(), broker.ExtensionInput{Source: grants.SourceConsole, TeamID: v.TeamID, UserID: v.UserID,
		GrantID: g.ID, By: by, Reason: r.PostFormValue("reason")})
	if err != nil {
		c.brokerError(w, r, v, err)
		return
	}
	c.process(r.Context(), req.ID)
	http.Redirect(w, r, Prefix+"requests/"+req.ID+"?done=extend", http.StatusSeeOther)
}

// grantRevoke is an auditor's revocation with a reason, through the grants manager (the
// admin API's path); anyone else is refused.
func (c *Console) grantRevoke(w http.ResponseWriter, r *http.Request, v Viewer) {
	g, ok := c.loadGrant(w, r, v)
	if !ok {
		return
	}
	rej := broker.Rejection{GrantID: g.ID, RequestID: g.RequestID, Resource: g.Resource}
	if !v.Auditor {
		rej.Reason = fmt.Sprintf("Only auditors may revoke grants in the console; %s. Nothing was changed.",
			map[bool]string{true: "end your own grant with End now", false: "an approver may use /access revoke in Slack"}[v.ownsGrant(g)])
		c.refuse(w, r, &v, rej)
		return
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if len(reason) < 5 || len(reason) > 500 {
		rej.Reason = "A reason of 5 to 500 characters is required to revoke a grant: say why. Nothing was changed."
		c.refuse(w, r, &v, rej)
		return
	}
	if g.State == grants.StateRevoked {
		c.errorPage(w, r, &v, http.StatusConflict, fmt.Sprintf("Grant %s already ended (%s).", g.ID, g.RevokeCause))
		return
	}
	if c.cfg.Revoker == nil {
		c.errorPage(w, r, &v, http.StatusNotImplemented, "Revocation is not wired into this console.")
		return
	}
	if _, err := c.cfg.Revoker.Revoke(r.Context(), g.ID, grants.CauseManual, v.actor(), "revoked by auditor in the console: "+reason); err != nil {
		c.fail(w, r, err)
		return
	}
	c.tellAuditChannel(r.Context(), revocationLine(g, v.UserID, reason))
	http.Redirect(w, r, Prefix+"grants/"+g.ID+"?done=revoked", http.StatusSeeOther)
}

// brokerError shows a broker refusal (already recorded by the broker) or fails.
func (c *Console) brokerError(w http.ResponseWriter, r *http.Request, v Viewer, err error) {
	var rf *broker.Refusal
	if errors.As(err, &rf) {
		c.errorPage(w, r, &v, http.StatusForbidden, broker.Clean(rf.Message))
		return
	}
	if errors.Is(err, broker.ErrDuplicate) {
		c.errorPage(w, r, &v, http.StatusConflict, "This form was already submitted.")
		return
	}
	c.fail(w, r, err)
}

// process decides a recorded request while the browser waits, bounded; a request left
// undecided (a timeout, a crash) is decided by the broker's recovery on the next start.
func (c *Console) process(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.ProcessTimeout)
	defer cancel()
	if err := c.cfg.Broker.Process(ctx, id); err != nil {
		c.log.ErrorContext(ctx, "process console request", "request_id", id, "error", err)
	}
}

func (c *Console) loadRequest(w http.ResponseWriter, r *http.Request, v Viewer) (grants.Request, bool) {
	id := r.PathValue("id")
	if !grants.ValidID("r", id) {
		c.errorPage(w, r, &v, http.StatusNotFound, fmt.Sprintf("%q is not a request id (they look like r_…).", truncate(id, 40)))
		return grants.Request{}, false
	}
	req, err := c.cfg.Store.GetRequest(r.Context(), id)
	if errors.Is(err, grants.ErrNotFound) {
		c.errorPage(w, r, &v, http.StatusNotFound, "There is no request "+id+".")
		return req, false
	}
	if err != nil {
		c.fail(w, r, err)
		return req, false
	}
	if !c.mayReadRequest(r.Context(), v, req) {
		c.refuse(w, r, &v, broker.Rejection{RequestID: req.ID, Resource: req.Resource,
			Reason:   fmt.Sprintf("Request %s is not yours, and you are neither an approver for %s nor an auditor, so you may not see it.", req.ID, req.Resource),
			Evidence: map[string]string{"refused": "not_yours"}})
		return req, false
	}
	return req, true
}

func (c *Console) requestPage(w http.ResponseWriter, r *http.Request, v Viewer) {
	req, ok := c.loadRequest(w, r, v)
	if !ok {
		return
	}
	ctx := r.Context()
	gs, err := c.cfg.Store.ListGrants(ctx, grants.GrantFilter{RequestID: req.ID, Limit: 10})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	st, err := c.requestStory(ctx, req)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d := struct {
		common
		Request   grants.Request
		Extends   string
		Grants    []grantRow
		Story     story
		CanDecide bool
		Decided   bool
		Needed    int
		Approvals int
	}{common: c.common(&v, "Request "+req.ID), Request: req, Grants: c.grantRows(gs), Story: st}
	d.Extends, _ = broker.ExtensionOf(req)
	d.CanDecide = c.mayDecide(ctx, v, req)
	if res, ok := c.resource(req.Resource); ok {
		d.Needed = broker.Needed(res.Policy)
	}
	for _, a := range req.Approvals {
		if a.Approved {
			d.Approvals++
		}
		if a.By == v.UserID {
			d.Decided = true
		}
	}
	d.Flash = flashText(r.URL.Query().Get("done"))
	c.render(w, r, http.StatusOK, "request", d)
}

// mayDecide is the Slack buttons' rule for showing them: pending and awaiting approval,
// not the requester's own, same workspace, an approver of the resource, not yet decided by
// this viewer. The broker checks it all again when the decision is made.
func (c *Console) mayDecide(ctx context.Context, v Viewer, req grants.Request) bool {
	if req.State != grants.RequestPending || req.Stage != grants.StageAwaitingApproval || v.ownsRequest(req) || req.Requester.SlackTeamID != v.TeamID {
		return false
	}
	for _, a := range req.Approvals {
		if a.By == v.UserID {
			return false
		}
	}
	return c.approves(ctx, v, req.Resource)
}

// requestDecide is Approve or Deny, through broker.Decide (the Slack buttons' path: no
// self-approval, approvers only, N-of-M, one grant however many click).
func (c *Console) requestDecide(w http.ResponseWriter, r *http.Request, v Viewer) {
	req, ok := c.loadRequest(w, r, v)
	if !ok {
		return
	}
	dec := r.PostFormValue("decision")
	if dec != "approve" && dec != "deny" {
		c.refuse(w, r, &v, broker.Rejection{RequestID: req.ID, Resource: req.Resource, Reason: "The decision must be approve or deny. Nothing was changed."})
		return
	}
	if v.Auditor && !v.ownsRequest(req) && !c.approves(r.Context(), v, req.Resource) {
		c.refuseAuditorChange(w, r, v, dec+" requests (only the resource's approvers decide)", broker.Rejection{RequestID: req.ID, Resource: req.Resource})
		return
	}
	if err := c.cfg.Broker.Decide(r.Context(), broker.DecisionInput{TeamID: v.TeamID, UserID: v.UserID, RequestID: req.ID, Approve: dec == "approve"}); err != nil {
		c.brokerError(w, r, v, err)
		return
	}
	http.Redirect(w, r, Prefix+"requests/"+req.ID+"?done=decided", http.StatusSeeOther)
}

// inbox is what the viewer may approve now.
func (c *Console) inbox(ctx context.Context, v Viewer) ([]grants.Request, error) {
	// Most viewers approve nothing: then there is nothing to read (every page's header
	// and the home page ask).
	any := false
	for _, res := range c.cfg.Broker.Resources() {
		if c.approves(ctx, v, res.Name) {
			any = true
			break
		}
	}
	if !any {
		return nil, nil
	}
	pending, err := c.cfg.Store.ListRequests(ctx, grants.RequestFilter{States: []grants.RequestState{grants.RequestPending}, Limit: 500})
	if err != nil {
		return nil, err
	}
	var out []grants.Request
	for _, r := range pending {
		if c.mayDecide(ctx, v, r) {
			out = append(out, r)
		}
	}
	return out, nil
}

// inboxItem is a request of the approvals inbox with its approvals so far.
type inboxItem struct {
	grants.Request
	Extends string
	Needed  int
	Have    int
}

func (c *Console) approvalsPage(w http.ResponseWriter, r *http.Request, v Viewer) {
	in, err := c.inbox(r.Context(), v)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	var items []inboxItem
	for _, req := range in {
		it := inboxItem{Request: req}
		it.Extends, _ = broker.ExtensionOf(req)
		if res, ok := c.resource(req.Resource); ok {
			it.Needed = broker.Needed(res.Policy)
		}
		for _, a := range req.Approvals {
			if a.Approved {
				it.Have++
			}
		}
		items = append(items, it)
	}
	d := struct {
		common
		Items []inboxItem
		Rows  template.HTML // Items rendered (fastrender.go)
	}{common: c.common(&v, "Approvals"), Items: items}
	d.Rows = inboxRowsHTML(items, v.CSRF)
	c.render(w, r, http.StatusOK, "approvals", d)
}

// form is the request form's state.
type form struct {
	Resource, Duration, Reason string
	BreakGlass                 bool
}

func (c *Console) formPage(w http.ResponseWriter, r *http.Request, v Viewer) {
	c.renderForm(w, r, v, http.StatusOK, form{Resource: r.URL.Query().Get("resource")}, nil, "")
}

func (c *Console) renderForm(w http.ResponseWriter, r *http.Request, v Viewer, status int, f form, p *previewView, errMsg string) {
	d := struct {
		common
		Form      form
		Resources []grants.Resource
		Preview   *previewView
	}{common: c.common(&v, "Request access"), Form: f, Resources: c.cfg.Broker.Resources(), Preview: p}
	d.Error = errMsg
	c.render(w, r, status, "form", d)
}

// previewView is a dry run in words.
type previewView struct {
	broker.Preview
	Outcome string // "granted at once", "capped to the shift", "sent for approval", "refused"
	Words   string
	Asked   []string
}

func (c *Console) formInput(r *http.Request, v Viewer) (broker.RequestInput, form, error) {
	f := form{Resource: strings.TrimSpace(r.PostFormValue("resource")), Duration: strings.TrimSpace(r.PostFormValue("duration")),
		Reason: strings.TrimSpace(r.PostFormValue("reason")), BreakGlass: r.PostFormValue("break_glass") == "on"}
	in := broker.RequestInput{Source: grants.SourceConsole, TeamID: v.TeamID, UserID: v.UserID, Resource: f.Resource, Reason: f.Reason, BreakGlass: f.BreakGlass}
	if f.Duration == "" {
		if res, ok := c.resource(f.Resource); ok && res.DefaultDuration > 0 {
			in.Duration = res.DefaultDuration
			f.Duration = audit.FormatDuration(res.DefaultDuration)
			return in, f, nil
		}
	}
	d, err := time.ParseDuration(f.Duration)
	if err != nil || d <= 0 {
		return in, f, fmt.Errorf("%q is not a duration: write it like 30m, 1h or 1h30m", truncate(f.Duration, 20))
	}
	in.Duration = d
	return in, f, nil
}

// formSubmit is either the dry run (action=dry-run: nothing recorded) or the request.
func (c *Console) formSubmit(w http.ResponseWriter, r *http.Request, v Viewer) {
	in, f, err := c.formInput(r, v)
	if r.PostFormValue("action") == "dry-run" {
		if err != nil {
			c.renderForm(w, r, v, http.StatusBadRequest, f, nil, capitalize(err.Error())+".")
			return
		}
		p, err := c.cfg.Broker.DryRun(r.Context(), in)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		c.renderForm(w, r, v, http.StatusOK, f, previewWords(p), "")
		return
	}
	if err != nil {
		c.refuse(w, r, &v, broker.Rejection{Resource: f.Resource, Reason: capitalize(err.Error()) + ". Nothing was requested."})
		return
	}
	req, err := c.cfg.Broker.Submit(r.Context(), in)
	if err != nil {
		var rf *broker.Refusal
		if errors.As(err, &rf) {
			c.renderForm(w, r, v, http.StatusForbidden, f, nil, broker.Clean(rf.Message))
			return
		}
		c.brokerError(w, r, v, err)
		return
	}
	c.process(r.Context(), req.ID)
	http.Redirect(w, r, Prefix+"requests/"+req.ID+"?done=submitted", http.StatusSeeOther)
}

func previewWords(p broker.Preview) *previewView {
	pv := &previewView{Preview: p}
	switch {
	case p.Refused != "":
		pv.Outcome, pv.Words = "would be refused", broker.Clean(p.Refused)
	case p.Path == broker.PathApproval:
		pv.Outcome = "would be sent for approval"
		pv.Words = fmt.Sprintf("%s. It needs %d approval(s).", capitalize(p.Reason), p.Needed)
		pv.Asked = append(pv.Asked, p.Approvers...)
		if p.ApproverGroup != "" {
			pv.Asked = append(pv.Asked, "members of usergroup "+p.ApproverGroup)
		}
	case p.CappedToShift:
		pv.Outcome = "would be granted at once, capped to the end of your shift"
		pv.Words = fmt.Sprintf("%s; your on-call shift ends at %s, before the %s you asked for, so the grant would end then.",
			capitalize(p.Reason), audit.FormatTime(p.EndsAt), audit.FormatDuration(p.Duration))
	case p.Path == broker.PathBreakGlass:
		pv.Outcome = "would be granted at once as break-glass access (everyone is told)"
		pv.Words = capitalize(p.Reason) + "."
	default:
		pv.Outcome = "would be granted at once"
		pv.Words = capitalize(p.Reason) + "."
	}
	return pv
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
