package slack

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// withoutTriggerID returns a signed-request body (a slash command's form, or an interaction's
// payload form) with its trigger_id removed, as some deliveries come.
func withoutTriggerID(t *testing.T, body []byte) []byte {
	t.Helper()
	v, err := url.ParseQuery(string(body))
	if err != nil {
		t.Fatal(err)
	}
	v.Del("trigger_id")
	if p := v.Get("payload"); p != "" {
		var m map[string]any
		if err := json.Unmarshal([]byte(p), &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "trigger_id")
		b, _ := json.Marshal(m)
		v.Set("payload", string(b))
	}
	return []byte(v.Encode())
}

// upperSigned is e.signed with the signature's hex upper-cased: the same signature, which
// the verifier accepts, spelled differently.
func (e *e2e) upperSigned(t *testing.T, path string, body []byte, ts time.Time) *http.Request {
	t.Helper()
	r := e.signed(path, body, ts)
	sig := r.Header.Get(HeaderSignature)
	r.Header.Set(HeaderSignature, "v0="+strings.ToUpper(strings.TrimPrefix(sig, "v0=")))
	if err := mustVerifier(t, e).Verify(r.Header, body); err != nil {
		t.Fatalf("the verifier refuses the upper-cased signature (%v): pick another spelling", err)
	}
	return r
}

func mustVerifier(t *testing.T, e *e2e) *Verifier {
	t.Helper()
	v, err := NewVerifier(e.clock, 0, signingSecret)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestReplayWithoutTriggerIDIsOneRequest: a signed command without trigger_id, replayed within
// the window with its signature spelled in upper-case hex, is the same delivery: one request,
// one grant, and the replay is answered "already received".
func TestReplayWithoutTriggerIDIsOneRequest(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.onCall(alice)
	body := withoutTriggerID(t, e.commandBody(alice, "prod-db 1h checking replication lag"))
	ts := e.clock.Now()
	first := e.do(t, e.signed(CommandsPath, body, ts))
	e.settle(t)
	e.clock.Advance(time.Minute)
	second := e.do(t, e.upperSigned(t, CommandsPath, body, ts))
	e.settle(t)
	if !strings.Contains(first.text, "received") || !strings.Contains(second.text, "already received") {
		t.Fatalf("acks = %q, %q; want the replay recognised", first.text, second.text)
	}
	if len(e.allRequests(t)) != 1 || len(e.allGrants(t)) != 1 || len(e.prov.Issued()) != 1 {
		t.Fatalf("replay: %d requests, %d grants, %d issued; want 1 each", len(e.allRequests(t)), len(e.allGrants(t)), len(e.prov.Issued()))
	}
	if k := e.allRequests(t)[0].ExternalKey; !strings.HasPrefix(k, "slack:signed:") {
		t.Errorf("dedupe key = %q, want slack:signed:<sha256 of the signed bytes>", k)
	}
	// A different body (another command) is a new delivery.
	other := withoutTriggerID(t, e.commandBody(alice, "prod-db 30m checking replication lag again"))
	if a := e.do(t, e.signed(CommandsPath, other, e.clock.Now())); strings.Contains(a.text, "already received") {
		t.Errorf("a different signed body was taken for a replay: %q", a.text)
	}
}

// TestReplayedExtendClickWithoutTriggerIDExtendsOnce: the reminder's Extend button, clicked
// once and replayed with the signature in upper-case hex, without trigger_id, extends once.
func TestReplayedExtendClickWithoutTriggerIDExtendsOnce(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.onCall(alice)
	e.command(t, alice, "prod-db 1h checking replication lag")
	g := e.allGrants(t)[0]
	e.clock.Set(g.ExpiresAt.Add(-5 * time.Minute))
	if _, err := e.b.Tick(t.Context()); err != nil {
		t.Fatal(err)
	}
	dm := e.dms(alice)
	if len(dm) != 1 {
		t.Fatalf("reminder DMs = %d", len(dm))
	}
	body := withoutTriggerID(t, e.clickBody(alice, ActionExtend, g.ID, e.fakeRef(dm[0])))
	ts := e.clock.Now()
	e.do(t, e.signed(InteractionsPath, body, ts))
	e.settle(t)
	e.clock.Advance(time.Minute)
	if a := e.do(t, e.upperSigned(t, InteractionsPath, body, ts)); a.status != http.StatusOK {
		t.Fatalf("replayed click status = %d", a.status)
	}
	e.settle(t)
	ng, err := e.store.GetGrant(t.Context(), g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := g.ExpiresAt.Add(30 * time.Minute); !ng.ExpiresAt.Equal(want) {
		t.Fatalf("expiry after a click and its replay = %s, want %s (extended once)", ng.ExpiresAt, want)
	}
	ext := 0
	for _, r := range e.allRequests(t) {
		if r.Evidence["kind"] == "extend" {
			ext++
		}
	}
	if ext != 1 {
		t.Errorf("extension requests = %d, want 1", ext)
	}
}
