package audit

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file computes the weekly access report from audit events alone: the hash-chained
// log is the tamper-evident source, so the report never reads the mutable grant rows.
//
// Window rule. A report covers [since, until). Only events before until are considered, so
// the report of a past window is the same whenever it is computed.
//   - A grant belongs to the window in which it was written ahead (its grant.issuing event,
//     the grant's CreatedAt). Everything about it — counts, decision, durations,
//     extensions, early end, its row — is reported in that window, as known at until: a
//     grant still running at until shows as active, with the durations it has so far.
//   - Revocation health is reported in the window in which it happened, for any grant:
//     revocations and revocation failures count by the time of their event; a late
//     revocation counts when the grant.revoked event falls in the window; "not revoked on
//     time" is a snapshot at until of every grant known from the input.
//   - Request figures (created, approved, denied, rejected, expired), rejections and
//     approvals count by the time of their event.
// Events before since are context only (a grant's expiry, a request's requester); callers
// should pass the events from since-ReportLookback on (ReadReport does), so that every
// grant still live at since is known.

// ReportLookback is how far before since a report's input should start: the longest a grant
// can live (a resource's max_duration is at most 7 days, extensions included), so that every
// grant still live at since has its write-ahead event in the input.
const ReportLookback = 7 * 24 * time.Hour

// Report defaults; see ReportOptions.
const (
	DefaultLateAfter           = time.Minute
	DefaultRejectionBurst      = 3
	DefaultRejectionWindow     = time.Hour
	DefaultMaxApprovalsPerPair = 3
)

// ReportOptions tune the anomaly rules. Zero values take the defaults.
type ReportOptions struct {
	// LateAfter: a revocation more than this after the grant's expiry is late, and a grant
	// not revoked more than this after its expiry at until is "not revoked on time".
	// Default 1m.
	LateAfter time.Duration `json:"late_after"`
	// RejectionBurst rejections (request.rejected or request.denied) of one person within
	// RejectionWindow are an anomaly. Defaults 3 and 1h.
	RejectionBurst  int           `json:"rejection_burst"`
	RejectionWindow time.Duration `json:"rejection_window"`
	// MaxApprovalsPerPair: one approver approving the same requester's requests more than
	// this many times in the window is an anomaly. Default 3.
	MaxApprovalsPerPair int `json:"max_approvals_per_pair"`
}

func (o ReportOptions) withDefaults() ReportOptions {
	if o.LateAfter <= 0 {
		o.LateAfter = DefaultLateAfter
	}
	if o.RejectionBurst <= 0 {
		o.RejectionBurst = DefaultRejectionBurst
	}
	if o.RejectionWindow <= 0 {
		o.RejectionWindow = DefaultRejectionWindow
	}
	if o.MaxApprovalsPerPair <= 0 {
		o.MaxApprovalsPerPair = DefaultMaxApprovalsPerPair
	}
	return o
}

// DecisionKind is how a grant was decided.
type DecisionKind string

// Decision kinds, read from the grant.issuing event's evidence ("path", "approvers",
// "source", "break_glass"), its actor, and the request's request.created event.
const (
	// DecisionOnCall: the requester was on call and the policy auto-approves (path
	// auto_approve).
	DecisionOnCall DecisionKind = "on_call_auto_approval"
	// DecisionApproval: approved by configured approvers (path approval; evidence approvers).
	DecisionApproval DecisionKind = "approval"
	// DecisionPage: granted on a PagerDuty acknowledgement (a path starting with "page" or
	// "auto_grant", a pagerduty source or actor, or incident evidence).
	DecisionPage DecisionKind = "page_acknowledged"
	// DecisionBreakGlass: emergency access the policy allows, without approval.
	DecisionBreakGlass DecisionKind = "break_glass"
	// DecisionOperator: issued by an operator at the command line or admin API.
	DecisionOperator DecisionKind = "operator"
	// DecisionUnknown: the events do not say.
	DecisionUnknown DecisionKind = "unknown"
)

// DecisionKinds lists every decision kind in display order.
var DecisionKinds = []DecisionKind{DecisionOnCall, DecisionApproval, DecisionPage, DecisionBreakGlass, DecisionOperator, DecisionUnknown}

// Early-end kinds: why a grant was ended before its expiry. They mirror grants.RevokeCause
// values (audit is a leaf package and cannot import grants), except that a manual end is
// split into "done" (the grant's owner ended it) and "manual" (an approver or operator).
const (
	EndManual           = "manual"
	EndDone             = "done"
	EndIncidentResolved = "incident_resolved"
	EndShiftEnded       = "shift_ended"
	EndDeliveryFailed   = "delivery_failed"
	EndOther            = "other"
)

// EarlyEndKinds lists the early-end kinds in display order.
var EarlyEndKinds = []string{EndManual, EndDone, EndIncidentResolved, EndShiftEnded, EndDeliveryFailed, EndOther}

// AnomalyKind names an anomaly rule.
type AnomalyKind string

// Anomaly rules.
const (
	// AnomalyNotOnCall: a grant to someone whose on-call check did not say "on call"
	// (false, unknown, or no check recorded).
	AnomalyNotOnCall AnomalyKind = "not_on_call"
	// AnomalyOutsideShift: the person was on call, but the grant was issued after the
	// recorded end of the shift (on_call_until) or its final expiry is after it.
	AnomalyOutsideShift AnomalyKind = "outside_shift"
	// AnomalyBreakGlass: a break-glass grant (always listed for review).
	AnomalyBreakGlass AnomalyKind = "break_glass"
	// AnomalyRepeatedRejections: RejectionBurst or more rejections or denials of one person
	// within RejectionWindow.
	AnomalyRepeatedRejections AnomalyKind = "repeated_rejections"
	// AnomalySameApprover: one approver approved the same requester more than
	// MaxApprovalsPerPair times in the window.
	AnomalySameApprover AnomalyKind = "same_approver_requester"
	// AnomalyNotRevokedOnTime: at until, a grant is still not revoked more than LateAfter
	// after its expiry.
	AnomalyNotRevokedOnTime AnomalyKind = "not_revoked_on_time"
)

// AnomalyKinds lists the anomaly rules in display order.
var AnomalyKinds = []AnomalyKind{AnomalyNotOnCall, AnomalyOutsideShift, AnomalyBreakGlass, AnomalyRepeatedRejections, AnomalySameApprover, AnomalyNotRevokedOnTime}

// Count is a named figure.
type Count struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// Report is the access report for one window. It is a plain value: the renderers
// (WriteReportMarkdown, WriteReportJSON, WriteReportCSV, the Slack summary) only format it.
// Every list has a fixed order.
type Report struct {
	Since, Until time.Time
	Options      ReportOptions

	// Grants counts the grants of the window that were issued (reached grant.issued before
	// until); NotIssued those written ahead in the window that never were (the provider
	// failed, or the process was interrupted).
	Grants    int
	NotIssued int
	// People and Resources count the distinct persons and resources of those grants.
	People    int
	Resources int
	// ByResource and ByPerson count grants, most first, then by name.
	ByResource []Count
	ByPerson   []Count
	// Decisions counts grants by DecisionKind, in DecisionKinds order (zeros included).
	Decisions []Count
	// Approvers counts, per approver, the grants they approved (the approvers of each grant
	// decided by approval), most first.
	Approvers  []Count
	Durations  Durations
	Extensions Extensions
	// EarlyEnds counts the window's grants ended before their expiry, by kind, in
	// EarlyEndKinds order (zeros included).
	EarlyEnds   []Count
	Requests    RequestCounts
	Revocations RevocationHealth
	// Anomalies are ordered by kind (AnomalyKinds order), then time, grant and person.
	Anomalies []Anomaly
	// Rows has one row per issued grant of the window, by issue time then grant id.
	Rows []GrantRow
	// Checkpoint is the newest signed checkpoint when the report was made, and how many
	// witnesses hold it; nil when not known (the report is built from events alone).
	Checkpoint *ReportCheckpoint
}

// ReportCheckpoint is the newest signed checkpoint of the log, as a report carries it: a
// reader can compare it with what a witness holds or with a later `audit verify`.
type ReportCheckpoint struct {
	Seq  int64
	Hash Hash
	Time time.Time
	// Witnesses is the number of configured witnesses; Published how many of them hold
	// this checkpoint.
	Witnesses, Published int
}

// String is "#seq <first 12 hex>… at <time>; published to M of N witnesses".
func (c ReportCheckpoint) String() string {
	s := fmt.Sprintf("#%d %s… at %s", c.Seq, c.Hash.String()[:12], FormatTime(c.Time))
	if c.Witnesses == 0 {
		return s + "; no witness configured"
	}
	return s + fmt.Sprintf("; published to %d of %d witnesses", c.Published, c.Witnesses)
}

// Durations summarises how long the window's grants ran.
type Durations struct {
	// Granted is the expiry (after extensions) minus the write-ahead time (the grant's
	// CreatedAt, from which the broker computes the expiry), over every issued grant.
	GrantedMedian  time.Duration
	GrantedLongest time.Duration
	LongestGrantID string
	// Used is the revocation time minus the write-ahead time, over the grants revoked before
	// until (Ended of them).
	Ended       int
	UsedMedian  time.Duration
	UsedLongest time.Duration
}

// Extensions counts grant.extended events of the window's grants.
type Extensions struct {
	Extensions int           // extension events
	Grants     int           // grants extended at least once
	Added      time.Duration // time added in all
}

// RequestCounts counts request events in the window.
type RequestCounts struct {
	Created  int `json:"created"`
	Approved int `json:"approved"`
	Denied   int `json:"denied"`
	Rejected int `json:"rejected"`
	Expired  int `json:"expired"`
	// RefusedClicks counts Approve/Deny clicks refused (request.rejected events with
	// EvidenceRefusedClick): the request they name stays undecided, so they are not
	// rejected requests.
	RefusedClicks int `json:"refused_clicks"`
}

// RevocationHealth is what happened to revocations in the window, for any grant.
type RevocationHealth struct {
	Revoked      int // grant.revoked events
	Failures     int // grant.revoke_failed events (failed attempts)
	FailedGrants int // distinct grants with a failed attempt
	// Late lists revocations done more than LateAfter after the grant's expiry, by
	// revocation time.
	Late []LateRevocation
	// NotRevokedOnTime counts grants still not revoked more than LateAfter after their
	// expiry at until (each is also an AnomalyNotRevokedOnTime).
	NotRevokedOnTime int
}

// LateRevocation is one revocation that came too late.
type LateRevocation struct {
	GrantID   string
	Resource  string
	Person    string
	ExpiresAt time.Time
	RevokedAt time.Time
	Lag       time.Duration
	Cause     string
}

// Anomaly is one finding of an anomaly rule.
type Anomaly struct {
	Kind      AnomalyKind
	Time      time.Time // the grant's issue time, the first rejection, the expiry, …
	Person    string    // whom it concerns (the grantee, the rejected person, the requester)
	Approver  string    // AnomalySameApprover only
	Resource  string
	GrantID   string
	RequestID string
	Count     int // rejections or approvals, for the rules that count
	Detail    string
}

// GrantRow is one grant for auditors: who, what, when, why, decided how and by whom, the
// on-call evidence, and how it ended (as known at until).
type GrantRow struct {
	GrantID   string
	RequestID string
	Resource  string
	Person    string
	IssuedAt  time.Time
	ExpiresAt time.Time     // final, after extensions
	Granted   time.Duration // ExpiresAt minus the write-ahead time
	Reason    string
	Decision  DecisionKind
	DecidedBy string
	// On-call evidence as recorded: on_call is "true", "false", "unknown" or "" (not
	// checked); OnCallUntil is the recorded shift end; OnCallShifts the matching entries.
	OnCall       string
	OnCallUntil  string
	OnCallShifts string
	Incident     string
	Extensions   int
	// State at until: active, expired_not_revoked, revoking, revoke_failed or revoked.
	State        string
	RevokedAt    time.Time
	RevokeCause  string
	RevokedBy    string
	RevokeReason string
	// EndedEarly is the early-end kind (EarlyEndKinds) when the grant was ended before its
	// expiry, else "".
	EndedEarly string
	Anomalies  []AnomalyKind
}

// Grant states a row can show (State).
const (
	RowActive            = "active"
	RowExpiredNotRevoked = "expired_not_revoked"
	RowRevoking          = "revoking"
	RowRevokeFailed      = "revoke_failed"
	RowRevoked           = "revoked"
)

// Searcher is the one store method reports read with (grants/sqlstore implements it).
type Searcher interface {
	Search(ctx context.Context, q Query) ([]Event, error)
}

// ReadReport builds the report for [since, until) from the store's audit log, reading it in
// pages of MaxQueryLimit and feeding each page to a ReportBuilder, so that the log is never
// held in memory at once. It reads, in seq order, every event from the first one at or after
// since-ReportLookback up to until, then the earlier history of any grant that appeared there
// without its grant.issuing event (a revocation that has kept failing, or was left undone,
// for longer than the lookback), so that its expiry is known for the late and
// not-revoked-on-time rules. The result equals BuildReport over the same events.
func ReadReport(ctx context.Context, s Searcher, since, until time.Time, opts ReportOptions) (Report, error) {
	since, until = since.UTC(), until.UTC()
	if !since.Before(until) {
		return Report{}, fmt.Errorf("report window: since %s must be before until %s", FormatTime(since), FormatTime(until))
	}
	rb := NewReportBuilder(since, until, opts, 0)
	from := since.Add(-ReportLookback)
	// Find the first event of the range, then page by seq with only the upper time bound:
	// with both bounds SQLite's planner walks the time index and sorts the rest of the
	// range for every page (quadratic over a large week); by seq each page is a range scan.
	first, err := s.Search(ctx, Query{Since: from, Until: until, Limit: 1})
	if err != nil {
		return Report{}, fmt.Errorf("read audit events for the report: %w", err)
	}
	if len(first) > 0 {
		if err := searchPages(ctx, s, Query{Until: until, AfterSeq: first[0].Seq - 1}, rb.Add); err != nil {
			return Report{}, fmt.Errorf("read audit events for the report: %w", err)
		}
	}
	if missing := rb.b.unwritten(); len(missing) > 0 {
		// Replay each such grant's whole history (up to until) on its own, then adopt what
		// only that history can tell: the expiry, hence lateness and overdue state.
		// Grants are independent: each history is in seq order, one after the other.
		sub := NewReportBuilder(since, until, opts, 0).b
		feed := func(events ...Event) {
			for i := range events {
				sub.add(&events[i])
			}
		}
		for _, id := range missing {
			if err := searchPages(ctx, s, Query{GrantID: id, Until: until}, feed); err != nil {
				return Report{}, fmt.Errorf("read the history of grant %s for the report: %w", id, err)
			}
		}
		rb.b.adopt(sub, missing)
	}
	return rb.Report(), nil
}

// searchPages pages through every event matching q after q.AfterSeq, in seq order, handing
// each page to fn.
func searchPages(ctx context.Context, s Searcher, q Query, fn func(...Event)) error {
	q.Limit, q.Descending = MaxQueryLimit, false
	for {
		page, err := s.Search(ctx, q)
		if err != nil {
			return err
		}
		fn(page...)
		if len(page) < q.Limit {
			return nil
		}
		q.AfterSeq = page[len(page)-1].Seq
	}
}

// ReportBuilder computes a report from events fed to it in seq order, page by page; it keeps
// only what the report needs, not the events. Use it once: Add, then Report.
type ReportBuilder struct {
	b       *reportBuilder
	lastSeq int64
	sorted  bool
}

// NewReportBuilder returns a builder for the window [since, until). sizeHint, when known, is
// the number of grants to expect (it presizes the builder's maps).
func NewReportBuilder(since, until time.Time, opts ReportOptions, sizeHint int) *ReportBuilder {
	n := max(sizeHint, 0)
	return &ReportBuilder{sorted: true, b: &reportBuilder{
		since: since.UTC(), until: until.UTC(), opts: opts.withDefaults(),
		grants: make(map[string]*grantTrack, n), requests: make(map[string]*requestTrack, n),
		alias: map[string]string{}, failed: map[string]bool{}, order: make([]*grantTrack, 0, n),
		grantSlab: make([]grantTrack, 0, n), requestSlab: make([]requestTrack, 0, n),
	}}
}

// Add feeds events, which must continue the seq order of earlier calls (events out of order
// are ignored and make Report panic: sort them first, as BuildReport does). Events at or after
// until are ignored. The events are not kept or modified.
func (rb *ReportBuilder) Add(events ...Event) {
	for i := range events {
		e := &events[i]
		if e.Seq <= rb.lastSeq && e.Seq != 0 {
			rb.sorted = false
			continue
		}
		rb.lastSeq = max(rb.lastSeq, e.Seq)
		if e.Time.Before(rb.b.until) {
			rb.b.add(e)
		}
	}
}

// Report finishes the report. It panics if Add was given events out of seq order.
func (rb *ReportBuilder) Report() Report {
	if !rb.sorted {
		panic("audit.ReportBuilder: events were added out of seq order")
	}
	return rb.b.finish()
}

// BuildReport computes the report for [since, until) from audit events, following the window
// rule at the top of this file. events should start at since-ReportLookback; they are
// processed in seq order whatever their order in the slice; events at or after until are
// ignored. It is pure: the same events and arguments always give the same report, and
// events are not modified.
func BuildReport(events []Event, since, until time.Time, opts ReportOptions) Report {
	// Size the maps up front: growing them is a large part of the cost at 1M events.
	nGrants := 0
	for i := range events {
		if events[i].Action == ActionGrantIssuing {
			nGrants++
		}
	}
	if !slices.IsSortedFunc(events, func(a, b Event) int { return cmp.Compare(a.Seq, b.Seq) }) {
		events = slices.Clone(events)
		slices.SortStableFunc(events, func(a, b Event) int { return cmp.Compare(a.Seq, b.Seq) })
	}
	rb := NewReportBuilder(since, until, opts, nGrants)
	for i := range events {
		if i > 0 && events[i].Seq == events[i-1].Seq && events[i].Seq != 0 {
			continue // the same event twice
		}
		rb.Add(events[i])
	}
	return rb.Report()
}

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
	failed    map[string]bool
	buckets   [][]Anomaly // findings by kind, in AnomalyKinds order

	// Preallocated tracks, so that 100k grants are not 100k allocations.
	grantSlab   []grantTrack
	requestSlab []requestTrack

	reqs RequestCounts
	rev  RevocationHealth
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
	rep := Report{Since: b.since, Until: b.until, Options: b.opts, Requests: b.reqs, Revocations: b.rev}
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
	for _, list := range [][]Anomaly{b.overdue(), b.rejectionBursts(), b.frequentApprovals()} {
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

	flag := func(k AnomalyKind, detail string) {
		row.Anomalies = append(row.Anomalies, k)
		b.flag(Anomaly{Kind: k, Time: g.issued, Person: row.Person, Resource: g.resource, GrantID: g.id,
			RequestID: g.requestID, Detail: detail})
	}
	switch row.OnCall {
	case "true":
		if end, ok := parseEvidenceTime(row.OnCallUntil); ok && (g.issued.After(end) || g.expires.After(end)) {
			what := "expires at " + FormatTime(g.expires)
			if g.issued.After(end) {
				what = "issued at " + FormatTime(g.issued)
			}
			flag(AnomalyOutsideShift, "on-call shift ended at "+FormatTime(end)+"; the grant "+what)
		}
	case "false":
		flag(AnomalyNotOnCall, "not on call; decided by "+string(kind)+" ("+by+")")
	case "unknown":
		flag(AnomalyNotOnCall, "on-call status unknown ("+firstOf(onCall("on_call_error"), "check failed")+"); decided by "+string(kind)+" ("+by+")")
	default:
		flag(AnomalyNotOnCall, "no on-call check recorded; decided by "+string(kind)+" ("+by+")")
	}
	if kind == DecisionBreakGlass {
		flag(AnomalyBreakGlass, "break-glass access: "+g.reason)
	}
	return row
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

// overdue lists every known grant not revoked more than LateAfter after its expiry, at until.
func (b *reportBuilder) overdue() []Anomaly {
	var out []Anomaly
	for _, g := range b.order {
		if !g.written || g.expires.IsZero() || !g.revokedAt.IsZero() || b.until.Sub(g.expires) <= b.opts.LateAfter {
			continue
		}
		state := "no revocation recorded"
		switch {
		case g.failing:
			state = fmt.Sprintf("revocation failing after %d attempt(s)", g.failures)
		case !g.revokeReqAt.IsZero():
			state = "revocation queued at " + FormatTime(g.revokeReqAt)
		}
		out = append(out, Anomaly{Kind: AnomalyNotRevokedOnTime, Time: g.expires, Person: g.person, Resource: g.resource,
			GrantID: g.id, RequestID: g.requestID,
			Detail: fmt.Sprintf("expired at %s, still not revoked %s later (%s)", FormatTime(g.expires), FormatDuration(b.until.Sub(g.expires)), state)})
	}
	return out
}

// rejectionBursts finds runs of RejectionBurst or more rejections of one person within
// RejectionWindow. Runs do not overlap: after a run, the search resumes after its last event.
func (b *reportBuilder) rejectionBursts() []Anomaly {
	by := map[string][]refusal{}
	for _, r := range b.refusals {
		who := b.resolve(r.who)
		by[who] = append(by[who], r)
	}
	var out []Anomaly
	for who, rs := range by {
		slices.SortStableFunc(rs, func(x, y refusal) int { return x.at.Compare(y.at) })
		for i := 0; i < len(rs); {
			j := i
			for j < len(rs) && rs[j].at.Sub(rs[i].at) <= b.opts.RejectionWindow {
				j++
			}
			if n := j - i; n >= b.opts.RejectionBurst {
				denied := 0
				for _, r := range rs[i:j] {
					if r.what == ActionRequestDenied {
						denied++
					}
				}
				out = append(out, Anomaly{Kind: AnomalyRepeatedRejections, Time: rs[i].at, Person: who, Count: n,
					Detail: fmt.Sprintf("%d refusals (%d rejected, %d denied) between %s and %s", n, n-denied, denied, FormatTime(rs[i].at), FormatTime(rs[j-1].at))})
				i = j
				continue
			}
			i++
		}
	}
	return out
}

// frequentApprovals finds approver–requester pairs over MaxApprovalsPerPair approvals.
func (b *reportBuilder) frequentApprovals() []Anomaly {
	type pair struct{ approver, requester string }
	counts := map[pair]int{}
	first := map[pair]time.Time{}
	for _, a := range b.approvals {
		requester := a.requester
		if requester == "" {
			if r := b.requests[a.req]; r != nil {
				requester = r.requester
			}
		}
		p := pair{b.resolve(a.approver), b.resolve(requester)}
		if counts[p] == 0 {
			first[p] = a.at
		}
		counts[p]++
	}
	var out []Anomaly
	for p, n := range counts {
		if n > b.opts.MaxApprovalsPerPair {
			out = append(out, Anomaly{Kind: AnomalySameApprover, Time: first[p], Person: p.requester, Approver: p.approver, Count: n,
				Detail: fmt.Sprintf("%s approved %s's requests %d times (more than %d)", p.approver, p.requester, n, b.opts.MaxApprovalsPerPair)})
		}
	}
	return out
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

// Report formats.
const (
	FormatMarkdown = "markdown"
	FormatJSON     = "json"
	FormatCSV      = "csv"
)

// ReportFormats lists the formats RenderReport writes.
var ReportFormats = []string{FormatMarkdown, FormatJSON, FormatCSV}

// ReportContentType is the HTTP content type of a report format ("" for an unknown one).
func ReportContentType(format string) string {
	switch format {
	case FormatMarkdown:
		return "text/markdown; charset=utf-8"
	case FormatJSON:
		return "application/json"
	case FormatCSV:
		return "text/csv; charset=utf-8"
	}
	return ""
}

// RenderReport writes r in format (markdown, json or csv).
func RenderReport(w io.Writer, r Report, format string) error {
	switch format {
	case FormatMarkdown:
		return WriteReportMarkdown(w, r)
	case FormatJSON:
		return WriteReportJSON(w, r)
	case FormatCSV:
		return WriteReportCSV(w, r)
	}
	return fmt.Errorf("report format %q is not supported: use markdown, json or csv", format)
}

// ReportCSVColumns is the column order of WriteReportCSV: one row per grant. Columns are only
// ever appended.
var ReportCSVColumns = []string{
	"grant_id", "request_id", "resource", "person", "issued_at", "expires_at", "granted", "reason",
	"decision", "decided_by", "on_call", "on_call_until", "on_call_shifts", "incident", "extensions",
	"state", "revoked_at", "revoke_cause", "revoked_by", "revoke_reason", "anomalies", "ended_early",
}

// WriteReportCSV writes the report's grant rows as RFC 4180 CSV with a header row and the
// columns of ReportCSVColumns. Times are UTC RFC 3339 with milliseconds (empty when unset);
// durations as in JSON ("1h30m"); anomalies are separated by ";". Every cell is passed
// through DefuseCSVCell (a cell starting with = + - @, tab, CR or NUL gets a leading '), as
// in the audit export; WriteReportCSVRaw writes the exact text.
func WriteReportCSV(w io.Writer, r Report) error {
	return writeReportCSV(w, r, csvCell(false))
}

// WriteReportCSVRaw is WriteReportCSV without defusing: every cell is the exact text.
func WriteReportCSVRaw(w io.Writer, r Report) error {
	return writeReportCSV(w, r, csvCell(true))
}

func writeReportCSV(w io.Writer, r Report, cell func(string) string) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(ReportCSVColumns); err != nil {
		return fmt.Errorf("write report CSV header: %w", err)
	}
	rec := make([]string, len(ReportCSVColumns))
	for _, g := range r.Rows {
		kinds := make([]string, len(g.Anomalies))
		for i, k := range g.Anomalies {
			kinds[i] = string(k)
		}
		vals := []string{
			g.GrantID, g.RequestID, g.Resource, g.Person, stamp(g.IssuedAt), stamp(g.ExpiresAt), FormatDuration(g.Granted), g.Reason,
			string(g.Decision), g.DecidedBy, g.OnCall, g.OnCallUntil, g.OnCallShifts, g.Incident, strconv.Itoa(g.Extensions),
			g.State, stamp(g.RevokedAt), g.RevokeCause, g.RevokedBy, g.RevokeReason, strings.Join(kinds, ";"), g.EndedEarly,
		}
		for i, v := range vals {
			rec[i] = cell(v)
		}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("write report CSV row %s: %w", g.GrantID, err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write report CSV: %w", err)
	}
	return nil
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return FormatTime(t)
}

// WriteReportJSON writes r as one indented JSON object. Times are UTC RFC 3339 with
// milliseconds, durations strings time.ParseDuration reads ("1h30m"), lists never null. The
// long lists (anomalies, rows) are streamed element by element.
func WriteReportJSON(w io.Writer, r Report) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	if err := writeReportJSON(bw, r); err != nil {
		return fmt.Errorf("write report JSON: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write report JSON: %w", err)
	}
	return nil
}

// MarshalJSON returns the report in the form written by WriteReportJSON.
func (r Report) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	if err := WriteReportJSON(&buf, r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeReportJSON(w *bufio.Writer, r Report) error {
	type durations struct {
		GrantedMedian  string `json:"granted_median"`
		GrantedLongest string `json:"granted_longest"`
		LongestGrantID string `json:"longest_grant_id,omitempty"`
		Ended          int    `json:"ended"`
		UsedMedian     string `json:"used_median"`
		UsedLongest    string `json:"used_longest"`
	}
	type extensions struct {
		Extensions int    `json:"extensions"`
		Grants     int    `json:"grants"`
		Added      string `json:"added"`
	}
	type late struct {
		GrantID   string `json:"grant_id"`
		Resource  string `json:"resource"`
		Person    string `json:"person"`
		ExpiresAt string `json:"expires_at"`
		RevokedAt string `json:"revoked_at"`
		Lag       string `json:"lag"`
		Cause     string `json:"cause,omitempty"`
	}
	type revocations struct {
		Revoked          int    `json:"revoked"`
		Failures         int    `json:"failures"`
		FailedGrants     int    `json:"failed_grants"`
		Late             []late `json:"late"`
		NotRevokedOnTime int    `json:"not_revoked_on_time"`
	}
	type anomaly struct {
		Kind      AnomalyKind `json:"kind"`
		Time      string      `json:"time"`
		Person    string      `json:"person,omitempty"`
		Approver  string      `json:"approver,omitempty"`
		Resource  string      `json:"resource,omitempty"`
		GrantID   string      `json:"grant_id,omitempty"`
		RequestID string      `json:"request_id,omitempty"`
		Count     int         `json:"count,omitempty"`
		Detail    string      `json:"detail"`
	}
	type row struct {
		GrantID      string        `json:"grant_id"`
		RequestID    string        `json:"request_id,omitempty"`
		Resource     string        `json:"resource"`
		Person       string        `json:"person"`
		IssuedAt     string        `json:"issued_at"`
		ExpiresAt    string        `json:"expires_at"`
		Granted      string        `json:"granted"`
		Reason       string        `json:"reason"`
		Decision     DecisionKind  `json:"decision"`
		DecidedBy    string        `json:"decided_by"`
		OnCall       string        `json:"on_call"`
		OnCallUntil  string        `json:"on_call_until,omitempty"`
		OnCallShifts string        `json:"on_call_shifts,omitempty"`
		Incident     string        `json:"incident,omitempty"`
		Extensions   int           `json:"extensions"`
		State        string        `json:"state"`
		RevokedAt    string        `json:"revoked_at,omitempty"`
		RevokeCause  string        `json:"revoke_cause,omitempty"`
		RevokedBy    string        `json:"revoked_by,omitempty"`
		RevokeReason string        `json:"revoke_reason,omitempty"`
		EndedEarly   string        `json:"ended_early,omitempty"`
		Anomalies    []AnomalyKind `json:"anomalies"`
	}
	type checkpoint struct {
		Seq       int64  `json:"seq"`
		Hash      Hash   `json:"hash"`
		Time      string `json:"time"`
		Witnesses int    `json:"witnesses"`
		Published int    `json:"published_to"`
	}
	type options struct {
		LateAfter           string `json:"late_after"`
		RejectionBurst      int    `json:"rejection_burst"`
		RejectionWindow     string `json:"rejection_window"`
		MaxApprovalsPerPair int    `json:"max_approvals_per_pair"`
	}
	type report struct {
		Since       string        `json:"since"`
		Until       string        `json:"until"`
		Options     options       `json:"options"`
		Grants      int           `json:"grants"`
		NotIssued   int           `json:"not_issued"`
		People      int           `json:"people"`
		Resources   int           `json:"resources"`
		ByResource  []Count       `json:"by_resource"`
		ByPerson    []Count       `json:"by_person"`
		Decisions   []Count       `json:"decisions"`
		Approvers   []Count       `json:"approvers"`
		Durations   durations     `json:"durations"`
		Extensions  extensions    `json:"extensions"`
		EarlyEnds   []Count       `json:"early_ends"`
		Requests    RequestCounts `json:"requests"`
		Revocations revocations   `json:"revocations"`
		Checkpoint  *checkpoint   `json:"latest_checkpoint,omitempty"`
	}
	nonNil := func(c []Count) []Count {
		if c == nil {
			return []Count{}
		}
		return c
	}
	d := r.Durations
	o := r.Options
	out := report{
		Since: stamp(r.Since), Until: stamp(r.Until),
		Options: options{LateAfter: FormatDuration(o.LateAfter), RejectionBurst: o.RejectionBurst,
			RejectionWindow: FormatDuration(o.RejectionWindow), MaxApprovalsPerPair: o.MaxApprovalsPerPair},
		Grants: r.Grants, NotIssued: r.NotIssued, People: r.People, Resources: r.Resources,
		ByResource: nonNil(r.ByResource), ByPerson: nonNil(r.ByPerson), Decisions: nonNil(r.Decisions), Approvers: nonNil(r.Approvers),
		Durations: durations{GrantedMedian: FormatDuration(d.GrantedMedian), GrantedLongest: FormatDuration(d.GrantedLongest),
			LongestGrantID: d.LongestGrantID, Ended: d.Ended, UsedMedian: FormatDuration(d.UsedMedian), UsedLongest: FormatDuration(d.UsedLongest)},
		Extensions: extensions{Extensions: r.Extensions.Extensions, Grants: r.Extensions.Grants, Added: FormatDuration(r.Extensions.Added)},
		EarlyEnds:  nonNil(r.EarlyEnds), Requests: r.Requests,
		Revocations: revocations{Revoked: r.Revocations.Revoked, Failures: r.Revocations.Failures, FailedGrants: r.Revocations.FailedGrants,
			Late: []late{}, NotRevokedOnTime: r.Revocations.NotRevokedOnTime},
	}
	if c := r.Checkpoint; c != nil {
		out.Checkpoint = &checkpoint{Seq: c.Seq, Hash: c.Hash, Time: stamp(c.Time), Witnesses: c.Witnesses, Published: c.Published}
	}
	for _, l := range r.Revocations.Late {
		out.Revocations.Late = append(out.Revocations.Late, late{GrantID: l.GrantID, Resource: l.Resource, Person: l.Person,
			ExpiresAt: stamp(l.ExpiresAt), RevokedAt: stamp(l.RevokedAt), Lag: FormatDuration(l.Lag), Cause: l.Cause})
	}
	toAnomaly := func(a Anomaly) anomaly {
		return anomaly{Kind: a.Kind, Time: stamp(a.Time), Person: a.Person, Approver: a.Approver,
			Resource: a.Resource, GrantID: a.GrantID, RequestID: a.RequestID, Count: a.Count, Detail: a.Detail}
	}
	toRow := func(g GrantRow) row {
		kinds := g.Anomalies
		if kinds == nil {
			kinds = []AnomalyKind{}
		}
		return row{GrantID: g.GrantID, RequestID: g.RequestID, Resource: g.Resource, Person: g.Person,
			IssuedAt: stamp(g.IssuedAt), ExpiresAt: stamp(g.ExpiresAt), Granted: FormatDuration(g.Granted), Reason: g.Reason,
			Decision: g.Decision, DecidedBy: g.DecidedBy, OnCall: g.OnCall, OnCallUntil: g.OnCallUntil, OnCallShifts: g.OnCallShifts,
			Incident: g.Incident, Extensions: g.Extensions, State: g.State, RevokedAt: stamp(g.RevokedAt), RevokeCause: g.RevokeCause,
			RevokedBy: g.RevokedBy, RevokeReason: g.RevokeReason, EndedEarly: g.EndedEarly, Anomalies: kinds}
	}
	var head bytes.Buffer
	henc := json.NewEncoder(&head)
	henc.SetEscapeHTML(false)
	henc.SetIndent("", "  ")
	if err := henc.Encode(out); err != nil {
		return err
	}
	// head is "{\n  …\n}\n": reopen it and append the streamed lists, one element per Encode
	// (indented one level deeper) so that a 100k-row report is never one huge value.
	h := bytes.TrimSuffix(bytes.TrimRight(head.Bytes(), "\n"), []byte("}"))
	w.Write(bytes.TrimRight(h, "\n"))
	list := func(name string, n int, item func(i int) any) error {
		fmt.Fprintf(w, ",\n  %q: [", name)
		if n == 0 {
			w.WriteString("]")
			return nil
		}
		for i := range n {
			if i > 0 {
				w.WriteString(",")
			}
			w.WriteString("\n    ")
			head.Reset()
			if err := henc.Encode(item(i)); err != nil {
				return err
			}
			w.Write(bytes.TrimRight(head.Bytes(), "\n"))
		}
		w.WriteString("\n  ]")
		return nil
	}
	henc.SetIndent("    ", "  ")
	if err := list("anomalies", len(r.Anomalies), func(i int) any { return toAnomaly(r.Anomalies[i]) }); err != nil {
		return err
	}
	if err := list("rows", len(r.Rows), func(i int) any { return toRow(r.Rows[i]) }); err != nil {
		return err
	}
	_, err := w.WriteString("\n}\n")
	return err
}

// WriteReportMarkdown writes r as a Markdown document: the figures, the anomalies, and one
// table row per grant. Text from outside (reasons, names) is escaped so that it cannot break
// a table or inject links or HTML.
func WriteReportMarkdown(w io.Writer, r Report) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	p("# Access report %s – %s\n\n", FormatTime(r.Since), FormatTime(r.Until))
	p("Computed from the audit log alone. A grant belongs to the window in which it was written ahead " +
		"(grant.issuing) and is shown as known at the end of the window; revocations, rejections and " +
		"approvals count when they happened.\n\n")
	if c := r.Checkpoint; c != nil {
		p("**Latest checkpoint:** #%d `%s` at %s; ", c.Seq, c.Hash, FormatTime(c.Time))
		if c.Witnesses == 0 {
			p("no witness configured.\n\n")
		} else {
			p("published to %d of %d witnesses.\n\n", c.Published, c.Witnesses)
		}
	}
	if r.Grants == 0 {
		p("**No grants this week.**\n\n")
	}
	p("## Figures\n\n| figure | value |\n| --- | --- |\n")
	p("| grants | %d |\n| people | %d |\n| resources | %d |\n", r.Grants, r.People, r.Resources)
	p("| not issued (provider failure or interrupted) | %d |\n", r.NotIssued)
	longest := FormatDuration(r.Durations.GrantedLongest)
	if r.Durations.LongestGrantID != "" {
		longest += " (`" + r.Durations.LongestGrantID + "`)"
	}
	p("| granted duration: median / longest | %s / %s |\n", FormatDuration(r.Durations.GrantedMedian), longest)
	p("| used duration of %d ended grants: median / longest | %s / %s |\n", r.Durations.Ended,
		FormatDuration(r.Durations.UsedMedian), FormatDuration(r.Durations.UsedLongest))
	p("| extensions | %d on %d grants, %s added |\n", r.Extensions.Extensions, r.Extensions.Grants, FormatDuration(r.Extensions.Added))
	early := 0
	for _, c := range r.EarlyEnds {
		early += c.Count
	}
	p("| ended early | %d |\n", early)
	q := r.Requests
	p("| requests: created / approved / denied / rejected / expired | %d / %d / %d / %d / %d |\n", q.Created, q.Approved, q.Denied, q.Rejected, q.Expired)
	p("| refused approve/deny clicks (requester or non-approver; the request stays open) | %d |\n", q.RefusedClicks)
	v := r.Revocations
	p("| revocations | %d |\n| revocation failures (attempts / grants) | %d / %d |\n", v.Revoked, v.Failures, v.FailedGrants)
	p("| late revocations (over %s after expiry) | %d |\n| not revoked on time at the end of the window | %d |\n",
		FormatDuration(r.Options.LateAfter), len(v.Late), v.NotRevokedOnTime)
	p("| anomalies | %d |\n\n", len(r.Anomalies))

	countTable := func(title, col string, cs []Count, skipZero bool) {
		p("## %s\n\n", title)
		n := 0
		for _, c := range cs {
			if !skipZero || c.Count > 0 {
				n++
			}
		}
		if n == 0 {
			p("None.\n\n")
			return
		}
		p("| %s | grants |\n| --- | --- |\n", col)
		for _, c := range cs {
			if !skipZero || c.Count > 0 {
				p("| %s | %d |\n", mdCell(c.Name), c.Count)
			}
		}
		p("\n")
	}
	countTable("How grants were decided", "decision", r.Decisions, false)
	countTable("Approvals by approver", "approver", r.Approvers, false)
	countTable("Grants per resource", "resource", r.ByResource, false)
	countTable("Grants per person", "person", r.ByPerson, false)
	countTable("Ended early", "why", r.EarlyEnds, true)

	p("## Late revocations\n\n")
	if len(v.Late) == 0 {
		p("None.\n\n")
	} else {
		p("| grant | resource | person | expired | revoked | lag | cause |\n| --- | --- | --- | --- | --- | --- | --- |\n")
		for _, l := range v.Late {
			p("| `%s` | %s | %s | %s | %s | %s | %s |\n", l.GrantID, mdCell(l.Resource), mdCell(l.Person), stamp(l.ExpiresAt),
				stamp(l.RevokedAt), FormatDuration(l.Lag), mdCell(l.Cause))
		}
		p("\n")
	}

	p("## Anomalies\n\n")
	if len(r.Anomalies) == 0 {
		p("None.\n\n")
	} else {
		p("| kind | when | person | resource | grant | detail |\n| --- | --- | --- | --- | --- | --- |\n")
		for _, a := range r.Anomalies {
			g := ""
			if a.GrantID != "" {
				g = "`" + a.GrantID + "`"
			}
			p("| %s | %s | %s | %s | %s | %s |\n", a.Kind, stamp(a.Time), mdCell(a.Person), mdCell(a.Resource), g, mdCell(a.Detail))
		}
		p("\n")
	}

	p("## Grants\n\n")
	if len(r.Rows) == 0 {
		p("No grants this week.\n")
	} else {
		p("| grant | issued | person | resource | granted | reason | decision | decided by | on call | state | ended | cause | ended by | anomalies |\n")
		p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
		for _, g := range r.Rows {
			oc := firstOf(g.OnCall, "not checked")
			if g.OnCallUntil != "" {
				oc += " until " + g.OnCallUntil
			}
			kinds := make([]string, len(g.Anomalies))
			for i, k := range g.Anomalies {
				kinds[i] = string(k)
			}
			cause := g.RevokeCause
			if g.EndedEarly != "" && g.EndedEarly != cause {
				cause += " (" + g.EndedEarly + ")"
			}
			p("| `%s` | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", g.GrantID, stamp(g.IssuedAt),
				mdCell(g.Person), mdCell(g.Resource), FormatDuration(g.Granted), mdCell(g.Reason), g.Decision, mdCell(g.DecidedBy),
				mdCell(oc), g.State, stamp(g.RevokedAt), mdCell(cause), mdCell(g.RevokedBy), strings.Join(kinds, ", "))
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write report Markdown: %w", err)
	}
	return nil
}

var mdEscaper = strings.NewReplacer(`\`, `\\`, "|", `\|`, "<", `\<`, ">", `\>`, "[", `\[`, "]", `\]`, "`", "\\`", "\r\n", " ", "\n", " ", "\r", " ")

// mdCell escapes text for a Markdown table cell.
func mdCell(s string) string { return mdEscaper.Replace(s) }
