package grants

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// Provider creates and removes real access in an upstream system (a PostgreSQL role, an AWS
// session, a GitHub team membership).
//
// Implementations must be safe for concurrent use. Names they create must be derived from the
// grant id (IssueRequest.GrantID), so that a grant whose Issue was interrupted by a crash can
// still be revoked from RevokeRequest alone, with an empty Handle.
type Provider interface {
	// Kind is the configured provider name, e.g. "postgres".
	Kind() string
	// Issue creates the access. It returns the credential to deliver once to its owner and the
	// non-secret handle that Revoke needs. If the person already had the access before this
	// call (not through accessbroker), Issued.Handle.Preexisting must be true. With an error,
	// any credential returned is never delivered, and its values are scrubbed from the error.
	Issue(ctx context.Context, req IssueRequest) (Issued, error)
	// Revoke removes the access. It is idempotent: access that is already gone (or never
	// existed) is success, nil. Errors wrapping ErrNeedsOperator tell the revoker an operator
	// must act; any other error is retried.
	Revoke(ctx context.Context, req RevokeRequest) error
}

// Extender is an optional Provider ability: moving the upstream expiry of a live grant.
type Extender interface {
	Extend(ctx context.Context, req RevokeRequest, newExpiry time.Time) error
}

// IssuePreparer is an optional Provider ability: doing the slow part of an issue (hashing a
// password, sending the statement that creates a role) while the grant's write-ahead record
// is still being committed, and making the access real only afterwards.
//
// The Manager calls PrepareIssue concurrently with the write-ahead commit, then exactly one of
// the returned PreparedIssue's methods: Commit once the write-ahead record (the grant row with
// its expiry and its audit event) is durable, Abort when it could not be recorded. Until
// Commit, the prepared work must grant nothing that anyone could use (a role created in a
// transaction that is not committed yet, say): if the process dies before Commit, the access
// must not exist, and if it dies during Commit, Revoke must remove whatever Commit made.
//
// A PrepareIssue error is not an issue failure: Commit is then called as usual and must
// either finish the issue another way (Issue's own path) or return the error. So the
// Manager's answer for a prepared issue is Commit's, with Issue's contract.
type IssuePreparer interface {
	PrepareIssue(ctx context.Context, req IssueRequest) PreparedIssue
}

// PreparedIssue is an issue made ready by IssuePreparer.PrepareIssue, waiting for the
// write-ahead record.
type PreparedIssue interface {
	// Commit makes the access real and returns what Issue would have. It is called only
	// after the grant's write-ahead record is durable.
	Commit(ctx context.Context) (Issued, error)
	// Abort discards the prepared work: nothing was granted.
	Abort(ctx context.Context)
}

// RevokeReporter is an optional Provider ability: a revocation that also reports what it did
// upstream, for the audit record. When a provider implements it, the revoker calls
// RevokeWithResult instead of Revoke; the contract is Revoke's (idempotent, nil when already
// gone, ErrNeedsOperator for what retrying will not fix).
type RevokeReporter interface {
	RevokeWithResult(ctx context.Context, req RevokeRequest) (RevokeResult, error)
}

// RevokeResult is the non-secret account of one revocation attempt. A failed attempt may
// still return what it finished before failing, since a retry will not see that work again.
type RevokeResult struct {
	// Evidence is added to the grant.revoked event (grant.revoke_failed when the attempt
	// failed). It never replaces the revoker's own keys (cause, attempt, attempts, class,
	// retry_at, person). Values must be bounded in size and hold no secret.
	Evidence map[string]string
	// ReadBack says the provider read the grant's access back itself, after removing it and
	// in the same call, and found none, as its HasAccess would have answered at that moment
	// (PostgreSQL: in the round trip whose transaction dropped the role). The revoker then
	// makes no read-back call of its own; it still records read_back=gone. Leave it false
	// unless the check is at least as strong as HasAccess.
	ReadBack bool
}

// IssueRequest is what a provider needs to create access.
type IssueRequest struct {
	GrantID   string
	Resource  string
	Person    Person
	ExpiresAt time.Time
	Reason    string
}

// RevokeRequest is what a provider needs to remove access. Handle is empty when the issue was
// interrupted before the provider answered.
type RevokeRequest struct {
	GrantID  string
	Resource string
	Person   Person
	Handle   Handle
}

// Handle is the non-secret record of what a provider created. It is stored with the grant.
type Handle struct {
	// Key names the access itself, independent of the grant ("github-team:acme/infra:alice").
	// Two grants with the same Key give the same access: revoking one while the other is live
	// must not remove it.
	Key string `json:"key,omitempty"`
	// Preexisting is true when the person had this access before any accessbroker grant; a
	// revocation then leaves it in place.
	Preexisting bool `json:"preexisting,omitempty"`
	// Data is provider-specific, non-secret revocation data (a role name, a session name).
	Data map[string]string `json:"data,omitempty"`
}

// Issued is a provider's answer to Issue.
type Issued struct {
	Handle     Handle
	Credential Credential
}

// Credential is a secret for the grant's owner. It is delivered once and never stored, logged
// or audited: it prints as "[REDACTED]" through fmt, slog and encoding/json. Reveal returns the
// real values for the one place that delivers them.
type Credential struct {
	kind   string
	fields map[string]string
	order  []string
}

// NewCredential builds a credential of the given kind (e.g. "postgres") from name/value pairs,
// keeping their order for display.
func NewCredential(kind string, pairs ...string) Credential {
	if len(pairs)%2 != 0 {
		panic("grants.NewCredential: odd number of arguments")
	}
	c := Credential{kind: kind, fields: make(map[string]string, len(pairs)/2)}
	for i := 0; i < len(pairs); i += 2 {
		c.order = append(c.order, pairs[i])
		c.fields[pairs[i]] = pairs[i+1]
	}
	return c
}

// Kind is the credential's kind; not secret.
func (c Credential) Kind() string { return c.kind }

// Empty reports whether the credential carries nothing (a GitHub team membership, say).
func (c Credential) Empty() bool { return len(c.fields) == 0 }

// Reveal returns the secret fields in order. Only delivery to the owner may call it.
func (c Credential) Reveal() []Field {
	out := make([]Field, 0, len(c.order))
	for _, k := range c.order {
		out = append(out, Field{Name: k, Value: c.fields[k]})
	}
	return out
}

// Values returns every field value, for scrubbing them out of error messages.
func (c Credential) Values() []string {
	out := make([]string, 0, len(c.fields))
	for _, v := range c.fields {
		out = append(out, v)
	}
	return out
}

// Field is one named part of a revealed credential.
type Field struct{ Name, Value string }

const redacted = "[REDACTED]"

// String redacts.
func (c Credential) String() string { return fmt.Sprintf("credential(%s)%s", c.kind, redacted) }

// GoString redacts.
func (c Credential) GoString() string { return c.String() }

// Format redacts for every verb, including %#v and %+v.
func (c Credential) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// LogValue redacts for log/slog.
func (c Credential) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalJSON redacts.
func (c Credential) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// MarshalText redacts.
func (c Credential) MarshalText() ([]byte, error) { return []byte(c.String()), nil }
