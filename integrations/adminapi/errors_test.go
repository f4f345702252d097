package adminapi_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/integrations/adminapi"
)

// failing answers every call with err.
type failing struct{ err error }

func (f failing) ListGrants(context.Context, grants.GrantFilter) ([]grants.Grant, error) {
	return nil, f.err
}
func (f failing) GetGrant(context.Context, string) (grants.Grant, error) {
	return grants.Grant{}, f.err
}
func (f failing) Revoke(context.Context, string, grants.RevokeCause, audit.Actor, string) (grants.Grant, error) {
	return grants.Grant{}, f.err
}
func (f failing) Search(context.Context, audit.Query) ([]audit.Event, error) { return nil, f.err }
func (f failing) Report(context.Context, time.Time, time.Time, string) (string, []byte, error) {
	return "", nil, f.err
}

// TestErrorKindsMapToStatus: every handler answers an error kind of grants with the status of
// the one table, shows the caller the message of a caller's error, and hides (and logs) a fault
// of the broker.
func TestErrorKindsMapToStatus(t *testing.T) {
	t.Parallel()
	const secretish = "dial tcp 10.0.0.7:5432: password authentication failed for user admin"
	id := "g_" + strings.Repeat("a", 16)
	for _, tc := range []struct {
		name       string
		err        error
		wantStatus int
		wantBody   string // shown to the caller
	}{
		{"not found", fmt.Errorf("grant %s: %w", id, grants.ErrNotFound), http.StatusNotFound, "grant " + id + ": not found"},
		{"invalid", fmt.Errorf("reason is empty: %w", grants.ErrInvalid), http.StatusBadRequest, "reason is empty"},
		{"conflict", fmt.Errorf("grant %s changed meanwhile: %w", id, grants.ErrConflict), http.StatusConflict, "changed meanwhile"},
		{"illegal transition", fmt.Errorf("grant %s is revoked: %w", id, grants.ErrIllegalTransition), http.StatusConflict, "is revoked"},
		{"audit unavailable", fmt.Errorf("%s: %w", secretish, grants.ErrAudit), http.StatusServiceUnavailable, "audit log unavailable; try again later"},
		{"anything else", errors.New(secretish), http.StatusInternalServerError, "failed; see the broker's log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			f := failing{tc.err}
			api := adminapi.New(adminapi.Config{Token: token, Grants: f, Revoker: f, Searcher: f, Reporter: f,
				Clock: clocktest.New(time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)), Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
			for _, call := range []struct{ method, path, body string }{
				{"GET", "/api/v1/grants", ""},
				{"GET", "/api/v1/grants/" + id, ""},
				{"POST", "/api/v1/grants/" + id + "/revoke", `{"reason":"incident over","operator":"ops"}`},
				{"GET", "/api/v1/audit", ""},
				{"GET", "/api/v1/report", ""},
			} {
				req := httptest.NewRequest(call.method, call.path, strings.NewReader(call.body))
				req.Header.Set("Authorization", "Bearer "+token)
				rec := httptest.NewRecorder()
				api.ServeHTTP(rec, req)
				body := rec.Body.String()
				if rec.Code != tc.wantStatus || !strings.Contains(body, tc.wantBody) {
					t.Errorf("%s %s = %d %s; want %d containing %q", call.method, call.path, rec.Code, body, tc.wantStatus, tc.wantBody)
				}
				if tc.wantStatus >= 500 && strings.Contains(body, "password") {
					t.Errorf("%s %s shows the broker's fault to the caller: %s", call.method, call.path, body)
				}
			}
			if logged := strings.Contains(logs.String(), "admin API"); logged != (tc.wantStatus >= 500) {
				t.Errorf("logged = %v for status %d: %s", logged, tc.wantStatus, logs.String())
			}
		})
	}
}

// TestOpenAPIServedWithoutToken: the description is served, as JSON, to a caller without the
// token; everything else still needs it.
func TestOpenAPIServedWithoutToken(t *testing.T) {
	t.Parallel()
	api := adminapi.New(adminapi.Config{Token: token, Clock: clocktest.New(time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC))})
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/openapi.json", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" || !strings.Contains(rec.Body.String(), `"openapi": "3.1.0"`) {
		t.Fatalf("GET openapi.json = %d %s", rec.Code, rec.Body.String()[:min(200, rec.Body.Len())])
	}
	rec = httptest.NewRecorder()
	api.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/grants", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("GET grants without a token = %d", rec.Code)
	}
}
