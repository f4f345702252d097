// Package providertest is the one conformance suite every grants.Provider runs, wired to its
// fake upstream (or a real one, such as PostgreSQL).
//
// The suite checks the Provider contract from the outside, using the upstream's own view of
// who has access (Harness.HasAccess) as ground truth:
//
//   - Issue gives access, and its Issued value never prints, marshals or logs a secret.
//   - Revoke removes it, is idempotent, and treats unknown grants as done.
//   - Revoke with an empty Handle (an issue interrupted by a crash) finds what Issue made
//     from the grant id and person alone.
//   - A retryable upstream fault gives an error that does not wrap grants.ErrNeedsOperator
//     and leaks no secret; the next attempt succeeds.
//   - Overlap: when two grants map to one upstream access (Harness.SharedAccess), both carry
//     the same Handle.Key. The grants layer, not the provider, keeps such access alive: it
//     skips the provider's Revoke while another live grant holds the same Key, and it decides
//     that access created by accessbroker's own earlier grant is not "preexisting" even though
//     the provider reports it so. The suite therefore only checks Key equality, that the
//     provider reports the second issue as preexisting, and that one Revoke (with a
//     non-preexisting handle) removes the upstream access. Without shared access, each grant
//     has its own Key and revoking one leaves the other alone.
//   - Preexisting access (Harness.GrantPreexisting) is reported as Handle.Preexisting, and a
//     Revoke with that handle leaves it in place.
//
// Capabilities a harness does not declare (InjectRevokeFault, GrantPreexisting) are skipped
// with a message naming the missing field, never silently.
package providertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/grants"
)

// Harness describes a provider under test wired to its fake (or real) upstream.
type Harness struct {
	// Provider is the provider under test.
	Provider grants.Provider
	// Person is someone the upstream knows.
	Person grants.Person
	// HasAccess is the ground truth from the fake or real upstream: does the access described
	// by h (or, when h is empty, the one req's grant would have made) exist right now?
	HasAccess func(t *testing.T, h grants.Handle, req grants.RevokeRequest) bool
	// InjectRevokeFault, optional, makes the next revoke fail retryably (5xx, throttling);
	// undo clears the fault.
	InjectRevokeFault func(t *testing.T) (undo func())
	// GrantPreexisting, optional, gives the person the access outside accessbroker.
	GrantPreexisting func(t *testing.T, p grants.Person)
	// SharedAccess is true when two grants for the same person and resource map to the same
	// upstream access (same Handle.Key).
	SharedAccess bool

	// SecretFields names the credential fields that carry secrets (e.g. "password"); their
	// values must never appear in a Handle, in any rendering of Issued, or in errors. Every
	// name listed must be present in issued credentials.
	SecretFields []string
	// Resource is the resource name put in requests; default "providertest".
	Resource string
	// Clock gives the grant expiry (now + Duration); default grants.RealClock, since real
	// upstreams such as PostgreSQL compare VALID UNTIL with their own clock.
	Clock grants.Clock
	// Duration is the grant length; default one hour.
	Duration time.Duration
}

func (h *Harness) check(t *testing.T) {
	t.Helper()
	if h.Provider == nil || h.HasAccess == nil {
		t.Fatal("providertest: Harness needs Provider and HasAccess")
	}
	if h.Resource == "" {
		h.Resource = "providertest"
	}
	if h.Clock == nil {
		h.Clock = grants.RealClock{}
	}
	if h.Duration == 0 {
		h.Duration = time.Hour
	}
}

func (h *Harness) issueReq(id string) grants.IssueRequest {
	return grants.IssueRequest{
		GrantID:   id,
		Resource:  h.Resource,
		Person:    h.Person,
		ExpiresAt: h.Clock.Now().Add(h.Duration).Truncate(time.Millisecond),
		Reason:    "providertest " + id,
	}
}

func (h *Harness) revokeReq(id string, hd grants.Handle) grants.RevokeRequest {
	return grants.RevokeRequest{GrantID: id, Resource: h.Resource, Person: h.Person, Handle: hd}
}

// mustIssue issues a grant and checks the answer's basic shape.
func (h *Harness) mustIssue(t *testing.T, ctx context.Context, id string) grants.Issued {
	t.Helper()
	iss, err := h.Provider.Issue(ctx, h.issueReq(id))
	if err != nil {
		t.Fatalf("Issue(%s): %v", id, err)
	}
	if iss.Handle.Key == "" {
		t.Fatalf("Issue(%s) returned an empty Handle.Key", id)
	}
	h.checkSecrets(t, iss)
	return iss
}

// mustRevoke revokes through a JSON round trip of the handle, as the store would keep it.
func (h *Harness) mustRevoke(t *testing.T, ctx context.Context, id string, hd grants.Handle) {
	t.Helper()
	if err := h.Provider.Revoke(ctx, h.revokeReq(id, roundTrip(t, hd))); err != nil {
		t.Fatalf("Revoke(%s): %v", id, err)
	}
}

func (h *Harness) has(t *testing.T, id string, hd grants.Handle) bool {
	t.Helper()
	return h.HasAccess(t, hd, h.revokeReq(id, hd))
}

// secret is one declared secret credential value.
type secret struct{ field, value string }

// secrets returns the values of the declared secret fields of c.
func (h *Harness) secrets(t *testing.T, c grants.Credential) []secret {
	t.Helper()
	byName := make(map[string]string)
	for _, f := range c.Reveal() {
		byName[f.Name] = f.Value
	}
	var out []secret
	for _, name := range h.SecretFields {
		v, ok := byName[name]
		if !ok {
			t.Fatalf("Harness.SecretFields names %q, but the credential has fields %v", name, fieldNames(c))
		}
		if v == "" {
			t.Fatalf("secret credential field %q is empty", name)
		}
		out = append(out, secret{name, v})
	}
	return out
}

// scrubbed replaces secret values in s, so that failure messages never print them.
func scrubbed(s string, secrets []secret) string {
	for _, sec := range secrets {
		s = strings.ReplaceAll(s, sec.value, "<secret "+sec.field+">")
	}
	return s
}

func fieldNames(c grants.Credential) []string {
	var out []string
	for _, f := range c.Reveal() {
		out = append(out, f.Name)
	}
	return out
}

// renderings returns every way an Issued value may end up in text: fmt verbs, JSON, and slog.
func renderings(t *testing.T, v any) map[string]string {
	t.Helper()
	out := map[string]string{
		"%v":  fmt.Sprintf("%v", v),
		"%+v": fmt.Sprintf("%+v", v),
		"%#v": fmt.Sprintf("%#v", v),
		"%s":  fmt.Sprintf("%s", v),
	}
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json.Marshal(%T): %v", v, err)
	}
	out["json"] = string(js)
	var text, jsonLog bytes.Buffer
	opts := &slog.HandlerOptions{ReplaceAttr: dropTime} // renderings are compared
	slog.New(slog.NewTextHandler(&text, opts)).Info("issued", "value", v)
	slog.New(slog.NewJSONHandler(&jsonLog, opts)).Info("issued", "value", v)
	out["slog text"] = text.String()
	out["slog json"] = jsonLog.String()
	return out
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// checkSecrets verifies that the credential inside iss never shows: Issued renders exactly as
// it would with an empty credential of the same kind, and no declared secret is in the Handle.
// Failure messages name the field and the rendering, never the value.
func (h *Harness) checkSecrets(t *testing.T, iss grants.Issued) {
	t.Helper()
	secrets := h.secrets(t, iss.Credential)
	blank := grants.Issued{Handle: iss.Handle, Credential: grants.NewCredential(iss.Credential.Kind())}
	got, want := renderings(t, iss), renderings(t, blank)
	for form, s := range got {
		if s != want[form] {
			t.Errorf("Issued rendered with %s shows credential content (expected %q)", form, scrubbed(want[form], secrets))
		}
	}
	handleJSON := renderings(t, iss.Handle)["json"]
	for _, sec := range secrets {
		// %#v and JSON show every key and value of Handle.Data; one check per field is enough.
		if strings.Contains(handleJSON, sec.value) || strings.Contains(fmt.Sprintf("%#v", iss.Handle), sec.value) {
			t.Errorf("Handle contains the value of secret credential field %q: %s", sec.field, scrubbed(handleJSON, secrets))
		}
	}
}

// assertNoSecrets fails when err's text contains a secret, without printing the secret.
func assertNoSecrets(t *testing.T, err error, secrets []secret) {
	t.Helper()
	if err == nil {
		return
	}
	text := err.Error() + "\n" + fmt.Sprintf("%+v", err)
	for _, sec := range secrets {
		if strings.Contains(text, sec.value) {
			t.Errorf("error leaks secret credential field %q: %s", sec.field, scrubbed(err.Error(), secrets))
		}
	}
}

func roundTrip(t *testing.T, h grants.Handle) grants.Handle {
	t.Helper()
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatalf("marshal handle: %v", err)
	}
	var out grants.Handle
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("unmarshal handle %s: %v", b, err)
	}
	return out
}

// Run runs the conformance suite. newHarness is called once per subtest and must return a
// provider with fresh upstream state (or at least a person without access); it registers its
// own cleanup with t.Cleanup.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Helper()
	setup := func(t *testing.T) *Harness {
		t.Helper()
		h := newHarness(t)
		h.check(t)
		return &h
	}

	t.Run("Kind", func(t *testing.T) {
		h := setup(t)
		if h.Provider.Kind() == "" {
			t.Error("Kind() is empty")
		}
	})

	t.Run("IssueGivesAccessAndHidesCredential", func(t *testing.T) {
		h := setup(t)
		id := grants.NewID("g")
		iss := h.mustIssue(t, t.Context(), id)
		if iss.Handle.Preexisting {
			t.Error("first issue for a person without access reported Preexisting")
		}
		if !h.has(t, id, iss.Handle) {
			t.Fatal("upstream shows no access after Issue")
		}
		if iss.Credential.Kind() == "" && !iss.Credential.Empty() {
			t.Error("credential has fields but no kind")
		}
		t.Cleanup(func() { _ = h.Provider.Revoke(context.WithoutCancel(t.Context()), h.revokeReq(id, iss.Handle)) })
	})

	t.Run("RevokeRemovesAccess", func(t *testing.T) {
		h := setup(t)
		id := grants.NewID("g")
		iss := h.mustIssue(t, t.Context(), id)
		h.mustRevoke(t, t.Context(), id, iss.Handle)
		if h.has(t, id, iss.Handle) {
			t.Fatal("upstream still shows access after Revoke")
		}
	})

	t.Run("ReadBackAgreesWithTheUpstream", func(t *testing.T) {
		h := setup(t)
		c, ok := h.Provider.(grants.AccessChecker)
		if !ok {
			t.Skip("the provider does not implement grants.AccessChecker (no read-back after revoke)")
		}
		ctx := t.Context()
		id := grants.NewID("g")
		iss := h.mustIssue(t, ctx, id)
		for _, hd := range []grants.Handle{roundTrip(t, iss.Handle), {}} {
			if got, err := c.HasAccess(ctx, h.revokeReq(id, hd)); err != nil || !got {
				t.Fatalf("HasAccess after Issue (handle %v) = %v, %v; want true", hd, got, err)
			}
		}
		h.mustRevoke(t, ctx, id, iss.Handle)
		if got, err := c.HasAccess(ctx, h.revokeReq(id, roundTrip(t, iss.Handle))); err != nil || got || h.has(t, id, iss.Handle) {
			t.Fatalf("HasAccess after Revoke = %v, %v (upstream %v); want false", got, err, h.has(t, id, iss.Handle))
		}
	})

	t.Run("RevokeTwiceIsNil", func(t *testing.T) {
		h := setup(t)
		id := grants.NewID("g")
		iss := h.mustIssue(t, t.Context(), id)
		h.mustRevoke(t, t.Context(), id, iss.Handle)
		h.mustRevoke(t, t.Context(), id, iss.Handle)
		h.mustRevoke(t, t.Context(), id, grants.Handle{})
		if h.has(t, id, iss.Handle) {
			t.Fatal("upstream shows access after two revokes")
		}
	})

	t.Run("RevokeUnknownGrantIsNil", func(t *testing.T) {
		h := setup(t)
		h.mustRevoke(t, t.Context(), grants.NewID("g"), grants.Handle{})
	})

	t.Run("RevokeWithEmptyHandleAfterInterruptedIssue", func(t *testing.T) {
		h := setup(t)
		id := grants.NewID("g")
		iss := h.mustIssue(t, t.Context(), id)
		// The broker crashed before storing the handle: only the request is known.
		h.mustRevoke(t, t.Context(), id, grants.Handle{})
		if h.has(t, id, iss.Handle) {
			t.Fatal("access made by Issue survived a Revoke with an empty Handle")
		}
	})

	t.Run("RetryableRevokeFault", func(t *testing.T) {
		h := setup(t)
		if h.InjectRevokeFault == nil {
			t.Skip("Harness.InjectRevokeFault is nil: this provider's fault handling is not covered by the suite")
		}
		id := grants.NewID("g")
		iss := h.mustIssue(t, t.Context(), id)
		secrets := h.secrets(t, iss.Credential)
		undo := h.InjectRevokeFault(t)
		err := h.Provider.Revoke(t.Context(), h.revokeReq(id, roundTrip(t, iss.Handle)))
		undo()
		if err == nil {
			t.Fatal("Revoke succeeded through an injected fault")
		}
		if errors.Is(err, grants.ErrNeedsOperator) {
			t.Errorf("retryable fault reported as needing an operator: %v", err)
		}
		assertNoSecrets(t, err, secrets)
		t.Logf("Revoke under the injected fault: %s", scrubbed(err.Error(), secrets))
		if !h.has(t, id, iss.Handle) {
			t.Error("a failed Revoke reported an error but removed the access")
		}
		h.mustRevoke(t, t.Context(), id, iss.Handle)
		if h.has(t, id, iss.Handle) {
			t.Fatal("access survived the retried Revoke")
		}
	})

	t.Run("Overlap", func(t *testing.T) {
		h := setup(t)
		ctx := t.Context()
		id1, id2 := grants.NewID("g"), grants.NewID("g")
		iss1 := h.mustIssue(t, ctx, id1)
		iss2 := h.mustIssue(t, ctx, id2)
		if !h.SharedAccess {
			if iss1.Handle.Key == iss2.Handle.Key {
				t.Fatalf("two grants share Handle.Key %q but the harness says access is not shared", iss1.Handle.Key)
			}
			h.mustRevoke(t, ctx, id1, iss1.Handle)
			if h.has(t, id1, iss1.Handle) {
				t.Error("first grant's access survived its Revoke")
			}
			if !h.has(t, id2, iss2.Handle) {
				t.Error("revoking one grant removed the other grant's separate access")
			}
			h.mustRevoke(t, ctx, id2, iss2.Handle)
			if h.has(t, id2, iss2.Handle) {
				t.Error("second grant's access survived its Revoke")
			}
			return
		}
		if iss1.Handle.Key != iss2.Handle.Key {
			t.Fatalf("shared access but different keys: %q and %q", iss1.Handle.Key, iss2.Handle.Key)
		}
		if !iss2.Handle.Preexisting {
			t.Error("second issue of shared access did not report Preexisting (the grants layer needs it to tell)")
		}
		// The grants layer revokes once, when the last live grant with this Key ends, with
		// the handle of the grant that created the access.
		h.mustRevoke(t, ctx, id1, iss1.Handle)
		if h.has(t, id1, iss1.Handle) || h.has(t, id2, iss2.Handle) {
			t.Error("shared access survived the Revoke of the grant that created it")
		}
	})

	t.Run("Preexisting", func(t *testing.T) {
		h := setup(t)
		if h.GrantPreexisting == nil {
			t.Skip("Harness.GrantPreexisting is nil: this provider cannot report preexisting access or the harness cannot set it up")
		}
		h.GrantPreexisting(t, h.Person)
		id := grants.NewID("g")
		iss := h.mustIssue(t, t.Context(), id)
		if !iss.Handle.Preexisting {
			t.Fatal("Issue for a person who already had the access did not report Handle.Preexisting")
		}
		h.mustRevoke(t, t.Context(), id, iss.Handle)
		if !h.has(t, id, iss.Handle) {
			t.Error("Revoke with a preexisting handle removed access the person had before accessbroker")
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		h := setup(t)
		const n = 4
		ids := make([]string, n)
		issued := make([]grants.Issued, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			ids[i] = grants.NewID("g")
			wg.Go(func() { issued[i], errs[i] = h.Provider.Issue(t.Context(), h.issueReq(ids[i])) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("concurrent Issue(%s): %v", ids[i], err)
			}
		}
		keys := make(map[string]bool)
		for i := range n {
			keys[issued[i].Handle.Key] = true
			if !h.has(t, ids[i], issued[i].Handle) {
				t.Errorf("no access for concurrently issued grant %s", ids[i])
			}
		}
		wantKeys := n
		if h.SharedAccess {
			wantKeys = 1
		}
		if diff := cmp.Diff(wantKeys, len(keys)); diff != "" {
			t.Errorf("distinct handle keys (-want +got):\n%s", diff)
		}
		for i := range n {
			wg.Go(func() {
				errs[i] = h.Provider.Revoke(t.Context(), h.revokeReq(ids[i], grants.Handle{Key: issued[i].Handle.Key, Data: issued[i].Handle.Data}))
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("concurrent Revoke(%s): %v", ids[i], err)
			}
			if h.has(t, ids[i], issued[i].Handle) {
				t.Errorf("access for %s survived concurrent revokes", ids[i])
			}
		}
	})
}
