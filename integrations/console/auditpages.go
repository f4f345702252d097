package console

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
)

// auditorsOnly refuses the audit pages to anyone but auditors (recorded).
func (c *Console) auditorsOnly(w http.ResponseWriter, r *http.Request, v Viewer, what string) bool {
	if v.Auditor {
		return true
	}
	c.refuse(w, r, &v, broker.Rejection{Reason: fmt.Sprintf("Only auditors (console.auditors) may see %s. Your own grants and requests are under Grants.", what),
		Evidence: map[string]string{"refused": "not_auditor"}})
	return false
}

// searchForm is the audit search's filters: the CLI's (audit search) plus the cursor.
type searchForm struct {
	Actor, Resource, Action, Grant, Request, Since, Until string
	Limit                                                 int
	After                                                 int64
	Oldest                                                bool
}

func (f searchForm) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"actor": f.Actor, "resource": f.Resource, "action": f.Action, "grant": f.Grant,
		"request": f.Request, "since": f.Since, "until": f.Until} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if f.Limit != 0 && f.Limit != 50 {
		v.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.Oldest {
		v.Set("order", "oldest")
	}
	return v
}

func (c *Console) parseSearch(r *http.Request) (searchForm, audit.Query, error) {
	q := r.URL.Query()
	f := searchForm{Actor: strings.TrimSpace(q.Get("actor")), Resource: strings.TrimSpace(q.Get("resource")), Action: strings.TrimSpace(q.Get("action")),
		Grant: strings.TrimSpace(q.Get("grant")), Request: strings.TrimSpace(q.Get("request")), Since: q.Get("since"), Until: q.Get("until"),
		Limit: 50, Oldest: q.Get("order") == "oldest"}
	aq := audit.Query{Actor: f.Actor, Resource: f.Resource, Action: audit.Action(f.Action), GrantID: f.Grant, RequestID: f.Request, Descending: !f.Oldest}
	now := c.cfg.Clock.Now()
	var err error
	if aq.Since, err = audit.ParseWhen(f.Since, now); err != nil {
		return f, aq, fmt.Errorf("since: %w", err)
	}
	if aq.Until, err = audit.ParseWhen(f.Until, now); err != nil {
		return f, aq, fmt.Errorf("until: %w", err)
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			return f, aq, fmt.Errorf("limit %q: use a number from 1 to 500", truncate(s, 12))
		}
		f.Limit = n
	}
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			return f, aq, fmt.Errorf("after %q: the cursor is the seq of the last event of the previous page", truncate(s, 20))
		}
		f.After = n
	}
	aq.AfterSeq = f.After
	aq.Limit = f.Limit
	if err := aq.Validate(); err != nil {
		return f, aq, err
	}
	return f, aq, nil
}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request, v Viewer) {
	if !c.auditorsOnly(w, r, v, "the audit log") {
		return
	}
	f, q, err := c.parseSearch(r)
	d := struct {
		common
		Form     searchForm
		Actions  []string
		Steps    []step
		Rows     template.HTML // Steps rendered (fastrender.go)
		Next     string
		First    string
		Export   string
		Searched bool
	}{common: c.common(&v, "Audit log"), Form: f, Actions: actionNames()}
	if err != nil {
		d.Error = capitalize(err.Error()) + "."
		c.render(w, r, http.StatusBadRequest, "audit", d)
		return
	}
	q.Limit = f.Limit + 1 // one more tells whether there is a next page
	evs, err := c.cfg.Audit.Search(r.Context(), q)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	more := len(evs) > f.Limit
	if more {
		evs = evs[:f.Limit]
	}
	m := newMarker(c.chainState())
	d.Steps = make([]step, 0, len(evs))
	for _, e := range evs {
		s := headOf(e) // the rows show no evidence
		s.Mark = m.at(s.Seq, s.hashOK)
		d.Steps = append(d.Steps, s)
	}
	d.Rows = auditRowsHTML(d.Steps)
	vals := f.values()
	d.First = Prefix + "audit?" + vals.Encode()
	if more && len(evs) > 0 {
		nv := f.values()
		nv.Set("after", strconv.FormatInt(evs[len(evs)-1].Seq, 10))
		d.Next = Prefix + "audit?" + nv.Encode()
	}
	d.Export = vals.Encode()
	d.Searched = true
	c.render(w, r, http.StatusOK, "audit", d)
}

// auditExport streams every event matching the filters, oldest first, as CSV or JSONL (the
// CLI's audit export formats), page by page (keyset on seq).
func (c *Console) auditExport(w http.ResponseWriter, r *http.Request, v Viewer) {
	if !c.auditorsOnly(w, r, v, "the audit log") {
		return
	}
	_, q, err := c.parseSearch(r)
	format := r.URL.Query().Get("format")
	if err == nil && format != "csv" && format != "jsonl" {
		err = fmt.Errorf("format %q: use csv or jsonl", truncate(format, 12))
	}
	if err != nil {
		c.errorPage(w, r, &v, http.StatusBadRequest, capitalize(err.Error())+".")
		return
	}
	q.Descending, q.AfterSeq, q.Limit = false, 0, audit.MaxQueryLimit
	ctx := r.Context()
	ct, ext := "text/csv; charset=utf-8", "csv"
	if format == "jsonl" {
		ct, ext = "application/x-ndjson", "jsonl"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Disposition", `attachment; filename="accessbroker-audit.`+ext+`"`)
	first := true
	for {
		page, err := c.cfg.Audit.Search(ctx, q)
		if err != nil {
			c.log.ErrorContext(ctx, "audit export failed midway", "after_seq", q.AfterSeq, "error", err)
			return // the body is cut short; the client sees an incomplete download
		}
		if format == "jsonl" {
			err = audit.WriteJSONL(w, page)
		} else {
			err = audit.WriteCSV(w, page, first)
		}
		if err != nil || len(page) < q.Limit {
			return
		}
		first = false
		q.AfterSeq = page[len(page)-1].Seq
	}
}

func actionNames() []string {
	return []string{
		string(audit.ActionRequestCreated), string(audit.ActionOnCallChecked), string(audit.ActionApprovalRecorded),
		string(audit.ActionRequestApproved), string(audit.ActionRequestDenied), string(audit.ActionRequestRejected),
		string(audit.ActionRequestExpired), string(audit.ActionGrantIssuing), string(audit.ActionGrantIssued),
		string(audit.ActionGrantIssueFailed), string(audit.ActionGrantExtended), string(audit.ActionGrantRevokeQueued),
		string(audit.ActionGrantRevoked), string(audit.ActionGrantRevokeFailed), string(audit.ActionSessionStarted),
		string(audit.ActionSessionStatement), string(audit.ActionSessionEnded), string(audit.ActionSessionLoginFailed),
		string(audit.ActionIdentityConflict), string(audit.ActionWebhookRejected), string(audit.ActionSummaryPosted),
		string(audit.ActionAuditSuspect), string(audit.ActionAuditSuspectCleared),
	}
}

// maxAnomalies is the most anomalies the report page lists; the counts by kind cover all,
// and `accessbroker report` prints every one.
const maxAnomalies = 100

type kindCount struct {
	Kind  audit.AnomalyKind
	Count int
}

// weekView is one week's report with its pictures.
type weekView struct {
	ByKind []kindCount
	Report audit.Report
	// AnomalyRows are the first maxAnomalies anomalies rendered (fastrender.go), once.
	AnomalyRows template.HTML
	PerDay      template.HTML
	ToGrant     template.HTML
	Lag         template.HTML
	Built       time.Time
	Complete    bool
}

// weekCache keeps the views of complete weeks: the log is append-only and event times
// follow the clock, so a week that has ended no longer changes.
type weekCache struct {
	mu sync.Mutex
	m  map[string]*weekView
}

// weekStart is the Monday 00:00 UTC of t's week.
func weekStart(t time.Time) time.Time {
	t = t.UTC()
	d := (int(t.Weekday()) + 6) % 7
	return time.Date(t.Year(), t.Month(), t.Day()-d, 0, 0, 0, 0, time.UTC)
}

func (c *Console) week(ctx context.Context, since time.Time) (*weekView, error) {
	until := since.AddDate(0, 0, 7)
	now := c.cfg.Clock.Now()
	complete := !until.After(now)
	key := since.Format("2006-01-02")
	if complete {
		c.weeks.mu.Lock()
		wv := c.weeks.m[key]
		c.weeks.mu.Unlock()
		if wv != nil {
			return wv, nil
		}
	}
	rep, err := audit.ReadReport(ctx, c.cfg.Audit, since, until, audit.ReportOptions{})
	if err != nil {
		return nil, fmt.Errorf("report for the week of %s: %w", key, err)
	}
	if c.cfg.Checkpoints != nil {
		if cp, ok, err := c.cfg.Checkpoints.LatestCheckpoint(ctx); err == nil && ok {
			rep.Checkpoint = &cp
		}
	}
	created, err := c.requestTimes(ctx, since.Add(-24*time.Hour), until)
	if err != nil {
		return nil, err
	}
	wv := &weekView{Report: rep, Built: now.UTC(), Complete: complete}
	for _, a := range rep.Anomalies {
		if n := len(wv.ByKind); n > 0 && wv.ByKind[n-1].Kind == a.Kind {
			wv.ByKind[n-1].Count++
		} else {
			wv.ByKind = append(wv.ByKind, kindCount{a.Kind, 1})
		}
	}
	wv.AnomalyRows = anomalyRowsHTML(rep.Anomalies[:min(len(rep.Anomalies), maxAnomalies)])
	wv.PerDay = grantsPerDaySVG(rep, since)
	wv.ToGrant = timeToGrantSVG(rep, created)
	wv.Lag = revocationLagSVG(rep)
	if complete {
		c.weeks.mu.Lock()
		if len(c.weeks.m) > 60 {
			clear(c.weeks.m)
		}
		c.weeks.m[key] = wv
		c.weeks.mu.Unlock()
	}
	return wv, nil
}

// requestTimes maps request ids to their request.created times in [since, until).
func (c *Console) requestTimes(ctx context.Context, since, until time.Time) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	q := audit.Query{Action: audit.ActionRequestCreated, Since: since, Until: until, Limit: audit.MaxQueryLimit}
	for {
		page, err := c.cfg.Audit.Search(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("request times: %w", err)
		}
		for _, e := range page {
			out[e.RequestID] = e.Time
		}
		if len(page) < q.Limit {
			return out, nil
		}
		q.AfterSeq = page[len(page)-1].Seq
	}
}

// warmReport builds the last complete week's view, so that the first auditor to open the
// report does not wait for it.
func (c *Console) warmReport(ctx context.Context) {
	since := weekStart(c.cfg.Clock.Now()).AddDate(0, 0, -7)
	if _, err := c.week(ctx, since); err != nil && ctx.Err() == nil {
		c.log.WarnContext(ctx, "console: could not build last week's report in advance", "error", err)
	}
}

func (c *Console) reportPage(w http.ResponseWriter, r *http.Request, v Viewer) {
	if !c.auditorsOnly(w, r, v, "the weekly report") {
		return
	}
	now := c.cfg.Clock.Now()
	since := weekStart(now).AddDate(0, 0, -7) // the last complete week, as the summary posts it
	if s := r.URL.Query().Get("week"); s != "" {
		t, err := time.Parse("2006-01-02", s)
		if err != nil {
			c.errorPage(w, r, &v, http.StatusBadRequest, fmt.Sprintf("week %q: give the week's Monday as YYYY-MM-DD.", truncate(s, 20)))
			return
		}
		since = weekStart(t)
	}
	wv, err := c.week(r.Context(), since)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	reviews, err := c.weekReviews(r.Context(), since, since.AddDate(0, 0, 7))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d := struct {
		common
		Week       *weekView
		Reviews    []weekReviewView
		Since      string
		Until      string
		Prev, Next string
		// Anomalies are the first maxAnomalies of the week's; ByKind counts them all.
		Anomalies []audit.Anomaly
		ByKind    []kindCount
		More      int
	}{common: c.common(&v, "Weekly report"), Week: wv, Since: audit.FormatTime(since), Until: audit.FormatTime(since.AddDate(0, 0, 7)),
		Prev: since.AddDate(0, 0, -7).Format("2006-01-02"), Reviews: reviews, Anomalies: wv.Report.Anomalies, ByKind: wv.ByKind}
	if len(d.Anomalies) > maxAnomalies {
		d.More = len(d.Anomalies) - maxAnomalies
		d.Anomalies = d.Anomalies[:maxAnomalies]
	}
	if !since.AddDate(0, 0, 7).After(now) {
		d.Next = since.AddDate(0, 0, 7).Format("2006-01-02")
	}
	c.render(w, r, http.StatusOK, "report", d)
}

func (c *Console) chainPage(w http.ResponseWriter, r *http.Request, v Viewer) {
	if !c.auditorsOnly(w, r, v, "the audit chain's state") {
		return
	}
	d := struct {
		common
		Chain      ChainState
		Watching   bool
		Latest     *audit.ReportCheckpoint
		LatestErr  string
		WitnessCfg bool
	}{common: c.common(&v, "Audit chain"), Chain: c.chainState(), Watching: c.chain != nil}
	if c.cfg.Checkpoints != nil {
		cp, ok, err := c.cfg.Checkpoints.LatestCheckpoint(r.Context())
		switch {
		case err != nil:
			d.LatestErr = "the newest checkpoint could not be read"
			c.log.WarnContext(r.Context(), "chain page: latest checkpoint", "error", err)
		case ok:
			d.Latest = &cp
			d.WitnessCfg = cp.Witnesses > 0
		}
	}
	c.render(w, r, http.StatusOK, "chain", d)
}
