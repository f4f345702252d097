package grants

import (
	"fmt"
	"strings"
	"time"
)

// RequestState is where an access request is.
type RequestState string

// Request states: pending → approved | denied | expired | rejected. A request is rejected on
// arrival, or after it was recorded when it turns out nobody may grant it (the requester cannot
// be identified, or the policy has no path).
const (
	RequestPending  RequestState = "pending"
	RequestApproved RequestState = "approved"
	RequestDenied   RequestState = "denied"
	RequestExpired  RequestState = "expired"
	RequestRejected RequestState = "rejected"
)

var requestTransitions = map[RequestState][]RequestState{
	RequestPending: {RequestPending, RequestApproved, RequestDenied, RequestExpired, RequestRejected},
}

// RequestStage is how far the broker got with a pending request, so that a broker that
// restarts carries on where it stopped: a recorded request is still to be decided; one
// awaiting approval has had its approval messages posted; a decided one needs nothing more.
// A stage only moves forward (see Request.Advance).
type RequestStage string

// Request stages, in order.
const (
	StageRecorded         RequestStage = ""
	StageAwaitingApproval RequestStage = "awaiting_approval"
	StageDecided          RequestStage = "decided"
)

var stageOrder = map[RequestStage]int{StageRecorded: 0, StageAwaitingApproval: 1, StageDecided: 2}

// Source is where a request came from.
type Source string

// Request sources.
const (
	SourceSlack     Source = "slack"
	SourcePagerDuty Source = "pagerduty"
	SourceAPI       Source = "api"
	SourceCLI       Source = "cli"
	SourceConsole   Source = "console" // the web console (integrations/console)
)

// Approval is one approver's decision.
type Approval struct {
	By       string    `json:"by"` // Slack user id of the approver
	At       time.Time `json:"at"`
	Approved bool      `json:"approved"`
}

// Request is a person asking for access to a resource.
type Request struct {
	ID         string
	Requester  Person
	Resource   string
	Duration   time.Duration
	Reason     string
	Source     Source
	State      RequestState
	Stage      RequestStage
	Approvals  []Approval
	IncidentID string
	// Evidence is the non-secret context of the decision (on-call schedule, incident, …).
	Evidence map[string]string
	// ExternalKey deduplicates deliveries (a Slack trigger id, a PagerDuty event id); unique
	// when set.
	ExternalKey string
	// Notify is opaque delivery context for the front end (for example a Slack response_url
	// or approval message reference); never a secret.
	Notify string

	CreatedAt time.Time
	DecidedAt time.Time
	ExpiresAt time.Time // a pending request expires then
	Version   int64
	UpdatedAt time.Time
}

// Transition moves r to next, or returns an error if the state machine forbids it.
func (r *Request) Transition(next RequestState) error {
	for _, s := range requestTransitions[r.State] {
		if s == next {
			r.State = next
			return nil
		}
	}
	return fmt.Errorf("request %s: illegal transition %s → %s: %w", r.ID, r.State, next, ErrIllegalTransition)
}

// Advance moves r forward to stage next (or leaves it there), or returns an error wrapping
// ErrIllegalTransition if next is behind r's stage or unknown.
func (r *Request) Advance(next RequestStage) error {
	to, ok := stageOrder[next]
	if from := stageOrder[r.Stage]; !ok || to < from {
		return fmt.Errorf("request %s: illegal stage change %q → %q: %w", r.ID, r.Stage, next, ErrIllegalTransition)
	}
	r.Stage = next
	return nil
}

// PendingLimitError is the refusal of a new request whose requester already has Max pending
// requests for Resource (RequestWrite.MaxPending). Pending lists their ids, oldest first.
// It unwraps to ErrPendingLimit.
type PendingLimitError struct {
	Resource string
	Max      int
	Pending  []string
}

func (e *PendingLimitError) Error() string {
	return fmt.Sprintf("%d pending request(s) for %s already (%s), the most allowed is %d: %v",
		len(e.Pending), e.Resource, strings.Join(e.Pending, ", "), e.Max, ErrPendingLimit)
}

// Unwrap returns ErrPendingLimit.
func (e *PendingLimitError) Unwrap() error { return ErrPendingLimit }
