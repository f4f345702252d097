package audit

// Actions recorded by the drift reconciler (issue #15.5). Each names the resource; those
// about a grant name it too.
const (
	// ActionDriftFound: access exists upstream that no live grant gives: a role named with
	// the broker's prefix whose grant is revoked or unknown to the store (left after a
	// restore, or created out of band), or access a revoked grant of ours gave that is back.
	// Evidence: key, access (what it is), why, drift_action (flag or revoke).
	ActionDriftFound Action = "drift.found"
	// ActionDriftRevoked: the reconciler removed such access (drift.action: revoke) and, where
	// the provider can read it back, confirmed it is gone.
	ActionDriftRevoked Action = "drift.revoked"
	// ActionDriftRevokeFailed: removing such access failed or the read-back still found it;
	// the next pass tries again.
	ActionDriftRevokeFailed Action = "drift.revoke_failed"
	// ActionGrantAccessMissing: the access a live grant should give is gone upstream
	// (dropped or removed out of band); the grant is marked (Grant.AccessMissingAt).
	ActionGrantAccessMissing Action = "grant.access_missing"
	// ActionGrantAccessRestored: the access of a grant marked missing is there again; the
	// mark is cleared.
	ActionGrantAccessRestored Action = "grant.access_restored"
)
