package audit

import (
	"context"
	"fmt"
	"time"
)

// ReportScanner is an optional capability of the Searcher that ReadReport is given: the
// store streams the events of a report's range itself, with only what a report reads
// (ReportEvidenceKeys), instead of answering one Search per page with whole events.
// grants/sqlstore implements it.
type ReportScanner interface {
	// ScanReportEvents calls fn with every event whose seq is at or after the first event of
	// time at or after from, and whose time is before until (as Search with Since and Until
	// bounds them: the seq range of the time range, every time before until), in ascending
	// seq order, in batches. Each event has Seq, Time, Actor, Action, RequestID, GrantID,
	// Resource and Reason as stored, and of its evidence at least the keys
	// ReportEvidenceKeys(Action) names (all of it when that says all); ID, PrevHash and Hash
	// may be empty. The batch is fn's only during the call (it may be reused after); the
	// strings and maps in it are never modified. An error from fn stops the scan and is
	// returned.
	ScanReportEvents(ctx context.Context, from, until time.Time, fn func([]Event) error) error
}

// ReportEvidenceKeys names the evidence keys the report reads from an event with action a:
// a store may leave every other key out of what it gives a ReportScanner caller. all=true
// means any key may be read (the whole evidence is needed). When the report starts reading
// another key, it must be added here (TestReportEvidenceKeysCoverTheBuilder checks the
// builder's source for keys not listed).
func ReportEvidenceKeys(a Action) (keys []string, all bool) {
	switch a {
	case ActionGrantIssuing, ActionOnCallChecked:
		return nil, true // kept whole on the grant or the request, read by the rules later
	case ActionSessionStatement:
		return evStatement, false
	case ActionSessionStarted, ActionSessionEnded:
		return evSession, false
	case ActionSessionLoginFailed:
		return evLoginFailed, false
	case ActionAWSActivity, ActionGitHubActivity:
		return evActivity, false
	case ActionRequestCreated:
		return evRequestCreated, false
	case ActionRequestRejected:
		return evRequestRejected, false
	case ActionRequestApproved, ActionRequestExpired, ActionRequestDenied, ActionApprovalRecorded:
		return evPerson, false
	case ActionGrantIssued:
		return evIssued, false
	case ActionGrantExtended:
		return evExtended, false
	case ActionGrantRevokeQueued:
		return evCause, false
	case ActionGrantRevoked:
		return evRevoked, false
	}
	return nil, false // the report reads only the actor of any other event
}

var (
	evStatement       = []string{"session_id", "sqlstate", "tag", "text"}
	evSession         = []string{"session_id"}
	evLoginFailed     = []string{"role", "session_id"}
	evActivity        = []string{EvidenceActivityReadOnly, EvidenceActivityErrorCode, EvidenceActivityAfterRevocation, EvidenceActivityEventTime}
	evRequestCreated  = []string{"person", "source"}
	evRequestRejected = []string{"person", EvidenceRefusedClick}
	evPerson          = []string{"person"}
	evIssued          = []string{"expires_at", "person"}
	evExtended        = []string{"expires_at", "old_expires_at"}
	evCause           = []string{"cause"}
	evRevoked         = []string{"cause", "person"}
)

// reportBatch is one batch of events handed from the scanning goroutine to the builder.
type reportBatch struct {
	events []Event
}

// scanReport feeds rb every event of [from, until) that sc streams, in seq order. The scan
// runs in its own goroutine, one batch ahead of the builder, so that reading rows (the
// database's work and the driver's) and building the report use two cores; the builder still
// sees the events one after the other, in seq order, so the result is that of reading them
// in turn.
func scanReport(ctx context.Context, sc ReportScanner, from, until time.Time, rb *ReportBuilder) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	const ahead = 2
	full := make(chan reportBatch, ahead)
	free := make(chan []Event, ahead+1)
	for range ahead + 1 {
		free <- nil
	}
	errc := make(chan error, 1)
	go func() {
		defer close(full)
		errc <- sc.ScanReportEvents(ctx, from, until, func(evs []Event) error {
			var buf []Event
			select {
			case buf = <-free:
			case <-ctx.Done():
				return ctx.Err()
			}
			buf = append(buf[:0], evs...)
			select {
			case full <- reportBatch{events: buf}:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	for b := range full {
		rb.Add(b.events...)
		clear(b.events) // drop the references before the buffer is filled again
		free <- b.events
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	return nil
}
