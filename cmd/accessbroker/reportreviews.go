package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/audit"
)

// reviewColumns are the columns of `report --reviews --format csv`: one row per review, and
// one row with reviewed=false for a week nobody reviewed.
var reviewColumns = []string{"week", "since", "until", "posted_at", "report_sha256", "reviewed", "reviewer", "reviewer_id", "reviewed_at", "review_sha256", "anomalies", "notes"}

// listReviews is `report --reviews`: the weekly summaries posted for [from, to) and their
// reviews, as Markdown, JSON or CSV.
func listReviews(ctx context.Context, events audit.Searcher, from, to time.Time, format string, raw bool, stdout, stderr io.Writer) int {
	ws, err := audit.ReadReviews(ctx, events, from, to)
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker report --reviews: %v\n", err)
		return exitFailure
	}
	switch format {
	case audit.FormatJSON:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(ws)
	case audit.FormatCSV:
		err = writeReviewsCSV(stdout, ws, raw)
	default:
		err = writeReviewsMarkdown(stdout, ws, from, to)
	}
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker report --reviews: %v\n", err)
		return exitFailure
	}
	return exitOK
}

func writeReviewsCSV(w io.Writer, ws []audit.WeekReview, raw bool) error {
	cw := csv.NewWriter(w)
	cell := func(s string) string {
		if raw {
			return s
		}
		return audit.DefuseCSVCell(s)
	}
	write := func(vals ...string) error {
		for i := range vals {
			vals[i] = cell(vals[i])
		}
		return cw.Write(vals)
	}
	if err := cw.Write(reviewColumns); err != nil {
		return err
	}
	for _, wk := range ws {
		base := []string{wk.Week, audit.FormatTime(wk.Since), audit.FormatTime(wk.Until), audit.FormatTime(wk.PostedAt), wk.ReportSHA256}
		if !wk.Reviewed() {
			if err := write(append(base, "false", "", "", "", "", "", "")...); err != nil {
				return err
			}
			continue
		}
		for _, r := range wk.Reviews {
			notes, _ := json.Marshal(r.Notes)
			if err := write(append(base, "true", r.Reviewer, r.ReviewerID, audit.FormatTime(r.At), r.ReportSHA256, strconv.Itoa(len(r.Notes)), string(notes))...); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

func writeReviewsMarkdown(w io.Writer, ws []audit.WeekReview, from, to time.Time) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Reviews of the weekly summaries %s – %s\n\n", audit.FormatTime(from), audit.FormatTime(to))
	if len(ws) == 0 {
		b.WriteString("No weekly summary was posted in this window.\n")
	}
	esc := strings.NewReplacer("|", "\\|", "\n", " ", "<", "&lt;", ">", "&gt;", "[", "\\[", "]", "\\]", "`", "\\`", "*", "\\*", "_", "\\_")
	for _, wk := range ws {
		fmt.Fprintf(&b, "## %s (%s – %s)\n\nPosted %s; report SHA-256 `%s`.\n\n", esc.Replace(wk.Week), audit.FormatTime(wk.Since), audit.FormatTime(wk.Until),
			audit.FormatTime(wk.PostedAt), esc.Replace(wk.ReportSHA256))
		if !wk.Reviewed() {
			b.WriteString("**NOT REVIEWED.**\n\n")
			continue
		}
		for _, r := range wk.Reviews {
			fmt.Fprintf(&b, "Reviewed by %s at %s (audit seq %d).\n\n", esc.Replace(r.Reviewer), audit.FormatTime(r.At), r.Seq)
			if len(r.Notes) == 0 {
				b.WriteString("No anomalies.\n\n")
				continue
			}
			b.WriteString("| anomaly | person | grant | found | done |\n| --- | --- | --- | --- | --- |\n")
			for _, n := range r.Notes {
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", esc.Replace(string(n.Kind)), esc.Replace(n.Person), esc.Replace(n.GrantID), esc.Replace(n.Found), esc.Replace(n.Done))
			}
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
