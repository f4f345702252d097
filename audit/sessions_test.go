package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/audit"
)

// sliceSearcher searches a slice with the reference semantics (Query.Select).
type sliceSearcher []audit.Event

func (s sliceSearcher) Search(_ context.Context, q audit.Query) ([]audit.Event, error) {
	return q.Select(s)
}

// sessionLog is two sessions of grant g_a (one ended, one still open) and one of g_b,
// interleaved as a busy proxy writes them.
func sessionLog() sliceSearcher {
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	var log sliceSearcher
	add := func(d time.Duration, action audit.Action, grant string, ev map[string]string) {
		log = append(log, audit.Event{Seq: int64(len(log) + 1), Time: t0.Add(d), Action: action, GrantID: grant, Resource: "prod-db", Evidence: ev})
	}
	add(0, audit.ActionSessionStarted, "g_a", map[string]string{"session_id": "s_1", "role": "ab_alice_a", "person": "alice@example.com", "database": "app", "client_addr": "10.0.0.7:5000", "application_name": "psql"})
	add(time.Second, audit.ActionSessionStatement, "g_a", map[string]string{"session_id": "s_1", "order": "1", "protocol": "simple", "text": "SELECT 1", "text_sha256": "e004", "params": "0", "tag": "SELECT 1", "rows": "1", "duration": "2ms"})
	add(2*time.Second, audit.ActionSessionStarted, "g_b", map[string]string{"session_id": "s_2", "role": "ab_bob_b"})
	add(3*time.Second, audit.ActionSessionStatement, "g_b", map[string]string{"session_id": "s_2", "order": "1", "text": "SELECT 2"})
	add(4*time.Second, audit.ActionSessionStatement, "g_a", map[string]string{"session_id": "s_1", "order": "2", "protocol": "extended", "text": "SELECT 1/$1", "params": "1", "param_values": `["0"]`, "sqlstate": "22012", "duration": "1ms"})
	add(5*time.Second, audit.ActionSessionEnded, "g_a", map[string]string{"session_id": "s_1", "reason": "grant_revoked", "duration": "5s", "bytes_in": "120", "bytes_out": "900", "statements": "2"})
	add(6*time.Second, audit.ActionSessionStarted, "g_a", map[string]string{"session_id": "s_3", "role": "ab_alice_a"})
	add(7*time.Second, audit.ActionSessionStatement, "g_a", map[string]string{"session_id": "s_3", "order": "1", "text": "SELECT 3"})
	return log
}

func TestListSessions(t *testing.T) {
	t.Parallel()
	log := sessionLog()
	tests := []struct {
		name string
		f    audit.SessionFilter
		want []string // ids:reason
	}{
		{"all, newest first", audit.SessionFilter{}, []string{"s_3:", "s_2:", "s_1:grant_revoked"}},
		{"one grant", audit.SessionFilter{GrantID: "g_a"}, []string{"s_3:", "s_1:grant_revoked"}},
		{"active", audit.SessionFilter{ActiveOnly: true}, []string{"s_3:", "s_2:"}},
		{"limit", audit.SessionFilter{Limit: 1}, []string{"s_3:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := audit.ListSessions(t.Context(), log, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, s := range got {
				ids = append(ids, s.ID+":"+s.EndReason)
				if len(s.Statements) != 0 {
					t.Errorf("%s: a list carries statements", s.ID)
				}
			}
			if diff := cmp.Diff(tc.want, ids); diff != "" {
				t.Errorf("sessions (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGetSession(t *testing.T) {
	t.Parallel()
	log := sessionLog()
	s, err := audit.GetSession(t.Context(), log, "s_1")
	if err != nil {
		t.Fatal(err)
	}
	ended := log[5].Time
	want := audit.Session{ID: "s_1", GrantID: "g_a", Resource: "prod-db", Person: "alice@example.com", Role: "ab_alice_a", Database: "app",
		ClientAddr: "10.0.0.7:5000", ApplicationName: "psql", Started: log[0].Time, Ended: &ended, EndReason: "grant_revoked", Duration: "5s",
		BytesIn: 120, BytesOut: 900, StatementCount: 2, Statements: []audit.Statement{
			{Order: 1, Time: log[1].Time, Protocol: "simple", Text: "SELECT 1", SHA256: "e004", Tag: "SELECT 1", Rows: 1, Duration: "2ms"},
			{Order: 2, Time: log[4].Time, Protocol: "extended", Text: "SELECT 1/$1", Params: 1, ParamValues: json.RawMessage(`["0"]`), SQLState: "22012", Duration: "1ms"},
		}}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("session (-want +got):\n%s", diff)
	}
	open, err := audit.GetSession(t.Context(), log, "s_3")
	if err != nil || !open.Active() || open.StatementCount != 1 {
		t.Errorf("open session = %+v, %v; want active with 1 statement", open, err)
	}
	if _, err := audit.GetSession(t.Context(), log, "s_9"); !errors.Is(err, audit.ErrNoSession) {
		t.Errorf("unknown session: %v, want ErrNoSession", err)
	}
}

// countingSearcher counts the events its searches return.
type countingSearcher struct {
	sliceSearcher
	read int
}

func (c *countingSearcher) Search(ctx context.Context, q audit.Query) ([]audit.Event, error) {
	page, err := c.sliceSearcher.Search(ctx, q)
	c.read += len(page)
	return page, err
}

// endedSessions is n sessions of grant g_a, a second apart, each ended but the oldest.
func endedSessions(n int) sliceSearcher {
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	var log sliceSearcher
	for i := range n {
		id := fmt.Sprintf("s_%d", i)
		log = append(log, audit.Event{Seq: int64(len(log) + 1), Time: t0.Add(time.Duration(i) * time.Second), Action: audit.ActionSessionStarted, GrantID: "g_a", Evidence: map[string]string{"session_id": id}})
		if i != 0 {
			log = append(log, audit.Event{Seq: int64(len(log) + 1), Time: t0.Add(time.Duration(i)*time.Second + time.Millisecond), Action: audit.ActionSessionEnded, GrantID: "g_a", Evidence: map[string]string{"session_id": id, "reason": "client_quit"}})
		}
	}
	return log
}

// TestSessionsReadOnlyWhatTheyNeed: over a long history (more than one page), a short list
// reads about as many events as it shows, a recent session is found on the first page, and
// sessions beyond the first page are still found.
func TestSessionsReadOnlyWhatTheyNeed(t *testing.T) {
	t.Parallel()
	// Lists read pages of 100 sessions: 350 make four.
	c := &countingSearcher{sliceSearcher: endedSessions(350)}
	got, err := audit.ListSessions(t.Context(), c, audit.SessionFilter{Limit: 3})
	if err != nil || len(got) != 3 || got[0].ID != "s_349" || got[0].EndReason != "client_quit" {
		t.Fatalf("ListSessions limit 3 = %+v, %v", got, err)
	}
	if c.read > 200 {
		t.Errorf("a list of 3 read %d events of %d", c.read, len(c.sliceSearcher))
	}
	c.read = 0
	active, err := audit.ListSessions(t.Context(), c, audit.SessionFilter{ActiveOnly: true})
	if err != nil || len(active) != 1 || active[0].ID != "s_0" {
		t.Errorf("active sessions = %+v, %v; want s_0, the oldest, past the first page", active, err)
	}
	if c.read > len(c.sliceSearcher) {
		t.Errorf("listing the active sessions read %d events of %d: each end once at most", c.read, len(c.sliceSearcher))
	}

	// A lookup reads pages of MaxQueryLimit.
	c = &countingSearcher{sliceSearcher: endedSessions(audit.MaxQueryLimit + 50)}
	s, err := audit.GetSession(t.Context(), c, fmt.Sprintf("s_%d", audit.MaxQueryLimit+48))
	if err != nil || s.EndReason != "client_quit" {
		t.Errorf("GetSession recent = %+v, %v", s, err)
	}
	if c.read > audit.MaxQueryLimit+10 {
		t.Errorf("finding a recent session read %d events of %d", c.read, len(c.sliceSearcher))
	}
	if s, err := audit.GetSession(t.Context(), c, "s_0"); err != nil || !s.Active() {
		t.Errorf("GetSession oldest = %+v, %v; want found on a later page, active", s, err)
	}
}
