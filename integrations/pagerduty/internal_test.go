package pagerduty

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pd "github.com/PagerDuty/go-pagerduty"
	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

// TestMatchShiftsRechecksWhatPagerDutyReturns feeds matchShifts entries that PagerDuty's own
// filters should have removed (another user, another escalation policy or schedule, a
// disallowed level, an entry that is over or not started), to show that our side checks the
// policy again instead of trusting the query (Teleport #46908).
func TestMatchShiftsRechecksWhatPagerDutyReturns(t *testing.T) {
	now := time.Date(2025, 3, 6, 15, 0, 0, 0, time.UTC)
	entry := func(user, ep, sched string, level uint, start, end string) pd.OnCall {
		var oc pd.OnCall
		oc.User.ID = user
		oc.EscalationPolicy.ID, oc.EscalationPolicy.Summary = ep, ep+" name"
		if sched != "" {
			oc.Schedule.ID, oc.Schedule.Summary = sched, sched+" name"
		}
		oc.EscalationLevel, oc.Start, oc.End = level, start, end
		return oc
	}
	const in, out = "2025-03-06T14:00:00Z", "2025-03-06T16:00:00Z"
	pol := grants.Policy{OnCallEscalationPolicies: []string{"EP1"}, OnCallSchedules: []string{"S9"}, OnCallLevels: []int{1, 2}}
	shift := func(ep, sched string, level int, start, end string) broker.Shift {
		s := broker.Shift{EscalationPolicyID: ep, EscalationPolicyName: ep + " name", Level: level}
		if sched != "" {
			s.ScheduleID, s.ScheduleName = sched, sched+" name"
		}
		s.Start, _ = time.Parse(time.RFC3339, start)
		s.End, _ = time.Parse(time.RFC3339, end)
		return s
	}
	tests := []struct {
		name  string
		entry pd.OnCall
		want  []broker.Shift
	}{
		{"matches by escalation policy", entry("U1", "EP1", "S1", 1, in, out), []broker.Shift{shift("EP1", "S1", 1, in, out)}},
		{"matches by schedule in another escalation policy", entry("U1", "EP7", "S9", 2, in, out), []broker.Shift{shift("EP7", "S9", 2, in, out)}},
		{"offset times are read as instants", entry("U1", "EP1", "", 1, "2025-03-06T09:00:00-05:00", "2025-03-06T11:00:00-05:00"),
			[]broker.Shift{shift("EP1", "", 1, "2025-03-06T14:00:00Z", "2025-03-06T16:00:00Z")}},
		{"another user", entry("U2", "EP1", "S1", 1, in, out), nil},
		{"another escalation policy and schedule", entry("U1", "EP7", "S1", 1, in, out), nil},
		{"direct target of another escalation policy", entry("U1", "EP7", "", 1, in, out), nil},
		{"disallowed level", entry("U1", "EP1", "S1", 3, in, out), nil},
		{"ended exactly now", entry("U1", "EP1", "S1", 1, in, "2025-03-06T15:00:00Z"), nil},
		{"starts after now", entry("U1", "EP1", "S1", 1, "2025-03-06T15:00:01Z", out), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := matchShifts([]pd.OnCall{tt.entry}, "U1", pol, now)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	// The same entry returned by both queries counts once.
	e := entry("U1", "EP1", "S9", 1, in, out)
	if got, _ := matchShifts([]pd.OnCall{e, e}, "U1", pol, now); len(got) != 1 {
		t.Errorf("duplicate entry counted %d times", len(got))
	}
	if _, err := matchShifts([]pd.OnCall{entry("U1", "EP1", "S1", 1, "yesterday", out)}, "U1", pol, now); err == nil {
		t.Error("an unreadable start time was accepted")
	}
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "fixtures", "pagerduty", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var webhookFixtures = []string{
	"webhook-incident-acknowledged.json",
	"webhook-incident-resolved.json",
	"webhook-incident-reassigned.json",
	"webhook-incident-priority-updated.json",
	"webhook-service-updated.json",
	"webhook-signature-vector-body.json",
}

func TestDecodeEventFixtures(t *testing.T) {
	tests := []struct {
		file                     string
		id, typ, agent, incident string
	}{
		{"webhook-incident-acknowledged.json", "01DEN4HPBQ7QJ0Y9D6F2S7RK1C", "incident.acknowledged", "PTUXL6G", "PGR0VU2"},
		{"webhook-incident-resolved.json", "01DEN4J33Z1XJQ0JQ5Q6T1A7WB", "incident.resolved", "PTUXL6G", "PGR0VU2"},
		{"webhook-incident-reassigned.json", "01DEN4HT2A9ZQW3G5N0R8M4XKD", "incident.reassigned", "PLH1HKV", "PGR0VU2"},
		{"webhook-incident-priority-updated.json", "5ac64822-4adc-4fda-ade0-410becf0de4f", "incident.priority_updated", "PLH1HKV", "PGR0VU2"},
		{"webhook-service-updated.json", "01BRB6ZP4M6T8ZG4X6BP63ZB9O", "service.updated", "", ""},
		{"webhook-signature-vector-body.json", "01BWDWL3NYY7LUFPZCC28QUCMK", "incident.priority_updated", "PLH1HKV", "PGR0VU2"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			ev, err := decodeEvent(readFixture(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			var agent, incident string
			if ev.Agent != nil {
				agent = ev.Agent.ID
			}
			if ev.Incident != nil {
				incident = ev.Incident.ID
				if ev.Incident.Service == nil || ev.Incident.Service.ID != "PF9KMXH" {
					t.Errorf("service %+v", ev.Incident.Service)
				}
			}
			if ev.ID != tt.id || ev.Type != tt.typ || agent != tt.agent || incident != tt.incident || ev.OccurredAt.IsZero() {
				t.Errorf("decoded %+v", ev)
			}
		})
	}
}

// FuzzDecode: decodeEvent never panics, and what it accepts satisfies its contract.
func FuzzDecode(f *testing.F) {
	for _, name := range webhookFixtures {
		f.Add(readFixture(f, name))
	}
	f.Add([]byte(`{"event":{"id":"E","event_type":"incident.resolved","occurred_at":"2020-10-02T19:05:41.102Z","data":{"id":"P","type":"incident"}}}`))
	f.Add([]byte(`{"event":null}`))
	f.Add([]byte(`{"event":{"id":"E","event_type":"incident.x","occurred_at":"2020-10-02T19:05:41Z","data":[]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := decodeEvent(body)
		if err != nil {
			return
		}
		if checkID("id", ev.ID) != nil || checkID("type", ev.Type) != nil || ev.OccurredAt.IsZero() || ev.OccurredAt.Location() != time.UTC {
			t.Fatalf("accepted an event breaking the contract: %+v", ev)
		}
		if strings.HasPrefix(ev.Type, "incident.") && (ev.Incident == nil || ev.Incident.Type != "incident" || checkID("data.id", ev.Incident.ID) != nil) {
			t.Fatalf("accepted an incident event without a valid incident: %+v", ev)
		}
		if ev.Agent != nil && checkID("agent", ev.Agent.ID) != nil {
			t.Fatalf("accepted a bad agent id %q", ev.Agent.ID)
		}
	})
}

// FuzzParseSignatures: the header parser never panics, returns only 32-byte values, at most
// maxSignatures of them, and finds every well-formed v1 entry.
func FuzzParseSignatures(f *testing.F) {
	var vec struct {
		Signature string `json:"x_pagerduty_signature"`
		Mismatch  string `json:"mismatch_signature_from_same_test"`
		Rotation  string `json:"rotation_example_header"`
		Note      string `json:"note_rotation"`
	}
	if err := json.Unmarshal(readFixture(f, "webhook-signature-vector.json"), &vec); err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{vec.Signature, vec.Mismatch, vec.Rotation, vec.Mismatch + ", " + vec.Signature,
		"v2=" + strings.TrimPrefix(vec.Signature, "v1="), "", ",,,", "v1=", "v1==", " v1 = ab "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		sigs, err := parseSignatures(h)
		if err != nil {
			if len(sigs) != 0 {
				t.Fatal("signatures returned with an error")
			}
			return
		}
		if len(sigs) == 0 || len(sigs) > maxSignatures {
			t.Fatalf("%d signatures accepted", len(sigs))
		}
		for _, s := range sigs {
			if len(s) != sha256.Size {
				t.Fatalf("signature of %d bytes accepted", len(s))
			}
		}
		// Re-encoding what was parsed gives a header that parses to the same values.
		parts := make([]string, len(sigs))
		for i, s := range sigs {
			parts[i] = "v1=" + hex.EncodeToString(s)
		}
		again, err := parseSignatures(strings.Join(parts, ","))
		if err != nil || !cmp.Equal(sigs, again) {
			t.Fatalf("re-encoded header parsed to %x, %v; want %x", again, err, sigs)
		}
	})
}

func TestVerifySignatureVector(t *testing.T) {
	var vec struct {
		Secret    string `json:"secret"`
		Signature string `json:"x_pagerduty_signature"`
		Rotation  string `json:"rotation_example_header"`
	}
	if err := json.Unmarshal(readFixture(t, "webhook-signature-vector.json"), &vec); err != nil {
		t.Fatal(err)
	}
	body := readFixture(t, "webhook-signature-vector-body.json")
	for _, h := range []string{vec.Signature, vec.Rotation} {
		if err := verifySignature(h, body, [][]byte{[]byte("other"), []byte(vec.Secret)}); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	if err := verifySignature(vec.Signature, body, [][]byte{[]byte("other")}); err == nil {
		t.Error("accepted under the wrong secret")
	}
}

func BenchmarkVerifySignature(b *testing.B) {
	body := readFixture(b, "webhook-incident-acknowledged.json")
	secrets := [][]byte{[]byte("old-secret-0123456789"), []byte("new-secret-9876543210")}
	mac := hmac.New(sha256.New, secrets[1])
	mac.Write(body)
	header := "v1=" + strings.Repeat("0", 64) + ",v1=" + hex.EncodeToString(mac.Sum(nil))
	b.ReportAllocs()
	for b.Loop() {
		if err := verifySignature(header, body, secrets); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeEvent(b *testing.B) {
	body := readFixture(b, "webhook-incident-acknowledged.json")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeEvent(body); err != nil {
			b.Fatal(err)
		}
	}
}
