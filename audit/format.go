package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
)

// EventFormat is an encoding of one event per line, for audit sinks and `audit export`.
type EventFormat string

// Event formats of audit.sinks[].format and `audit export --format`.
const (
	// EventJSON is Event.MarshalJSON: every field, with seq, prev_hash and hash.
	EventJSON EventFormat = "json"
	// EventOCSF is an OCSF 1.3.0 event (OCSF): Account Change for grants, Authentication
	// for logins and refused signatures, Base Event for the rest; seq and the chain hashes
	// are kept in metadata and unmapped.
	EventOCSF EventFormat = "ocsf"
)

// EventFormats lists the event formats, for validation messages.
var EventFormats = []EventFormat{EventJSON, EventOCSF}

// ParseEventFormat returns the format named s, or an error listing the valid names.
func ParseEventFormat(s string) (EventFormat, error) {
	if f := EventFormat(s); slices.Contains(EventFormats, f) {
		return f, nil
	}
	return "", fmt.Errorf("unknown event format %q: want json or ocsf", s)
}

// Encode returns e in the format, as one JSON object without a newline.
func (f EventFormat) Encode(e Event) ([]byte, error) {
	switch f {
	case EventJSON, "":
		return e.MarshalJSON()
	case EventOCSF:
		return json.Marshal(OCSF(e))
	}
	return nil, fmt.Errorf("unknown event format %q", f)
}

// Locate reads the seq and chain hash back from one line written by Encode.
func (f EventFormat) Locate(line []byte) (int64, Hash, error) {
	line = bytes.TrimSpace(line)
	switch f {
	case EventJSON, "":
		var v struct {
			Seq  *int64 `json:"seq"`
			Hash Hash   `json:"hash"`
		}
		if err := json.Unmarshal(line, &v); err != nil {
			return 0, Hash{}, fmt.Errorf("not an audit event in json: %w", err)
		}
		if v.Seq == nil {
			return 0, Hash{}, errors.New("not an audit event in json: no seq")
		}
		return *v.Seq, v.Hash, nil
	case EventOCSF:
		var v struct {
			Metadata struct {
				Sequence *int64 `json:"sequence"`
			} `json:"metadata"`
			Unmapped struct {
				Hash Hash `json:"hash"`
			} `json:"unmapped"`
		}
		if err := json.Unmarshal(line, &v); err != nil {
			return 0, Hash{}, fmt.Errorf("not an audit event in ocsf: %w", err)
		}
		if v.Metadata.Sequence == nil {
			return 0, Hash{}, errors.New("not an audit event in ocsf: no metadata.sequence")
		}
		return *v.Metadata.Sequence, v.Unmapped.Hash, nil
	}
	return 0, Hash{}, fmt.Errorf("unknown event format %q", f)
}

// OCSFVersion is the OCSF schema version OCSF events declare.
const OCSFVersion = "1.3.0"

// OCSF classes and categories used (schema.ocsf.io).
const (
	ocsfCategoryIAM           = 3 // Identity & Access Management
	ocsfClassAccountChange    = 3001
	ocsfClassAuthentication   = 3002
	ocsfClassBase             = 0 // Base Event, category 0 Uncategorized
	ocsfActivityAttachPolicy  = 7 // Account Change: a user/role was changed (access added)
	ocsfActivityDetachPolicy  = 8 // Account Change: a user/role was changed (access removed)
	ocsfActivityLogon         = 1 // Authentication
	ocsfActivityLogoff        = 2 // Authentication
	ocsfActivityOther         = 99
	ocsfStatusUnknown         = 0
	ocsfStatusSuccess         = 1
	ocsfStatusFailure         = 2
	ocsfSeverityInformational = 1
	ocsfSeverityMedium        = 3
	ocsfSeverityHigh          = 4
)

// OCSFEvent is the OCSF form of an event: the attributes of the OCSF base event and the
// Account Change / Authentication classes that accessbroker fills.
type OCSFEvent struct {
	ActivityID   int            `json:"activity_id"`
	ActivityName string         `json:"activity_name"`
	CategoryUID  int            `json:"category_uid"`
	CategoryName string         `json:"category_name"`
	ClassUID     int            `json:"class_uid"`
	ClassName    string         `json:"class_name"`
	TypeUID      int            `json:"type_uid"`
	TypeName     string         `json:"type_name"`
	Time         int64          `json:"time"` // milliseconds since the Unix epoch, UTC
	SeverityID   int            `json:"severity_id"`
	Severity     string         `json:"severity"`
	StatusID     int            `json:"status_id"`
	Status       string         `json:"status"`
	Message      string         `json:"message,omitempty"`
	Metadata     OCSFMetadata   `json:"metadata"`
	Actor        OCSFActor      `json:"actor"`
	User         *OCSFUser      `json:"user,omitempty"`
	Unmapped     OCSFUnmapped   `json:"unmapped"`
	Observables  []OCSFObserved `json:"observables,omitempty"`
}

// OCSFMetadata is OCSF's metadata object: the event's id and seq, and the product.
type OCSFMetadata struct {
	Version  string      `json:"version"`
	UID      string      `json:"uid"`
	Sequence int64       `json:"sequence"`
	LogName  string      `json:"log_name"`
	Product  OCSFProduct `json:"product"`
}

// OCSFProduct names accessbroker as the reporting product.
type OCSFProduct struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
}

// OCSFActor is who acted.
type OCSFActor struct {
	User OCSFUser `json:"user"`
}

// OCSFUser is an OCSF user object.
type OCSFUser struct {
	UID       string `json:"uid,omitempty"`
	Name      string `json:"name,omitempty"`
	EmailAddr string `json:"email_addr,omitempty"`
	// TypeID and Type are OCSF's user type: 0 Unknown, 1 User, 2 Admin (an operator at the
	// command line or admin API), 3 System (accessbroker itself), 99 Other (PagerDuty).
	TypeID int    `json:"type_id"`
	Type   string `json:"type,omitempty"`
	// Kind is accessbroker's actor kind (user, operator, system, pagerduty, unknown).
	Kind string `json:"kind,omitempty"`
}

// ocsfUserTypes maps actor kinds to OCSF user type ids and names.
var ocsfUserTypes = map[ActorKind]struct {
	id   int
	name string
}{
	ActorUser: {1, "User"}, ActorOperator: {2, "Admin"}, ActorSystem: {3, "System"}, ActorPagerDuty: {99, "Other"}, ActorUnknown: {0, "Unknown"},
}

// OCSFObserved is an OCSF observable (name, type_id, value).
type OCSFObserved struct {
	Name   string `json:"name"`
	TypeID int    `json:"type_id"`
	Type   string `json:"type"`
	Value  string `json:"value"`
}

// OCSFUnmapped keeps what OCSF has no attribute for: accessbroker's own fields, the whole
// evidence map and the chain hashes (so the OCSF copy can be matched with the log).
type OCSFUnmapped struct {
	Action    Action            `json:"action"`
	RequestID string            `json:"request_id,omitempty"`
	GrantID   string            `json:"grant_id,omitempty"`
	Resource  string            `json:"resource,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	Evidence  map[string]string `json:"evidence,omitempty"`
	PrevHash  Hash              `json:"prev_hash"`
	Hash      Hash              `json:"hash"`
}

// ocsfMap is the class, activity and outcome an action maps to.
type ocsfMap struct {
	class, activity, status, severity int
	activityName                      string
}

// ocsfActions maps actions; anything else is a Base Event of activity Other, informational.
var ocsfActions = map[Action]ocsfMap{
	ActionGrantIssuing:      {ocsfClassAccountChange, ocsfActivityAttachPolicy, ocsfStatusUnknown, ocsfSeverityInformational, "Attach Policy"},
	ActionGrantIssued:       {ocsfClassAccountChange, ocsfActivityAttachPolicy, ocsfStatusSuccess, ocsfSeverityInformational, "Attach Policy"},
	ActionGrantIssueFailed:  {ocsfClassAccountChange, ocsfActivityAttachPolicy, ocsfStatusFailure, ocsfSeverityMedium, "Attach Policy"},
	ActionGrantExtended:     {ocsfClassAccountChange, ocsfActivityAttachPolicy, ocsfStatusSuccess, ocsfSeverityInformational, "Attach Policy"},
	ActionGrantRevokeQueued: {ocsfClassAccountChange, ocsfActivityDetachPolicy, ocsfStatusUnknown, ocsfSeverityInformational, "Detach Policy"},
	ActionGrantRevoked:      {ocsfClassAccountChange, ocsfActivityDetachPolicy, ocsfStatusSuccess, ocsfSeverityInformational, "Detach Policy"},
	ActionGrantRevokeFailed: {ocsfClassAccountChange, ocsfActivityDetachPolicy, ocsfStatusFailure, ocsfSeverityHigh, "Detach Policy"},
	ActionSessionStarted:    {ocsfClassAuthentication, ocsfActivityLogon, ocsfStatusSuccess, ocsfSeverityInformational, "Logon"},
	ActionSessionLoginFailed: {ocsfClassAuthentication, ocsfActivityLogon, ocsfStatusFailure, ocsfSeverityMedium,
		"Logon"},
	ActionSessionEnded:     {ocsfClassAuthentication, ocsfActivityLogoff, ocsfStatusSuccess, ocsfSeverityInformational, "Logoff"},
	ActionWebhookRejected:  {ocsfClassAuthentication, ocsfActivityOther, ocsfStatusFailure, ocsfSeverityMedium, "Other"},
	ActionIdentityConflict: {ocsfClassAuthentication, ocsfActivityOther, ocsfStatusFailure, ocsfSeverityHigh, "Other"},
	ActionAuditSuspect:     {ocsfClassBase, ocsfActivityOther, ocsfStatusFailure, ocsfSeverityHigh, "Other"},
	ActionRequestDenied:    {ocsfClassBase, ocsfActivityOther, ocsfStatusFailure, ocsfSeverityInformational, "Other"},
	ActionRequestRejected:  {ocsfClassBase, ocsfActivityOther, ocsfStatusFailure, ocsfSeverityMedium, "Other"},
	ActionRequestApproved:  {ocsfClassBase, ocsfActivityOther, ocsfStatusSuccess, ocsfSeverityInformational, "Other"},
	ActionApprovalRecorded: {ocsfClassBase, ocsfActivityOther, ocsfStatusSuccess, ocsfSeverityInformational, "Other"},
	ActionSessionStatement: {ocsfClassBase, ocsfActivityOther, ocsfStatusUnknown, ocsfSeverityInformational, "Other"},
	ActionRequestCreated:   {ocsfClassBase, ocsfActivityOther, ocsfStatusUnknown, ocsfSeverityInformational, "Other"},
	ActionRequestExpired:   {ocsfClassBase, ocsfActivityOther, ocsfStatusUnknown, ocsfSeverityInformational, "Other"},
	ActionAuditSuspectCleared: {ocsfClassBase, ocsfActivityOther, ocsfStatusSuccess, ocsfSeverityMedium,
		"Other"},
}

var (
	ocsfClassNames  = map[int]string{ocsfClassAccountChange: "Account Change", ocsfClassAuthentication: "Authentication", ocsfClassBase: "Base Event"}
	ocsfStatusNames = map[int]string{ocsfStatusUnknown: "Unknown", ocsfStatusSuccess: "Success", ocsfStatusFailure: "Failure"}
	ocsfSeverities  = map[int]string{ocsfSeverityInformational: "Informational", ocsfSeverityMedium: "Medium", ocsfSeverityHigh: "High"}
)

// OCSF maps e to OCSF (docs/audit.md has the table): grant.* to Account Change (3001;
// Attach Policy when access is added or extended, Detach Policy when it is removed),
// session.started/ended/login_failed, webhook.rejected and identity.conflict to
// Authentication (3002), everything else to Base Event (0) with activity Other. status
// says whether it succeeded; severity is High for failed revocations, identity conflicts
// and a suspect audit log. The user is the grant's person where the event has one, the
// actor is who acted, and seq, the chain hashes and every accessbroker field are kept.
func OCSF(e Event) OCSFEvent {
	m, ok := ocsfActions[e.Action]
	if !ok {
		m = ocsfMap{ocsfClassBase, ocsfActivityOther, ocsfStatusUnknown, ocsfSeverityInformational, "Other"}
	}
	category, categoryName := ocsfCategoryIAM, "Identity & Access Management"
	if m.class == ocsfClassBase {
		category, categoryName = 0, "Uncategorized"
	}
	out := OCSFEvent{
		ActivityID: m.activity, ActivityName: m.activityName,
		CategoryUID: category, CategoryName: categoryName,
		ClassUID: m.class, ClassName: ocsfClassNames[m.class],
		TypeUID: m.class*100 + m.activity, TypeName: ocsfClassNames[m.class] + ": " + m.activityName,
		Time:       e.Time.UTC().UnixMilli(),
		SeverityID: m.severity, Severity: ocsfSeverities[m.severity],
		StatusID: m.status, Status: ocsfStatusNames[m.status],
		Message: string(e.Action),
		Metadata: OCSFMetadata{Version: OCSFVersion, UID: e.ID, Sequence: e.Seq, LogName: "accessbroker audit",
			Product: OCSFProduct{Name: "accessbroker", VendorName: "accessbroker"}},
		Actor: OCSFActor{User: OCSFUser{UID: e.Actor.ID, EmailAddr: e.Actor.Email, TypeID: ocsfUserTypes[e.Actor.Kind].id,
			Type: ocsfUserTypes[e.Actor.Kind].name, Kind: string(e.Actor.Kind)}},
		Unmapped: OCSFUnmapped{Action: e.Action, RequestID: e.RequestID, GrantID: e.GrantID, Resource: e.Resource,
			Reason: e.Reason, PrevHash: e.PrevHash, Hash: e.Hash},
	}
	if e.Reason != "" {
		out.Message = string(e.Action) + ": " + e.Reason
	}
	if len(e.Evidence) > 0 {
		out.Unmapped.Evidence = maps.Clone(e.Evidence)
	}
	if p := e.Evidence["person"]; p != "" {
		out.User = &OCSFUser{Name: p, TypeID: 1, Type: "User"}
	} else if m.class != ocsfClassBase {
		// Account Change and Authentication require a user: the actor is the subject.
		u := out.Actor.User
		out.User = &u
	}
	if e.Actor.Email != "" {
		out.Observables = append(out.Observables, OCSFObserved{Name: "actor.user.email_addr", TypeID: 5, Type: "Email Address", Value: e.Actor.Email})
	}
	return out
}

// WriteOCSF writes events as JSON lines of their OCSF form (one OCSFEvent per line).
func WriteOCSF(w io.Writer, events []Event) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	for _, e := range events {
		b, err := EventOCSF.Encode(e)
		if err != nil {
			return fmt.Errorf("write OCSF seq %d: %w", e.Seq, err)
		}
		b = append(b, '\n')
		if _, err := bw.Write(b); err != nil {
			return fmt.Errorf("write OCSF seq %d: %w", e.Seq, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write OCSF: %w", err)
	}
	return nil
}
