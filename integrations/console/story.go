package console

import (
	"context"
	"fmt"
	"html/template"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

// storyLimit bounds the events one story page reads per query; a longer story (a grant
// with many statements) links to the audit search for the rest.
const storyLimit = 1000

// story is a grant's or request's whole history from the audit log, in seq order, each
// event with its chain mark, and the proxied sessions grouped with their statements.
type story struct {
	Steps []step
	// StepsHTML is Steps rendered (fastrender.go).
	StepsHTML template.HTML
	Sessions  []sessionView
	Truncated bool
	Chain     ChainState
}

// step is one event of a story.
type step struct {
	Seq      int64
	Time     string
	Kind     string // request, oncall, approval, issue, extension, reminder, revocation, activity, refusal, other
	Action   string
	Actor    string
	Reason   string
	GrantID  string
	Request  string
	Evidence []kv
	Mark     Mark
}

type kv struct{ K, V string }

// sessionView is one proxied database session of the grant.
type sessionView struct {
	ID, Started, Ended, Role, Database, Client, EndReason string
	StartSeq, EndSeq                                      int64
	Statements                                            []step
	// StatementsHTML is Statements rendered as table rows (fastrender.go).
	StatementsHTML template.HTML
}

// hiddenEvidence are evidence keys never shown: none holds a secret (audit events never
// do), but these are delivery plumbing and the provider's handle, not part of the story.
var hiddenEvidence = map[string]bool{"response_url": true, "handle_key": true}

func kindOf(a audit.Action) string {
	s := string(a)
	switch {
	case a == audit.ActionRequestCreated:
		return "request"
	case a == audit.ActionOnCallChecked:
		return "oncall"
	case a == audit.ActionApprovalRecorded || a == audit.ActionRequestApproved || a == audit.ActionRequestDenied:
		return "approval"
	case a == audit.ActionGrantIssuing || a == audit.ActionGrantIssued || a == audit.ActionGrantIssueFailed:
		return "issue"
	case a == audit.ActionGrantExtended:
		return "extension"
	case a == audit.ActionGrantRevokeQueued || a == audit.ActionGrantRevoked || a == audit.ActionGrantRevokeFailed:
		return "revocation"
	case a == audit.ActionRequestRejected || a == audit.ActionRequestExpired:
		return "refusal"
	case strings.HasPrefix(s, "session."), strings.HasPrefix(s, "aws."), strings.HasPrefix(s, "github."):
		return "activity"
	case strings.Contains(s, "remind"):
		return "reminder"
	}
	return "other"
}

func actorText(a audit.Actor) string {
	s := string(a.Kind) + " " + a.ID
	if a.Email != "" {
		s += " (" + a.Email + ")"
	}
	return s
}

// headOf is an event's step without its evidence (the audit search's rows show none).
func headOf(e audit.Event, cs ChainState) step {
	return step{Seq: e.Seq, Time: audit.FormatTime(e.Time), Kind: kindOf(e.Action), Action: string(e.Action), Actor: actorText(e.Actor),
		Reason: broker.Clean(e.Reason), GrantID: e.GrantID, Request: e.RequestID, Mark: cs.MarkFor(e)}
}

func (c *Console) stepOf(e audit.Event, cs ChainState) step {
	st := headOf(e, cs)
	if len(e.Evidence) > 0 {
		st.Evidence = make([]kv, 0, len(e.Evidence))
	}
	for _, k := range slices.Sorted(maps.Keys(e.Evidence)) {
		if !hiddenEvidence[k] {
			st.Evidence = append(st.Evidence, kv{k, broker.Clean(e.Evidence[k])})
		}
	}
	return st
}

// searchAll reads every event matching q (in pages of storyLimit, up to max).
func (c *Console) searchUpTo(ctx context.Context, q audit.Query, max int) ([]audit.Event, bool, error) {
	q.Limit = min(storyLimit, max+1)
	var out []audit.Event
	for {
		page, err := c.cfg.Audit.Search(ctx, q)
		if err != nil {
			return nil, false, err
		}
		out = append(out, page...)
		if len(out) > max {
			return out[:max], true, nil
		}
		if len(page) < q.Limit {
			return out, false, nil
		}
		q.AfterSeq = page[len(page)-1].Seq
	}
}

// grantStory gathers the grant's events (its own, its request's, and those of extension
// requests that name it), in seq order.
func (c *Console) grantStory(ctx context.Context, g grants.Grant) (story, error) {
	byGrant, trunc, err := c.searchUpTo(ctx, audit.Query{GrantID: g.ID}, storyLimit)
	if err != nil {
		return story{}, fmt.Errorf("story of grant %s: %w", g.ID, err)
	}
	reqs := map[string]bool{}
	if g.RequestID != "" {
		reqs[g.RequestID] = true
	}
	for _, e := range byGrant {
		if e.RequestID != "" {
			reqs[e.RequestID] = true
		}
	}
	seen := map[int64]bool{}
	events := make([]audit.Event, 0, len(byGrant))
	for _, e := range byGrant {
		seen[e.Seq] = true
		events = append(events, e)
	}
	ids := slices.Sorted(maps.Keys(reqs))
	if len(ids) > 20 {
		ids, trunc = ids[:20], true
	}
	for _, id := range ids {
		evs, t, err := c.searchUpTo(ctx, audit.Query{RequestID: id}, 200)
		if err != nil {
			return story{}, fmt.Errorf("story of grant %s: request %s: %w", g.ID, id, err)
		}
		trunc = trunc || t
		for _, e := range evs {
			if !seen[e.Seq] {
				seen[e.Seq] = true
				events = append(events, e)
			}
		}
	}
	sort.Slice(events, func(i, j int) bool { return events[i].Seq < events[j].Seq })
	return c.buildStory(events, trunc), nil
}

// requestStory gathers a request's events.
func (c *Console) requestStory(ctx context.Context, r grants.Request) (story, error) {
	evs, trunc, err := c.searchUpTo(ctx, audit.Query{RequestID: r.ID}, storyLimit)
	if err != nil {
		return story{}, fmt.Errorf("story of request %s: %w", r.ID, err)
	}
	return c.buildStory(evs, trunc), nil
}

func (c *Console) buildStory(events []audit.Event, trunc bool) story {
	cs := c.chainState()
	st := story{Truncated: trunc, Chain: cs}
	sessions := map[string]*sessionView{}
	var order []string
	for _, e := range events {
		s := c.stepOf(e, cs)
		if id := e.Evidence["session_id"]; id != "" && strings.HasPrefix(string(e.Action), "session.") {
			sv := sessions[id]
			if sv == nil {
				sv = &sessionView{ID: id}
				sessions[id] = sv
				order = append(order, id)
			}
			switch e.Action {
			case audit.ActionSessionStarted:
				sv.Started, sv.StartSeq = s.Time, e.Seq
				sv.Role, sv.Database, sv.Client = e.Evidence["role"], e.Evidence["database"], e.Evidence["client_addr"]
			case audit.ActionSessionEnded:
				sv.Ended, sv.EndSeq, sv.EndReason = s.Time, e.Seq, e.Evidence["reason"]
			case audit.ActionSessionStatement:
				sv.Statements = append(sv.Statements, s)
				continue // statements are shown under their session only
			}
		}
		st.Steps = append(st.Steps, s)
	}
	for _, id := range order {
		sv := sessions[id]
		sv.StatementsHTML = statementsHTML(sv.Statements)
		st.Sessions = append(st.Sessions, *sv)
	}
	st.StepsHTML = stepsHTML(st.Steps)
	return st
}

// chainState is the chain watcher's state, or an unknown one without a watcher.
func (c *Console) chainState() ChainState {
	if c.chain == nil {
		return ChainState{}
	}
	return c.chain.State()
}
