package audit

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// MaxQueryLimit is the largest page a search may ask for.
const MaxQueryLimit = 10000

// Query selects audit events for search and export. Zero fields match everything. Every
// store implements the same semantics as Match; Select is the reference implementation that
// store conformance tests compare against.
type Query struct {
	// Actor matches the actor's id or email exactly (emails as the directory gave them,
	// normally lowercase).
	Actor string
	// Resource, Action, GrantID and RequestID match their fields exactly.
	Resource  string
	Action    Action
	GrantID   string
	RequestID string
	// Since and Until bound the event time: Since <= Time < Until. Either may be zero
	// (unbounded).
	Since, Until time.Time
	// Limit is the page size, 0..MaxQueryLimit; 0 means the store's default page size.
	Limit int
	// AfterSeq is the pagination cursor: the Seq of the last event of the previous page, or 0
	// for the first page. Ascending pages continue with Seq > AfterSeq, descending pages with
	// Seq < AfterSeq.
	AfterSeq int64
	// Descending returns the newest events (highest seq) first.
	Descending bool
}

// Validate reports the first problem with q, naming the field and how to fix it.
func (q Query) Validate() error {
	switch {
	case q.Limit < 0 || q.Limit > MaxQueryLimit:
		return fmt.Errorf("audit query: limit %d is out of range: use 1..%d, or 0 for the default", q.Limit, MaxQueryLimit)
	case q.AfterSeq < 0:
		return fmt.Errorf("audit query: cursor (after seq) %d is negative: use 0 for the first page", q.AfterSeq)
	case !q.Since.IsZero() && !q.Until.IsZero() && q.Since.After(q.Until):
		return fmt.Errorf("audit query: since %s is after until %s: swap them", FormatTime(q.Since), FormatTime(q.Until))
	}
	return nil
}

// Match reports whether e satisfies every filter of q, including the AfterSeq cursor in the
// direction of q.Descending. Limit plays no part.
func (q Query) Match(e Event) bool {
	switch {
	case q.Actor != "" && q.Actor != e.Actor.ID && q.Actor != e.Actor.Email:
		return false
	case q.Resource != "" && q.Resource != e.Resource,
		q.Action != "" && q.Action != e.Action,
		q.GrantID != "" && q.GrantID != e.GrantID,
		q.RequestID != "" && q.RequestID != e.RequestID:
		return false
	case !q.Since.IsZero() && e.Time.Before(q.Since),
		!q.Until.IsZero() && !e.Time.Before(q.Until):
		return false
	case q.AfterSeq > 0 && !q.Descending && e.Seq <= q.AfterSeq,
		q.AfterSeq > 0 && q.Descending && e.Seq >= q.AfterSeq:
		return false
	}
	return true
}

// Select returns the events of events that match q, ordered by seq in q's direction, at most
// q.Limit of them (all when Limit is 0). It does not modify events. It validates q first.
func (q Query) Select(events []Event) ([]Event, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	var out []Event
	for _, e := range events {
		if q.Match(e) {
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b Event) int {
		if q.Descending {
			return cmp.Compare(b.Seq, a.Seq)
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}
