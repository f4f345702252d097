package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"fmt"

	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/config"
	"github.com/accessbroker/accessbroker/integrations/pgproxy"
	"github.com/accessbroker/accessbroker/integrations/postgres"
)

// proxyPasswords is the password derivation of proxied postgres resources: from
// postgres_proxy.password_key, else from the audit signing key (a distinct HMAC label, so
// neither key reveals the other). nil without a postgres_proxy section.
func proxyPasswords(cfg *config.Config) (*postgres.ProxyPasswords, error) {
	p := cfg.PostgresProxy
	if p == nil {
		return nil, nil
	}
	key := []byte(p.PasswordKey.Reveal())
	if len(key) == 0 {
		sk, err := readSigningKey(cfg.Audit.SigningKeyFile)
		if err != nil {
			return nil, fmt.Errorf("postgres_proxy: no password_key, so the proxy's passwords derive from the audit signing key: %w", err)
		}
		m := hmac.New(sha256.New, sk.Seed())
		m.Write([]byte("accessbroker postgres_proxy password key v1"))
		key = m.Sum(nil)
	}
	return postgres.NewProxyPasswords(key)
}

// proxyProviderConfig is the postgres provider's proxy mode for a proxy: true resource.
func proxyProviderConfig(cfg *config.Config, pw *postgres.ProxyPasswords) *postgres.ProxyConfig {
	return &postgres.ProxyConfig{Address: cfg.PostgresProxy.Address(), Passwords: pw}
}

// buildPGProxy builds the session proxy of the postgres_proxy section (nil without one).
func buildPGProxy(a *app) (*pgproxy.Proxy, error) {
	p := a.cfg.PostgresProxy
	if p == nil {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(p.TLSCertFile, p.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("postgres_proxy.tls_cert_file %s and tls_key_file %s: %w", p.TLSCertFile, p.TLSKeyFile, err)
	}
	pw, err := proxyPasswords(a.cfg)
	if err != nil {
		return nil, err
	}
	ups := map[string]pgproxy.Upstream{}
	for _, r := range a.cfg.Resources {
		if r.Postgres != nil && r.Postgres.Proxy {
			ups[r.Name] = pgproxy.Upstream{DSN: r.Postgres.DSN.Reveal(), RecordParameters: r.Postgres.RecordParameters}
		}
	}
	return pgproxy.New(pgproxy.Config{
		TLS:       &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}},
		Upstreams: ups, Grants: a.store, Recorder: a.manager, Passwords: pw, Clock: a.clock, Logger: a.log,
	})
}
