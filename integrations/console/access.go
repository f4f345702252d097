package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

// Viewer is the signed-in person looking at a page, with what they may do.
type Viewer struct {
	Session
	// Auditor: listed in console.auditors (users or usergroup): sees everything, read-only,
	// and may revoke a grant with a reason.
	Auditor bool
	// CSRF is the form token of this session.
	CSRF string
}

// caller is the viewer as the broker knows callers.
func (v Viewer) caller() broker.Caller { return broker.Caller{TeamID: v.TeamID, UserID: v.UserID} }

func (v Viewer) actor() audit.Actor {
	return audit.Actor{Kind: audit.ActorUser, ID: v.UserID, Email: v.Email}
}

func (v Viewer) ownsGrant(g grants.Grant) bool {
	return g.Person.SlackUserID == v.UserID && g.Person.SlackTeamID == v.TeamID
}

func (v Viewer) ownsRequest(r grants.Request) bool {
	return r.Requester.SlackUserID == v.UserID && r.Requester.SlackTeamID == v.TeamID
}

// isAuditor decides at each page whether userID is an auditor: listed, or a member of the
// auditor usergroup (looked up through the short cache). A lookup failure is "no".
func (c *Console) isAuditor(ctx context.Context, userID string) bool {
	if slices.Contains(c.cfg.AuditorUsers, userID) {
		return true
	}
	if c.cfg.AuditorUsergroup == "" {
		return false
	}
	m, err := c.groups.Members(ctx, c.cfg.AuditorUsergroup)
	if err != nil {
		c.log.WarnContext(ctx, "auditor usergroup lookup failed; treating as not an auditor", "usergroup", c.cfg.AuditorUsergroup, "error", err)
		return false
	}
	return slices.Contains(m, userID)
}

func (c *Console) resource(name string) (grants.Resource, bool) {
	for _, r := range c.cfg.Broker.Resources() {
		if r.Name == name {
			return r, true
		}
	}
	return grants.Resource{}, false
}

// approves reports whether the viewer may approve requests for the resource (the Slack
// buttons' rule, with the page's short usergroup cache; the decision itself is checked
// again by the broker at click time).
func (c *Console) approves(ctx context.Context, v Viewer, resource string) bool {
	res, ok := c.resource(resource)
	if !ok {
		return false
	}
	ok, _ = broker.IsApprover(ctx, res, c.groups, v.UserID)
	return ok
}

// mayReadGrant: its owner, an approver of its resource, an auditor.
func (c *Console) mayReadGrant(ctx context.Context, v Viewer, g grants.Grant) bool {
	return v.ownsGrant(g) || v.Auditor || (g.Person.SlackTeamID == v.TeamID && c.approves(ctx, v, g.Resource))
}

// mayReadRequest: its requester, an approver of its resource, an auditor.
func (c *Console) mayReadRequest(ctx context.Context, v Viewer, r grants.Request) bool {
	return v.ownsRequest(r) || v.Auditor || (r.Requester.SlackTeamID == v.TeamID && c.approves(ctx, v, r.Resource))
}

// refuse records a request.rejected event (via console) and answers 403 with the reason.
func (c *Console) refuse(w http.ResponseWriter, r *http.Request, v *Viewer, rej broker.Rejection) {
	if rej.Evidence == nil {
		rej.Evidence = map[string]string{}
	}
	rej.Evidence["via"] = "console"
	rej.Evidence["path"] = truncate(r.URL.Path, 120)
	if v != nil {
		rej.Actor = v.actor()
	}
	if err := c.cfg.Broker.RecordRejection(r.Context(), rej); err != nil {
		c.log.ErrorContext(r.Context(), "record console refusal", "error", err)
	}
	c.errorPage(w, r, v, http.StatusForbidden, rej.Reason)
}

// authed serves h to signed-in people only: anyone else goes to the sign-in page (an
// expired session is told so). Every POST must carry the session's CSRF token as well
// (CrossOriginProtection already refused cross-origin ones).
func (c *Console) authed(h func(http.ResponseWriter, *http.Request, Viewer)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := c.sessions.session(r, c.cfg.Clock.Now())
		if err != nil {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				c.sessions.clearSession(w)
				c.errorPage(w, r, nil, http.StatusUnauthorized, sessionProblem(err)+" Nothing was changed; sign in and try again.")
				return
			}
			if errors.Is(err, errExpiredSession) || errors.Is(err, errBadSession) {
				c.sessions.clearSession(w)
			}
			c.redirectToSignin(w, r, err)
			return
		}
		v := Viewer{Session: s, CSRF: c.sessions.csrfToken(s)}
		v.Auditor = c.isAuditor(r.Context(), s.UserID)
		if r.Method == http.MethodPost && !c.sessions.checkCSRF(s, r.PostFormValue("csrf")) {
			c.refuse(w, r, &v, broker.Rejection{Reason: "The form's security token is missing or belongs to another sign-in (the page may be stale). Nothing was changed; reload the page and try again.",
				Evidence: map[string]string{"refused": "csrf_token"}})
			return
		}
		h(w, r, v)
	}
}

func sessionProblem(err error) string {
	switch {
	case errors.Is(err, errExpiredSession):
		return "Your session expired."
	case errors.Is(err, errBadSession):
		return "Your session cookie is not valid (it may be from before a key change)."
	}
	return "You are not signed in."
}

func (c *Console) redirectToSignin(w http.ResponseWriter, r *http.Request, err error) {
	u := Prefix + "signin?return=" + urlQueryEscape(r.URL.RequestURI())
	if errors.Is(err, errExpiredSession) {
		u += "&expired=1"
	}
	http.Redirect(w, r, u, http.StatusSeeOther)
}

// refuseAuditorChange refuses a change an auditor asked for on something that is neither
// theirs nor theirs to approve: auditors only read, and may revoke with a reason.
func (c *Console) refuseAuditorChange(w http.ResponseWriter, r *http.Request, v Viewer, what string, rej broker.Rejection) {
	rej.Reason = fmt.Sprintf("Auditors have read-only access: the only change an auditor may make is revoking a grant with a reason, so you may not %s. Nothing was changed.", what)
	rej.Evidence = map[string]string{"refused": "auditor_read_only"}
	c.refuse(w, r, &v, rej)
}
