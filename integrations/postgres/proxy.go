package postgres

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"strconv"

	"github.com/accessbroker/accessbroker/grants"
)

// MinProxyKeyBytes is the shortest key ProxyPasswords accepts.
const MinProxyKeyBytes = 32

// ProxyPasswords derives the two passwords of a proxied grant from one key (the
// postgres_proxy.password_key): Client, delivered to the person and accepted only by the
// session proxy, and Upstream, the role's password on the server, which only the proxy
// uses. Each is HMAC-SHA-256 over a distinct label, the grant id and the role, so neither
// reveals the other or the key, and any replica with the key derives both: nothing secret
// is stored.
type ProxyPasswords struct{ key []byte }

// NewProxyPasswords checks the key is at least MinProxyKeyBytes long.
func NewProxyPasswords(key []byte) (*ProxyPasswords, error) {
	if len(key) < MinProxyKeyBytes {
		return nil, fmt.Errorf("postgres proxy: password_key has %d bytes; it needs at least %d random bytes (e.g. openssl rand -base64 48): %w", len(key), MinProxyKeyBytes, grants.ErrInvalid)
	}
	return &ProxyPasswords{key: append([]byte(nil), key...)}, nil
}

func (k *ProxyPasswords) derive(label, grantID, role string) string {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte("accessbroker postgres proxy v1\x00" + label + "\x00" + grantID + "\x00" + role))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Client is the password the person logs in to the proxy with.
func (k *ProxyPasswords) Client(grantID, role string) string {
	return k.derive("client", grantID, role)
}

// Upstream is the role's password on the PostgreSQL server.
func (k *ProxyPasswords) Upstream(grantID, role string) string {
	return k.derive("upstream", grantID, role)
}

// ProxyConfig makes a resource proxied: roles get the upstream password, and the delivered
// credential points at the proxy with the client password.
type ProxyConfig struct {
	// Address is the proxy's host:port in delivered connection strings
	// (postgres_proxy.public_address, else listen).
	Address string
	// Passwords derives both passwords.
	Passwords *ProxyPasswords
}

func (c *ProxyConfig) validate() error {
	if c.Passwords == nil {
		return fmt.Errorf("postgres provider: proxy: true needs postgres_proxy.password_key: %w", grants.ErrInvalid)
	}
	host, port, err := net.SplitHostPort(c.Address)
	if err != nil || host == "" {
		return fmt.Errorf("postgres provider: proxy address %q is not host:port (set postgres_proxy.public_address): %w", c.Address, grants.ErrInvalid)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("postgres provider: proxy address %q has no valid port: %w", c.Address, grants.ErrInvalid)
	}
	return nil
}
