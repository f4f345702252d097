// Package audit holds the tamper-evident record of everything accessbroker does: the event
// schema, its canonical encoding, the hash chain, signed checkpoints and verification.
//
// It is a leaf package: no database, no network. Stores implement the small Reader interface
// and call Next to chain each event inside the transaction that records the state change.
package audit

import (
	"encoding/hex"
	"fmt"
	"time"
)

// Action names what happened. The set is open: new actions may be added, never renamed.
type Action string

// Actions recorded by accessbroker.
const (
	ActionRequestCreated    Action = "request.created"
	ActionRequestRejected   Action = "request.rejected"
	ActionRequestApproved   Action = "request.approved"
	ActionRequestDenied     Action = "request.denied"
	ActionRequestExpired    Action = "request.expired"
	ActionApprovalRecorded  Action = "request.approval_recorded"
	ActionOnCallChecked     Action = "oncall.checked"
	ActionGrantIssuing      Action = "grant.issuing"
	ActionGrantIssued       Action = "grant.issued"
	ActionGrantIssueFailed  Action = "grant.issue_failed"
	ActionGrantExtended     Action = "grant.extended"
	ActionGrantRevokeQueued Action = "grant.revoke_requested"
	ActionGrantRevoked      Action = "grant.revoked"
	ActionGrantRevokeFailed Action = "grant.revoke_failed"
	ActionWebhookRejected   Action = "webhook.rejected"
	ActionSummaryPosted     Action = "summary.posted"
	// ActionIdentityConflict: someone presented an email that the identities list gives to
	// another Slack user; they were refused.
	ActionIdentityConflict Action = "identity.conflict"
	// ActionAuditSuspect: the broker found the audit log it appends to damaged (the tail
	// does not verify from the newest checkpoint, or the log is behind a witness) and stopped
	// issuing grants. Evidence names the damage.
	ActionAuditSuspect Action = "audit.suspect"
	// ActionAuditSuspectCleared: an operator cleared the audit-suspect state after
	// investigating; the evidence carries the reason and an ed25519 signature by the audit
	// key over it, and a new checkpoint covers the head.
	ActionAuditSuspectCleared Action = "audit.suspect_cleared"
)

// EvidenceRefusedClick is the evidence key of a request.rejected event that records a refused
// Approve or Deny click (by the requester, or by someone who may not decide): its value is
// "approve" or "deny". The request it names was not rejected and is still undecided, so
// reports count such events as refused clicks, not as rejected requests.
const EvidenceRefusedClick = "refused_click"

// ActorKind says what sort of party acted.
type ActorKind string

// Actor kinds.
const (
	ActorUser      ActorKind = "user"      // a person, identified by Slack user id
	ActorOperator  ActorKind = "operator"  // someone at the command line or admin API
	ActorSystem    ActorKind = "system"    // accessbroker itself (revoker, reconciler, scheduler)
	ActorPagerDuty ActorKind = "pagerduty" // a PagerDuty webhook
	ActorUnknown   ActorKind = "unknown"   // an unauthenticated caller
)

// Actor is who caused an event.
type Actor struct {
	Kind  ActorKind `json:"kind"`
	ID    string    `json:"id"`
	Email string    `json:"email,omitempty"`
}

// Event is one audit record. Seq, PrevHash and Hash are assigned by the store when the event
// is appended; everything else is set by the caller. Events never contain secrets.
//
// Rules for adding fields (they change the canonical bytes, so old events must still verify):
// a new field must be optional and omitted from the canonical encoding when empty.
type Event struct {
	Seq       int64             `json:"seq"`
	ID        string            `json:"id"`
	Time      time.Time         `json:"time"`
	Actor     Actor             `json:"actor"`
	Action    Action            `json:"action"`
	RequestID string            `json:"request_id,omitempty"`
	GrantID   string            `json:"grant_id,omitempty"`
	Resource  string            `json:"resource,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	Evidence  map[string]string `json:"evidence,omitempty"`
	PrevHash  Hash              `json:"prev_hash"`
	Hash      Hash              `json:"hash"`
}

// HashSize is the size of a chain hash in bytes.
const HashSize = 32

// Hash is a SHA-256 chain hash. It encodes as lowercase hex in JSON and text.
type Hash [HashSize]byte

// Genesis is the "previous hash" of the first event (seq 1): 32 zero bytes.
var Genesis Hash

// String returns the lowercase hex form.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText encodes the hash as lowercase hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes lowercase or uppercase hex of exactly 32 bytes.
func (h *Hash) UnmarshalText(b []byte) error {
	p, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// ParseHash decodes a 64-character hex string.
func ParseHash(s string) (Hash, error) {
	var h Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != HashSize {
		return h, fmt.Errorf("audit hash %q: want %d hex characters", s, 2*HashSize)
	}
	copy(h[:], b)
	return h, nil
}
