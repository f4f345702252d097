// Package grants owns the life of a grant: its state machine, the Store and Provider
// contracts, write-ahead issuing, and the revoker that ends every grant on a durable timer.
package grants

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// State is where a grant is in its life.
//
//	issuing ──► active ──► revoking ──► revoked
//	   │                      ▲  │         ▲
//	   └──────────────────────┘  └► revoke_failed (retried forever)
type State string

// Grant states.
const (
	StateIssuing      State = "issuing"       // row written ahead, provider not yet answered
	StateActive       State = "active"        // credential issued, expiry pending
	StateRevoking     State = "revoking"      // revocation requested, not yet attempted
	StateRevokeFailed State = "revoke_failed" // at least one attempt failed; retried with backoff
	StateRevoked      State = "revoked"       // final
)

// States lists every grant state, in lifecycle order.
var States = []State{StateIssuing, StateActive, StateRevoking, StateRevokeFailed, StateRevoked}

// ParseState checks s names a grant state.
func ParseState(s string) (State, error) {
	for _, st := range States {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("unknown grant state %q (want one of issuing, active, revoking, revoke_failed, revoked)", s)
}

var transitions = map[State][]State{
	StateIssuing:      {StateActive, StateRevoking, StateRevoked, StateRevokeFailed},
	StateActive:       {StateActive, StateRevoking, StateRevoked, StateRevokeFailed},
	StateRevoking:     {StateRevoked, StateRevokeFailed},
	StateRevokeFailed: {StateRevoked, StateRevokeFailed},
	StateRevoked:      nil,
}

// RevokeCause says why a grant ended.
type RevokeCause string

// Revoke causes.
const (
	CauseExpired          RevokeCause = "expired"
	CauseManual           RevokeCause = "manual"
	CauseIncidentResolved RevokeCause = "incident_resolved"
	CauseShiftEnded       RevokeCause = "shift_ended"
	CauseIssueFailed      RevokeCause = "issue_failed"      // the provider refused or errored while issuing
	CauseIssueInterrupted RevokeCause = "issue_interrupted" // the process died between write-ahead and the provider's answer
	CauseDeliveryFailed   RevokeCause = "delivery_failed"   // the credential could not reach its owner
)

// Person is who a grant is for. The Slack team and user id are the identity; the rest is
// resolved from them and never used to identify someone else.
type Person struct {
	SlackTeamID string `json:"slack_team_id,omitempty"`
	SlackUserID string `json:"slack_user_id,omitempty"`
	Email       string `json:"email,omitempty"`
	PagerDutyID string `json:"pagerduty_id,omitempty"`
	GitHubLogin string `json:"github_login,omitempty"`
	// ResolvedBy records how the identity was resolved ("config", "slack_users_info", …).
	ResolvedBy string `json:"resolved_by,omitempty"`
}

// Label is a short, stable, human-readable name for the person.
func (p Person) Label() string {
	switch {
	case p.Email != "":
		return p.Email
	case p.SlackUserID != "":
		return p.SlackUserID
	default:
		return p.GitHubLogin
	}
}

// Grant is one time-boxed access. It never holds a secret: only the Handle needed to revoke.
type Grant struct {
	ID         string
	RequestID  string
	Resource   string
	Provider   string // provider kind, e.g. "postgres"
	Person     Person
	State      State
	Reason     string
	IncidentID string // PagerDuty incident the grant is tied to, if any

	CreatedAt   time.Time // write-ahead time
	IssuedAt    time.Time // zero until active
	ExpiresAt   time.Time
	RevokedAt   time.Time // zero until revoked
	RevokeCause RevokeCause
	Handle      Handle

	Attempts  int       // failed revocation attempts so far
	DueAt     time.Time // when the revoker must next act on this grant
	LastError string    // last revocation error, already scrubbed of secrets
	ClaimedBy string    // revoker instance holding the claim, if any
	ClaimedTo time.Time // claim lease end

	// AccessMissingAt is when the drift reconciler found that the access this live grant
	// should give is gone upstream (dropped or removed out of band); zero while it is there
	// (or was never checked). See DriftReconciler.
	AccessMissingAt time.Time

	Version   int64 // optimistic-concurrency version, bumped by every write
	UpdatedAt time.Time
}

// Transition moves g to next, or returns an error if the state machine forbids it.
func (g *Grant) Transition(next State) error {
	for _, s := range transitions[g.State] {
		if s == next {
			g.State = next
			return nil
		}
	}
	return fmt.Errorf("grant %s: illegal transition %s → %s: %w", g.ID, g.State, next, ErrIllegalTransition)
}

// Live reports whether the grant may still give access (it is not revoked).
func (g Grant) Live() bool { return g.State != StateRevoked }

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID returns a random identifier with the given prefix ("g" → "g_k3x…"), 80 bits of entropy.
func NewID(prefix string) string {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return prefix + "_" + idEncoding.EncodeToString(b[:])
}

// orderedDigits are NewID's base32 digits in byte order, so that numbers written with them
// sort as strings in numeric order.
const orderedDigits = "234567abcdefghijklmnopqrstuvwxyz"

// orderedSeq numbers this process's ordered ids, for NewOrderedID.
var orderedSeq atomic.Uint64

// NewOrderedID returns an identifier with the given prefix that sorts as t does: prefix, "_",
// t's Unix milliseconds in 10 digits, a count of this process's ordered ids in 6 (30 bits, so
// ids made in one millisecond sort as they were made), then 10 random digits (50 bits:
// another process's id of the same millisecond and count differs there); 26 digits in all.
// Rows keyed by such ids append at the end of a B-tree index instead of each landing on a
// random page of it: on SQLite a random id costs a page write per row at commit once the
// index outgrows a batch (half the CPU time of a statement the session proxy records
// against a 100,000-event table; BenchmarkRecordStatements).
func NewOrderedID(prefix string, t time.Time) string {
	var b [10 + 6 + 10]byte
	put := func(v uint64, from, to int) { // v's low 5*(to-from) bits into b[from:to]
		for i := to - 1; i >= from; i-- {
			b[i] = orderedDigits[v&31]
			v >>= 5
		}
	}
	put(uint64(t.UnixMilli()), 0, 10)
	put(orderedSeq.Add(1), 10, 16)
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	put(binary.BigEndian.Uint64(r[:]), 16, 26)
	return prefix + "_" + string(b[:])
}

// NewCompactOrderedID returns an identifier of NewID's form (the prefix, "_" and 16 base32
// digits: ValidID accepts it, and whatever derives names from NewID's ids, such as the
// PostgreSQL provider's role names, takes it unchanged) that sorts as t does to the
// millisecond: t's Unix milliseconds in 9 digits (45 bits, until the year 3084), then 7
// random digits (35 bits). It is for grant and request ids (#16.7, #16.4): the grants and
// requests tables and the audit log's grant and request indexes are keyed by them, and a
// random key costs a write of a random page of each B-tree per row once they outgrow the
// page cache. Two ids collide only if made in the same millisecond with the same 35 random
// bits (about 1 in 34 billion for two ids of one millisecond); the store's unique key
// refuses the second, which then fails closed. Nothing relies on a grant or request id
// being unguessable: every action on a grant is authorised by who asks, a role's secret is
// its password, not its name, a Slack button counts only with Slack's signature and an
// approver's click, and the console checks who may read a request.
func NewCompactOrderedID(prefix string, t time.Time) string {
	var b [16]byte
	v := uint64(max(t.UnixMilli(), 0))
	for i := 8; i >= 0; i-- {
		b[i] = orderedDigits[v&31]
		v >>= 5
	}
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	v = binary.BigEndian.Uint64(r[:])
	for i := 15; i >= 9; i-- {
		b[i] = orderedDigits[v&31]
		v >>= 5
	}
	return prefix + "_" + string(b[:])
}

// ValidID reports whether s looks like an id made by NewID with the given prefix. Use it on
// any id that comes from outside before looking it up.
func ValidID(prefix, s string) bool {
	rest, ok := strings.CutPrefix(s, prefix+"_")
	if !ok || len(rest) != 16 {
		return false
	}
	_, err := idEncoding.DecodeString(rest)
	return err == nil
}
