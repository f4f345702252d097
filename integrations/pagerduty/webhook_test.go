package pagerduty_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/fixtures/pdfake"
	"github.com/accessbroker/accessbroker/integrations/pagerduty"
)

// The official signature test vector and the derived incident fixtures signed with it.
type signatureVector struct {
	Secret    string `json:"secret"`
	Signature string `json:"x_pagerduty_signature"`
	Mismatch  string `json:"mismatch_signature_from_same_test"`
	Rotation  string `json:"rotation_example_header"`
	Derived   map[string]struct {
		Signature string `json:"x_pagerduty_signature"`
	} `json:"derived_fixture_signatures_with_same_secret"`
}

func loadVector(t testing.TB) signatureVector {
	t.Helper()
	var v signatureVector
	if err := json.Unmarshal(readFixture(t, "webhook-signature-vector.json"), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// ackAt is shortly after the acknowledged fixture's occurred_at (2020-10-02T18:47:10.455Z).
var ackAt = time.Date(2020, 10, 2, 18, 48, 0, 0, time.UTC)

type hookEnv struct {
	*env
	rec    *recorder
	pages  *pages
	dedupe *pagerduty.MemoryDeduper
	hook   *pagerduty.Webhook
	secret string
}

// newHook builds the webhook handler around a fake PagerDuty holding the incident of the
// official examples (PGR0VU2, service PF9KMXH), acknowledged by PTUXL6G.
func newHook(t *testing.T, start time.Time, secrets ...string) *hookEnv {
	t.Helper()
	e := newEnv(t, start)
	vec := loadVector(t)
	if len(secrets) == 0 {
		secrets = []string{vec.Secret}
	}
	e.fake.AddUser(pdfake.User{ID: "PTUXL6G", Name: "User 123", Email: "user123@example.com"})
	e.fake.AddUser(pdfake.User{ID: "PLH1HKV", Name: "Tenex Engineer", Email: "tenex@example.com"})
	e.fake.PutIncident(pdfake.Incident{ID: "PGR0VU2", Number: 2, Title: "A little bump in the road", Status: "acknowledged",
		ServiceID: "PF9KMXH", ServiceName: "API Service", EscalationPolicyID: "PUS0KTE", EscalationPolicyName: "Default",
		Assignees: []string{"PTUXL6G"}, Acknowledgers: []string{"PTUXL6G"}, CreatedAt: start.Add(-time.Hour)})
	h := &hookEnv{env: e, rec: &recorder{}, pages: &pages{}, dedupe: pagerduty.NewMemoryDeduper(), secret: vec.Secret}
	var err error
	h.hook, err = pagerduty.NewWebhook(pagerduty.WebhookConfig{
		Secrets: secrets, API: e.client, Pages: h.pages, Deduper: h.dedupe, Recorder: h.rec, Clock: e.clock,
		Logger: e.logger, MaxBodyBytes: 4096,
	})
	if err != nil {
		t.Fatalf("NewWebhook: %v", err)
	}
	return h
}

// deliver POSTs body with the given X-PagerDuty-Signature ("" leaves the header out).
func (h *hookEnv) deliver(t *testing.T, body []byte, signature string) *httptest.ResponseRecorder {
	t.Helper()
	req, err := pdfake.NewDelivery(body, "").Request(t.Context(), "http://broker.example"+pagerduty.WebhookPath)
	if err != nil {
		t.Fatal(err)
	}
	req.RemoteAddr = "198.51.100.7:4711"
	if signature != "" {
		req.Header.Set("X-PagerDuty-Signature", signature)
	}
	w := httptest.NewRecorder()
	h.hook.ServeHTTP(w, req)
	return w
}

// event builds and signs (with h.secret) a webhook for the fake's incident PGR0VU2.
func (h *hookEnv) event(t *testing.T, id, typ, agent string, at time.Time) ([]byte, string) {
	t.Helper()
	body, err := h.fake.IncidentWebhookBody(pdfake.IncidentEvent{ID: id, Type: typ, OccurredAt: at, AgentUserID: agent, IncidentID: "PGR0VU2"})
	if err != nil {
		t.Fatal(err)
	}
	return body, pdfake.Sign(body, h.secret)
}

func (h *hookEnv) wantNothingActedOn(t *testing.T) {
	t.Helper()
	acks, res := h.pages.snapshot()
	if len(acks) != 0 || len(res) != 0 {
		t.Errorf("Pages called: acks %v, resolved %v", acks, res)
	}
	if n := len(h.fake.Calls()); n != 0 {
		t.Errorf("PagerDuty API called %d times", n)
	}
}

func wantStatus(t *testing.T, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d (%q), want %d", w.Code, strings.TrimSpace(w.Body.String()), status)
	}
}

func TestWebhookAcknowledgedIsConfirmedThenHandedOn(t *testing.T) {
	t.Parallel()
	h := newHook(t, ackAt)
	vec := loadVector(t)
	body := readFixture(t, "webhook-incident-acknowledged.json")
	w := h.deliver(t, body, vec.Derived["pagerduty-webhook-incident-acknowledged.json"].Signature)
	wantStatus(t, w, http.StatusOK)

	acks, res := h.pages.snapshot()
	want := []broker.PageAck{{
		EventID: "01DEN4HPBQ7QJ0Y9D6F2S7RK1C", IncidentID: "PGR0VU2", IncidentNumber: 2, Title: "A little bump in the road",
		URL: pdfake.WebURL + "/incidents/PGR0VU2", ServiceID: "PF9KMXH",
		AcknowledgerPDUserID: "PTUXL6G", AcknowledgerEmail: "user123@example.com",
		OccurredAt: time.Date(2020, 10, 2, 18, 47, 10, 455e6, time.UTC),
	}}
	if diff := cmp.Diff(want, acks); diff != "" || len(res) != 0 {
		t.Errorf("Pages.Acknowledged (-want +got):\n%s\nresolved: %v", diff, res)
	}
	if c := h.fake.CallCount(http.MethodGet, "/incidents/PGR0VU2"); c != 1 {
		t.Errorf("incident confirmed %d times through the API, want 1", c)
	}
	if c := h.fake.CallCount(http.MethodGet, "/users/PTUXL6G"); c != 1 {
		t.Errorf("acknowledger looked up %d times, want 1", c)
	}
	if ev := h.rec.all(); len(ev) != 0 {
		t.Errorf("audit events for a handed-on acknowledgement (the broker audits it): %v", ev)
	}
}

func TestWebhookSameEventThreeTimesActsOnce(t *testing.T) {
	t.Parallel()
	h := newHook(t, ackAt)
	body, sig := h.event(t, "01EVENTDUP0000000000000000", "incident.acknowledged", "PTUXL6G", ackAt.Add(-time.Minute))
	for i := range 3 {
		w := h.deliver(t, body, sig)
		wantStatus(t, w, http.StatusOK)
		if i > 0 && !strings.Contains(w.Body.String(), "duplicate") {
			t.Errorf("delivery %d answered %q", i+1, w.Body.String())
		}
	}
	if acks, _ := h.pages.snapshot(); len(acks) != 1 {
		t.Errorf("Pages.Acknowledged called %d times, want 1", len(acks))
	}
	if c := h.fake.CallCount(http.MethodGet, "/incidents/PGR0VU2"); c != 1 {
		t.Errorf("API asked %d times, want 1", c)
	}
}

func TestWebhookStaleOrFutureEventIsRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		occurredAt time.Duration // relative to now
		refused    bool
	}{
		{"just inside the window", -pagerduty.DefaultFreshness + time.Second, false},
		{"older than the window", -pagerduty.DefaultFreshness - time.Millisecond, true},
		{"a day old", -24 * time.Hour, true},
		{"slightly ahead (clock skew)", time.Minute, false},
		{"too far in the future", pagerduty.DefaultMaxFutureSkew + time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHook(t, ackAt)
			body, sig := h.event(t, "01STALE", "incident.acknowledged", "PTUXL6G", ackAt.Add(tt.occurredAt))
			w := h.deliver(t, body, sig)
			wantStatus(t, w, http.StatusOK) // 2xx either way: PagerDuty must not retry a stale event
			acks, _ := h.pages.snapshot()
			if !tt.refused {
				if len(acks) != 1 {
					t.Errorf("fresh event not handed on: %v", acks)
				}
				return
			}
			h.wantNothingActedOn(t)
			ev := h.rec.all()
			if len(ev) != 1 || ev[0].Action != audit.ActionWebhookRejected || !strings.HasPrefix(ev[0].Reason, "stale") ||
				ev[0].Evidence["event_id"] != "01STALE" || ev[0].Evidence["incident_id"] != "PGR0VU2" {
				t.Errorf("audit %+v, want one webhook.rejected 'stale' event naming the event and incident", ev)
			}
			// Not recorded as seen: the refusal does not depend on deduplication.
			if first, _ := h.dedupe.Seen(t.Context(), "01STALE"); !first {
				t.Error("a refused stale event was recorded as seen")
			}
		})
	}
}

func TestWebhookSignatures(t *testing.T) {
	t.Parallel()
	vec := loadVector(t)
	body := readFixture(t, "webhook-incident-acknowledged.json")
	good := vec.Derived["pagerduty-webhook-incident-acknowledged.json"].Signature
	goodHex := strings.TrimPrefix(good, "v1=")
	tests := []struct {
		name      string
		signature string
		body      []byte
		want      int
	}{
		{"valid", good, body, 200},
		{"valid among others (rotation)", vec.Mismatch + "," + good, body, 200},
		{"space after the comma (go-pagerduty rejects this)", vec.Mismatch + ", " + good, body, 200},
		{"unknown version next to v1", "v2=" + goodHex + "," + good, body, 200},
		{"uppercase hex", "v1=" + strings.ToUpper(goodHex), body, 200},
		{"missing", "", body, 401},
		{"wrong", vec.Mismatch, body, 401},
		{"unknown version only", "v2=" + goodHex, body, 401},
		{"version without a value", "v1=", body, 401},
		{"not hex", "v1=zz" + goodHex[2:], body, 401},
		{"truncated", good[:len(good)-2], body, 401},
		{"no version", goodHex, body, 401},
		{"body changed", good, []byte(strings.Replace(string(body), "PTUXL6G", "PLH1HKV", 1)), 401},
		{"empty body", good, []byte{}, 401},
		{"too many entries", strings.Repeat(vec.Mismatch+",", 8) + good, body, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHook(t, ackAt)
			w := h.deliver(t, tt.body, tt.signature)
			wantStatus(t, w, tt.want)
			if tt.want == 200 {
				if acks, _ := h.pages.snapshot(); len(acks) != 1 {
					t.Errorf("authentic delivery not acted on: %v", acks)
				}
				return
			}
			h.wantNothingActedOn(t)
			if first, _ := h.dedupe.Seen(t.Context(), "01DEN4HPBQ7QJ0Y9D6F2S7RK1C"); !first {
				t.Error("an unauthenticated delivery was recorded as seen")
			}
			ev := h.rec.all()
			if len(ev) != 1 || ev[0].Action != audit.ActionWebhookRejected || ev[0].Actor.Kind != audit.ActorUnknown ||
				ev[0].Actor.ID != "198.51.100.7" || ev[0].Evidence["event_id"] != "" {
				t.Errorf("audit %+v: want one webhook.rejected by the unknown remote, with nothing taken from the body", ev)
			}
			if strings.Contains(h.logs.String(), h.secret) || strings.Contains(fmt.Sprint(ev), h.secret) {
				t.Error("the signing secret leaked")
			}
		})
	}
}

func TestWebhookTwoSecretsDuringRotation(t *testing.T) {
	t.Parallel()
	const oldSecret, newSecret = "old-secret-0123456789", "new-secret-9876543210"
	tests := []struct {
		name    string
		signers []string
		want    int
	}{
		{"old only", []string{oldSecret}, 200},
		{"new only", []string{newSecret}, 200},
		{"both, as PagerDuty sends during a rotation", []string{oldSecret, newSecret}, 200},
		{"neither", []string{"retired-secret"}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHook(t, ackAt, oldSecret, newSecret)
			body, _ := h.event(t, "01ROTATION", "incident.acknowledged", "PTUXL6G", ackAt)
			wantStatus(t, h.deliver(t, body, pdfake.Sign(body, tt.signers...)), tt.want)
		})
	}
}

func TestWebhookResolveBeforeAcknowledgeGrantsNothing(t *testing.T) {
	t.Parallel()
	h := newHook(t, ackAt)
	ackBody, ackSig := h.event(t, "01ACK", "incident.acknowledged", "PTUXL6G", ackAt.Add(-30*time.Second))
	// The incident is resolved in PagerDuty; its resolved event overtakes the acknowledged one.
	inc, _ := h.fake.Incident("PGR0VU2")
	inc.Status, inc.Acknowledgers, inc.Assignees = "resolved", nil, nil
	h.fake.PutIncident(inc)
	resBody, resSig := h.event(t, "01RES", "incident.resolved", "PTUXL6G", ackAt.Add(-10*time.Second))

	wantStatus(t, h.deliver(t, resBody, resSig), http.StatusOK)
	wantStatus(t, h.deliver(t, ackBody, ackSig), http.StatusOK)

	acks, res := h.pages.snapshot()
	if len(acks) != 0 {
		t.Errorf("a grant was asked for a resolved incident: %v", acks)
	}
	wantRes := []broker.PageResolved{{EventID: "01RES", IncidentID: "PGR0VU2", ServiceID: "PF9KMXH", OccurredAt: ackAt.Add(-10 * time.Second)}}
	if diff := cmp.Diff(wantRes, res); diff != "" {
		t.Errorf("Pages.Resolved (-want +got):\n%s", diff)
	}
	ev := h.rec.all()
	if len(ev) != 1 || ev[0].Action != pagerduty.ActionWebhookIgnored || !strings.Contains(ev[0].Reason, `"resolved"`) ||
		ev[0].Evidence["incident_status"] != "resolved" || ev[0].Evidence["event_id"] != "01ACK" {
		t.Errorf("audit %+v: want the unconfirmed acknowledgement recorded as ignored", ev)
	}
}

func TestWebhookAcknowledgementNotConfirmed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		agent      string
		mutate     func(*pdfake.Incident)
		wantReason string
	}{
		{"acknowledger is neither acknowledger nor assignee now", "PLH1HKV", nil, "not among"},
		{"unacknowledged again since", "PTUXL6G", func(i *pdfake.Incident) { i.Status, i.Acknowledgers = "triggered", nil }, `"triggered"`},
		{"acknowledged by automation", "", nil, "not a user"},
		{"acknowledging user deleted", "PTUXL6G", func(*pdfake.Incident) {}, "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHook(t, ackAt)
			if tt.mutate != nil {
				inc, _ := h.fake.Incident("PGR0VU2")
				tt.mutate(&inc)
				h.fake.PutIncident(inc)
			}
			body, sig := h.event(t, "01NOTCONF", "incident.acknowledged", tt.agent, ackAt)
			if tt.wantReason == "does not exist" {
				h.fake.InjectFault(pdfake.Fault{PathPrefix: "/users/PTUXL6G", Status: 404})
			}
			wantStatus(t, h.deliver(t, body, sig), http.StatusOK)
			if acks, _ := h.pages.snapshot(); len(acks) != 0 {
				t.Errorf("Pages.Acknowledged called: %v", acks)
			}
			ev := h.rec.all()
			if len(ev) != 1 || ev[0].Action != pagerduty.ActionWebhookIgnored || !strings.Contains(ev[0].Reason, tt.wantReason) {
				t.Errorf("audit %+v, want one webhook.ignored containing %q", ev, tt.wantReason)
			}
		})
	}
}

func TestWebhookRetriableFailuresAreRedelivered(t *testing.T) {
	t.Parallel()
	t.Run("PagerDuty API down", func(t *testing.T) {
		t.Parallel()
		h := newHook(t, ackAt)
		body, sig := h.event(t, "01APIDOWN", "incident.acknowledged", "PTUXL6G", ackAt)
		h.fake.InjectFault(pdfake.Fault{PathPrefix: "/incidents", Status: 500})
		wantStatus(t, h.deliver(t, body, sig), http.StatusServiceUnavailable)
		if c := h.fake.CallCount(http.MethodGet, "/incidents/PGR0VU2"); c != 1+retries {
			t.Errorf("API tried %d times, want %d", c, 1+retries)
		}
		if acks, _ := h.pages.snapshot(); len(acks) != 0 {
			t.Fatalf("acted on an unconfirmed acknowledgement: %v", acks)
		}
		h.fake.ClearFaults()
		wantStatus(t, h.deliver(t, body, sig), http.StatusOK) // PagerDuty's redelivery
		if acks, _ := h.pages.snapshot(); len(acks) != 1 {
			t.Errorf("after redelivery: %d acks, want 1", len(acks))
		}
	})
	t.Run("broker fails", func(t *testing.T) {
		t.Parallel()
		h := newHook(t, ackAt)
		h.pages.failAcks = 1
		body, sig := h.event(t, "01BROKERDOWN", "incident.acknowledged", "PTUXL6G", ackAt)
		wantStatus(t, h.deliver(t, body, sig), http.StatusInternalServerError)
		wantStatus(t, h.deliver(t, body, sig), http.StatusOK)
		wantStatus(t, h.deliver(t, body, sig), http.StatusOK)
		acks, _ := h.pages.snapshot()
		if len(acks) != 1 || h.pages.attempts != 2 {
			t.Errorf("acks %d attempts %d, want 1 and 2", len(acks), h.pages.attempts)
		}
	})
	t.Run("deduplication store down", func(t *testing.T) {
		t.Parallel()
		e := newHook(t, ackAt)
		hook, err := pagerduty.NewWebhook(pagerduty.WebhookConfig{Secrets: []string{e.secret}, API: e.client, Pages: e.pages,
			Deduper: failingDeduper{}, Recorder: e.rec, Clock: e.clock})
		if err != nil {
			t.Fatal(err)
		}
		e.hook = hook
		body, sig := e.event(t, "01DEDUPDOWN", "incident.acknowledged", "PTUXL6G", ackAt)
		wantStatus(t, e.deliver(t, body, sig), http.StatusServiceUnavailable)
		e.wantNothingActedOn(t)
	})
}

type failingDeduper struct{}

func (failingDeduper) Seen(_ context.Context, _ string) (bool, error) {
	return false, errors.New("database is locked")
}
func (failingDeduper) Forget(_ context.Context, _ string) error { return nil }

func TestWebhookEventsThatGrantNothing(t *testing.T) {
	t.Parallel()
	vec := loadVector(t)
	tests := []struct {
		name        string
		body        func(h *hookEnv) ([]byte, string)
		at          time.Time
		wantAudit   []audit.Action
		wantMessage string
	}{
		{"reassigned (fixture)", func(*hookEnv) ([]byte, string) {
			return readFixture(t, "webhook-incident-reassigned.json"), vec.Derived["pagerduty-webhook-incident-reassigned.json"].Signature
		}, time.Date(2020, 10, 2, 18, 51, 0, 0, time.UTC), []audit.Action{pagerduty.ActionWebhookIgnored}, "ignored: incident.reassigned"},
		{"unacknowledged", func(h *hookEnv) ([]byte, string) {
			return h.event(t, "01UNACK", "incident.unacknowledged", "", ackAt)
		}, ackAt, []audit.Action{pagerduty.ActionWebhookIgnored}, "ignored: incident.unacknowledged"},
		{"unknown type: priority_updated (official example)", func(h *hookEnv) ([]byte, string) {
			b := readFixture(t, "webhook-incident-priority-updated.json")
			return b, pdfake.Sign(b, h.secret)
		}, time.Date(2020, 10, 2, 18, 46, 0, 0, time.UTC), nil, "ignored: event type not handled"},
		{"unknown type: service.updated (official example)", func(h *hookEnv) ([]byte, string) {
			b := readFixture(t, "webhook-service-updated.json")
			return b, pdfake.Sign(b, h.secret)
		}, time.Date(2021, 3, 2, 13, 36, 0, 0, time.UTC), nil, "ignored: event type not handled"},
		{"unknown type: signature vector body", func(*hookEnv) ([]byte, string) {
			return readFixture(t, "webhook-signature-vector-body.json"), vec.Signature
		}, time.Date(2021, 4, 26, 17, 37, 0, 0, time.UTC), nil, "ignored: event type not handled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHook(t, tt.at)
			body, sig := tt.body(h)
			w := h.deliver(t, body, sig)
			wantStatus(t, w, http.StatusOK)
			if got := strings.TrimSpace(w.Body.String()); got != tt.wantMessage {
				t.Errorf("answer %q, want %q", got, tt.wantMessage)
			}
			h.wantNothingActedOn(t)
			if diff := cmp.Diff(tt.wantAudit, h.rec.actions()); diff != "" {
				t.Errorf("audit actions (-want +got):\n%s", diff)
			}
			// A redelivery of an audited event is not audited twice.
			h.deliver(t, body, sig)
			if diff := cmp.Diff(tt.wantAudit, h.rec.actions()); diff != "" {
				t.Errorf("after redelivery (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWebhookMalformedAndOversized(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want int
	}{
		{"not JSON", "hello", 400},
		{"no event", `{"events":[]}`, 400},
		{"no id", `{"event":{"event_type":"incident.acknowledged","occurred_at":"2020-10-02T18:47:10.455Z","data":{"id":"P1","type":"incident"}}}`, 400},
		{"bad time", `{"event":{"id":"E1","event_type":"incident.acknowledged","occurred_at":"yesterday","data":{"id":"P1","type":"incident"}}}`, 400},
		{"incident without data", `{"event":{"id":"E1","event_type":"incident.resolved","occurred_at":"2020-10-02T18:47:10.455Z","data":null}}`, 400},
		{"too large", `{"event":{"id":"E1","pad":"` + strings.Repeat("x", 5000) + `"}}`, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHook(t, ackAt)
			body := []byte(tt.body)
			wantStatus(t, h.deliver(t, body, pdfake.Sign(body, h.secret)), tt.want)
			h.wantNothingActedOn(t)
			if got := h.rec.actions(); len(got) != 1 || got[0] != audit.ActionWebhookRejected {
				t.Errorf("audit %v, want one webhook.rejected", got)
			}
		})
	}
}

func TestWebhookRejectionAuditIsRateLimited(t *testing.T) {
	t.Parallel()
	h := newHook(t, ackAt)
	body, _ := h.event(t, "01FLOOD", "incident.acknowledged", "PTUXL6G", ackAt)
	for range 50 {
		wantStatus(t, h.deliver(t, body, "v1=00"), http.StatusUnauthorized)
	}
	if n := len(h.rec.all()); n != pagerduty.DefaultRejectBurst {
		t.Fatalf("%d audit events for 50 rejections, want the burst of %d", n, pagerduty.DefaultRejectBurst)
	}
	h.clock.Advance(pagerduty.DefaultRejectInterval)
	wantStatus(t, h.deliver(t, body, "v1=00"), http.StatusUnauthorized)
	ev := h.rec.all()
	if len(ev) != pagerduty.DefaultRejectBurst+1 || ev[len(ev)-1].Evidence["suppressed"] != "40" {
		t.Errorf("after the interval: %d events, last %+v; want one more saying 40 were suppressed", len(ev), ev[len(ev)-1])
	}
	h.wantNothingActedOn(t)
}

func TestWebhookThroughHTTP(t *testing.T) {
	t.Parallel()
	h := newHook(t, ackAt)
	mux := http.NewServeMux()
	mux.Handle("POST "+pagerduty.WebhookPath, h.hook)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	body, err := h.fake.IncidentWebhookBody(pdfake.IncidentEvent{ID: "01HTTP", Type: "incident.acknowledged", OccurredAt: ackAt, AgentUserID: "PTUXL6G", IncidentID: "PGR0VU2"})
	if err != nil {
		t.Fatal(err)
	}
	req, err := pdfake.NewDelivery(body, "wh-01HTTP", "some-old-secret", h.secret).Request(t.Context(), srv.URL+pagerduty.WebhookPath)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if acks, _ := h.pages.snapshot(); len(acks) != 1 || acks[0].AcknowledgerEmail != "user123@example.com" {
		t.Errorf("acks %v", acks)
	}
}

func TestNewWebhookValidatesConfig(t *testing.T) {
	t.Parallel()
	h := newHook(t, ackAt)
	base := pagerduty.WebhookConfig{Secrets: []string{"s"}, API: h.client, Pages: h.pages, Deduper: h.dedupe, Recorder: h.rec, Clock: h.clock}
	tests := []struct {
		name    string
		mutate  func(*pagerduty.WebhookConfig)
		wantErr string
	}{
		{"no secrets", func(c *pagerduty.WebhookConfig) { c.Secrets = nil }, "pagerduty.webhook_secrets is empty"},
		{"empty secret", func(c *pagerduty.WebhookConfig) { c.Secrets = []string{"a", ""} }, "pagerduty.webhook_secrets[1] is empty"},
		{"no pages", func(c *pagerduty.WebhookConfig) { c.Pages = nil }, "Pages is required"},
		{"no deduper", func(c *pagerduty.WebhookConfig) { c.Deduper = nil }, "Deduper is required"},
		{"no recorder", func(c *pagerduty.WebhookConfig) { c.Recorder = nil }, "Recorder is required"},
		{"no clock", func(c *pagerduty.WebhookConfig) { c.Clock = nil }, "clock is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.mutate(&cfg)
			if _, err := pagerduty.NewWebhook(cfg); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err %v, want %q", err, tt.wantErr)
			}
		})
	}
}
