package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The fixture history: a week of grants whose figures can be worked out by hand from the
// rules below (the expected numbers in TestReportFixtureFigures are derived in comments there,
// not computed by code). The seeded generator only varies what no figure depends on: the
// second and millisecond a grant starts within its slot, the provider's latency, reasons.
//
// Grant i (0 ≤ i < 300) starts at since + i×33m (+ 0–59.999 s):
//   person    fxPeople[i%4]   (alice, bob, carol, dave: 75 each)
//   resource  fxResources[i%3] (100 each)
//   duration  fxDurations[i%5] (30m, 1h, 1h30m, 2h, 4h: 60 each); i%25 == 3 is extended by 30m
//   decision  i%10: 0–4 on call and auto-approved, 5–6 approval, 7 page acknowledged,
//             8 break-glass (not on call), 9 operator at the CLI (no on-call check)
//   approver  i%20 == 5 or 15: erin; 6: frank; 16: erin when i%40 == 16, else frank
//   shift end on-call grants' shift ends 8h after the start (page: 12h), except i%30 == 0
//             (15m after the start: the grant outlives the shift) and i%30 == 10 (exactly
//             at the expiry: not outside the shift)
//   end       i%20: 1 revoked by erin after 10m (manual), 2 ended by the owner after 5m
//             (done), 7 incident resolved after 20m, 14 shift ended after 15m;
//             11 one failed attempt, revoked 5m after expiry (late);
//             12 one failed attempt, revoked 30s after expiry; 16 revoked exactly 1m after
//             expiry (not late); otherwise revoked 2s after expiry.
// Grant 299 runs past until (it is active in the report; its revocation event comes after
// until and must be ignored).
//
// Extras: a grant carried over from before the window and revoked 10m late inside it; an
// operator grant from before the window whose revocation fails every 12h all week; a grant
// whose provider failed and one interrupted (written ahead, never issued); 20 denials
// (8h apart); rejections: dave 3 within 40m (a burst), carol 3 spread so that no hour holds
// 3 of her refusals, 2 unauthenticated API calls; 5 requests that expired.

var (
	fxSince = time.Date(2026, 2, 23, 9, 0, 0, 0, time.UTC) // a Monday, 09:00 UTC
	fxUntil = fxSince.Add(7 * 24 * time.Hour)

	fxPeople = []struct{ slack, email string }{
		{"U0ALICE", "alice@example.com"}, {"U0BOB", "bob@example.com"}, {"U0CAROL", "carol@example.com"}, {"U0DAVE", "dave@example.com"},
	}
	fxResources = []string{"prod-db", "prod-aws", "infra-admins"}
	fxProviders = map[string]string{"prod-db": "postgres", "prod-aws": "aws-sts", "infra-admins": "github-team"}
	fxDurations = []time.Duration{30 * time.Minute, time.Hour, 90 * time.Minute, 2 * time.Hour, 4 * time.Hour}
	fxReasons   = []string{"checking replication lag", "INC follow-up: vacuum stuck", "rotate a leaked key", "debug 5xx spike", "schema migration", "customer data export"}
)

const (
	fxErin  = "U0ERIN"
	fxFrank = "U0FRANK"
)

var (
	sysActor = Actor{Kind: ActorSystem, ID: "accessbroker"}
	pdActor  = Actor{Kind: ActorPagerDuty, ID: "pagerduty"}
	opActor  = Actor{Kind: ActorOperator, ID: "ops-oliver"}
)

// history collects events and numbers them in time order.
type history struct {
	rng    *rand.Rand
	events []Event
}

func newHistory(seed uint64) *history {
	return &history{rng: rand.New(rand.NewPCG(seed, 0x5eed))}
}

func (h *history) add(t time.Time, actor Actor, action Action, req, grant, res, reason string, kv ...string) {
	e := Event{Time: t.UTC().Truncate(time.Millisecond), Actor: actor, Action: action, RequestID: req, GrantID: grant, Resource: res, Reason: reason}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		if e.Evidence == nil {
			e.Evidence = map[string]string{}
		}
		e.Evidence[kv[i]] = kv[i+1]
	}
	h.events = append(h.events, e)
}

// seal orders the events by time (events at the same time keep the order they were added
// in), numbers them from 1 and, when chain is set, hash-chains them as a store would.
func (h *history) seal(t testing.TB, chain bool) []Event {
	t.Helper()
	slices.SortStableFunc(h.events, func(a, b Event) int { return a.Time.Compare(b.Time) })
	prev := Genesis
	for i := range h.events {
		e := &h.events[i]
		e.Seq, e.ID = int64(i+1), fmt.Sprintf("e_%07d", i+1)
		if chain {
			if err := Seal(prev, e); err != nil {
				t.Fatal(err)
			}
			prev = e.Hash
		}
	}
	return h.events
}

func onCallEvidence(until time.Time) []string {
	return []string{"on_call", "true", "on_call_until", FormatTime(until),
		"on_call_shifts", "escalation policy DB primary level 1 via schedule DB weekly until " + FormatTime(until), "resolved_by", "config"}
}

// patternGrants adds n grants following the pattern described at the top of this file,
// spacing apart.
func (h *history) patternGrants(n int, since time.Time, spacing time.Duration) {
	for i := range n {
		who := fxPeople[i%4]
		res := fxResources[i%3]
		d := fxDurations[i%5]
		t0 := since.Add(time.Duration(i)*spacing + time.Duration(h.rng.IntN(60_000))*time.Millisecond)
		gid, rid := fmt.Sprintf("g_%06d", i), fmt.Sprintf("r_%06d", i)
		reason := fmt.Sprintf("%s (#%d)", fxReasons[h.rng.IntN(len(fxReasons))], i)
		exp := t0.Add(d)
		owner := Actor{Kind: ActorUser, ID: who.slack, Email: who.email}
		requester := Actor{Kind: ActorUser, ID: who.slack}
		var issuer Actor
		var issuingEv []string
		switch i % 10 {
		case 0, 1, 2, 3, 4:
			end := t0.Add(8 * time.Hour)
			switch i % 30 {
			case 0:
				end = t0.Add(15 * time.Minute)
			case 10:
				end = exp
			}
			oc := onCallEvidence(end)
			h.add(t0.Add(-3*time.Second), requester, ActionRequestCreated, rid, "", res, reason, "duration", d.String(), "source", "slack")
			h.add(t0.Add(-time.Second), sysActor, ActionOnCallChecked, rid, "", res, "on call for "+res, append(oc, "path", "auto_approve", "person", who.email)...)
			h.add(t0, sysActor, ActionRequestApproved, rid, "", res, "on call for "+res, append(oc, "person", who.email)...)
			issuer, issuingEv = owner, append(oc, "path", "auto_approve")
		case 5, 6:
			approver := fxErin
			if i%20 == 6 || (i%20 == 16 && i%40 != 16) {
				approver = fxFrank
			}
			h.add(t0.Add(-20*time.Minute), requester, ActionRequestCreated, rid, "", res, reason, "duration", d.String(), "source", "slack")
			h.add(t0.Add(-20*time.Minute+time.Second), sysActor, ActionOnCallChecked, rid, "", res, "not on call for "+res+"; approval needed",
				"on_call", "false", "resolved_by", "config", "path", "approval", "person", who.email)
			h.add(t0, Actor{Kind: ActorUser, ID: approver}, ActionApprovalRecorded, rid, "", res, "approval 1 of 1", "approver", approver, "person", who.email)
			h.add(t0, Actor{Kind: ActorUser, ID: approver}, ActionRequestApproved, rid, "", res, "approved by 1 of 1 required approvers",
				"approvers", approver, "path", "approval", "person", who.email)
			issuer, issuingEv = Actor{Kind: ActorUser, ID: approver}, []string{"approvers", approver, "path", "approval"}
		case 7:
			inc := fmt.Sprintf("PINC%04d", i)
			oc := onCallEvidence(t0.Add(12 * time.Hour))
			h.add(t0.Add(-2*time.Second), pdActor, ActionRequestCreated, rid, "", res, reason, "source", "pagerduty", "incident", inc)
			h.add(t0.Add(-time.Second), sysActor, ActionOnCallChecked, rid, "", res, "acknowledged the page", append(oc, "person", who.email)...)
			h.add(t0, sysActor, ActionRequestApproved, rid, "", res, "acknowledged the page", append(oc, "person", who.email)...)
			issuer, issuingEv = pdActor, append(oc, "path", "page_ack", "incident", inc)
		case 8:
			h.add(t0.Add(-2*time.Second), requester, ActionRequestCreated, rid, "", res, reason, "duration", d.String(), "source", "slack", "break_glass", "true")
			h.add(t0.Add(-time.Second), sysActor, ActionOnCallChecked, rid, "", res, "break-glass access",
				"on_call", "false", "resolved_by", "config", "path", "break_glass", "person", who.email)
			h.add(t0, sysActor, ActionRequestApproved, rid, "", res, "break-glass access", "on_call", "false", "person", who.email)
			issuer, issuingEv = owner, []string{"on_call", "false", "resolved_by", "config", "path", "break_glass"}
		case 9:
			rid = ""
			issuer, issuingEv = opActor, []string{"source", "cli"}
		}
		h.add(t0, issuer, ActionGrantIssuing, rid, gid, res, reason,
			append(issuingEv, "expires_at", FormatTime(exp), "provider", fxProviders[res], "person", who.email)...)
		issued := t0.Add(time.Duration(50+h.rng.IntN(900)) * time.Millisecond)
		h.add(issued, issuer, ActionGrantIssued, rid, gid, res, reason,
			"expires_at", FormatTime(exp), "handle_key", res+"/"+who.slack, "preexisting", "false", "person", who.email)
		if i%25 == 3 {
			later := exp.Add(30 * time.Minute)
			h.add(t0.Add(5*time.Minute), requester, ActionGrantExtended, rid, gid, res, "need a little longer",
				"old_expires_at", FormatTime(exp), "expires_at", FormatTime(later), "person", who.email)
			exp = later
		}
		revoked := func(at time.Time, cause string, attempts int) {
			h.add(at, sysActor, ActionGrantRevoked, rid, gid, res, "", "cause", cause, "attempts", strconv.Itoa(attempts), "person", who.email)
		}
		requested := func(at time.Time, by Actor, cause, why string) {
			h.add(at, by, ActionGrantRevokeQueued, rid, gid, res, why, "cause", cause, "person", who.email)
			revoked(at.Add(time.Second), cause, 1)
		}
		failed := func(at time.Time, cause string, attempt int) {
			h.add(at, sysActor, ActionGrantRevokeFailed, rid, gid, res, "provider answered 503", "cause", cause,
				"attempt", strconv.Itoa(attempt), "class", "retryable", "person", who.email)
		}
		switch i % 20 {
		case 1:
			requested(t0.Add(10*time.Minute), Actor{Kind: ActorUser, ID: fxErin}, "manual", "revoked with /access revoke")
		case 2:
			requested(t0.Add(5*time.Minute), requester, "manual", "ended by its owner with /access done")
		case 7:
			requested(t0.Add(20*time.Minute), pdActor, "incident_resolved", "incident resolved")
		case 14:
			requested(t0.Add(15*time.Minute), sysActor, "shift_ended", "on-call shift ended")
		case 11:
			failed(exp.Add(time.Second), "expired", 1)
			revoked(exp.Add(5*time.Minute), "expired", 2)
		case 12:
			failed(exp.Add(time.Second), "expired", 1)
			revoked(exp.Add(30*time.Second), "expired", 2)
		case 16:
			revoked(exp.Add(time.Minute), "expired", 1)
		default:
			revoked(exp.Add(2*time.Second), "expired", 1)
		}
	}
}

// extras adds the hand-placed scenarios listed at the top of this file.
func (h *history) extras(since time.Time) {
	alice, bob, carol, dave := fxPeople[0], fxPeople[1], fxPeople[2], fxPeople[3]
	at := func(d time.Duration) time.Time { return since.Add(d) }

	// Carried over: issued 2h before the window for 4h, revoked 10m after its expiry.
	t := at(-2 * time.Hour)
	oc := onCallEvidence(t.Add(8 * time.Hour))
	h.add(t.Add(-3*time.Second), Actor{Kind: ActorUser, ID: alice.slack}, ActionRequestCreated, "r_carry1", "", "prod-db", "late night", "source", "slack")
	h.add(t, Actor{Kind: ActorUser, ID: alice.slack, Email: alice.email}, ActionGrantIssuing, "r_carry1", "g_carry1", "prod-db", "late night",
		append(oc, "path", "auto_approve", "expires_at", FormatTime(t.Add(4*time.Hour)), "person", alice.email)...)
	h.add(t.Add(100*time.Millisecond), Actor{Kind: ActorUser, ID: alice.slack, Email: alice.email}, ActionGrantIssued, "r_carry1", "g_carry1", "prod-db", "late night",
		"expires_at", FormatTime(t.Add(4*time.Hour)), "person", alice.email)
	h.add(at(2*time.Hour+10*time.Minute), sysActor, ActionGrantRevoked, "r_carry1", "g_carry1", "prod-db", "", "cause", "expired", "person", alice.email)

	// Stuck: an operator grant from before the window whose revocation keeps failing.
	t = at(-3 * time.Hour)
	h.add(t, opActor, ActionGrantIssuing, "", "g_stuck1", "prod-aws", "vendor access", "source", "cli",
		"expires_at", FormatTime(t.Add(time.Hour)), "person", bob.email)
	h.add(t.Add(200*time.Millisecond), opActor, ActionGrantIssued, "", "g_stuck1", "prod-aws", "vendor access",
		"expires_at", FormatTime(t.Add(time.Hour)), "person", bob.email)
	h.add(t.Add(time.Hour+time.Second), sysActor, ActionGrantRevokeFailed, "", "g_stuck1", "prod-aws", "AccessDenied", "cause", "expired", "attempt", "1", "person", bob.email)
	for k := range 14 {
		h.add(at(time.Duration(k)*12*time.Hour+30*time.Minute), sysActor, ActionGrantRevokeFailed, "", "g_stuck1", "prod-aws", "AccessDenied",
			"cause", "expired", "attempt", strconv.Itoa(k+2), "person", bob.email)
	}

	// Never issued: the provider failed; and a process died between write-ahead and issue.
	t = at(100 * time.Hour)
	h.add(t, opActor, ActionGrantIssuing, "", "g_fail01", "prod-db", "probe", "source", "cli", "expires_at", FormatTime(t.Add(time.Hour)), "person", carol.email)
	h.add(t.Add(2*time.Second), sysActor, ActionGrantIssueFailed, "", "g_fail01", "prod-db", "connection refused", "person", carol.email)
	h.add(t.Add(2*time.Second), sysActor, ActionGrantRevokeQueued, "", "g_fail01", "prod-db", "issue failed", "cause", "issue_failed", "person", carol.email)
	h.add(t.Add(3*time.Second), sysActor, ActionGrantRevoked, "", "g_fail01", "prod-db", "", "cause", "issue_failed", "person", carol.email)
	t = at(120 * time.Hour)
	h.add(t, opActor, ActionGrantIssuing, "", "g_intr01", "prod-aws", "probe", "source", "cli", "expires_at", FormatTime(t.Add(time.Hour)), "person", dave.email)
	h.add(t.Add(2*time.Minute), sysActor, ActionGrantRevokeQueued, "", "g_intr01", "prod-aws", "left in issuing", "cause", "issue_interrupted", "person", dave.email)
	h.add(t.Add(2*time.Minute+time.Second), sysActor, ActionGrantRevoked, "", "g_intr01", "prod-aws", "", "cause", "issue_interrupted", "person", dave.email)

	// 20 denials, 8h apart, by erin (even k) and frank (odd k).
	for k := range 20 {
		who := fxPeople[k%4]
		rid := fmt.Sprintf("r_deny%02d", k)
		t := at(time.Duration(k)*8*time.Hour + 3*time.Hour)
		approver := fxErin
		if k%2 == 1 {
			approver = fxFrank
		}
		h.add(t.Add(-10*time.Minute), Actor{Kind: ActorUser, ID: who.slack}, ActionRequestCreated, rid, "", "prod-db", "curious", "source", "slack")
		h.add(t.Add(-10*time.Minute+time.Second), sysActor, ActionOnCallChecked, rid, "", "prod-db", "not on call", "on_call", "false", "path", "approval", "person", who.email)
		h.add(t, Actor{Kind: ActorUser, ID: approver}, ActionRequestDenied, rid, "", "prod-db", "denied by an approver", "approver", approver, "person", who.email)
	}

	// Rejections: dave three times in 40 minutes; carol three times, never three in an hour
	// (with her denials at 83h: 80h, 80h30m, 81h30m, 83h); two unauthenticated API calls.
	for _, d := range []time.Duration{50 * time.Hour, 50*time.Hour + 20*time.Minute, 50*time.Hour + 40*time.Minute} {
		h.add(at(d), Actor{Kind: ActorUser, ID: dave.slack}, ActionRequestRejected, "", "", "prod-dbb", `There is no resource named "prod-dbb".`, "team", "T0ACME")
	}
	for _, d := range []time.Duration{80 * time.Hour, 80*time.Hour + 30*time.Minute, 81*time.Hour + 30*time.Minute} {
		h.add(at(d), Actor{Kind: ActorUser, ID: carol.slack}, ActionRequestRejected, "", "", "prod-db", "A reason is required: say why you need access.", "team", "T0ACME")
	}
	for _, d := range []time.Duration{10 * time.Hour, 10*time.Hour + 30*time.Minute} {
		h.add(at(d), Actor{Kind: ActorUnknown, ID: "10.0.0.9"}, ActionRequestRejected, "", "", "", "admin API: missing or wrong bearer token", "path", "/api/v1/grants", "method", "GET")
	}

	// 5 requests nobody decided.
	for k := range 5 {
		who := fxPeople[k%4]
		rid := fmt.Sprintf("r_expd%02d", k)
		t := at(time.Duration(20+24*k) * time.Hour)
		h.add(t, Actor{Kind: ActorUser, ID: who.slack}, ActionRequestCreated, rid, "", "infra-admins", "someday", "source", "slack")
		h.add(t.Add(time.Second), sysActor, ActionOnCallChecked, rid, "", "infra-admins", "not on call", "on_call", "false", "path", "approval", "person", who.email)
		h.add(t.Add(time.Hour), sysActor, ActionRequestExpired, rid, "", "infra-admins", "nobody decided in time", "person", who.email)
	}
}

// fixtureEvents is the full fixture history, hash-chained.
func fixtureEvents(t testing.TB) []Event {
	t.Helper()
	h := newHistory(20260223)
	h.patternGrants(300, fxSince, 33*time.Minute)
	h.extras(fxSince)
	return h.seal(t, true)
}

// fixtureOptions are the fixture's report options: the same-approver threshold is 7 so that
// one pair (frank approving alice 7 times) sits exactly at it.
var fixtureOptions = ReportOptions{MaxApprovalsPerPair: 7}

// checkReportGolden compares got with testdata/report/name (rewritten with -update).
func checkReportGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "report", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./audit -run %s -update to create it)", err, t.Name())
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got); rerun with -update if intended:\n%s", path, diff)
	}
}

func countAnomalies(r Report) map[AnomalyKind]int {
	out := map[AnomalyKind]int{}
	for _, a := range r.Anomalies {
		out[a.Kind]++
	}
	return out
}

func TestReportFixtureFigures(t *testing.T) {
	events := fixtureEvents(t)
	r := BuildReport(events, fxSince, fxUntil, fixtureOptions)

	type figures struct {
		Grants, NotIssued, People, Resources int
		ByResource, ByPerson, Decisions      []Count
		Approvers, EarlyEnds                 []Count
		Durations                            Durations
		Extensions                           Extensions
		Requests                             RequestCounts
		Revoked, Failures, FailedGrants      int
		Late, NotRevokedOnTime               int
		Anomalies                            map[AnomalyKind]int
		Rows                                 int
	}
	got := figures{
		Grants: r.Grants, NotIssued: r.NotIssued, People: r.People, Resources: r.Resources,
		ByResource: r.ByResource, ByPerson: r.ByPerson, Decisions: r.Decisions, Approvers: r.Approvers, EarlyEnds: r.EarlyEnds,
		Durations: r.Durations, Extensions: r.Extensions, Requests: r.Requests,
		Revoked: r.Revocations.Revoked, Failures: r.Revocations.Failures, FailedGrants: r.Revocations.FailedGrants,
		Late: len(r.Revocations.Late), NotRevokedOnTime: r.Revocations.NotRevokedOnTime,
		Anomalies: countAnomalies(r), Rows: len(r.Rows),
	}
	want := figures{
		// 300 pattern grants; the carried-over and stuck grants were written before the
		// window; g_fail01 and g_intr01 were never issued.
		Grants: 300, NotIssued: 2, People: 4, Resources: 3, Rows: 300,
		// i%3 and i%4 over 0..299: 100 per resource, 75 per person (ties by name).
		ByResource: []Count{{"infra-admins", 100}, {"prod-aws", 100}, {"prod-db", 100}},
		ByPerson:   []Count{{"alice@example.com", 75}, {"bob@example.com", 75}, {"carol@example.com", 75}, {"dave@example.com", 75}},
		// i%10: 5/10 auto, 2/10 approval, 1/10 each page, break-glass, operator.
		Decisions: []Count{{"on_call_auto_approval", 150}, {"approval", 60}, {"page_acknowledged", 30}, {"break_glass", 30}, {"operator", 30}, {"unknown", 0}},
		// erin: i%20 == 5 (15) + i%20 == 15 (15) + i%40 == 16 (8); frank: i%20 == 6 (15) + i%40 == 36 (7).
		Approvers: []Count{{fxErin, 38}, {fxFrank, 22}},
		// i%20 == 1, 2, 7, 14: 15 each.
		EarlyEnds: []Count{{"manual", 15}, {"done", 15}, {"incident_resolved", 15}, {"shift_ended", 15}, {"delivery_failed", 0}, {"other", 0}},
		Durations: Durations{
			// Granted, sorted: 30m×60, 1h×60, 1h30m×60, 2h×48, 2h30m×12 (extended), 4h×60;
			// the 150th and 151st are 1h30m. Grant 4 is the first 4h grant.
			GrantedMedian: 90 * time.Minute, GrantedLongest: 4 * time.Hour, LongestGrantID: "g_000004",
			// Used, over the 299 ended grants (299 is still running): 60 early ends (≤ 20m1s),
			// 60 × 30m2s, then the 1h grants that ran to expiry: 15 × 1h0m2s (i%20 == 6),
			// 15 × 1h1m (16), 15 × 1h5m (11, late): the 150th is 1h1m. Longest: 4h + 2s.
			Ended: 299, UsedMedian: time.Hour + time.Minute, UsedLongest: 4*time.Hour + 2*time.Second,
		},
		// i%25 == 3: i = 3, 28, …, 278: 12 grants, +30m each.
		Extensions: Extensions{Extensions: 12, Grants: 12, Added: 6 * time.Hour},
		// created: 270 grant requests (all but the operator's 30) + 20 denied + 5 expired;
		// rejected: dave 3, carol 3, unauthenticated 2.
		Requests: RequestCounts{Created: 295, Approved: 270, Denied: 20, Rejected: 8, Expired: 5},
		// revoked: 299 pattern grants + g_carry1 + g_fail01 + g_intr01. failures: i%20 == 11
		// and 12 (30) + g_stuck1's 14 in the window; late: i%20 == 11 (15) + g_carry1.
		Revoked: 302, Failures: 44, FailedGrants: 31, Late: 16, NotRevokedOnTime: 1,
		Anomalies: map[AnomalyKind]int{
			AnomalyNotOnCall:          120, // approval 60 + break-glass 30 + operator 30
			AnomalyOutsideShift:       10,  // i%30 == 0
			AnomalyBreakGlass:         30,
			AnomalyRepeatedRejections: 1, // dave
			AnomalySameApprover:       4, // erin→bob 15, frank→carol 15, erin→dave 15, erin→alice 8
			AnomalyNotRevokedOnTime:   1, // g_stuck1
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("report figures differ from the hand-computed ones (-want +got):\n%s", diff)
	}

	// The individual findings, by hand.
	var pairs, bursts, overdue []string
	for _, a := range r.Anomalies {
		switch a.Kind {
		case AnomalySameApprover:
			pairs = append(pairs, fmt.Sprintf("%s→%s×%d", a.Approver, a.Person, a.Count))
		case AnomalyRepeatedRejections:
			bursts = append(bursts, fmt.Sprintf("%s×%d@%s", a.Person, a.Count, FormatTime(a.Time)))
		case AnomalyNotRevokedOnTime:
			overdue = append(overdue, a.GrantID)
		}
	}
	slices.Sort(pairs)
	if diff := cmp.Diff([]string{"U0ERIN→alice@example.com×8", "U0ERIN→bob@example.com×15", "U0ERIN→dave@example.com×15", "U0FRANK→carol@example.com×15"}, pairs); diff != "" {
		t.Errorf("same-approver findings (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"dave@example.com×3@2026-02-25T11:00:00.000Z"}, bursts); diff != "" {
		t.Errorf("rejection bursts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"g_stuck1"}, overdue); diff != "" {
		t.Errorf("not revoked on time (-want +got):\n%s", diff)
	}
	carry := r.Revocations.Late[0]
	if carry.GrantID != "g_carry1" || carry.Lag != 10*time.Minute {
		t.Errorf("first late revocation = %+v, want g_carry1 10m late", carry)
	}
	for _, l := range r.Revocations.Late[1:] {
		if l.Lag != 5*time.Minute {
			t.Errorf("late revocation %s lag %s, want 5m", l.GrantID, l.Lag)
		}
	}
	last := r.Rows[len(r.Rows)-1]
	if last.GrantID != "g_000299" || last.State != RowActive || !last.RevokedAt.IsZero() {
		t.Errorf("last row = %s %s revoked %v, want g_000299 still active (its revocation is after until)", last.GrantID, last.State, last.RevokedAt)
	}
	for _, id := range []string{"g_carry1", "g_stuck1", "g_fail01", "g_intr01"} {
		if slices.ContainsFunc(r.Rows, func(g GrantRow) bool { return g.GrantID == id }) {
			t.Errorf("%s has a row; only grants issued in the window do", id)
		}
	}

	// Spot checks of rows, one per decision kind.
	byID := map[string]GrantRow{}
	for _, g := range r.Rows {
		byID[g.GrantID] = g
	}
	type rowCheck struct {
		Decision                        DecisionKind
		DecidedBy, OnCall, State, Cause string
		RevokedBy, EndedEarly           string
		Granted                         time.Duration
		Anomalies                       []AnomalyKind
		Extensions                      int
		Incident                        string
	}
	checks := map[string]rowCheck{
		"g_000000": {Decision: DecisionOnCall, DecidedBy: "on-call policy (auto-approved)", OnCall: "true", State: RowRevoked, Cause: "expired",
			RevokedBy: "accessbroker (at expiry)", Granted: 30 * time.Minute, Anomalies: []AnomalyKind{AnomalyOutsideShift}},
		"g_000010": {Decision: DecisionOnCall, DecidedBy: "on-call policy (auto-approved)", OnCall: "true", State: RowRevoked, Cause: "expired",
			RevokedBy: "accessbroker (at expiry)", Granted: 30 * time.Minute},
		"g_000002": {Decision: DecisionOnCall, DecidedBy: "on-call policy (auto-approved)", OnCall: "true", State: RowRevoked, Cause: "manual",
			RevokedBy: "carol@example.com", EndedEarly: EndDone, Granted: 90 * time.Minute},
		"g_000016": {Decision: DecisionApproval, DecidedBy: fxErin, OnCall: "false", State: RowRevoked, Cause: "expired",
			RevokedBy: "accessbroker (at expiry)", Granted: time.Hour, Anomalies: []AnomalyKind{AnomalyNotOnCall}},
		"g_000027": {Decision: DecisionPage, DecidedBy: "page acknowledged by dave@example.com", OnCall: "true", State: RowRevoked,
			Cause: "incident_resolved", EndedEarly: EndIncidentResolved, RevokedBy: "pagerduty pagerduty", Granted: 90 * time.Minute, Incident: "PINC0027"},
		"g_000028": {Decision: DecisionBreakGlass, DecidedBy: "alice@example.com (self, break-glass)", OnCall: "false", State: RowRevoked,
			Cause: "expired", RevokedBy: "accessbroker (at expiry)", Granted: 150 * time.Minute, Extensions: 1,
			Anomalies: []AnomalyKind{AnomalyNotOnCall, AnomalyBreakGlass}},
		"g_000009": {Decision: DecisionOperator, DecidedBy: "operator ops-oliver", OnCall: "", State: RowRevoked, Cause: "expired",
			RevokedBy: "accessbroker (at expiry)", Granted: 4 * time.Hour, Anomalies: []AnomalyKind{AnomalyNotOnCall}},
	}
	for id, want := range checks {
		g := byID[id]
		got := rowCheck{Decision: g.Decision, DecidedBy: g.DecidedBy, OnCall: g.OnCall, State: g.State, Cause: g.RevokeCause,
			RevokedBy: g.RevokedBy, EndedEarly: g.EndedEarly, Granted: g.Granted, Anomalies: g.Anomalies, Extensions: g.Extensions, Incident: g.Incident}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("row %s (-want +got):\n%s", id, diff)
		}
	}

	for _, format := range ReportFormats {
		var buf bytes.Buffer
		if err := RenderReport(&buf, r, format); err != nil {
			t.Fatal(err)
		}
		ext := map[string]string{FormatMarkdown: "md", FormatJSON: "json", FormatCSV: "csv"}[format]
		checkReportGolden(t, "fixture."+ext, buf.Bytes())
	}
}

// TestReportIsDeterministic: the same history gives byte-identical output, whatever order
// the events come in and whatever happened after until.
func TestReportIsDeterministic(t *testing.T) {
	events := fixtureEvents(t)
	render := func(evs []Event) string {
		var buf bytes.Buffer
		if err := WriteReportJSON(&buf, BuildReport(evs, fxSince, fxUntil, fixtureOptions)); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	want := render(events)
	reversed := slices.Clone(events)
	slices.Reverse(reversed)
	later := slices.Clone(events)
	next := int64(len(later))
	for k := range 50 { // a busy next week: revocations, rejections, failures
		next++
		later = append(later, Event{Seq: next, Time: fxUntil.Add(time.Duration(k) * time.Minute), Actor: sysActor,
			Action: []Action{ActionGrantRevoked, ActionRequestRejected, ActionGrantRevokeFailed}[k%3], GrantID: "g_stuck1", Resource: "prod-aws"})
	}
	for name, evs := range map[string][]Event{"reversed": reversed, "with events after until": later} {
		if got := render(evs); got != want {
			t.Errorf("%s: report differs from the in-order report", name)
		}
	}
	if evs := slices.Clone(events); render(evs) != want || !slices.EqualFunc(evs, events, func(a, b Event) bool { return a.Seq == b.Seq }) {
		t.Error("BuildReport changed its input")
	}
}

// reportCase builds small histories for the rule tests.
type reportCase struct{ h *history }

func newCase() *reportCase { return &reportCase{h: newHistory(1)} }

// grant adds one auto-approved-looking grant with the given on-call evidence, issued at
// since+at for d, revoked revokeAfter past its expiry (negative: never).
func (c *reportCase) grant(id string, at, d time.Duration, evidence []string, revokeAfter time.Duration) {
	t0 := fxSince.Add(at)
	exp := t0.Add(d)
	owner := Actor{Kind: ActorUser, ID: "U0ALICE", Email: "alice@example.com"}
	c.h.add(t0, owner, ActionGrantIssuing, "", id, "prod-db", "why", append(evidence, "expires_at", FormatTime(exp), "person", "alice@example.com")...)
	c.h.add(t0.Add(time.Second), owner, ActionGrantIssued, "", id, "prod-db", "why", "expires_at", FormatTime(exp), "person", "alice@example.com")
	if revokeAfter >= 0 {
		c.h.add(exp.Add(revokeAfter), sysActor, ActionGrantRevoked, "", id, "prod-db", "", "cause", "expired", "person", "alice@example.com")
	}
}

func (c *reportCase) report(t *testing.T, opts ReportOptions) Report {
	t.Helper()
	return BuildReport(c.h.seal(t, false), fxSince, fxUntil, opts)
}

func findings(r Report, kind AnomalyKind) []string {
	var out []string
	for _, a := range r.Anomalies {
		if a.Kind == kind {
			out = append(out, firstOf(a.GrantID, a.Person))
		}
	}
	return out
}

// TestReportAnomalyRules gives each rule a case that triggers it and one that does not.
func TestReportAnomalyRules(t *testing.T) {
	onCallUntil := func(end time.Duration) []string {
		return append(onCallEvidence(fxSince.Add(end)), "path", "auto_approve")
	}
	rejection := func(c *reportCase, user string, at time.Duration) {
		c.h.add(fxSince.Add(at), Actor{Kind: ActorUser, ID: user}, ActionRequestRejected, "", "", "prod-db", "no")
	}
	approval := func(c *reportCase, approver, requester string, n int) {
		for k := range n {
			rid := fmt.Sprintf("r_%s_%s_%d", approver, requester, k)
			t := fxSince.Add(time.Duration(k+1) * time.Hour)
			c.h.add(t.Add(-time.Minute), Actor{Kind: ActorUser, ID: requester}, ActionRequestCreated, rid, "", "prod-db", "why")
			c.h.add(t, Actor{Kind: ActorUser, ID: approver}, ActionApprovalRecorded, rid, "", "prod-db", "approval 1 of 1", "approver", approver)
		}
	}
	cases := []struct {
		name  string
		kind  AnomalyKind
		opts  ReportOptions
		build func(c *reportCase)
		want  []string
	}{
		{"not on call: false", AnomalyNotOnCall, ReportOptions{}, func(c *reportCase) {
			c.grant("g_a", time.Hour, time.Hour, []string{"on_call", "false", "approvers", "U0BOB", "path", "approval"}, 0)
		}, []string{"g_a"}},
		{"not on call: unknown", AnomalyNotOnCall, ReportOptions{}, func(c *reportCase) {
			c.grant("g_a", time.Hour, time.Hour, []string{"on_call", "unknown", "on_call_error", "pagerduty 503", "path", "approval", "approvers", "U0BOB"}, 0)
		}, []string{"g_a"}},
		{"not on call: no check recorded", AnomalyNotOnCall, ReportOptions{}, func(c *reportCase) {
			c.grant("g_a", time.Hour, time.Hour, []string{"source", "cli"}, 0)
		}, []string{"g_a"}},
		{"on call: no finding", AnomalyNotOnCall, ReportOptions{}, func(c *reportCase) {
			c.grant("g_a", time.Hour, time.Hour, onCallUntil(10*time.Hour), 0)
		}, nil},
		{"outside shift: expires after the shift", AnomalyOutsideShift, ReportOptions{}, func(c *reportCase) {
			c.grant("g_a", time.Hour, time.Hour, onCallUntil(90*time.Minute), 0)
		}, []string{"g_a"}},
		{"outside shift: issued after the shift ended", AnomalyOutsideShift, ReportOptions{}, func(c *reportCase) {
			c.grant("g_a", 2*time.Hour, time.Hour, onCallUntil(time.Hour), 0)
		}, []string{"g_a"}},
		{"inside shift: expires exactly at its end", AnomalyOutsideShift, ReportOptions{}, func(c *reportCase) {
			c.grant("g_a", time.Hour, time.Hour, onCallUntil(2*time.Hour), 0)
		}, nil},
		{"inside shift: open-ended shift", AnomalyOutsideShift, ReportOptions{}, func(c *reportCase) {
			c.grant("g_a", time.Hour, time.Hour, []string{"on_call", "true", "path", "auto_approve"}, 0)
		}, nil},
		{"break-glass", AnomalyBreakGlass, ReportOptions{}, func(c *reportCase) {
			c.grant("g_a", time.Hour, time.Hour, []string{"on_call", "false", "path", "break_glass"}, 0)
			c.grant("g_b", time.Hour, time.Hour, onCallUntil(5*time.Hour), 0)
		}, []string{"g_a"}},
		{"3 rejections in 59m", AnomalyRepeatedRejections, ReportOptions{}, func(c *reportCase) {
			for _, m := range []time.Duration{0, 30, 59} {
				rejection(c, "U0DAVE", 10*time.Hour+m*time.Minute)
			}
		}, []string{"U0DAVE"}},
		{"3 rejections in exactly 1h", AnomalyRepeatedRejections, ReportOptions{}, func(c *reportCase) {
			for _, m := range []time.Duration{0, 30, 60} {
				rejection(c, "U0DAVE", 10*time.Hour+m*time.Minute)
			}
		}, []string{"U0DAVE"}},
		{"3 rejections in 61m", AnomalyRepeatedRejections, ReportOptions{}, func(c *reportCase) {
			for _, m := range []time.Duration{0, 30, 61} {
				rejection(c, "U0DAVE", 10*time.Hour+m*time.Minute)
			}
		}, nil},
		{"3 rejections of 3 people", AnomalyRepeatedRejections, ReportOptions{}, func(c *reportCase) {
			for i, u := range []string{"U0A", "U0B", "U0C"} {
				rejection(c, u, 10*time.Hour+time.Duration(i)*time.Minute)
			}
		}, nil},
		{"6 rejections in an hour are one finding", AnomalyRepeatedRejections, ReportOptions{}, func(c *reportCase) {
			for m := range 6 {
				rejection(c, "U0DAVE", 10*time.Hour+time.Duration(m)*time.Minute)
			}
		}, []string{"U0DAVE"}},
		{"a rejection before the window does not count", AnomalyRepeatedRejections, ReportOptions{}, func(c *reportCase) {
			for _, m := range []time.Duration{-20, 10, 20} {
				rejection(c, "U0DAVE", m*time.Minute)
			}
		}, nil},
		{"approver over N for one requester", AnomalySameApprover, ReportOptions{MaxApprovalsPerPair: 2}, func(c *reportCase) {
			approval(c, "U0BOB", "U0ALICE", 3)
		}, []string{"U0ALICE"}},
		{"approver at N", AnomalySameApprover, ReportOptions{MaxApprovalsPerPair: 2}, func(c *reportCase) {
			approval(c, "U0BOB", "U0ALICE", 2)
			approval(c, "U0CAROL", "U0ALICE", 2)
			approval(c, "U0BOB", "U0DAVE", 2)
		}, nil},
		{"default N is 3", AnomalySameApprover, ReportOptions{}, func(c *reportCase) {
			approval(c, "U0BOB", "U0ALICE", 4)
			approval(c, "U0BOB", "U0DAVE", 3)
		}, []string{"U0ALICE"}},
		{"not revoked 2m after expiry", AnomalyNotRevokedOnTime, ReportOptions{}, func(c *reportCase) {
			c.grant("g_a", 167*time.Hour-2*time.Minute, time.Hour, onCallUntil(200*time.Hour), -1)
		}, []string{"g_a"}},
		{"not revoked, exactly 1m after expiry", AnomalyNotRevokedOnTime, ReportOptions{}, func(c *reportCase) {
			c.grant("g_a", 167*time.Hour-time.Minute, time.Hour, onCallUntil(200*time.Hour), -1)
		}, nil},
		{"revoked late, before until", AnomalyNotRevokedOnTime, ReportOptions{}, func(c *reportCase) {
			c.grant("g_a", 100*time.Hour, time.Hour, onCallUntil(200*time.Hour), time.Hour)
		}, nil},
		{"still running at until", AnomalyNotRevokedOnTime, ReportOptions{}, func(c *reportCase) {
			c.grant("g_a", 167*time.Hour+30*time.Minute, time.Hour, onCallUntil(200*time.Hour), -1)
		}, nil},
		{"carried over and stuck", AnomalyNotRevokedOnTime, ReportOptions{}, func(c *reportCase) {
			c.grant("g_a", -5*time.Hour, time.Hour, onCallUntil(0), -1)
		}, []string{"g_a"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCase()
			tc.build(c)
			r := c.report(t, tc.opts)
			if diff := cmp.Diff(tc.want, findings(r, tc.kind)); diff != "" {
				t.Errorf("%s findings (-want +got):\n%s\nall anomalies: %+v", tc.kind, diff, r.Anomalies)
			}
		})
	}
}

// TestReportLateRevocations checks the 1-minute boundary and the row state of a failing
// revocation.
func TestReportLateRevocations(t *testing.T) {
	c := newCase()
	oc := append(onCallEvidence(fxSince.Add(100*time.Hour)), "path", "auto_approve")
	c.grant("g_on_time", time.Hour, time.Hour, oc, time.Minute)
	c.grant("g_late", 2*time.Hour, time.Hour, oc, time.Minute+time.Millisecond)
	c.grant("g_failing", 3*time.Hour, time.Hour, oc, -1)
	c.h.add(fxSince.Add(4*time.Hour+time.Second), sysActor, ActionGrantRevokeFailed, "", "g_failing", "prod-db", "503", "cause", "expired", "attempt", "1")
	c.h.add(fxSince.Add(5*time.Hour), sysActor, ActionGrantRevokeFailed, "", "g_failing", "prod-db", "503", "cause", "expired", "attempt", "2")
	r := c.report(t, ReportOptions{})
	var late []string
	for _, l := range r.Revocations.Late {
		late = append(late, l.GrantID)
	}
	if diff := cmp.Diff([]string{"g_late"}, late); diff != "" {
		t.Errorf("late revocations (-want +got):\n%s", diff)
	}
	if r.Revocations.Failures != 2 || r.Revocations.FailedGrants != 1 || r.Revocations.NotRevokedOnTime != 1 {
		t.Errorf("revocations = %+v, want 2 failures of 1 grant, 1 not revoked on time", r.Revocations)
	}
	for _, g := range r.Rows {
		if g.GrantID == "g_failing" && g.State != RowRevokeFailed {
			t.Errorf("g_failing state %s, want %s", g.State, RowRevokeFailed)
		}
	}
}

// TestReportEarlyEnds: an owner's /access done, an approver's revoke, and a cause outside
// the known list.
func TestReportEarlyEnds(t *testing.T) {
	c := newCase()
	oc := append(onCallEvidence(fxSince.Add(100*time.Hour)), "path", "auto_approve")
	for i, by := range []Actor{{Kind: ActorUser, ID: "U0ALICE"}, {Kind: ActorUser, ID: "U0BOB"}, {Kind: ActorOperator, ID: "ops"}, sysActor} {
		id := fmt.Sprintf("g_%d", i)
		c.grant(id, time.Duration(i+1)*time.Hour, time.Hour, oc, -1)
		cause := "manual"
		if by.Kind == ActorSystem {
			cause = "something_new"
		}
		t0 := fxSince.Add(time.Duration(i+1)*time.Hour + 10*time.Minute)
		c.h.add(t0, by, ActionGrantRevokeQueued, "", id, "prod-db", "stop", "cause", cause)
		c.h.add(t0.Add(time.Second), sysActor, ActionGrantRevoked, "", id, "prod-db", "", "cause", cause)
	}
	r := c.report(t, ReportOptions{})
	want := []Count{{"manual", 2}, {"done", 1}, {"incident_resolved", 0}, {"shift_ended", 0}, {"delivery_failed", 0}, {"other", 1}}
	if diff := cmp.Diff(want, r.EarlyEnds); diff != "" {
		t.Errorf("early ends (-want +got):\n%s", diff)
	}
}

func TestReportEmptyWeek(t *testing.T) {
	r := BuildReport(nil, fxSince, fxUntil, ReportOptions{})
	var md, js, cs bytes.Buffer
	if err := WriteReportMarkdown(&md, r); err != nil {
		t.Fatal(err)
	}
	if err := WriteReportJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	if err := WriteReportCSV(&cs, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "No grants this week") {
		t.Errorf("markdown of an empty week does not say so:\n%s", md.String())
	}
	var decoded map[string]any
	if err := json.Unmarshal(js.Bytes(), &decoded); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"rows", "anomalies", "by_resource", "by_person", "approvers"} {
		if v, ok := decoded[k].([]any); !ok || len(v) != 0 {
			t.Errorf("JSON %s = %#v, want []", k, decoded[k])
		}
	}
	if got := strings.Count(cs.String(), "\n"); got != 1 {
		t.Errorf("CSV of an empty week has %d lines, want the header only", got)
	}
	checkReportGolden(t, "empty.md", md.Bytes())
}

// TestReportEscapesOutsideText: a hostile reason cannot break the Markdown table, inject a
// link or HTML, or run as a spreadsheet formula.
func TestReportEscapesOutsideText(t *testing.T) {
	c := newCase()
	c.h.add(fxSince.Add(time.Hour), opActor, ActionGrantIssuing, "", "g_x", "prod-db", "=HYPERLINK(\"http://evil\")|<script>x</script>\n[click](http://evil) `code`",
		"source", "cli", "expires_at", FormatTime(fxSince.Add(2*time.Hour)), "person", "@mallory")
	c.h.add(fxSince.Add(time.Hour+time.Second), opActor, ActionGrantIssued, "", "g_x", "prod-db", "", "expires_at", FormatTime(fxSince.Add(2*time.Hour)))
	r := c.report(t, ReportOptions{})
	var md, cs bytes.Buffer
	if err := WriteReportMarkdown(&md, r); err != nil {
		t.Fatal(err)
	}
	if err := WriteReportCSV(&cs, r); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"<script>", "[click](", "|<", "\n[click"} {
		if strings.Contains(md.String(), bad) {
			t.Errorf("markdown contains %q unescaped", bad)
		}
	}
	if !strings.Contains(md.String(), `\<script\>`) {
		t.Errorf("markdown lost the reason:\n%s", md.String())
	}
	if !strings.Contains(cs.String(), `"'=HYPERLINK(""http://evil"")`) || !strings.Contains(cs.String(), ",'@mallory,") {
		t.Errorf("CSV cells starting with = or @ are not defused:\n%s", cs.String())
	}
}

// memSearcher is a store's Search over an in-memory log (Query.Select), counting calls.
type memSearcher struct {
	events []Event
	calls  int
}

func (m *memSearcher) Search(_ context.Context, q Query) ([]Event, error) {
	m.calls++
	return q.Select(m.events)
}

func TestReadReport(t *testing.T) {
	h := newHistory(7)
	h.patternGrants(40, fxSince, 4*time.Hour)
	// A grant whose revocation started failing 10 days before the window and still fails,
	// and one whose revocation was left undone for 9 days and finally happens, 3 days late,
	// inside the window: both were written ahead long before the lookback.
	t0 := fxSince.Add(-10 * 24 * time.Hour)
	h.add(t0, opActor, ActionGrantIssuing, "", "g_ancient", "prod-db", "old", "source", "cli", "expires_at", FormatTime(t0.Add(time.Hour)), "person", "bob@example.com")
	h.add(t0.Add(time.Second), opActor, ActionGrantIssued, "", "g_ancient", "prod-db", "old", "expires_at", FormatTime(t0.Add(time.Hour)))
	for k := range 30 {
		h.add(t0.Add(time.Hour+time.Duration(k)*12*time.Hour), sysActor, ActionGrantRevokeFailed, "", "g_ancient", "prod-db", "503", "cause", "expired")
	}
	t1 := fxSince.Add(-9 * 24 * time.Hour)
	h.add(t1, opActor, ActionGrantIssuing, "", "g_forgot", "prod-db", "old", "source", "cli", "expires_at", FormatTime(fxSince.Add(-3*24*time.Hour)), "person", "bob@example.com")
	h.add(t1.Add(time.Second), opActor, ActionGrantIssued, "", "g_forgot", "prod-db", "old")
	h.add(fxSince.Add(time.Hour), sysActor, ActionGrantRevoked, "", "g_forgot", "prod-db", "", "cause", "expired")
	// Noise long before the lookback, which is never read.
	for k := range 20 {
		h.add(fxSince.Add(-30*24*time.Hour+time.Duration(k)*time.Minute), sysActor, ActionWebhookRejected, "", "", "", "bad signature")
	}
	all := h.seal(t, false)
	s := &memSearcher{events: all}
	got, err := ReadReport(t.Context(), s, fxSince, fxUntil, fixtureOptions)
	if err != nil {
		t.Fatal(err)
	}
	want := BuildReport(all, fxSince, fxUntil, fixtureOptions)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ReadReport differs from BuildReport over the whole log (-want +got):\n%s", diff)
	}
	overdue := findings(got, AnomalyNotRevokedOnTime)
	if !slices.Contains(overdue, "g_ancient") || slices.Contains(overdue, "g_forgot") {
		t.Errorf("not revoked on time = %v, want g_ancient (still failing) and not g_forgot (revoked)", overdue)
	}
	if !slices.ContainsFunc(got.Revocations.Late, func(l LateRevocation) bool { return l.GrantID == "g_forgot" && l.Lag == 3*24*time.Hour+time.Hour }) {
		t.Errorf("late revocations %+v lack g_forgot, 3 days 1 hour late", got.Revocations.Late)
	}
	if _, err := ReadReport(t.Context(), s, fxUntil, fxSince, ReportOptions{}); err == nil {
		t.Error("ReadReport accepted since after until")
	}
}

// TestReadReportPages reads more than one page and equals the in-memory report.
func TestReadReportPages(t *testing.T) {
	h := newHistory(9)
	h.patternGrants(2500, fxSince, 4*time.Minute) // about 16 000 events
	all := h.seal(t, false)
	s := &memSearcher{events: all}
	got, err := ReadReport(t.Context(), s, fxSince, fxUntil, ReportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.calls < 2 || got.Grants == 0 {
		t.Fatalf("%d searches for %d grants, want several pages", s.calls, got.Grants)
	}
	if diff := cmp.Diff(BuildReport(all, fxSince, fxUntil, ReportOptions{}), got); diff != "" {
		t.Errorf("paged report differs (-want +got):\n%s", diff)
	}
}

func TestReportBuilderRefusesDisorder(t *testing.T) {
	rb := NewReportBuilder(fxSince, fxUntil, ReportOptions{}, 0)
	rb.Add(Event{Seq: 2, Time: fxSince, Action: ActionRequestRejected}, Event{Seq: 1, Time: fxSince, Action: ActionRequestRejected})
	defer func() {
		if recover() == nil {
			t.Error("Report accepted events out of seq order")
		}
	}()
	rb.Report()
}

// benchEvents builds about 1M events for 100k grants over one week: the fixture pattern with
// grants 6s apart, padded with requests that expired undecided (3 events each).
func benchEvents(b *testing.B) []Event {
	b.Helper()
	h := newHistory(42)
	h.patternGrants(100_000, fxSince, 6*time.Second)
	for k := 0; len(h.events) < 1_000_000; k++ {
		rid := fmt.Sprintf("r_pad%07d", k)
		t := fxSince.Add(time.Duration(k%10_000) * time.Minute)
		who := fxPeople[k%4]
		h.add(t, Actor{Kind: ActorUser, ID: who.slack}, ActionRequestCreated, rid, "", "infra-admins", "someday", "source", "slack")
		h.add(t.Add(time.Second), sysActor, ActionOnCallChecked, rid, "", "infra-admins", "not on call", "on_call", "false", "person", who.email)
		h.add(t.Add(time.Hour), sysActor, ActionRequestExpired, rid, "", "infra-admins", "nobody decided", "person", who.email)
	}
	return h.seal(b, false)
}

// BenchmarkBuildReport: the pure report over 100k grants / 1M audit events in memory.
func BenchmarkBuildReport(b *testing.B) {
	events := benchEvents(b)
	b.ReportMetric(float64(len(events)), "events")
	b.ResetTimer()
	var r Report
	for b.Loop() {
		r = BuildReport(events, fxSince, fxUntil, ReportOptions{})
	}
	b.ReportMetric(float64(r.Grants), "grants")
}

// BenchmarkRenderReport: rendering the 100k-grant report in each format.
func BenchmarkRenderReport(b *testing.B) {
	r := BuildReport(benchEvents(b), fxSince, fxUntil, ReportOptions{})
	for _, format := range ReportFormats {
		b.Run(format, func(b *testing.B) {
			for b.Loop() {
				var buf bytes.Buffer
				if err := RenderReport(&buf, r, format); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestReportCarriesLatestCheckpoint: the markdown and JSON reports name the newest signed
// checkpoint and how many witnesses hold it, so a reader can hold the log to it later.
func TestReportCarriesLatestCheckpoint(t *testing.T) {
	r := BuildReport(nil, fxSince, fxUntil, ReportOptions{})
	cp := SignCheckpoint(testKey(), 4211, Hash{0xab, 0xcd, 0xef}, fxUntil.Add(-time.Minute))
	r.Checkpoint = &ReportCheckpoint{Seq: cp.Seq, Hash: cp.Hash, Time: cp.Time, Witnesses: 2, Published: 1}
	var md, js bytes.Buffer
	if err := WriteReportMarkdown(&md, r); err != nil {
		t.Fatal(err)
	}
	if err := WriteReportJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	checkReportGolden(t, "checkpoint.md", md.Bytes())
	checkReportGolden(t, "checkpoint.json", js.Bytes())
	if got, want := r.Checkpoint.String(), "#4211 abcdef000000… at "+FormatTime(cp.Time)+"; published to 1 of 2 witnesses"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// TestReportCountsRefusedClicksApart: a refused Approve/Deny click (request.rejected with
// EvidenceRefusedClick) is a refused click, not a rejected request, and does not count toward
// a person's repeated rejections; a refused /access command still is a rejected request.
func TestReportCountsRefusedClicksApart(t *testing.T) {
	h := newHistory(1)
	bob := Actor{Kind: ActorUser, ID: "U0BOB"}
	h.add(fxSince.Add(time.Hour), bob, ActionRequestCreated, "r_self", "", "infra-admins", "deploy the fix")
	for k := range 5 {
		h.add(fxSince.Add(time.Hour+time.Duration(k+1)*time.Minute), bob, ActionRequestRejected, "r_self", "", "infra-admins",
			"You cannot approve or deny your own request; another approver must decide.", EvidenceRefusedClick, "approve")
	}
	h.add(fxSince.Add(2*time.Hour), bob, ActionRequestRejected, "", "", "prod-dbb", `There is no resource named "prod-dbb".`)
	r := BuildReport(h.seal(t, false), fxSince, fxUntil, ReportOptions{RejectionBurst: 3})
	if want := (RequestCounts{Created: 1, Rejected: 1, RefusedClicks: 5}); r.Requests != want {
		t.Errorf("request counts %+v, want %+v", r.Requests, want)
	}
	if got := findings(r, AnomalyRepeatedRejections); len(got) > 0 {
		t.Errorf("refused clicks counted as repeated rejections: %v", got)
	}
	var md strings.Builder
	if err := RenderReport(&md, r, FormatMarkdown); err != nil {
		t.Fatal(err)
	}
	if want := "| refused approve/deny clicks (requester or non-approver; the request stays open) | 5 |"; !strings.Contains(md.String(), want) {
		t.Errorf("the Markdown report lacks %q:\n%s", want, md.String())
	}
}

// TestReportNamesApproversByEmail: an approver whose approval event carries their email is
// named by it, as people are, in the approver counts and the grant rows.
func TestReportNamesApproversByEmail(t *testing.T) {
	c := newCase()
	c.h.add(fxSince.Add(time.Minute), Actor{Kind: ActorUser, ID: "U0CAROL", Email: "carol@example.com"}, ActionApprovalRecorded,
		"r_a", "", "prod-db", "approval 1 of 1", "approver", "U0CAROL")
	c.grant("g_a", 2*time.Minute, time.Hour, []string{"on_call", "false", "approvers", "U0CAROL", "path", "approval"}, 0)
	r := c.report(t, ReportOptions{})
	if want := []Count{{Name: "carol@example.com", Count: 1}}; !cmp.Equal(r.Approvers, want) {
		t.Errorf("approvers %+v, want %+v", r.Approvers, want)
	}
	var md strings.Builder
	if err := RenderReport(&md, r, FormatMarkdown); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(md.String(), "U0CAROL") {
		t.Errorf("the report names carol by Slack id although her email is known:\n%s", md.String())
	}
}
