package github

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	gh "github.com/google/go-github/v60/github"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// SourceAuditLog is the activity source name of organisation audit log look-ups (cursor key
// and metrics label).
const SourceAuditLog = "github-audit-log"

// AuditLogOptions tunes an AuditLogSource. Zero values take the defaults.
type AuditLogOptions struct {
	// Lateness is how far back each look-up re-reads before the end of the previous one
	// (the audit log is searchable a little after the fact). Default 20 minutes.
	Lateness time.Duration
	// PagesPerCollect caps the pages (100 entries each) read for one grant in one Collect
	// (default 10); the collector comes back for the rest in its next round.
	PagesPerCollect int
}

// AuditLogSource collects the actions of a github-team grant's person from the
// organisation's audit log (Organizations.GetAuditLog with phrase "actor:LOGIN
// created:>=…", GitHub Enterprise Cloud). It implements grants.ActivitySource.
type AuditLogSource struct {
	gh    *gh.Client
	token string
	opts  AuditLogOptions
}

var _ grants.ActivitySource = (*AuditLogSource)(nil)

// NewAuditLogSource builds the source with the github section's API URL and token (the token
// needs read:audit_log, or an org owner's). client nil means a plain http.Client.
func NewAuditLogSource(apiURL, token string, client *http.Client, opts AuditLogOptions) (*AuditLogSource, error) {
	if strings.TrimSpace(token) == "" {
		return nil, fmt.Errorf("github audit log: token is empty; set github.token: %w", grants.ErrInvalid)
	}
	base, err := ParseAPIURL(apiURL)
	if err != nil {
		return nil, err
	}
	if client == nil {
		client = &http.Client{}
	}
	if opts.Lateness <= 0 {
		opts.Lateness = 20 * time.Minute
	}
	if opts.PagesPerCollect <= 0 {
		opts.PagesPerCollect = 10
	}
	c := gh.NewClient(client).WithAuthToken(token)
	c.BaseURL = base
	return &AuditLogSource{gh: c, token: token, opts: opts}, nil
}

// alCursor is an audit-log cursor: a scan in progress (After, from Since) or the end of the
// last complete scan (Mark).
type alCursor struct {
	After string `json:"after,omitempty"`
	Since int64  `json:"since,omitempty"` // unix ms of the scan in progress
	Mark  int64  `json:"mark,omitempty"`
}

// Collect implements grants.ActivitySource: the person's audit log entries from the grant's
// start (or Lateness before the previous scan's end), oldest first. An organisation without
// an audit log (404: not on Enterprise Cloud) ends collection for the grant.
func (s *AuditLogSource) Collect(ctx context.Context, g grants.Grant, w grants.ActivityWindow, cursor string) (grants.ActivityBatch, error) {
	org, login := g.Handle.Data["org"], g.Handle.Data["login"]
	if org == "" || login == "" || !loginRE.MatchString(login) {
		return grants.ActivityBatch{}, fmt.Errorf("github-team grant %s: its handle names no organisation and login: %w", g.ID, grants.ErrActivityNotCollectable)
	}
	var cur alCursor
	if cursor != "" {
		if err := json.Unmarshal([]byte(cursor), &cur); err != nil {
			cur = alCursor{}
		}
	}
	since := w.From.Add(-time.Minute)
	switch {
	case cur.After != "":
		since = time.UnixMilli(cur.Since).UTC()
	case cur.Mark != 0:
		if m := time.UnixMilli(cur.Mark).Add(-s.opts.Lateness); m.After(since) {
			since = m
		}
	}
	now := w.To
	opts := &gh.GetAuditLogOptions{
		Phrase:            gh.String(fmt.Sprintf("actor:%s created:>=%s", login, since.UTC().Format(time.RFC3339))),
		Include:           gh.String("all"),
		Order:             gh.String("asc"),
		ListCursorOptions: gh.ListCursorOptions{PerPage: 100, After: cur.After},
	}
	var items []grants.ActivityItem
	after := cur.After
	for page := 0; page < s.opts.PagesPerCollect; page++ {
		entries, resp, err := s.gh.Organizations.GetAuditLog(ctx, org, opts)
		if err != nil {
			return grants.ActivityBatch{}, s.fail(org, err)
		}
		for _, e := range entries {
			at := e.GetTimestamp().Time
			if at.IsZero() {
				at = e.GetCreatedAt().Time
			}
			if at.After(w.To) {
				continue // a later look-up (or none, after the window) covers it
			}
			items = append(items, auditItem(g, e, at.UTC(), w.End))
		}
		after = ""
		if resp != nil {
			after = resp.After
		}
		if after == "" {
			break
		}
		opts.After = after
	}
	next := alCursor{Mark: now.UnixMilli()}
	complete := after == ""
	if !complete {
		next = alCursor{After: after, Since: since.UnixMilli(), Mark: cur.Mark}
	}
	raw, err := json.Marshal(next)
	if err != nil {
		return grants.ActivityBatch{}, fmt.Errorf("github audit log cursor: %w", err)
	}
	return grants.ActivityBatch{Items: items, Cursor: string(raw), Complete: complete}, nil
}

// auditItem turns one audit log entry into a github.activity event.
func auditItem(g grants.Grant, e *gh.AuditEntry, at, end time.Time) grants.ActivityItem {
	repo, _ := e.AdditionalFields["repo"].(string)
	return grants.ActivityItem{Key: "audit_log:" + e.GetDocumentID(), Event: &audit.Event{
		Actor:  audit.Actor{Kind: audit.ActorUser, ID: g.Person.SlackUserID, Email: g.Person.Email},
		Action: audit.ActionGitHubActivity,
		Evidence: map[string]string{
			"via": "audit_log", "github_action": e.GetAction(), audit.EvidenceActivityEventTime: grants.Timestamp(at),
			"repo": repo, "actor": e.GetActor(), "id": e.GetDocumentID(),
			audit.EvidenceActivityAfterRevocation: strconv.FormatBool(!end.IsZero() && at.After(end)),
		},
	}}
}

// fail classifies a look-up error: no audit log (404) is permanent for the grant; rate limits
// and everything else are retried by the collector. The token never appears.
func (s *AuditLogSource) fail(org string, err error) error {
	var (
		rate  *gh.RateLimitError
		abuse *gh.AbuseRateLimitError
	)
	msg := fmt.Sprintf("github audit log of %s: %v", org, err)
	if strings.Contains(msg, s.token) {
		msg = strings.ReplaceAll(msg, s.token, "[REDACTED]")
	}
	switch code := status(err); {
	case errors.As(err, &rate), errors.As(err, &abuse):
		if abuse != nil && abuse.RetryAfter != nil {
			msg += fmt.Sprintf(" (secondary rate limit; retry after %s)", abuse.RetryAfter)
		}
		return errors.New(msg)
	case code == http.StatusNotFound:
		return fmt.Errorf("%s; the organisation has no audit log API (GitHub Enterprise Cloud only): %w", msg, grants.ErrActivityNotCollectable)
	case code == http.StatusForbidden, code == http.StatusUnauthorized:
		return fmt.Errorf("%s; the token needs read:audit_log (or an organisation owner's): %w", msg, grants.ErrNeedsOperator)
	}
	return errors.New(msg)
}
