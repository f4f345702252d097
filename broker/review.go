package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// Review limits.
const (
	// MaxReviewItems is how many anomalies get their own questions in a review; the rest
	// share one last item (Slack's modals hold at most 100 blocks).
	MaxReviewItems = 30
	// MaxReviewNote is the longest answer, in characters.
	MaxReviewNote = 1000
)

// ReviewDeps are the collaborators of Reviews. All but Logger are required; Reviewers may
// be empty (then nobody may review, and every attempt is refused).
type ReviewDeps struct {
	Clock     grants.Clock
	Events    audit.Searcher  // the audit log: the week's summary.posted and its events
	Recorder  SummaryRecorder // appends review.recorded and review.refused
	Directory Directory       // who the reviewer is, to refuse reviewing their own grants
	// Reviewers are the Slack user ids allowed to mark a week reviewed
	// (slack.summary.reviewers).
	Reviewers []string
	// Report are the anomaly rules the summary was built with.
	Report audit.ReportOptions
	Logger *slog.Logger
}

// Reviews records that a person reviewed a weekly summary: for each anomaly, what was
// found and what was done, as review.recorded with the SHA-256 of the report. Only the
// configured reviewers may, and never when an anomaly is about them (their own grant, or
// a grant they approved): separation of duties, as for approvals. A refused attempt is
// recorded as review.refused and changes nothing.
type Reviews struct {
	d   ReviewDeps
	log *slog.Logger

	// reports caches the rebuilt report of each week reviewed lately, so that a submission
	// (answered within Slack's 3 s) does not rebuild the week its modal was opened with. A
	// posted week's window is closed, so its report never changes.
	mu      sync.Mutex
	reports map[string]audit.Report
	order   []string
}

// maxCachedReports bounds Reviews.reports.
const maxCachedReports = 8

// report returns the report of [since, until) for week, from the cache or rebuilt.
func (r *Reviews) report(ctx context.Context, week string, since, until time.Time) (audit.Report, error) {
	key := week + "/" + audit.FormatTime(since) + "/" + audit.FormatTime(until)
	r.mu.Lock()
	rep, ok := r.reports[key]
	r.mu.Unlock()
	if ok {
		return rep, nil
	}
	rep, err := audit.ReadReport(ctx, r.d.Events, since, until, r.d.Report)
	if err != nil {
		return audit.Report{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reports == nil {
		r.reports = map[string]audit.Report{}
	}
	if _, ok := r.reports[key]; !ok {
		r.reports[key] = rep
		r.order = append(r.order, key)
		if len(r.order) > maxCachedReports {
			delete(r.reports, r.order[0])
			r.order = r.order[1:]
		}
	}
	return rep, nil
}

// NewReviews returns the review use case.
func NewReviews(d ReviewDeps) *Reviews {
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reviews{d: d, log: log.With("component", "reviews")}
}

// ReviewItem is one question of a review: one anomaly, or (the last item of a report with
// more than MaxReviewItems anomalies) all the remaining ones.
type ReviewItem struct {
	Label     string // one line saying what the item is about
	Anomalies []audit.Anomaly
}

// ReviewCase is what a reviewer is asked about: the week, its report's digest, the items.
type ReviewCase struct {
	Week         string
	Since, Until time.Time
	ReportSHA256 string
	Items        []ReviewItem
}

// ReviewAnswer is the reviewer's answer to one item.
type ReviewAnswer struct {
	Found, Done string
}

// Open checks that the caller may review week (a WeekID whose summary was posted) and
// returns what to ask. A refusal is a *Refusal, recorded as review.refused.
func (r *Reviews) Open(ctx context.Context, c Caller, week string) (ReviewCase, error) {
	rc, _, err := r.check(ctx, c, week)
	return rc, err
}

// Record checks again (the submission is a separate request) and records the answers, one
// per item of Open's case, as review.recorded. It returns the event recorded.
func (r *Reviews) Record(ctx context.Context, c Caller, week string, answers []ReviewAnswer) (*audit.Event, error) {
	rc, person, err := r.check(ctx, c, week)
	if err != nil {
		return nil, err
	}
	if len(answers) != len(rc.Items) {
		return nil, r.refuse(ctx, c, person, week, fmt.Sprintf("the review has %d answers for %d anomalies; open the review again from the summary", len(answers), len(rc.Items)))
	}
	var notes []audit.ReviewNote
	for i, a := range answers {
		found, done := strings.TrimSpace(a.Found), strings.TrimSpace(a.Done)
		switch {
		case found == "" || done == "":
			return nil, r.refuse(ctx, c, person, week, fmt.Sprintf("item %d (%s): say what was found and what was done", i+1, rc.Items[i].Label))
		case utf8.RuneCountInString(found) > MaxReviewNote || utf8.RuneCountInString(done) > MaxReviewNote:
			return nil, r.refuse(ctx, c, person, week, fmt.Sprintf("item %d: an answer is longer than %d characters", i+1, MaxReviewNote))
		}
		for _, an := range rc.Items[i].Anomalies {
			notes = append(notes, audit.ReviewNote{Kind: an.Kind, GrantID: an.GrantID, Person: an.Person, Found: found, Done: done})
		}
	}
	if len(rc.Items) == 0 {
		notes = []audit.ReviewNote{}
	}
	nb, err := json.Marshal(notes)
	if err != nil {
		return nil, fmt.Errorf("encode review notes: %w", err)
	}
	ev := &audit.Event{
		Actor: audit.Actor{Kind: audit.ActorUser, ID: c.UserID, Email: person.Email}, Action: audit.ActionReviewRecorded,
		Reason: fmt.Sprintf("weekly report %s reviewed", week),
		Evidence: map[string]string{
			"week": week, "since": audit.FormatTime(rc.Since), "until": audit.FormatTime(rc.Until),
			"report_sha256": rc.ReportSHA256, "anomalies": strconv.Itoa(len(notes)), "notes": string(nb),
			"reviewer": person.Label(), "slack_team": c.TeamID,
		},
	}
	if err := r.d.Recorder.Record(ctx, ev); err != nil {
		return nil, fmt.Errorf("record the review of %s (it is not recorded; submit it again): %w", week, err)
	}
	r.log.InfoContext(ctx, "review recorded", "week", week, "reviewer", c.UserID, "anomalies", len(notes))
	return ev, nil
}

// check finds the week's summary and refuses a caller who is not a reviewer or who is the
// subject of one of its anomalies.
func (r *Reviews) check(ctx context.Context, c Caller, week string) (ReviewCase, grants.Person, error) {
	if !slices.Contains(r.d.Reviewers, c.UserID) {
		return ReviewCase{}, grants.Person{}, r.refuse(ctx, c, grants.Person{}, week,
			"only the configured reviewers (slack.summary.reviewers) may mark a weekly report reviewed")
	}
	person, err := r.d.Directory.Resolve(ctx, c.TeamID, c.UserID)
	if err != nil {
		if errors.Is(err, ErrUnknownPerson) {
			return ReviewCase{}, grants.Person{}, r.refuse(ctx, c, grants.Person{}, week, "you could not be identified: "+err.Error())
		}
		return ReviewCase{}, grants.Person{}, fmt.Errorf("resolve the reviewer: %w", err)
	}
	posted, ok, err := r.summaryOf(ctx, week)
	if err != nil {
		return ReviewCase{}, person, err
	}
	if !ok {
		return ReviewCase{}, person, r.refuse(ctx, c, person, week, fmt.Sprintf("no weekly summary %s was posted", week))
	}
	since, err1 := time.Parse(time.RFC3339, posted.Evidence["since"])
	until, err2 := time.Parse(time.RFC3339, posted.Evidence["until"])
	if err1 != nil || err2 != nil {
		return ReviewCase{}, person, fmt.Errorf("summary %s (seq %d) has no readable window", week, posted.Seq)
	}
	rep, err := r.report(ctx, week, since, until)
	if err != nil {
		return ReviewCase{}, person, fmt.Errorf("rebuild the report of %s: %w", week, err)
	}
	digest := posted.Evidence["report_sha256"]
	if digest == "" { // a summary posted before reports were hashed
		if digest, err = audit.ReportSHA256(rep); err != nil {
			return ReviewCase{}, person, err
		}
	}
	me := []string{person.Label(), person.Email, person.SlackUserID, c.UserID}
	for _, a := range rep.Anomalies {
		if (a.Person != "" && slices.Contains(me, a.Person)) || (a.Approver != "" && slices.Contains(me, a.Approver)) {
			return ReviewCase{}, person, r.refuse(ctx, c, person, week, fmt.Sprintf(
				"the report of %s has an anomaly about you (%s, grant %s): another reviewer must review it", week, a.Kind, a.GrantID))
		}
	}
	rc := ReviewCase{Week: week, Since: since, Until: until, ReportSHA256: digest}
	for i, a := range rep.Anomalies {
		if i == MaxReviewItems-1 && len(rep.Anomalies) > MaxReviewItems {
			rest := rep.Anomalies[i:]
			rc.Items = append(rc.Items, ReviewItem{Label: fmt.Sprintf("the %d other anomalies (see accessbroker report)", len(rest)), Anomalies: rest})
			break
		}
		rc.Items = append(rc.Items, ReviewItem{Label: anomalyLabel(a), Anomalies: []audit.Anomaly{a}})
	}
	return rc, person, nil
}

func anomalyLabel(a audit.Anomaly) string {
	var b strings.Builder
	b.WriteString(string(a.Kind))
	if a.Person != "" {
		b.WriteString(": " + a.Person)
	}
	if a.Resource != "" {
		b.WriteString(" on " + a.Resource)
	}
	if a.GrantID != "" {
		b.WriteString(" (" + a.GrantID + ")")
	}
	return b.String()
}

// summaryOf finds the summary.posted event of week.
func (r *Reviews) summaryOf(ctx context.Context, week string) (audit.Event, bool, error) {
	q := audit.Query{Action: audit.ActionSummaryPosted, Limit: audit.MaxQueryLimit}
	for {
		evs, err := r.d.Events.Search(ctx, q)
		if err != nil {
			return audit.Event{}, false, fmt.Errorf("look for the summary of %s: %w", week, err)
		}
		for _, e := range evs {
			if e.Evidence["week"] == week {
				return e, true, nil
			}
		}
		if len(evs) < q.Limit {
			return audit.Event{}, false, nil
		}
		q.AfterSeq = evs[len(evs)-1].Seq
	}
}

// refuse records review.refused and returns the refusal.
func (r *Reviews) refuse(ctx context.Context, c Caller, p grants.Person, week, why string) error {
	ev := &audit.Event{Actor: audit.Actor{Kind: audit.ActorUser, ID: c.UserID, Email: p.Email}, Action: audit.ActionReviewRefused,
		Reason: truncate(why, 500), Evidence: map[string]string{"week": truncate(week, 40), "refused": truncate(why, 500), "slack_team": c.TeamID}}
	if err := r.d.Recorder.Record(ctx, ev); err != nil {
		r.log.ErrorContext(ctx, "record refused review", "error", err)
	}
	return &Refusal{Message: why}
}
