package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/adminapi"
)

const reportUsage = "usage: accessbroker report --config FILE [--since 168h] [--until T] [--format markdown|json|csv] [--raw] [--reviews]\n\n" +
	"The weekly access report (figures, anomalies, one row per grant), computed from the audit log.\n" +
	"--reviews lists instead the weekly summaries of the window and their reviews (review.recorded), unreviewed weeks included."

// runReport is `accessbroker report`: the weekly figures, anomalies and one row per grant,
// computed from the audit log for a window, written as Markdown, JSON or CSV.
func runReport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newCLI("report", reportUsage, stdout, stderr).withLogLevel()
	configPath := fs.String("config", "", "configuration file")
	since := fs.String("since", "168h", "start of the window: an RFC 3339 time (2026-11-16T09:00:00Z) or this long ago (168h)")
	until := fs.String("until", "", "end of the window (exclusive): an RFC 3339 time or this long ago; default now")
	format := fs.String("format", audit.FormatMarkdown, "markdown, json or csv (csv: one row per grant)")
	raw := fs.Bool("raw", false, rawFlagUsage)
	maxPair := fs.Int("max-approvals-per-pair", audit.DefaultMaxApprovalsPerPair,
		"flag an approver who approved the same requester more than this many times in the window")
	reviews := fs.Bool("reviews", false, "list the weekly summaries of the window and who reviewed each (NOT REVIEWED when nobody did)")
	if code, ok := fs.parseNone(args); !ok {
		return code
	}
	if !slices.Contains(audit.ReportFormats, *format) {
		fmt.Fprintf(stderr, "accessbroker report: --format %q is not supported: use %s\n", *format, strings.Join(audit.ReportFormats, ", "))
		return exitUsage
	}
	if !rawNeedsCSV("report", *raw, *format, stderr) {
		return exitUsage
	}
	if *maxPair < 1 {
		fmt.Fprintf(stderr, "accessbroker report: --max-approvals-per-pair must be 1 or more (got %d)\n", *maxPair)
		return exitUsage
	}
	cfg, ok := loadConfigFlag(*configPath, stderr)
	if !ok {
		return exitUsage
	}
	a, err := newApp(ctx, cfg, fs.appOptions(appOptions{}))
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker report: %v\n", err)
		return exitFailure
	}
	defer a.Close()
	from, to, err := reportWindow(*since, *until, a.clock.Now())
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker report: %v\n", err)
		return exitUsage
	}
	if *reviews {
		return listReviews(ctx, a.store, from, to, *format, *raw, stdout, stderr)
	}
	ws, err := buildWitnesses(ctx, cfg, a.clock, awsOptions{})
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker report: %v\n", err)
		return exitFailure
	}
	cps := &checkpointInfo{store: a.store, publisher: grants.NewPublisher(a.store, ws, a.clock, grants.PublisherOptions{Logger: a.log})}
	r, err := newReporter(a.store, audit.ReportOptions{MaxApprovalsPerPair: *maxPair}).withCheckpoints(cps).Build(ctx, from, to)
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker report: %v\n", err)
		return exitFailure
	}
	render := audit.RenderReport
	if *raw {
		render = func(w io.Writer, r audit.Report, _ string) error { return audit.WriteReportCSVRaw(w, r) }
	}
	if err := render(stdout, r, *format); err != nil {
		fmt.Fprintf(stderr, "accessbroker report: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// reportWindow reads --since and --until (RFC 3339 times, or durations meaning that long
// before now; an empty --until is now) and checks that since comes first.
func reportWindow(since, until string, now time.Time) (time.Time, time.Time, error) {
	if strings.TrimSpace(since) == "" {
		return time.Time{}, time.Time{}, errors.New("--since is required: an RFC 3339 time or a duration such as 168h")
	}
	from, err := audit.ParseWhen(since, now)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("--since: %w", err)
	}
	to := now.UTC()
	if strings.TrimSpace(until) != "" {
		if to, err = audit.ParseWhen(until, now); err != nil {
			return time.Time{}, time.Time{}, fmt.Errorf("--until: %w", err)
		}
	}
	if !from.Before(to) {
		return time.Time{}, time.Time{}, fmt.Errorf("--since %s is not before --until %s", audit.FormatTime(from), audit.FormatTime(to))
	}
	return from, to, nil
}

// reporter builds access reports from the audit log (never from the mutable grant rows). It
// implements adminapi.Reporter for GET /api/v1/report; serve passes
// newReporter(a.store, audit.ReportOptions{}) as adminapi.Config.Reporter.
type reporter struct {
	events audit.Searcher
	opts   audit.ReportOptions
	cps    broker.SummaryCheckpoints // nil: reports carry no checkpoint
}

var _ adminapi.Reporter = (*reporter)(nil)

func newReporter(events audit.Searcher, opts audit.ReportOptions) *reporter {
	return &reporter{events: events, opts: opts}
}

// withCheckpoints makes the reports carry the latest checkpoint and its witnesses.
func (r *reporter) withCheckpoints(cps broker.SummaryCheckpoints) *reporter {
	r.cps = cps
	return r
}

// Build reads the events the window needs, page by page, and computes the report
// (audit.ReadReport).
func (r *reporter) Build(ctx context.Context, since, until time.Time) (audit.Report, error) {
	rep, err := audit.ReadReport(ctx, r.events, since, until, r.opts)
	if err != nil {
		return audit.Report{}, fmt.Errorf("build report: %w", err)
	}
	// The weekly summaries of the window and whether each was reviewed (review.recorded).
	if rep.Reviews, err = audit.ReadReviews(ctx, r.events, since, until); err != nil {
		return audit.Report{}, fmt.Errorf("build report: %w", err)
	}
	if r.cps != nil {
		c, ok, err := r.cps.LatestCheckpoint(ctx)
		if err != nil {
			return audit.Report{}, fmt.Errorf("build report: %w", err)
		}
		if ok {
			rep.Checkpoint = &c
		}
	}
	return rep, nil
}

// Report implements adminapi.Reporter: the report for [since, until) rendered in format
// (markdown, json or csv), with its content type.
func (r *reporter) Report(ctx context.Context, since, until time.Time, format string) (string, []byte, error) {
	ct := audit.ReportContentType(format)
	if ct == "" {
		return "", nil, fmt.Errorf("report format %q is not supported: use %s", format, strings.Join(audit.ReportFormats, ", "))
	}
	rep, err := r.Build(ctx, since, until)
	if err != nil {
		return "", nil, err
	}
	var buf bytes.Buffer
	if err := audit.RenderReport(&buf, rep, format); err != nil {
		return "", nil, err
	}
	return ct, buf.Bytes(), nil
}
