package audit

// Activity actions: what a person did with a grant upstream, collected after the fact
// (docs/activity.md). Each names its grant and
// resource; the evidence keys are listed with each action.
const (
	// ActionAWSActivity is one CloudTrail event of a grant's session. Evidence: event_id,
	// event_time, service (eventSource), api_call (eventName), resources, read_only
	// ("true"/"false"), error_code, source_ip, region, after_revocation ("true" when the
	// call came after the grant was revoked and was not refused).
	ActionAWSActivity Action = "aws.activity"
	// ActionGitHubActivity is one GitHub action by the grant's person during the grant
	// (audit log entry or webhook). Evidence: via ("audit_log"/"webhook"), github_action,
	// event_time, repo, actor, id, after_revocation.
	ActionGitHubActivity Action = "github.activity"
	// ActionGitHubWebhookRefused: a request to the GitHub webhook endpoint failed its
	// signature check (or was malformed, or too large); nothing was recorded from it.
	// Evidence: source ("github"), remote, delivery (when well-formed), suppressed (refusals
	// not recorded since the previous one: the events are rate-limited).
	ActionGitHubWebhookRefused Action = "github.webhook_refused"
)

// Evidence keys of activity events read by reports.
const (
	EvidenceActivityAfterRevocation = "after_revocation"
	EvidenceActivityReadOnly        = "read_only"
	EvidenceActivityErrorCode       = "error_code"
	EvidenceActivityEventTime       = "event_time"
)
