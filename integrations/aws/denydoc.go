package awsprov

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// The revocation policy.
//
// Revoking an STS session early means denying it: STS credentials cannot be invalidated, but
// IAM evaluates the role's policies on every request, so an inline Deny on the role whose
// condition matches exactly one session stops that session and no other. accessbroker keeps
// all such denies in one inline policy on the role, DenyPolicyName, shaped like this (compact
// JSON in the real document):
//
//		{"Version":"2012-10-17","Statement":[
//		  {"Sid":"AccessbrokerExp1735790400","Effect":"Deny","Action":"*","Resource":"*",
//		   "Condition":{"StringEquals":{"aws:userid":["AROAEXAMPLE:alice@example.com-g_k3x…", …]}}},
//		  {"Sid":"AccessbrokerOlderUntil1735833600","Effect":"Deny","Action":"*","Resource":"*",
//		   "Condition":{"DateLessThan":{"aws:TokenIssueTime":"2025-01-02T00:00:01Z"}}}
//		]}
//
//	  - aws:userid of a role session is "ROLEID:role-session-name" (documented), and session
//	    names are unique per grant, so a value matches exactly one session.
//	  - Sessions are grouped by expiry hour: "AccessbrokerExp<unix>" holds the sessions whose STS
//	    credentials (and console session, which accessbroker requests with the same duration)
//	    expire at or before that hour. Once the hour (plus a 5-minute margin for clock skew) has
//	    passed, every session in it would be refused by STS anyway, so the statement is pruned
//	    the next time the policy is written. Grouping keeps a statement's overhead (~130
//	    characters) per hour rather than per session: a session costs ~60–90 characters, so
//	    about 100–160 revoked-but-unexpired sessions fit in IAM's 10,240-character budget.
//	  - When the budget is exhausted, the document is replaced by the documented "revoke older
//	    sessions" form (aws:TokenIssueTime DateLessThan now): every session of the role issued
//	    until now is cut, including other people's, which is reported as collateral. All the
//	    per-session entries are then redundant and dropped. The statement's Sid carries when it
//	    can go: 12 hours later (the longest STS or console session), after which nothing issued
//	    before the cutoff can still be alive.
//	  - Statements accessbroker did not write are kept as they are.
const (
	// DenyPolicyName is the inline policy accessbroker keeps on an aws-sts role.
	DenyPolicyName = "accessbroker-revoked-sessions"
	// DefaultRolePolicySizeLimit is IAM's aggregate inline policy size per role (characters,
	// whitespace not counted).
	DefaultRolePolicySizeLimit = 10240

	sidExpPrefix   = "AccessbrokerExp"
	sidOlderPrefix = "AccessbrokerOlderUntil"
	bucketWidth    = time.Hour
	pruneMargin    = 5 * time.Minute
)

// denyDoc is the parsed revocation policy.
type denyDoc struct {
	older   *olderSessions
	buckets map[int64][]string // expiry bucket end (unix seconds) -> sorted aws:userid values
	foreign []json.RawMessage  // statements accessbroker did not write
}

// olderSessions denies every session issued before cutoff, until until.
type olderSessions struct{ cutoff, until time.Time }

func newDenyDoc() *denyDoc { return &denyDoc{buckets: map[int64][]string{}} }

// decodePolicyDocument undoes IAM's RFC 3986 encoding of returned policy documents (a
// document that is already plain JSON is returned as is).
func decodePolicyDocument(s string) (string, error) {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "{") {
		return t, nil
	}
	out, err := url.PathUnescape(t)
	if err != nil {
		return "", fmt.Errorf("decode policy document: %w", err)
	}
	return out, nil
}

type rawStatement struct {
	Sid       string                                `json:"Sid"`
	Effect    string                                `json:"Effect"`
	Action    json.RawMessage                       `json:"Action"`
	Resource  json.RawMessage                       `json:"Resource"`
	Condition map[string]map[string]json.RawMessage `json:"Condition"`
}

// parseDenyDoc reads the policy; an empty string is an empty document.
func parseDenyDoc(doc string) (*denyDoc, error) {
	d := newDenyDoc()
	if strings.TrimSpace(doc) == "" {
		return d, nil
	}
	var top struct {
		Statement json.RawMessage `json:"Statement"`
	}
	if err := json.Unmarshal([]byte(doc), &top); err != nil {
		return nil, fmt.Errorf("policy %s is not JSON: %w", DenyPolicyName, err)
	}
	var stmts []json.RawMessage
	if t := strings.TrimSpace(string(top.Statement)); strings.HasPrefix(t, "{") {
		stmts = []json.RawMessage{top.Statement}
	} else if t != "" && t != "null" {
		if err := json.Unmarshal(top.Statement, &stmts); err != nil {
			return nil, fmt.Errorf("policy %s: Statement: %w", DenyPolicyName, err)
		}
	}
	for _, raw := range stmts {
		var st rawStatement
		if err := json.Unmarshal(raw, &st); err == nil && st.Effect == "Deny" {
			if end, ok := sidNumber(st.Sid, sidExpPrefix); ok && len(st.Condition) == 1 {
				if ids, ok := stringValues(st.Condition["StringEquals"]["aws:userid"]); ok {
					d.buckets[end] = mergeSorted(d.buckets[end], ids...)
					continue
				}
			}
			if until, ok := sidNumber(st.Sid, sidOlderPrefix); ok && len(st.Condition) == 1 {
				if vs, ok := stringValues(st.Condition["DateLessThan"]["aws:TokenIssueTime"]); ok && len(vs) == 1 {
					if cutoff, err := time.Parse(time.RFC3339, vs[0]); err == nil {
						d.older = &olderSessions{cutoff: cutoff.UTC(), until: time.Unix(until, 0).UTC()}
						continue
					}
				}
			}
		}
		d.foreign = append(d.foreign, raw)
	}
	return d, nil
}

func sidNumber(sid, prefix string) (int64, bool) {
	rest, ok := strings.CutPrefix(sid, prefix)
	if !ok || rest == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	return n, err == nil
}

func stringValues(raw json.RawMessage) ([]string, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, true
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return many, true
	}
	return nil, false
}

func mergeSorted(list []string, add ...string) []string {
	for _, a := range add {
		i := sort.SearchStrings(list, a)
		if i < len(list) && list[i] == a {
			continue
		}
		list = append(list, "")
		copy(list[i+1:], list[i:])
		list[i] = a
	}
	return list
}

// bucketEnd is the end of the expiry hour holding t (t itself when on the hour).
func bucketEnd(t time.Time) int64 {
	end := t.UTC().Truncate(bucketWidth)
	if end.Before(t) {
		end = end.Add(bucketWidth)
	}
	return end.Unix()
}

// covers reports whether the document already denies the session with this aws:userid (and,
// when known, issue time) at now.
func (d *denyDoc) covers(userID string, issuedAt, now time.Time) bool {
	for _, ids := range d.buckets {
		i := sort.SearchStrings(ids, userID)
		if i < len(ids) && ids[i] == userID {
			return true
		}
	}
	// The issue time accessbroker records is derived from the STS expiry, which may be
	// truncated to the second; stay on the safe side of the cutoff (a redundant entry costs
	// only space).
	return d.older != nil && !issuedAt.IsZero() && issuedAt.Add(time.Second).Before(d.older.cutoff) && now.Before(d.older.until)
}

// prune drops the statements whose sessions have all expired; it returns how many sessions
// (and older-sessions statements) were dropped.
func (d *denyDoc) prune(now time.Time) int {
	n := 0
	for end, ids := range d.buckets {
		if now.After(time.Unix(end, 0).Add(pruneMargin)) {
			n += len(ids)
			delete(d.buckets, end)
		}
	}
	if d.older != nil && now.After(d.older.until.Add(pruneMargin)) {
		d.older = nil
		n++
	}
	return n
}

// add denies the session with this aws:userid until its expiry.
func (d *denyDoc) add(userID string, expiry time.Time) {
	end := bucketEnd(expiry)
	d.buckets[end] = mergeSorted(d.buckets[end], userID)
}

// sessions counts the per-session entries.
func (d *denyDoc) sessions() int {
	n := 0
	for _, ids := range d.buckets {
		n += len(ids)
	}
	return n
}

// fallback returns the "revoke older sessions" document that replaces d when d no longer
// fits: it denies every session issued before the cutoff for the longest session lifetime,
// and keeps foreign statements. The cutoff is now plus one second (aws:TokenIssueTime has
// second precision), and at least two seconds after notBefore: the issue time, in AWS's
// clock, of the session being revoked, so that a broker clock running behind AWS's cannot
// leave that session out.
func (d *denyDoc) fallback(now, notBefore time.Time) *denyDoc {
	cutoff := now.UTC().Truncate(time.Second).Add(time.Second)
	if floor := notBefore.UTC().Truncate(time.Second).Add(2 * time.Second); cutoff.Before(floor) {
		cutoff = floor
	}
	return &denyDoc{
		older:   &olderSessions{cutoff: cutoff, until: cutoff.Add(maxConsoleSession)},
		buckets: map[int64][]string{},
		foreign: d.foreign,
	}
}

type outStatement struct {
	Sid       string                    `json:"Sid"`
	Effect    string                    `json:"Effect"`
	Action    string                    `json:"Action"`
	Resource  string                    `json:"Resource"`
	Condition map[string]map[string]any `json:"Condition"`
}

// render writes the document as compact JSON, statements in a stable order: older sessions,
// expiry buckets oldest first, then foreign statements. It is "" when nothing is left.
func (d *denyDoc) render() string {
	var stmts []any
	if d.older != nil {
		stmts = append(stmts, outStatement{
			Sid: sidOlderPrefix + strconv.FormatInt(d.older.until.Unix(), 10), Effect: "Deny", Action: "*", Resource: "*",
			Condition: map[string]map[string]any{"DateLessThan": {"aws:TokenIssueTime": d.older.cutoff.UTC().Format(time.RFC3339)}},
		})
	}
	ends := make([]int64, 0, len(d.buckets))
	for end := range d.buckets {
		ends = append(ends, end)
	}
	sort.Slice(ends, func(i, j int) bool { return ends[i] < ends[j] })
	for _, end := range ends {
		stmts = append(stmts, outStatement{
			Sid: sidExpPrefix + strconv.FormatInt(end, 10), Effect: "Deny", Action: "*", Resource: "*",
			Condition: map[string]map[string]any{"StringEquals": {"aws:userid": d.buckets[end]}},
		})
	}
	for _, f := range d.foreign {
		stmts = append(stmts, f)
	}
	if len(stmts) == 0 {
		return ""
	}
	b, err := json.Marshal(struct {
		Version   string `json:"Version"`
		Statement []any  `json:"Statement"`
	}{"2012-10-17", stmts})
	if err != nil {
		panic(fmt.Sprintf("awsprov: render deny policy: %v", err)) // only strings and maps
	}
	return string(b)
}

// policySize is the size IAM counts: characters other than whitespace.
func policySize(doc string) int {
	n := 0
	for _, r := range doc {
		if !unicode.IsSpace(r) {
			n++
		}
	}
	return n
}
