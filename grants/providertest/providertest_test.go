package providertest_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/providertest"
)

// memProvider is a minimal correct provider: access per grant, or per person when shared.
type memProvider struct {
	shared bool

	mu     sync.Mutex
	access map[string]bool // by key
	fail   int
}

func (m *memProvider) key(grantID string, p grants.Person) string {
	if m.shared {
		return "mem:" + p.Email
	}
	return "mem:" + grantID
}

func (m *memProvider) Kind() string { return "mem" }

func (m *memProvider) Issue(_ context.Context, req grants.IssueRequest) (grants.Issued, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := m.key(req.GrantID, req.Person)
	pre := m.access[k]
	m.access[k] = true
	return grants.Issued{
		Handle:     grants.Handle{Key: k, Preexisting: pre},
		Credential: grants.NewCredential("mem", "user", req.Person.Email, "password", "pw-"+req.GrantID),
	}, nil
}

func (m *memProvider) Revoke(_ context.Context, req grants.RevokeRequest) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if req.Handle.Preexisting {
		return nil
	}
	if m.fail > 0 {
		m.fail--
		return errors.New("upstream unavailable")
	}
	delete(m.access, m.key(req.GrantID, req.Person))
	return nil
}

func TestSuiteAcceptsCorrectProviders(t *testing.T) {
	for _, shared := range []bool{false, true} {
		name := "separate"
		if shared {
			name = "shared"
		}
		t.Run(name, func(t *testing.T) {
			providertest.Run(t, func(t *testing.T) providertest.Harness {
				m := &memProvider{shared: shared, access: map[string]bool{}}
				h := providertest.Harness{
					Provider: m,
					Person:   grants.Person{SlackUserID: "U0ALICE", Email: "alice@example.com"},
					HasAccess: func(t *testing.T, _ grants.Handle, req grants.RevokeRequest) bool {
						m.mu.Lock()
						defer m.mu.Unlock()
						return m.access[m.key(req.GrantID, req.Person)]
					},
					InjectRevokeFault: func(t *testing.T) func() {
						m.mu.Lock()
						defer m.mu.Unlock()
						m.fail = 1
						return func() { m.mu.Lock(); m.fail = 0; m.mu.Unlock() }
					},
					SharedAccess: shared,
					SecretFields: []string{"password"},
				}
				if shared { // per-grant access cannot preexist
					h.GrantPreexisting = func(t *testing.T, p grants.Person) {
						m.mu.Lock()
						defer m.mu.Unlock()
						m.access[m.key("", p)] = true
					}
				}
				return h
			})
		})
	}
}
