// Package brokertest provides in-memory fakes of the broker's ports (Notifier, Directory,
// Groups) and a fake grants.Provider, for tests of the broker and of the front ends built on
// it. It imports no testing package, so it can also serve a demo.
package brokertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

// Directory is a broker.Directory over a fixed table of people keyed by Slack user id.
type Directory struct {
	mu     sync.Mutex
	people map[string]grants.Person
	err    error
}

// NewDirectory returns a directory knowing the given people.
func NewDirectory(people ...grants.Person) *Directory {
	d := &Directory{people: map[string]grants.Person{}}
	for _, p := range people {
		d.people[p.SlackUserID] = p
	}
	return d
}

// Fail makes Resolve return err for everyone (nil to stop).
func (d *Directory) Fail(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.err = err
}

// Resolve implements broker.Directory.
func (d *Directory) Resolve(_ context.Context, teamID, userID string) (grants.Person, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return grants.Person{}, d.err
	}
	p, ok := d.people[userID]
	if !ok || (p.SlackTeamID != "" && p.SlackTeamID != teamID) {
		return grants.Person{}, fmt.Errorf("%w: %s is not linked; ask an admin to add you to identities", broker.ErrUnknownPerson, userID)
	}
	if p.ResolvedBy == "" {
		p.ResolvedBy = "config"
	}
	p.SlackTeamID = teamID
	return p, nil
}

// Groups is a broker.Groups over a fixed table.
type Groups struct {
	mu      sync.Mutex
	members map[string][]string
	err     error
	calls   int
}

// NewGroups returns an empty table.
func NewGroups() *Groups { return &Groups{members: map[string][]string{}} }

// Set replaces a group's members.
func (g *Groups) Set(group string, users ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.members[group] = users
}

// Fail makes Members fail (nil to stop).
func (g *Groups) Fail(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.err = err
}

// Calls is how many lookups were made.
func (g *Groups) Calls() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls
}

// Members implements broker.Groups.
func (g *Groups) Members(_ context.Context, group string) ([]string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls++
	if g.err != nil {
		return nil, g.err
	}
	m, ok := g.members[group]
	if !ok {
		return nil, fmt.Errorf("usergroup %s: no_such_subteam", group)
	}
	return append([]string(nil), m...), nil
}

// Note is one thing a Notifier was asked to do.
type Note struct {
	Kind    string // ask, update, tell, deliver, remind, audit
	To      broker.Recipient
	Text    string
	Request grants.Request
	Outcome broker.ApprovalOutcome
	Grant   grants.Grant
	// CredentialFields are the names (never the values) of a delivered credential's fields.
	CredentialFields []string
	ExtendBy         time.Duration      // a reminder's offer.By
	Offer            broker.ExtendOffer // a reminder's offer
	Refs             []broker.MessageRef
}

// Notifier records every call; DeliverErr, AskErr and TellErr inject failures.
type Notifier struct {
	mu         sync.Mutex
	notes      []Note
	changed    chan struct{}
	seq        int
	DeliverErr error
	AskErr     error
	TellErr    error
}

// NewNotifier returns an empty recorder.
func NewNotifier() *Notifier { return &Notifier{changed: make(chan struct{})} }

func (n *Notifier) add(note Note) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.notes = append(n.notes, note)
	close(n.changed)
	n.changed = make(chan struct{})
}

// Notes returns the recorded notes of a kind ("" for all).
func (n *Notifier) Notes(kind string) []Note {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Note
	for _, x := range n.notes {
		if kind == "" || x.Kind == kind {
			out = append(out, x)
		}
	}
	return out
}

// WaitFor blocks until pred holds for the notes or ctx ends.
func (n *Notifier) WaitFor(ctx context.Context, pred func([]Note) bool) error {
	for {
		n.mu.Lock()
		ch := n.changed
		n.mu.Unlock()
		if pred(n.Notes("")) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (n *Notifier) fail(err error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return err
}

// AskApproval implements broker.Notifier.
func (n *Notifier) AskApproval(_ context.Context, ask broker.ApprovalAsk) ([]broker.MessageRef, error) {
	if err := n.fail(n.AskErr); err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.seq++
	ref := broker.MessageRef{Channel: "C0APPROVALS", TS: fmt.Sprintf("1700000000.%06d", n.seq)}
	n.mu.Unlock()
	n.add(Note{Kind: "ask", Request: ask.Request, Refs: []broker.MessageRef{ref}})
	return []broker.MessageRef{ref}, nil
}

// UpdateApproval implements broker.Notifier.
func (n *Notifier) UpdateApproval(_ context.Context, refs []broker.MessageRef, ask broker.ApprovalAsk, out broker.ApprovalOutcome) error {
	n.add(Note{Kind: "update", Request: ask.Request, Outcome: out, Refs: refs})
	return nil
}

// Tell implements broker.Notifier.
func (n *Notifier) Tell(_ context.Context, to broker.Recipient, text string) error {
	if err := n.fail(n.TellErr); err != nil {
		return err
	}
	n.add(Note{Kind: "tell", To: to, Text: text})
	return nil
}

// DeliverCredential implements broker.Notifier. It keeps only the field names.
func (n *Notifier) DeliverCredential(_ context.Context, to broker.Recipient, g grants.Grant, cred grants.Credential) error {
	if err := n.fail(n.DeliverErr); err != nil {
		return err
	}
	var names []string
	for _, f := range cred.Reveal() {
		names = append(names, f.Name)
	}
	n.add(Note{Kind: "deliver", To: to, Grant: g, CredentialFields: names})
	return nil
}

// Remind implements broker.Notifier.
func (n *Notifier) Remind(_ context.Context, g grants.Grant, offer broker.ExtendOffer) error {
	n.add(Note{Kind: "remind", Grant: g, ExtendBy: offer.By, Offer: offer})
	return nil
}

// PostAudit implements broker.Notifier.
func (n *Notifier) PostAudit(_ context.Context, line string) error {
	n.add(Note{Kind: "audit", Text: line})
	return nil
}

// Provider is a grants.Provider that "creates" access in memory: each issue returns a
// credential with a user and password derived from the grant id.
type Provider struct {
	kind    string
	mu      sync.Mutex
	live    map[string]bool // grant id → access exists
	issued  []string
	revoked []string
	// IssueErr makes Issue fail.
	IssueErr error
	// Delay is waited inside Issue (honouring ctx), to widen race windows.
	Delay time.Duration
}

// NewProvider returns a provider of the given kind.
func NewProvider(kind string) *Provider { return &Provider{kind: kind, live: map[string]bool{}} }

// Kind implements grants.Provider.
func (p *Provider) Kind() string { return p.kind }

// Issue implements grants.Provider.
func (p *Provider) Issue(ctx context.Context, req grants.IssueRequest) (grants.Issued, error) {
	if p.Delay > 0 {
		t := time.NewTimer(p.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return grants.Issued{}, ctx.Err()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.IssueErr != nil {
		return grants.Issued{}, p.IssueErr
	}
	p.live[req.GrantID] = true
	p.issued = append(p.issued, req.GrantID)
	user := "ab_" + strings.TrimPrefix(req.GrantID, "g_")
	return grants.Issued{
		Handle: grants.Handle{Key: p.kind + ":" + req.GrantID, Data: map[string]string{"role": user}},
		Credential: grants.NewCredential(p.kind,
			"connection_string", "postgres://"+user+":secret-"+req.GrantID+"@db.internal:5432/app?sslmode=require",
			"user", user, "password", "secret-"+req.GrantID),
	}, nil
}

// Revoke implements grants.Provider.
func (p *Provider) Revoke(_ context.Context, req grants.RevokeRequest) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.live, req.GrantID)
	p.revoked = append(p.revoked, req.GrantID)
	return nil
}

// Issued returns the grant ids issued so far.
func (p *Provider) Issued() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.issued...)
}

// Live reports whether access for a grant exists now.
func (p *Provider) Live(grantID string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.live[grantID]
}

// ErrDown is a convenient provider failure.
var ErrDown = errors.New("provider unavailable")

// StaticOnCall is a broker.OnCall answered from a fixed table (tests, the demo)
// instead of PagerDuty. A shift counts only if it names one of the policy's escalation
// policies or schedules (and an allowed level, when the policy lists levels) and covers now.
type StaticOnCall struct {
	clock grants.Clock
	mu    sync.Mutex
	by    map[string][]broker.Shift // Slack user id → shifts
	err   error
}

// NewStaticOnCall returns an empty table: nobody is on call.
func NewStaticOnCall(clock grants.Clock) *StaticOnCall {
	return &StaticOnCall{clock: clock, by: map[string][]broker.Shift{}}
}

// Set replaces a person's shifts (by Slack user id).
func (s *StaticOnCall) Set(slackUserID string, shifts ...broker.Shift) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.by[slackUserID] = append([]broker.Shift(nil), shifts...)
}

// Fail makes every Check return err (nil to stop), to exercise the "unknown" path.
func (s *StaticOnCall) Fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

// Check implements broker.OnCall.
func (s *StaticOnCall) Check(_ context.Context, p grants.Person, pol grants.Policy) (broker.OnCallStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return broker.OnCallStatus{}, s.err
	}
	now := s.clock.Now()
	var st broker.OnCallStatus
	for _, sh := range s.by[p.SlackUserID] {
		named := slices.Contains(pol.OnCallEscalationPolicies, sh.EscalationPolicyID) ||
			(sh.ScheduleID != "" && slices.Contains(pol.OnCallSchedules, sh.ScheduleID))
		level := len(pol.OnCallLevels) == 0 || slices.Contains(pol.OnCallLevels, sh.Level)
		current := !sh.Start.After(now) && (sh.End.IsZero() || sh.End.After(now))
		if named && level && current {
			st.Shifts = append(st.Shifts, sh)
		}
	}
	st.OnCall = len(st.Shifts) > 0
	return st, nil
}
