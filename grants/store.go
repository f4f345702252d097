package grants

import (
	"context"
	"time"

	"github.com/accessbroker/accessbroker/audit"
)

// Store keeps requests, grants and the audit chain. Every mutation goes through Apply, which
// writes the rows and appends the audit events in one transaction: either all of it is
// durable or none of it is (invariant 3, "no audit, no access").
//
// Implementations: grants/sqlstore (SQLite, PostgreSQL). Conformance: grants/storetest.
type Store interface {
	// Apply commits a change atomically. Rows marked Create are inserted (ErrConflict if the id
	// or ExternalKey exists); the others are updated only if their Version still matches the
	// stored one (else ErrConflict and nothing is written). On success every written row's
	// Version is incremented and its UpdatedAt set, and each event's Seq, PrevHash and Hash are
	// filled in. A change without events is refused. A grant's identity (RequestID, Resource,
	// Provider, Person, Reason, IncidentID, CreatedAt) is fixed when it is created; updates
	// write the rest.
	Apply(ctx context.Context, c *Change) error

	// GetGrant returns one grant or ErrNotFound.
	GetGrant(ctx context.Context, id string) (Grant, error)
	// ListGrants returns grants matching f, newest first.
	ListGrants(ctx context.Context, f GrantFilter) ([]Grant, error)
	// GetRequest returns one request or ErrNotFound.
	GetRequest(ctx context.Context, id string) (Request, error)
	// ListRequests returns requests matching f, newest first.
	ListRequests(ctx context.Context, f RequestFilter) ([]Request, error)

	// ClaimDue leases up to limit grants that are not revoked, whose DueAt is at or before now
	// and whose previous claim (if any) has lapsed, oldest DueAt first. The claim is recorded
	// as ClaimedBy = owner until now+lease. Two concurrent callers never receive the same
	// grant. A claim is a lease, not a state change: it writes no audit event.
	ClaimDue(ctx context.Context, owner string, now time.Time, limit int, lease time.Duration) ([]Grant, error)
	// RenewClaims extends to until the claims that owner still holds on the grants ids (those
	// not revoked, claimed by owner, and not lapsed before now), and returns how many it
	// extended. A claim that lapsed or that another owner took is left alone. It does not
	// change a grant's Version, so the owner's copy stays current.
	RenewClaims(ctx context.Context, owner string, ids []string, now, until time.Time) (int, error)
	// NextDue returns the earliest DueAt among grants that are not revoked, or ok=false.
	NextDue(ctx context.Context) (t time.Time, ok bool, err error)
}

// Change is one atomic write: rows and the audit events that explain them.
type Change struct {
	Requests []RequestWrite
	Grants   []GrantWrite
	Events   []*audit.Event
}

// GrantWrite inserts (Create) or updates one grant.
type GrantWrite struct {
	Grant  *Grant
	Create bool
}

// RequestWrite inserts (Create) or updates one request.
type RequestWrite struct {
	Request *Request
	Create  bool
	// MaxPending, with Create, caps the requester's pending requests for the resource: the
	// change is refused with a *PendingLimitError (nothing written) when the requester (same
	// Slack team and user) already has MaxPending requests pending for Request.Resource and
	// not past their ExpiresAt. The count is taken inside the change's transaction,
	// serialised with every other change, so concurrent creations cannot both pass; it
	// includes requests created earlier in the same change. 0: no cap.
	MaxPending int
}

// GrantFilter selects grants. Zero fields match everything.
type GrantFilter struct {
	States     []State
	Resource   string
	SlackUser  string
	RequestID  string
	IncidentID string
	HandleKey  string
	Limit      int // 0 means no limit
}

// RequestFilter selects requests. Zero fields match everything.
type RequestFilter struct {
	States    []RequestState
	Resource  string
	SlackUser string
	Limit     int
}
