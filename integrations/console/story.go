package console

import (
	"context"
	"fmt"
	"html/template"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

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
	// hashOK: the event, as read, hashes to its stored hash (hashesOK); Mark is made from
	// it and the watcher's state when the page is shown.
	hashOK bool
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

// headOf is an event's step without its evidence (the audit search's rows show none),
// with its hash checked and no mark yet.
func headOf(e audit.Event) step {
	return step{Seq: e.Seq, Time: audit.FormatTime(e.Time), Kind: kindOf(e.Action), Action: string(e.Action), Actor: actorText(e.Actor),
		Reason: broker.Clean(e.Reason), GrantID: e.GrantID, Request: e.RequestID, hashOK: hashesOK(e)}
}

func stepOf(e audit.Event) step {
	st := headOf(e)
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
// requests that name it), in seq order: from the story cache when nothing was appended to
// them since it was read (storyCache).
func (c *Console) grantStory(ctx context.Context, g grants.Grant) (story, error) {
	key := "g/" + g.ID
	if cs, err := c.cachedStory(ctx, key); err != nil || cs != nil {
		return c.viewStory(cs), err
	}
	head, err := c.logHead(ctx)
	if err != nil {
		return story{}, fmt.Errorf("story of grant %s: %w", g.ID, err)
	}
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
	cs := readStory(events, trunc)
	cs.key, cs.grantID, cs.requests, cs.head = key, g.ID, ids, head
	c.stories.put(cs, c.cfg.Clock.Now())
	return c.viewStory(cs), nil
}

// requestStory gathers a request's events, from the story cache as grantStory does.
func (c *Console) requestStory(ctx context.Context, r grants.Request) (story, error) {
	key := "r/" + r.ID
	if cs, err := c.cachedStory(ctx, key); err != nil || cs != nil {
		return c.viewStory(cs), err
	}
	head, err := c.logHead(ctx)
	if err != nil {
		return story{}, fmt.Errorf("story of request %s: %w", r.ID, err)
	}
	evs, trunc, err := c.searchUpTo(ctx, audit.Query{RequestID: r.ID}, storyLimit)
	if err != nil {
		return story{}, fmt.Errorf("story of request %s: %w", r.ID, err)
	}
	cs := readStory(evs, trunc)
	cs.key, cs.requests, cs.head = key, []string{r.ID}, head
	c.stories.put(cs, c.cfg.Clock.Now())
	return c.viewStory(cs), nil
}

// logHead is the seq of the log's last event (0 when empty). Read before a story's
// queries, it bounds what they saw: every event at or before it was committed before them
// (seqs are assigned in commit order, as the chain requires), so any event of the story
// they missed has a higher seq, and storyUnchanged finds it.
func (c *Console) logHead(ctx context.Context) (int64, error) {
	evs, err := c.cfg.Audit.Search(ctx, audit.Query{Descending: true, Limit: 1})
	if err != nil || len(evs) == 0 {
		return 0, err
	}
	return evs[0].Seq, nil
}

// cachedStory is the cached story under key if it may still be shown: younger than
// storyCacheTTL, and no event of its grant or requests appended after its head. nil
// otherwise.
func (c *Console) cachedStory(ctx context.Context, key string) (*cachedStory, error) {
	cs := c.stories.get(key, c.cfg.Clock.Now())
	if cs == nil {
		return nil, nil
	}
	same, err := c.storyUnchanged(ctx, cs)
	if err != nil {
		return nil, fmt.Errorf("story %s: %w", key, err)
	}
	if !same {
		return nil, nil
	}
	return cs, nil
}

// storyUnchanged reports whether no event naming cs's grant or one of its requests was
// appended after cs.head: one indexed probe each (grant_id or request_id, then seq), at
// most one row read.
func (c *Console) storyUnchanged(ctx context.Context, cs *cachedStory) (bool, error) {
	probe := func(q audit.Query) (bool, error) {
		q.AfterSeq, q.Limit = cs.head, 1
		evs, err := c.cfg.Audit.Search(ctx, q)
		return len(evs) == 0, err
	}
	if cs.grantID != "" {
		if ok, err := probe(audit.Query{GrantID: cs.grantID}); !ok || err != nil {
			return false, err
		}
	}
	for _, id := range cs.requests {
		if ok, err := probe(audit.Query{RequestID: id}); !ok || err != nil {
			return false, err
		}
	}
	return true, nil
}

// readStory turns a story's events into steps and sessions, without marks: what the
// story cache keeps.
func readStory(events []audit.Event, trunc bool) *cachedStory {
	cs := &cachedStory{trunc: trunc, events: len(events)}
	sessions := map[string]*sessionView{}
	var order []string
	for _, e := range events {
		s := stepOf(e)
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
		cs.steps = append(cs.steps, s)
	}
	for _, id := range order {
		cs.sessions = append(cs.sessions, *sessions[id])
	}
	return cs
}

// viewStory is cs as a page shows it now: each event marked with the chain watcher's
// current state (so damage found after cs was read shows at once), and rendered. cs is
// not changed (other views share it).
func (c *Console) viewStory(cs *cachedStory) story {
	if cs == nil {
		return story{}
	}
	st := story{Truncated: cs.trunc, Chain: c.chainState()}
	m := newMarker(st.Chain)
	marked := func(in []step) []step {
		out := slices.Clone(in)
		for i := range out {
			out[i].Mark = m.at(out[i].Seq, out[i].hashOK)
		}
		return out
	}
	st.Steps = marked(cs.steps)
	st.StepsHTML = stepsHTML(st.Steps)
	for _, sv := range cs.sessions {
		sv.Statements = marked(sv.Statements)
		sv.StatementsHTML = statementsHTML(sv.Statements)
		st.Sessions = append(st.Sessions, sv)
	}
	return st
}

// chainState is the chain watcher's state, or an unknown one without a watcher.
func (c *Console) chainState() ChainState {
	if c.chain == nil {
		return ChainState{}
	}
	return c.chain.State()
}

// The story cache keeps the stories the grant and request pages read (their events as
// steps and sessions, each with its own hash check, without marks), so that a page seen
// again reads one index probe per grant and request instead of every event again.
//
// The rule that keeps the marks truthful: a cached story is shown only while (1) no event
// of its grant or requests was appended since it was read (storyUnchanged, every view),
// and (2) it is younger than storyCacheTTL; and its marks are never cached: every view
// marks its events from the chain watcher's state at that moment, so damage the watcher
// finds later (anywhere at or before an event's seq) shows on cached stories at once, as
// on fresh ones. What a cached story cannot show is a row altered in the database file
// (the audit table refuses UPDATE and DELETE) after it was read: for at most storyCacheTTL
// the page shows the row as it was read and verified; then the story is read again and
// the altered row is marked broken. `accessbroker audit verify` recomputes everything.
const (
	storyCacheTTL = time.Minute
	// storyCacheEvents bounds the events held in all (a few kB each at most: a few tens
	// of MB); the least recently shown stories go first.
	storyCacheEvents = 20_000
)

// cachedStory is one story as read.
type cachedStory struct {
	key      string
	steps    []step        // no marks
	sessions []sessionView // statements without marks, StatementsHTML unset
	trunc    bool
	grantID  string   // the grant whose events were read ("" for a request's story)
	requests []string // the requests whose events were read
	head     int64    // the log's last seq before the reads (logHead)
	readAt   time.Time
	events   int
	used     uint64 // last use, for eviction
}

// storyCache holds cachedStory values by key ("g/" or "r/" and the id).
type storyCache struct {
	mu     sync.Mutex
	m      map[string]*cachedStory
	events int
	tick   uint64
}

// get returns the story under key if it is younger than storyCacheTTL at now.
func (sc *storyCache) get(key string, now time.Time) *cachedStory {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	cs := sc.m[key]
	if cs == nil {
		return nil
	}
	if now.Sub(cs.readAt) >= storyCacheTTL || now.Before(cs.readAt) {
		sc.drop(cs)
		return nil
	}
	sc.tick++
	cs.used = sc.tick
	return cs
}

// put stores cs as read at now, evicting the least recently used stories beyond
// storyCacheEvents.
func (sc *storyCache) put(cs *cachedStory, now time.Time) {
	if cs.events > storyCacheEvents/4 {
		return // one story never takes most of the cache
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.m == nil {
		sc.m = map[string]*cachedStory{}
	}
	if old := sc.m[cs.key]; old != nil {
		sc.drop(old)
	}
	sc.tick++
	cs.readAt, cs.used = now, sc.tick
	sc.m[cs.key] = cs
	sc.events += cs.events
	for sc.events > storyCacheEvents {
		var lru *cachedStory
		for _, x := range sc.m {
			if lru == nil || x.used < lru.used {
				lru = x
			}
		}
		sc.drop(lru)
	}
}

func (sc *storyCache) drop(cs *cachedStory) {
	delete(sc.m, cs.key)
	sc.events -= cs.events
}
