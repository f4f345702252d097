package broker

import "time"

// PageAck is a PagerDuty incident acknowledgement that the PagerDuty integration has
// authenticated (v3 signature), deduplicated (by EventID), found fresh, and confirmed through
// the PagerDuty REST API: when it was built, the incident's current status was
// "acknowledged" and AcknowledgerPDUserID was among its current acknowledgers or assignees.
// Incident fields come from the API, not from the webhook body.
//
// It says nothing about whether the acknowledger may get access: the broker still finds the
// auto_grant rules for ServiceID, resolves the acknowledger to a person and checks that they
// are on call. It is a value type with no secrets.
type PageAck struct {
	// EventID is PagerDuty's webhook event id; unique per event and the same on every
	// redelivery, so it is the natural idempotency key (grants.Request.ExternalKey).
	EventID string
	// IncidentID is PagerDuty's incident id (e.g. "PGR0VU2"); grants tied to the incident
	// carry it as grants.Grant.IncidentID.
	IncidentID string
	// IncidentNumber is the account-wide incident number shown as "#N".
	IncidentNumber int
	// Title is the incident title, for the grant reason "PagerDuty incident #N: title (URL)".
	Title string
	// URL is the incident's web page (html_url).
	URL string
	// ServiceID is the PagerDuty service the incident belongs to; auto_grant rules match it.
	ServiceID string
	// AcknowledgerPDUserID is the PagerDuty user who acknowledged (the event's agent).
	AcknowledgerPDUserID string
	// AcknowledgerEmail is that user's email as PagerDuty reports it (GET /users/{id});
	// empty if PagerDuty has none. Resolve it to a person; never trust it to name a Slack user
	// by itself.
	AcknowledgerEmail string
	// OccurredAt is when PagerDuty says the acknowledgement happened (UTC).
	OccurredAt time.Time
}

// PageResolved is an authenticated, deduplicated, fresh PagerDuty incident.resolved event.
// It is not confirmed through the API: revoking is the safe direction, and a PagerDuty
// outage must not hold back revocation. Grants tied to IncidentID are to be revoked (after
// the rule's grace period, if any).
type PageResolved struct {
	// EventID is PagerDuty's webhook event id (idempotency key).
	EventID string
	// IncidentID is PagerDuty's incident id.
	IncidentID string
	// ServiceID is the PagerDuty service of the incident, from the webhook body.
	ServiceID string
	// OccurredAt is when PagerDuty says the incident was resolved (UTC).
	OccurredAt time.Time
}
