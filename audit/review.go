package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Review actions.
const (
	// ActionReviewRecorded: a configured reviewer marked a weekly report reviewed. Evidence:
	// week, since, until, report_sha256 (of the report as posted), anomalies (how many) and
	// notes (a JSON array of ReviewNote, one per anomaly).
	ActionReviewRecorded Action = "review.recorded"
	// ActionReviewRefused: someone tried to mark a report reviewed and was refused (not a
	// configured reviewer, an anomaly about their own grants, a week with no posted
	// summary, bad notes). Evidence: week and refused (why). Nothing was recorded as reviewed.
	ActionReviewRefused Action = "review.refused"
)

// ReviewNote is a reviewer's answer about one anomaly of the report: what was found and
// what was done.
type ReviewNote struct {
	Kind    AnomalyKind `json:"kind"`
	GrantID string      `json:"grant_id,omitempty"`
	Person  string      `json:"person,omitempty"`
	Found   string      `json:"found"`
	Done    string      `json:"done"`
}

// ReportSHA256 is the lowercase hex SHA-256 of the report's JSON rendering (RenderReport
// with FormatJSON): the digest a review.recorded event names, so that auditors can tell
// which report was reviewed (`accessbroker report --format json` of the same window and
// options renders the same bytes, less the checkpoint line, which is live).
func ReportSHA256(r Report) (string, error) {
	var b bytes.Buffer
	if err := RenderReport(&b, r, FormatJSON); err != nil {
		return "", fmt.Errorf("hash the report: %w", err)
	}
	sum := sha256.Sum256(b.Bytes())
	return hex.EncodeToString(sum[:]), nil
}
