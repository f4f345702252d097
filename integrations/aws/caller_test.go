package awsprov

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/accessbroker/accessbroker/fixtures/awsfake"
	"github.com/accessbroker/accessbroker/grants"
)

// TestChecks: CheckCaller names the caller or says why the credentials fail; the providers'
// Check reads their role or assignment and names what is missing.
func TestChecks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, awsfake.Options{})
	arn, err := CheckCaller(t.Context(), e.cfg)
	if err != nil || arn != "arn:aws:iam::123456789012:user/accessbroker" {
		t.Errorf("CheckCaller = %q, %v", arn, err)
	}

	wrongSecret := loadConfig(t, e.fake.URL(), "not-the-secret-key-0123456789", e.logger)
	if _, err := CheckCaller(t.Context(), wrongSecret); !errors.Is(err, grants.ErrNeedsOperator) || !strings.Contains(err.Error(), "sts:GetCallerIdentity") {
		t.Errorf("CheckCaller with a wrong secret = %v, want a needs-operator error naming sts:GetCallerIdentity", err)
	}
	remove := e.fake.Fail5xx(awsfake.ServiceSTS, "GetCallerIdentity", http.StatusServiceUnavailable, 100)
	if _, err := CheckCaller(t.Context(), e.cfg); err == nil || errors.Is(err, grants.ErrNeedsOperator) {
		t.Errorf("CheckCaller while STS answers 503 = %v, want a retryable error", err)
	}
	remove()

	p, _ := e.newSTS(t, 0, STSConfig{})
	if err := p.Check(t.Context()); err != nil {
		t.Errorf("STS Check: %v", err)
	}
	missing, err := NewSTS(t.Context(), STSConfig{RoleARN: "arn:aws:iam::123456789012:role/no-such-role"}, e.cfg, e.clock, e.logger)
	if err != nil {
		t.Fatal(err)
	}
	if err := missing.Check(t.Context()); err == nil || !strings.Contains(err.Error(), "no-such-role") {
		t.Errorf("STS Check of a missing role = %v, want an error naming it", err)
	}
}
