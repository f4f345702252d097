package audit

// The report's renderers: Markdown, JSON and CSV.

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

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
	"sessions", "statements", "connected", "write_statements", "ddl_statements", "failed_statements",
	"week_reviewed",
	"aws_calls", "aws_writes", "aws_denied", "github_actions", "activity_after_revocation",
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
			strconv.Itoa(g.Use.Sessions), strconv.Itoa(g.Use.Statements), FormatDuration(g.Use.Connected),
			strconv.Itoa(g.Use.Writes), strconv.Itoa(g.Use.DDL), strconv.Itoa(g.Use.Failed),
			reviewOf(r.Reviews, g.IssuedAt),
			strconv.Itoa(g.Activity.AWSCalls), strconv.Itoa(g.Activity.AWSWrites), strconv.Itoa(g.Activity.AWSDenied),
			strconv.Itoa(g.Activity.GitHubActions), strconv.Itoa(g.Activity.AfterRevocation),
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
	type use struct {
		Sessions         int    `json:"sessions"`
		Statements       int    `json:"statements"`
		Connected        string `json:"connected"`
		Writes           int    `json:"write_statements"`
		DDL              int    `json:"ddl_statements"`
		Failed           int    `json:"failed_statements"`
		PermissionDenied int    `json:"permission_denied_statements"`
	}
	toUse := func(u SessionUse) use {
		return use{Sessions: u.Sessions, Statements: u.Statements, Connected: FormatDuration(u.Connected),
			Writes: u.Writes, DDL: u.DDL, Failed: u.Failed, PermissionDenied: u.PermissionDenied}
	}
	type activity struct {
		AWSCalls        int `json:"aws_calls"`
		AWSWrites       int `json:"aws_writes"`
		AWSDenied       int `json:"aws_denied"`
		GitHubActions   int `json:"github_actions"`
		AfterRevocation int `json:"after_revocation"`
	}
	toActivity := func(u ActivityUse) activity {
		return activity{AWSCalls: u.AWSCalls, AWSWrites: u.AWSWrites, AWSDenied: u.AWSDenied, GitHubActions: u.GitHubActions, AfterRevocation: u.AfterRevocation}
	}
	type anomaly struct {
		Kind      AnomalyKind `json:"kind"`
		Time      string      `json:"time"`
		Person    string      `json:"person,omitempty"`
		Approver  string      `json:"approver,omitempty"`
		Role      string      `json:"role,omitempty"`
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
		Use          use           `json:"sessions"`
		Activity     activity      `json:"activity"`
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
		Sessions    use           `json:"sessions"`
		Activity    activity      `json:"activity"`
		LoginFails  int           `json:"login_failures"`
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
		Sessions: toUse(r.Sessions), Activity: toActivity(r.Activity), LoginFails: r.LoginFailures,
	}
	if c := r.Checkpoint; c != nil {
		out.Checkpoint = &checkpoint{Seq: c.Seq, Hash: c.Hash, Time: stamp(c.Time), Witnesses: c.Witnesses, Published: c.Published}
	}
	for _, l := range r.Revocations.Late {
		out.Revocations.Late = append(out.Revocations.Late, late{GrantID: l.GrantID, Resource: l.Resource, Person: l.Person,
			ExpiresAt: stamp(l.ExpiresAt), RevokedAt: stamp(l.RevokedAt), Lag: FormatDuration(l.Lag), Cause: l.Cause})
	}
	toAnomaly := func(a Anomaly) anomaly {
		return anomaly{Kind: a.Kind, Time: stamp(a.Time), Person: a.Person, Approver: a.Approver, Role: a.Role,
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
			RevokedBy: g.RevokedBy, RevokeReason: g.RevokeReason, EndedEarly: g.EndedEarly, Use: toUse(g.Use), Activity: toActivity(g.Activity), Anomalies: kinds}
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
	if r.Reviews != nil {
		if err := list("reviews", len(r.Reviews), func(i int) any { return r.Reviews[i] }); err != nil {
			return err
		}
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
	if r.Reviews != nil {
		p("## Reviews\n\n")
		if len(r.Reviews) == 0 {
			p("No weekly summary was posted for this window.\n\n")
		}
		for _, wr := range r.Reviews {
			status := mdCell(wr.Status())
			if !wr.Reviewed() {
				status = "**NOT REVIEWED**"
			}
			p("- %s (%s – %s, posted %s): %s\n", mdCell(wr.Week), FormatTime(wr.Since), FormatTime(wr.Until), FormatTime(wr.PostedAt), status)
		}
		p("\n")
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
	su := r.Sessions
	p("| database sessions through the proxy: sessions / statements / connected | %d / %d / %s |\n", su.Sessions, su.Statements, FormatDuration(su.Connected))
	p("| statements: write / DDL / failed (permission denied) | %d / %d / %d (%d) |\n", su.Writes, su.DDL, su.Failed, su.PermissionDenied)
	p("| refused logins at the database proxy | %d |\n", r.LoginFailures)
	act := r.Activity
	p("| upstream activity: AWS calls (writes / denied) / GitHub actions | %d (%d / %d) / %d |\n", act.AWSCalls, act.AWSWrites, act.AWSDenied, act.GitHubActions)
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

	p("## Database sessions\n\n")
	if su.Sessions == 0 {
		p("None.\n\n")
	} else {
		p("| grant | person | resource | sessions | statements | connected | write | DDL | failed | permission denied |\n")
		p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
		for _, g := range r.Rows {
			if u := g.Use; u.Sessions > 0 || u.Statements > 0 {
				p("| `%s` | %s | %s | %d | %d | %s | %d | %d | %d | %d |\n", g.GrantID, mdCell(g.Person), mdCell(g.Resource),
					u.Sessions, u.Statements, FormatDuration(u.Connected), u.Writes, u.DDL, u.Failed, u.PermissionDenied)
			}
		}
		p("\n")
	}

	p("## Upstream activity\n\n")
	if act.total() == 0 {
		p("None.\n\n")
	} else {
		p("| grant | person | resource | AWS calls | AWS writes | AWS denied | GitHub actions | after revocation |\n")
		p("| --- | --- | --- | --- | --- | --- | --- | --- |\n")
		for _, g := range r.Rows {
			if u := g.Activity; u.total() > 0 {
				p("| `%s` | %s | %s | %d | %d | %d | %d | %d |\n", g.GrantID, mdCell(g.Person), mdCell(g.Resource),
					u.AWSCalls, u.AWSWrites, u.AWSDenied, u.GitHubActions, u.AfterRevocation)
			}
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
			who := a.Person
			if a.Role != "" {
				who = strings.TrimSpace("role " + a.Role + " " + who)
			}
			p("| %s | %s | %s | %s | %s | %s |\n", a.Kind, stamp(a.Time), mdCell(who), mdCell(a.Resource), g, mdCell(a.Detail))
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
