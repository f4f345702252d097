package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/config"
	"github.com/accessbroker/accessbroker/grants"
)

// The usage lines of the grants sub-commands.
const (
	grantsListUsage   = "usage: accessbroker grants list --config FILE [--state S] [--resource R] [--format table|json] [--limit N]"
	grantsRevokeUsage = "usage: accessbroker grants revoke GRANT_ID --reason TEXT --config FILE [--operator NAME]"
	grantsIssueUsage  = "usage: accessbroker grants issue --resource NAME --slack-user UXXXX --reason TEXT [--duration 30m] --config FILE [--operator NAME]\n\n" +
		"Break-glass: issues a grant from the command line, audited with the operator as actor, and prints the credential here."
)

func runGrants(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return dispatch(ctx, "grants", []string{"list", "issue", "revoke"}, map[string]func(context.Context, []string, io.Writer, io.Writer) int{
		"list": grantsList, "issue": grantsIssue, "revoke": grantsRevoke,
	}, args, stdout, stderr)
}

// grantView is the JSON shape of a grant in `grants list --format json`. No secret exists on
// a grant to show.
type grantView struct {
	ID          string            `json:"id"`
	Resource    string            `json:"resource"`
	Provider    string            `json:"provider"`
	Person      string            `json:"person"`
	SlackUser   string            `json:"slack_user,omitempty"`
	State       grants.State      `json:"state"`
	Reason      string            `json:"reason"`
	IncidentID  string            `json:"incident_id,omitempty"`
	CreatedAt   string            `json:"created_at"`
	ExpiresAt   string            `json:"expires_at"`
	RevokedAt   string            `json:"revoked_at,omitempty"`
	RevokeCause string            `json:"revoke_cause,omitempty"`
	Attempts    int               `json:"attempts,omitempty"`
	NextAttempt string            `json:"next_attempt_at,omitempty"`
	LastError   string            `json:"last_error,omitempty"`
	Handle      map[string]string `json:"handle,omitempty"`
	// AccessMissingAt is when the drift reconciler found this live grant's access gone
	// upstream (grant.access_missing); absent while it is there.
	AccessMissingAt string `json:"access_missing_at,omitempty"`
	// Activity is the grant's activity collection per source (docs/activity.md).
	Activity []activityView `json:"activity,omitempty"`
}

func viewOf(g grants.Grant) grantView {
	v := grantView{ID: g.ID, Resource: g.Resource, Provider: g.Provider, Person: g.Person.Label(), SlackUser: g.Person.SlackUserID,
		State: g.State, Reason: g.Reason, IncidentID: g.IncidentID, CreatedAt: grants.Timestamp(g.CreatedAt),
		ExpiresAt: grants.Timestamp(g.ExpiresAt), RevokeCause: string(g.RevokeCause), Attempts: g.Attempts, LastError: g.LastError,
		Handle: g.Handle.Data}
	if !g.RevokedAt.IsZero() {
		v.RevokedAt = grants.Timestamp(g.RevokedAt)
	}
	if g.State == grants.StateRevokeFailed || g.State == grants.StateRevoking {
		v.NextAttempt = grants.Timestamp(g.DueAt)
	}
	if !g.AccessMissingAt.IsZero() {
		v.AccessMissingAt = grants.Timestamp(g.AccessMissingAt)
	}
	return v
}

func grantsList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newCLI("grants list", grantsListUsage, stdout, stderr).withLogLevel()
	configPath := fs.String("config", "", "configuration file")
	state := fs.String("state", "", "only grants in this state (issuing, active, revoking, revoke_failed, revoked)")
	resource := fs.String("resource", "", "only grants to this resource")
	format := fs.String("format", "table", "table or json")
	limit := fs.Int("limit", 100, "at most this many grants, newest first (0 = all)")
	if code, ok := fs.parseNone(args); !ok {
		return code
	}
	if *format != "table" && *format != "json" {
		fmt.Fprintf(stderr, "accessbroker grants list: --format %q: want table or json\n", *format)
		return exitUsage
	}
	if *limit < 0 {
		fmt.Fprintf(stderr, "accessbroker grants list: --limit %d: want 0 (all) or more\n", *limit)
		return exitUsage
	}
	f := grants.GrantFilter{Resource: *resource, Limit: *limit}
	if *state != "" {
		st, err := grants.ParseState(*state)
		if err != nil {
			fmt.Fprintf(stderr, "accessbroker grants list: --state: %v\n", err)
			return exitUsage
		}
		f.States = []grants.State{st}
	}
	cfg, ok := loadConfigFlag(*configPath, stderr)
	if !ok {
		return exitUsage
	}
	a, err := newApp(ctx, cfg, fs.appOptions(appOptions{}))
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker grants list: %v\n", err)
		return exitFailure
	}
	defer a.Close()
	list, err := a.store.ListGrants(ctx, f)
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker grants list: %v\n", err)
		return exitFailure
	}
	curs, err := cursorsByGrant(ctx, a.store, list)
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker grants list: %v\n", err)
		return exitFailure
	}
	if *format == "json" {
		views := make([]grantView, 0, len(list))
		for _, g := range list {
			v := viewOf(g)
			v.Activity = activityViews(curs[g.ID])
			views = append(views, v)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(views); err != nil {
			return exitFailure
		}
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRESOURCE\tPERSON\tSTATE\tEXPIRES (UTC)\tATTEMPTS\tACTIVITY\tNOTE")
	for _, g := range list {
		v := viewOf(g)
		note := v.RevokeCause
		if v.LastError != "" {
			note = fmt.Sprintf("next try %s: %s", v.NextAttempt, firstLine(v.LastError, 60))
		}
		if v.AccessMissingAt != "" && g.Live() {
			note = strings.TrimSpace("ACCESS MISSING upstream since " + v.AccessMissingAt + " " + note)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", v.ID, v.Resource, v.Person, v.State, v.ExpiresAt, v.Attempts, firstOr(activityNote(curs[g.ID]), "-"), note)
	}
	tw.Flush()
	return exitOK
}

func firstLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

func grantsRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newCLI("grants revoke", grantsRevokeUsage, stdout, stderr).withLogLevel()
	configPath := fs.String("config", "", "configuration file")
	reason := fs.String("reason", "", "why (recorded in the audit log; required)")
	operator := fs.String("operator", "", "who is revoking (default $USER)")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	var id string
	if len(pos) > 0 {
		id = pos[0]
	}
	switch {
	case id == "":
		fmt.Fprintln(stderr, grantsRevokeUsage)
		return exitUsage
	case len(pos) > 1:
		return fs.usageError("one grant at a time: unexpected argument %q", pos[1])
	case !grants.ValidID("g", id):
		fmt.Fprintf(stderr, "accessbroker grants revoke: %q is not a grant id (they look like g_abcdefghijklmnop; see `grants list`)\n", id)
		return exitUsage
	case strings.TrimSpace(*reason) == "":
		fmt.Fprintln(stderr, "accessbroker grants revoke: --reason is required: say why, it goes into the audit log")
		return exitUsage
	}
	cfg, ok := loadConfigFlag(*configPath, stderr)
	if !ok {
		return exitUsage
	}
	a, err := newApp(ctx, cfg, fs.appOptions(appOptions{withProviders: true}))
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker grants revoke: %v\n", err)
		return exitFailure
	}
	defer a.Close()
	g, err := a.manager.Revoke(ctx, id, grants.CauseManual, operatorActor(*operator), *reason)
	if errors.Is(err, grants.ErrNotFound) {
		fmt.Fprintf(stderr, "accessbroker grants revoke: no grant %s\n", id)
		return exitFailure
	}
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker grants revoke: %v\n", err)
		return exitFailure
	}
	// Revoke now rather than wait for the server's revoker; claims keep the two apart.
	if err := a.revoker.Sweep(ctx); err != nil {
		fmt.Fprintf(stderr, "accessbroker grants revoke: queued, but the attempt failed (the revoker keeps retrying): %v\n", err)
	}
	if g2, err := a.store.GetGrant(ctx, id); err == nil {
		g = g2
	}
	fmt.Fprintf(stdout, "grant %s: %s", g.ID, g.State)
	if g.LastError != "" {
		fmt.Fprintf(stdout, " (last error: %s; retried automatically)", firstLine(g.LastError, 200))
	}
	fmt.Fprintln(stdout)
	if g.State != grants.StateRevoked {
		return exitFailure
	}
	return exitOK
}

// grantsIssue is the operator's break-glass path: it issues a grant from the command line,
// audited with the operator as actor, and prints the credential to the operator's terminal.
func grantsIssue(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newCLI("grants issue", grantsIssueUsage, stdout, stderr).withLogLevel()
	configPath := fs.String("config", "", "configuration file")
	resource := fs.String("resource", "", "resource name (required)")
	slackUser := fs.String("slack-user", "", "the person's Slack user id, as listed under identities (required)")
	duration := fs.Duration("duration", 0, "how long, e.g. 30m (default: the resource's default)")
	reason := fs.String("reason", "", "why (required)")
	operator := fs.String("operator", "", "who is issuing (default $USER)")
	if code, ok := fs.parseNone(args); !ok {
		return code
	}
	if *resource == "" || *slackUser == "" || strings.TrimSpace(*reason) == "" {
		fmt.Fprintln(stderr, grantsIssueUsage)
		return exitUsage
	}
	cfg, ok := loadConfigFlag(*configPath, stderr)
	if !ok {
		return exitUsage
	}
	rc, ok := cfg.Resource(*resource)
	if !ok {
		fmt.Fprintf(stderr, "accessbroker grants issue: no resource %q in the config\n", *resource)
		return exitUsage
	}
	var person *grants.Person
	for _, id := range cfg.Identities {
		if id.Slack == *slackUser {
			// The same person the Slack directory resolves for this entry: its email folded as
			// every identity path compares it (config check has refused look-alikes).
			person = &grants.Person{SlackTeamID: id.SlackTeam, SlackUserID: id.Slack, Email: broker.FoldEmail(id.Email), GitHubLogin: id.GitHub, PagerDutyID: id.PagerDuty, ResolvedBy: "config"}
		}
	}
	if person == nil {
		// The command line names people only by an identities entry, in either
		// identity.resolve_by_email mode: nothing is looked up, nothing issued, and the
		// attempt is audited.
		msg := fmt.Sprintf("%s is not listed under identities in the config; add it there first", *slackUser)
		if err := recordCLIRefusal(ctx, cfg, fs.appOptions(appOptions{}), *operator, *resource, *slackUser, msg); err != nil {
			fmt.Fprintf(stderr, "accessbroker grants issue: %s (and the refusal could not be audited: %v)\n", msg, err)
			return exitUsage
		}
		fmt.Fprintf(stderr, "accessbroker grants issue: %s\n", msg)
		return exitUsage
	}
	d := *duration
	if d == 0 {
		d = rc.DefaultDuration
	}
	a, err := newApp(ctx, cfg, fs.appOptions(appOptions{withProviders: true}))
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker grants issue: %v\n", err)
		return exitFailure
	}
	defer a.Close()
	if err := a.guardBeforeIssue(ctx); err != nil {
		fmt.Fprintf(stderr, "accessbroker grants issue: %v\n", err)
		return exitFailure
	}
	actor := operatorActor(*operator)
	g, cred, err := a.manager.Issue(ctx, grants.IssueInput{Resource: *resource, Person: *person, Duration: d, Reason: *reason, Actor: actor,
		Evidence: map[string]string{"source": string(grants.SourceCLI)}})
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker grants issue: %v\n", err)
		if errors.Is(err, grants.ErrInvalid) {
			return exitUsage
		}
		return exitFailure
	}
	fmt.Fprintf(stdout, "grant %s: %s access to %s until %s\n", g.ID, person.Label(), g.Resource, grants.Timestamp(g.ExpiresAt))
	for _, f := range cred.Reveal() {
		fmt.Fprintf(stdout, "  %s: %s\n", f.Name, f.Value)
	}
	return exitOK
}

// recordCLIRefusal writes the request.rejected event of a refused grants issue.
func recordCLIRefusal(ctx context.Context, cfg *config.Config, opts appOptions, operator, resource, slackUser, why string) error {
	a, err := newApp(ctx, cfg, opts)
	if err != nil {
		return err
	}
	defer a.Close()
	return a.manager.Record(ctx, &audit.Event{Actor: operatorActor(operator), Action: audit.ActionRequestRejected, Resource: resource,
		Reason: "grants issue refused: " + why, Evidence: map[string]string{"source": string(grants.SourceCLI), "slack_user": slackUser}})
}
