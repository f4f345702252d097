package audit

// How a report is computed from the events: the per-grant and per-request tracks, the
// decision and early-end readings, the rows.

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

type grantTrack struct {
	id, requestID, resource, person, reason string
	written                                 bool // its grant.issuing event was seen
	inWindow                                bool
	created, issued, expires                time.Time
	evidence                                map[string]string
	actor                                   Actor
	extensions                              int
	added                                   time.Duration
	revokeReqAt                             time.Time
	revokeReqBy                             Actor
	revokeReqCause, revokeReqReason         string
	revokedAt                               time.Time
	revokedCause                            string
	failures                                int
	failing                                 bool
	use                                     *sessionTrack // nil until the grant's first session event
	activity                                *ActivityUse  // nil until the grant's first activity event
	firstAfterEnd                           time.Time     // the first activity after the grant ended
}

// sessionTrack is what a grant's session.* events told so far.
type sessionTrack struct {
	SessionUse
	open map[string]time.Time // session id → start, while no session.ended was seen
	// Statements recorded after a revocation requested because the incident was resolved.
	afterResolved      int
	firstAfterResolved time.Time
	firstDenied        time.Time
}

// loginFailure is one session.login_failed event of the window.
type loginFailure struct {
	person string // raw (resolved at the end); "" when the event names nobody
	grant  string // the grant the role belongs to, when known
	role   string
	at     time.Time
}

type requestTrack struct {
	requester string // Slack user id (request.created actor)
	person    string // the requester's label from the evidence of later request events
	source    string
	onCall    map[string]string // oncall.checked evidence
}

type refusal struct {
	who  string // raw: resolved through aliases at the end
	at   time.Time
	what Action
}

type approvalPair struct {
	approver, requester string // raw
	req                 string
	at                  time.Time
}

type reportBuilder struct {
	since, until time.Time
	opts         ReportOptions

	grants   map[string]*grantTrack
	order    []*grantTrack // in order of first sight
	requests map[string]*requestTrack
	alias    map[string]string // Slack user id → label (email)

	refusals  []refusal
	approvals []approvalPair
	logins    []loginFailure
	// sessionRes holds the resources with a session.started event in the window.
	sessionRes map[string]bool
	// activityRes holds the resources with an aws.activity or github.activity event.
	activityRes map[string]bool
	failed      map[string]bool
	buckets     [][]Anomaly // findings by kind, in AnomalyKinds order

	// Preallocated tracks, so that 100k grants are not 100k allocations.
	grantSlab   []grantTrack
	requestSlab []requestTrack

	reqs           RequestCounts
	rev            RevocationHealth
	rejectedLogins int
}

func (b *reportBuilder) grant(id string) *grantTrack {
	g := b.grants[id]
	if g == nil {
		if len(b.grantSlab) < cap(b.grantSlab) { // never grows: pointers into it stay valid
			b.grantSlab = append(b.grantSlab, grantTrack{id: id})
			g = &b.grantSlab[len(b.grantSlab)-1]
		} else {
			g = &grantTrack{id: id}
		}
		b.grants[id] = g
		b.order = append(b.order, g)
	}
	return g
}

func (b *reportBuilder) request(id string) *requestTrack {
	if id == "" {
		return nil
	}
	r := b.requests[id]
	if r == nil {
		if len(b.requestSlab) < cap(b.requestSlab) {
			b.requestSlab = append(b.requestSlab, requestTrack{})
			r = &b.requestSlab[len(b.requestSlab)-1]
		} else {
			r = &requestTrack{}
		}
		b.requests[id] = r
	}
	return r
}

func parseEvidenceTime(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC(), true
}

func (b *reportBuilder) add(e *Event) {
	in := !e.Time.Before(b.since)
	ev := e.Evidence
	if e.Actor.Email != "" && e.Actor.Kind == ActorUser && e.Actor.ID != "" {
		if b.alias[e.Actor.ID] != e.Actor.Email {
			b.alias[e.Actor.ID] = e.Actor.Email
		}
	}
	switch e.Action {
	case ActionSessionStarted, ActionSessionStatement, ActionSessionEnded, ActionSessionLoginFailed:
		b.addSessionEvent(e, in)
	case ActionAWSActivity, ActionGitHubActivity:
		b.addActivityEvent(e)
	case ActionRequestCreated, ActionOnCallChecked, ActionRequestApproved, ActionRequestExpired,
		ActionRequestDenied, ActionRequestRejected, ActionApprovalRecorded:
		b.addRequestEvent(e, in)
	case ActionGrantIssuing:
		g := b.grant(e.GrantID)
		if g.written {
			return
		}
		g.written, g.inWindow, g.created = true, in, e.Time
		g.requestID, g.resource, g.person, g.reason = e.RequestID, e.Resource, ev["person"], e.Reason
		g.evidence, g.actor = ev, e.Actor
		if t, ok := parseEvidenceTime(ev["expires_at"]); ok {
			g.expires = t
		}
	case ActionGrantIssued:
		g := b.grant(e.GrantID)
		g.issued = e.Time
		if t, ok := parseEvidenceTime(ev["expires_at"]); ok {
			g.expires = t
		}
		if g.person == "" {
			g.person = ev["person"]
		}
	case ActionGrantExtended:
		g := b.grant(e.GrantID)
		if t, ok := parseEvidenceTime(ev["expires_at"]); ok {
			old := g.expires
			if o, ok := parseEvidenceTime(ev["old_expires_at"]); ok {
				old = o
			}
			if !old.IsZero() && t.After(old) {
				g.added += t.Sub(old)
			}
			g.expires = t
		}
		g.extensions++
	case ActionGrantRevokeQueued:
		g := b.grant(e.GrantID)
		if g.revokeReqAt.IsZero() {
			g.revokeReqAt, g.revokeReqBy, g.revokeReqCause, g.revokeReqReason = e.Time, e.Actor, ev["cause"], e.Reason
		}
	case ActionGrantRevokeFailed:
		g := b.grant(e.GrantID)
		g.failures++
		g.failing = true
		if in {
			b.rev.Failures++
			b.failed[e.GrantID] = true
		}
	case ActionGrantRevoked:
		g := b.grant(e.GrantID)
		if !g.revokedAt.IsZero() {
			return // a repeated record changes nothing
		}
		g.revokedAt, g.revokedCause, g.failing = e.Time, ev["cause"], false
		if g.person == "" {
			g.person = ev["person"]
		}
		if g.resource == "" {
			g.resource = e.Resource
		}
		if !in {
			return
		}
		b.rev.Revoked++
		if !g.expires.IsZero() && e.Time.Sub(g.expires) > b.opts.LateAfter {
			b.rev.Late = append(b.rev.Late, LateRevocation{GrantID: g.id, Resource: g.resource, Person: g.person,
				ExpiresAt: g.expires, RevokedAt: e.Time, Lag: e.Time.Sub(g.expires), Cause: g.revokedCause})
		}
	}
}

// addSessionEvent records an event of the session proxy.
func (b *reportBuilder) addSessionEvent(e *Event, in bool) {
	ev := e.Evidence
	if e.Action == ActionSessionLoginFailed {
		if !in {
			return
		}
		b.rejectedLogins++
		who := ""
		if e.Actor.Kind == ActorUser {
			who = firstOf(e.Actor.Email, e.Actor.ID)
		}
		b.logins = append(b.logins, loginFailure{person: who, grant: e.GrantID, role: ev["role"], at: e.Time})
		return
	}
	if e.GrantID == "" {
		return
	}
	g := b.grant(e.GrantID)
	if g.use == nil {
		g.use = &sessionTrack{}
	}
	u := g.use
	id := ev["session_id"]
	switch e.Action {
	case ActionSessionStarted:
		u.Sessions++
		if u.open == nil {
			u.open = map[string]time.Time{}
		}
		u.open[id] = e.Time
		if in && e.Resource != "" {
			b.sessionRes[e.Resource] = true
		}
	case ActionSessionEnded:
		if start, ok := u.open[id]; ok {
			u.Connected += e.Time.Sub(start)
			delete(u.open, id)
		}
	case ActionSessionStatement:
		u.Statements++
		switch {
		case ev["sqlstate"] != "":
			u.Failed++
			if ev["sqlstate"] == SQLStateInsufficientPrivilege {
				if u.PermissionDenied == 0 {
					u.firstDenied = e.Time
				}
				u.PermissionDenied++
			}
		default:
			switch StatementClass(ev["tag"], ev["text"]) {
			case StatementWrite:
				u.Writes++
			case StatementDDL:
				u.DDL++
			}
		}
		if !g.revokeReqAt.IsZero() && g.revokeReqCause == EndIncidentResolved && e.Time.After(g.revokeReqAt) {
			if u.afterResolved == 0 {
				u.firstAfterResolved = e.Time
			}
			u.afterResolved++
		}
	}
}

// SQLStateInsufficientPrivilege is PostgreSQL's "permission denied" error code.
const SQLStateInsufficientPrivilege = "42501"

// Statement classes (StatementClass).
const (
	StatementRead  = "read"
	StatementWrite = "write"
	StatementDDL   = "ddl"
)

// StatementClass classifies a statement by its command tag (as session.statement records
// it, e.g. "INSERT 0 5"): INSERT, UPDATE, DELETE, MERGE and COPY into a table are
// StatementWrite; CREATE, ALTER, DROP, TRUNCATE, GRANT and REVOKE StatementDDL; anything
// else (SELECT, SET, BEGIN, an empty tag, …) StatementRead. The tag "COPY n" does not say
// the direction, so text decides: COPY … FROM (STDIN or a file) writes, COPY … TO and
// COPY (query) TO read.
func StatementClass(tag, text string) string {
	verb, _, _ := strings.Cut(strings.TrimSpace(tag), " ")
	switch strings.ToUpper(verb) {
	case "INSERT", "UPDATE", "DELETE", "MERGE":
		return StatementWrite
	case "CREATE", "ALTER", "DROP", "TRUNCATE", "GRANT", "REVOKE":
		return StatementDDL
	case "COPY":
		if copyFrom(text) {
			return StatementWrite
		}
	}
	return StatementRead
}

// copyFrom reports whether a COPY statement's text copies into a table: COPY name [(cols)]
// FROM …. COPY (query) can only copy out.
func copyFrom(text string) bool {
	f := strings.Fields(strings.ToUpper(text))
	if len(f) < 3 || f[0] != "COPY" || strings.HasPrefix(f[1], "(") {
		return false
	}
	for _, w := range f[2:] {
		switch w {
		case "FROM":
			return true
		case "TO":
			return false
		}
	}
	return false
}

// addRequestEvent records an event about a request (not a grant).
func (b *reportBuilder) addRequestEvent(e *Event, in bool) {
	ev := e.Evidence
	if r := b.request(e.RequestID); r != nil {
		if p := ev["person"]; p != "" {
			r.person = p
		}
		switch e.Action {
		case ActionRequestCreated:
			if e.Actor.Kind == ActorUser {
				r.requester = e.Actor.ID
			}
			r.source = ev["source"]
		case ActionOnCallChecked:
			r.onCall = ev
		}
	}
	if !in {
		return
	}
	switch e.Action {
	case ActionRequestCreated:
		b.reqs.Created++
	case ActionRequestApproved:
		b.reqs.Approved++
	case ActionRequestExpired:
		b.reqs.Expired++
	case ActionRequestRejected:
		if e.Evidence[EvidenceRefusedClick] != "" {
			b.reqs.RefusedClicks++
			return
		}
		b.reqs.Rejected++
		b.refusals = append(b.refusals, refusal{who: b.refused(e), at: e.Time, what: e.Action})
	case ActionRequestDenied:
		b.reqs.Denied++
		b.refusals = append(b.refusals, refusal{who: b.refused(e), at: e.Time, what: e.Action})
	case ActionApprovalRecorded:
		if e.Actor.ID != "" {
			requester := ev["person"]
			if r := b.requests[e.RequestID]; requester == "" && r != nil {
				requester = r.requester
			}
			b.approvals = append(b.approvals, approvalPair{approver: e.Actor.ID, requester: requester, req: e.RequestID, at: e.Time})
		}
	}
}

// unwritten lists, in order of first sight, the grants seen without their grant.issuing
// event.
func (b *reportBuilder) unwritten() []string {
	var out []string
	for _, g := range b.order {
		if !g.written {
			out = append(out, g.id)
		}
	}
	return out
}

// adopt takes over, for the grants ids, the tracks that sub built from their whole history,
// and the late revocations sub found for them. Everything else about them (revocations and
// failures counted in the window) b already has.
func (b *reportBuilder) adopt(sub *reportBuilder, ids []string) {
	for _, id := range ids {
		t, ok := sub.grants[id]
		if !ok || !t.written {
			continue
		}
		old := b.grants[id]
		*old = *t // b.order points at old
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	for _, l := range sub.rev.Late {
		if want[l.GrantID] {
			b.rev.Late = append(b.rev.Late, l)
		}
	}
}

// refused names the person a rejection or denial was addressed to (raw; resolved later).
func (b *reportBuilder) refused(e *Event) string {
	if e.Action == ActionRequestDenied {
		if p := e.Evidence["person"]; p != "" {
			return p
		}
		if r := b.requests[e.RequestID]; r != nil && r.requester != "" {
			return r.requester
		}
	}
	switch {
	case e.Actor.Kind == ActorUser && e.Actor.Email != "":
		return e.Actor.Email
	case e.Actor.Kind == ActorUser && e.Actor.ID != "":
		return e.Actor.ID
	case e.Evidence["person"] != "":
		return e.Evidence["person"]
	}
	if r := b.requests[e.RequestID]; r != nil && r.requester != "" {
		return r.requester
	}
	return string(e.Actor.Kind) + ":" + e.Actor.ID
}

// resolve maps a Slack user id to the label (email) seen with it, so that one person is
// counted once whichever way an event named them.
func (b *reportBuilder) resolve(id string) string {
	if l, ok := b.alias[id]; ok {
		return l
	}
	return id
}

func (b *reportBuilder) finish() Report {
	// Requesters seen by Slack id in request.created and by label in later events are one.
	// Should one id carry several labels, the smallest wins, whatever the map order.
	fromRequests := map[string]string{}
	for _, r := range b.requests {
		if r.requester != "" && r.person != "" && r.person != r.requester {
			if cur, ok := fromRequests[r.requester]; !ok || r.person < cur {
				fromRequests[r.requester] = r.person
			}
		}
	}
	for id, label := range fromRequests {
		if _, ok := b.alias[id]; !ok {
			b.alias[id] = label
		}
	}
	rep := Report{Since: b.since, Until: b.until, Options: b.opts, Requests: b.reqs, Revocations: b.rev, LoginFailures: b.rejectedLogins}
	rep.Revocations.FailedGrants = len(b.failed)

	var window []*grantTrack
	for _, g := range b.order {
		switch {
		case !g.written || !g.inWindow:
		case g.issued.IsZero():
			rep.NotIssued++
		default:
			window = append(window, g)
		}
	}
	// Rows in issue order; sorting pointers, not rows, keeps this cheap for 100k grants.
	slices.SortFunc(window, func(x, y *grantTrack) int { return cmp.Or(x.issued.Compare(y.issued), cmp.Compare(x.id, y.id)) })
	rep.Rows = make([]GrantRow, 0, len(window))
	b.buckets = make([][]Anomaly, len(AnomalyKinds))
	byRes, byPerson, byDecision, byApprover, byEnd := map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}
	granted := make([]time.Duration, 0, len(window))
	var used []time.Duration
	for _, g := range window {
		row := b.row(g)
		rep.Rows = append(rep.Rows, row)
		byRes[row.Resource]++
		byPerson[row.Person]++
		byDecision[string(row.Decision)]++
		if row.Decision == DecisionApproval {
			for _, a := range splitList(g.evidence["approvers"]) {
				byApprover[b.resolve(a)]++
			}
		}
		if row.EndedEarly != "" {
			byEnd[row.EndedEarly]++
		}
		granted = append(granted, row.Granted)
		// The longest grant: the first row (in row order) with the longest granted duration.
		if row.Granted > rep.Durations.GrantedLongest || rep.Durations.LongestGrantID == "" {
			rep.Durations.GrantedLongest, rep.Durations.LongestGrantID = row.Granted, row.GrantID
		}
		if !g.revokedAt.IsZero() {
			used = append(used, g.revokedAt.Sub(g.created))
		}
		rep.Sessions.add(row.Use)
		rep.Activity.add(row.Activity)
		if g.extensions > 0 {
			rep.Extensions.Extensions += g.extensions
			rep.Extensions.Grants++
			rep.Extensions.Added += g.added
		}
	}
	rep.Grants, rep.People, rep.Resources = len(rep.Rows), len(byPerson), len(byRes)
	rep.ByResource, rep.ByPerson, rep.Approvers = countsByMost(byRes), countsByMost(byPerson), countsByMost(byApprover)
	for _, k := range DecisionKinds {
		rep.Decisions = append(rep.Decisions, Count{Name: string(k), Count: byDecision[string(k)]})
	}
	for _, k := range EarlyEndKinds {
		rep.EarlyEnds = append(rep.EarlyEnds, Count{Name: k, Count: byEnd[k]})
	}
	rep.Durations.GrantedMedian = median(granted)
	rep.Durations.Ended, rep.Durations.UsedMedian = len(used), median(used)
	if len(used) > 0 {
		rep.Durations.UsedLongest = slices.Max(used)
	}
	slices.SortFunc(rep.Revocations.Late, func(x, y LateRevocation) int {
		return cmp.Or(x.RevokedAt.Compare(y.RevokedAt), cmp.Compare(x.GrantID, y.GrantID))
	})
	for _, list := range [][]Anomaly{b.overdue(), b.rejectionBursts(), b.frequentApprovals(), b.loginFailureBursts()} {
		for _, a := range list {
			b.flag(a)
		}
	}
	rep.Revocations.NotRevokedOnTime = len(b.buckets[slices.Index(AnomalyKinds, AnomalyNotRevokedOnTime)])
	n := 0
	for _, bucket := range b.buckets {
		n += len(bucket)
	}
	rep.Anomalies = make([]Anomaly, 0, n)
	for _, bucket := range b.buckets {
		// Per-grant findings arrive in row order already; the sort settles the others.
		slices.SortStableFunc(bucket, func(x, y Anomaly) int {
			return cmp.Or(x.Time.Compare(y.Time), cmp.Compare(x.GrantID, y.GrantID), cmp.Compare(x.Person, y.Person), cmp.Compare(x.Approver, y.Approver))
		})
		rep.Anomalies = append(rep.Anomalies, bucket...)
	}
	return rep
}

// flag files an anomaly under its kind.
func (b *reportBuilder) flag(a Anomaly) {
	i := slices.Index(AnomalyKinds, a.Kind)
	b.buckets[i] = append(b.buckets[i], a)
}

// row builds a grant's row and files its per-grant anomalies.
func (b *reportBuilder) row(g *grantTrack) GrantRow {
	req := b.requests[g.requestID]
	kind, by := b.decide(g, req)
	row := GrantRow{
		GrantID: g.id, RequestID: g.requestID, Resource: g.resource, Person: g.person,
		IssuedAt: g.issued, ExpiresAt: g.expires, Granted: g.expires.Sub(g.created), Reason: g.reason,
		Decision: kind, DecidedBy: by, Extensions: g.extensions,
		Incident: firstOf(g.evidence["incident"], g.evidence["incident_id"]),
	}
	if row.Person == "" && req != nil {
		row.Person = firstOf(req.person, b.resolve(req.requester))
	}
	// On-call evidence: what the grant's own write-ahead event carries, else what the check
	// recorded on the request.
	onCall := func(k string) string {
		if v := g.evidence[k]; v != "" {
			return v
		}
		if req != nil {
			return req.onCall[k]
		}
		return ""
	}
	row.OnCall, row.OnCallUntil, row.OnCallShifts = onCall("on_call"), onCall("on_call_until"), onCall("on_call_shifts")

	switch {
	case !g.revokedAt.IsZero():
		row.State = RowRevoked
	case g.failing:
		row.State = RowRevokeFailed
	case !g.revokeReqAt.IsZero():
		row.State = RowRevoking
	case !g.expires.After(b.until):
		row.State = RowExpiredNotRevoked
	default:
		row.State = RowActive
	}
	row.RevokedAt = g.revokedAt
	row.RevokeCause = firstOf(g.revokeReqCause, g.revokedCause)
	if !g.revokeReqAt.IsZero() {
		row.RevokedBy = actorLabel(g.revokeReqBy, b)
		row.RevokeReason = g.revokeReqReason
	} else if !g.revokedAt.IsZero() {
		row.RevokedBy = "accessbroker (at expiry)"
	}
	if row.RevokeCause == "" && !g.revokedAt.IsZero() {
		row.RevokeCause = "expired"
	}
	row.EndedEarly = b.earlyEnd(g)
	if u := g.use; u != nil {
		row.Use = u.SessionUse
		for _, start := range u.open {
			row.Use.Connected += b.until.Sub(start)
		}
	}

	if g.activity != nil {
		row.Activity = *g.activity
	}
	b.grantAnomalies(g, &row, kind, by, onCall("on_call_error"))
	b.sessionAnomalies(g, &row)
	b.activityAnomalies(g, &row)
	return row
}

func (u *SessionUse) add(o SessionUse) {
	u.Sessions += o.Sessions
	u.Statements += o.Statements
	u.Connected += o.Connected
	u.Writes += o.Writes
	u.DDL += o.DDL
	u.Failed += o.Failed
	u.PermissionDenied += o.PermissionDenied
}

// decide classifies how a grant was decided, and by whom.
func (b *reportBuilder) decide(g *grantTrack, req *requestTrack) (DecisionKind, string) {
	ev := g.evidence
	path := ev["path"]
	source := ev["source"]
	if req != nil && req.source != "" {
		source = req.source
	}
	switch {
	case path == "break_glass" || ev["break_glass"] == "true":
		return DecisionBreakGlass, g.person + " (self, break-glass)"
	case strings.HasPrefix(path, "page") || path == "auto_grant" || source == "pagerduty" ||
		g.actor.Kind == ActorPagerDuty || ev["incident"] != "" || ev["incident_id"] != "":
		return DecisionPage, "page acknowledged by " + firstOf(b.resolve(ev["acknowledged_by"]), g.person)
	case path == "auto_approve":
		return DecisionOnCall, "on-call policy (auto-approved)"
	case path == "approval" || ev["approvers"] != "":
		var names []string
		for _, a := range splitList(ev["approvers"]) {
			names = append(names, b.resolve(a))
		}
		if len(names) == 0 {
			return DecisionApproval, actorLabel(g.actor, b)
		}
		return DecisionApproval, strings.Join(names, ", ")
	case g.actor.Kind == ActorOperator || source == "cli" || source == "api":
		return DecisionOperator, "operator " + g.actor.ID
	}
	return DecisionUnknown, actorLabel(g.actor, b)
}

// earlyEnd returns the early-end kind of a grant ended before its expiry, or "".
func (b *reportBuilder) earlyEnd(g *grantTrack) string {
	at, cause := g.revokeReqAt, g.revokeReqCause
	if at.IsZero() {
		at, cause = g.revokedAt, g.revokedCause
	}
	if at.IsZero() || cause == "expired" || cause == "" || !at.Before(g.expires) {
		return ""
	}
	switch cause {
	case EndManual:
		if b.isOwner(g, g.revokeReqBy) {
			return EndDone
		}
		return EndManual
	case EndIncidentResolved, EndShiftEnded, EndDeliveryFailed:
		return cause
	}
	return EndOther
}

// isOwner reports whether a names the grant's owner.
func (b *reportBuilder) isOwner(g *grantTrack, a Actor) bool {
	if a.Kind != ActorUser {
		return false
	}
	label := firstOf(a.Email, b.resolve(a.ID))
	if label != "" && label == g.person {
		return true
	}
	r := b.requests[g.requestID]
	return r != nil && r.requester != "" && r.requester == a.ID
}

func actorLabel(a Actor, b *reportBuilder) string {
	switch a.Kind {
	case ActorUser:
		return firstOf(a.Email, b.resolve(a.ID))
	case ActorSystem:
		return "accessbroker"
	case "":
		return "unknown"
	}
	return string(a.Kind) + " " + a.ID
}

func countsByMost(m map[string]int) []Count {
	out := make([]Count, 0, len(m))
	for k, v := range m {
		out = append(out, Count{Name: k, Count: v})
	}
	slices.SortFunc(out, func(x, y Count) int { return cmp.Or(cmp.Compare(y.Count, x.Count), cmp.Compare(x.Name, y.Name)) })
	return out
}

// median is the middle value, or the mean of the two middle values; 0 for none. It sorts d.
func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	n := len(d)
	if n%2 == 1 {
		return d[n/2]
	}
	return (d[n/2-1] + d[n/2]) / 2
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
