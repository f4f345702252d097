package webhook_test

import (
	"net/http"
	"testing"

	"github.com/accessbroker/accessbroker/fixtures/webhookfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/providertest"
	"github.com/accessbroker/accessbroker/integrations/webhook"
)

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) providertest.Harness {
		fake := webhookfake.New(token)
		t.Cleanup(fake.Close)
		p, err := webhook.New(webhook.Config{URL: fake.URL(), Token: token}, fake.Client())
		if err != nil {
			t.Fatalf("webhook.New: %v", err)
		}
		return providertest.Harness{
			Provider: p,
			Person:   alice,
			HasAccess: func(t *testing.T, _ grants.Handle, req grants.RevokeRequest) bool {
				active, _ := fake.Access(req.GrantID)
				return active
			},
			InjectRevokeFault: func(t *testing.T) func() {
				fake.FailRevokes(1, http.StatusServiceUnavailable)
				return func() { fake.FailRevokes(0, 0) }
			},
			GrantPreexisting: func(t *testing.T, p grants.Person) { fake.SetPreexisting(p.Email) },
			SecretFields:     []string{"secret"},
		}
	})
}
