package pagerduty

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
)

// The v3 webhook payload, with only the fields accessbroker reads. Shapes:
// fixtures/pagerduty/webhook-incident-priority-updated.json (envelope) and
// webhook-data-incident.json (incident data). Unknown fields are ignored, so PagerDuty may
// add fields without breaking us.

type wireWebhook struct {
	Event *wireEvent `json:"event"`
}

type wireEvent struct {
	ID           string          `json:"id"`
	EventType    string          `json:"event_type"`
	ResourceType string          `json:"resource_type"`
	OccurredAt   time.Time       `json:"occurred_at"`
	Agent        *reference      `json:"agent"`
	Data         json.RawMessage `json:"data"`
}

type reference struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Summary string `json:"summary"`
}

type wireIncidentData struct {
	ID        string      `json:"id"`
	Type      string      `json:"type"`
	HTMLURL   string      `json:"html_url"`
	Number    int         `json:"number"`
	Status    string      `json:"status"`
	Title     string      `json:"title"`
	Service   *reference  `json:"service"`
	Assignees []reference `json:"assignees"`
}

// event is a decoded, validated webhook event.
type event struct {
	ID         string
	Type       string
	OccurredAt time.Time
	Agent      *reference        // nil when PagerDuty reports no agent (automation)
	Incident   *wireIncidentData // set for incident.* events
}

// Limits on identifiers taken from the payload before they reach logs, the audit trail and
// the deduplication store.
const maxIDLen = 128

// decodeEvent parses a webhook body. It requires the envelope's id, event_type and
// occurred_at, and for incident.* events a data object of type "incident" with an id. The
// error says which field is missing or wrong.
func decodeEvent(body []byte) (event, error) {
	var w wireWebhook
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&w); err != nil {
		return event{}, fmt.Errorf("webhook body is not the PagerDuty v3 JSON envelope: %w", err)
	}
	if dec.More() {
		return event{}, errors.New("webhook body has data after the JSON object")
	}
	if w.Event == nil {
		return event{}, errors.New(`webhook body has no "event" object`)
	}
	e := w.Event
	if err := checkID("event.id", e.ID); err != nil {
		return event{}, err
	}
	if err := checkID("event.event_type", e.EventType); err != nil {
		return event{}, err
	}
	if e.OccurredAt.IsZero() {
		return event{}, errors.New("webhook event.occurred_at is missing")
	}
	out := event{ID: e.ID, Type: e.EventType, OccurredAt: e.OccurredAt.UTC()}
	if e.Agent != nil && e.Agent.ID != "" {
		if err := checkID("event.agent.id", e.Agent.ID); err != nil {
			return event{}, err
		}
		a := *e.Agent
		out.Agent = &a
	}
	if strings.HasPrefix(e.EventType, "incident.") {
		var d wireIncidentData
		if len(e.Data) == 0 || bytes.Equal(e.Data, []byte("null")) {
			return event{}, fmt.Errorf("webhook %s event has no data object", e.EventType)
		}
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return event{}, fmt.Errorf("webhook %s event data is not an incident: %w", e.EventType, err)
		}
		if d.Type != "incident" {
			return event{}, fmt.Errorf("webhook %s event data has type %q, want \"incident\"", e.EventType, d.Type)
		}
		if err := checkID("event.data.id", d.ID); err != nil {
			return event{}, err
		}
		if d.Service != nil && d.Service.ID != "" {
			if err := checkID("event.data.service.id", d.Service.ID); err != nil {
				return event{}, err
			}
		}
		out.Incident = &d
	}
	return out, nil
}

// checkID accepts a non-empty, bounded identifier of printable characters without spaces.
func checkID(field, v string) error {
	if v == "" {
		return fmt.Errorf("webhook %s is missing", field)
	}
	if len(v) > maxIDLen {
		return fmt.Errorf("webhook %s is longer than %d bytes", field, maxIDLen)
	}
	for _, r := range v {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("webhook %s contains a space or a non-printable character", field)
		}
	}
	return nil
}

// Signature header parsing.

var (
	errNoSignature  = errors.New("no X-PagerDuty-Signature header")
	errNoV1         = errors.New("X-PagerDuty-Signature has no v1 signature (unknown version or malformed)")
	errTooManySigs  = errors.New("X-PagerDuty-Signature has too many signatures")
	errBadSignature = errors.New("no X-PagerDuty-Signature v1 value matches a configured secret")
)

// maxSignatures bounds the work one request can cause. PagerDuty sends one signature per
// active secret: one, or two during a rotation.
const maxSignatures = 8

// parseSignatures returns the v1 HMAC values of an X-PagerDuty-Signature header:
// comma-separated "version=hex" entries. Unlike go-pagerduty's webhookv3 (which fails on
// "v1=a, v1=b"), spaces around entries are trimmed. Entries of another version, and v1
// entries that are not 32 bytes of hex, are ignored; if nothing is left the header is
// refused. The header may hold at most maxSignatures entries.
func parseSignatures(h string) ([][]byte, error) {
	if strings.TrimSpace(h) == "" {
		return nil, errNoSignature
	}
	parts := strings.Split(h, ",")
	if len(parts) > maxSignatures {
		return nil, errTooManySigs
	}
	var sigs [][]byte
	for _, p := range parts {
		version, value, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || strings.TrimSpace(version) != "v1" {
			continue
		}
		sig, err := hex.DecodeString(strings.TrimSpace(value))
		if err != nil || len(sig) != sha256.Size {
			continue
		}
		sigs = append(sigs, sig)
	}
	if len(sigs) == 0 {
		return nil, errNoV1
	}
	return sigs, nil
}

// verifySignature checks that at least one v1 signature in header is the HMAC-SHA256 of body
// under at least one secret, comparing in constant time.
func verifySignature(header string, body []byte, secrets [][]byte) error {
	sigs, err := parseSignatures(header)
	if err != nil {
		return err
	}
	ok := false
	for _, secret := range secrets {
		mac := hmac.New(sha256.New, secret)
		mac.Write(body)
		want := mac.Sum(nil)
		for _, sig := range sigs {
			// Keep comparing after a match, so the time taken does not say which one matched.
			if hmac.Equal(want, sig) {
				ok = true
			}
		}
	}
	if !ok {
		return errBadSignature
	}
	return nil
}
