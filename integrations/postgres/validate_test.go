package postgres

import (
	"errors"
	"strings"
	"testing"

	"github.com/accessbroker/accessbroker/grants"
)

// TestValidateWithoutServer checks the static rule config check shares with New: it needs no
// PostgreSQL server, and its errors never contain the DSN's password.
func TestValidateWithoutServer(t *testing.T) {
	t.Parallel()
	const dsn = "postgres://admin:hunter2hunter2@db.internal:5432/app"
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // "" = valid
	}{
		{"valid", Config{AdminDSN: dsn, Roles: []string{"readonly"}}, ""},
		{"valid key=value", Config{AdminDSN: "host=db.internal dbname=app user=admin", Roles: []string{"readonly"}, Port: "5433", SSLMode: "require"}, ""},
		{"empty dsn", Config{Roles: []string{"readonly"}}, "dsn is empty"},
		{"dsn pgx refuses", Config{AdminDSN: dsn + "?connect_timeout=soon", Roles: []string{"readonly"}}, "not a valid PostgreSQL connection string"},
		{"no roles", Config{AdminDSN: dsn}, "roles is empty"},
		{"long role", Config{AdminDSN: dsn, Roles: []string{strings.Repeat("r", 64)}}, "longer than 63 bytes"},
		{"spare role prefix", Config{AdminDSN: dsn, Roles: []string{"accessbroker_spare_readonly"}}, "prefix of the provider's spare roles"},
		{"unlimited connections", Config{AdminDSN: dsn, Roles: []string{"readonly"}, ConnectionLimit: -1}, "connection_limit -1 is negative"},
		{"bad port", Config{AdminDSN: dsn, Roles: []string{"readonly"}, Port: "0"}, "port"},
		{"bad sslmode", Config{AdminDSN: dsn, Roles: []string{"readonly"}, SSLMode: "sometimes"}, "sslmode"},
		{"proxied", Config{AdminDSN: dsn, Roles: []string{"readonly"}, Proxy: &ProxyConfig{Address: "db-proxy.example.com:6432", Passwords: testPasswords(t)}}, ""},
		{"proxy without key", Config{AdminDSN: dsn, Roles: []string{"readonly"}, Proxy: &ProxyConfig{Address: "db-proxy.example.com:6432"}}, "password_key"},
		{"proxy address without port", Config{AdminDSN: dsn, Roles: []string{"readonly"}, Proxy: &ProxyConfig{Address: "db-proxy.example.com", Passwords: testPasswords(t)}}, "not host:port"},
		{"proxy address without host", Config{AdminDSN: dsn, Roles: []string{"readonly"}, Proxy: &ProxyConfig{Address: ":6432", Passwords: testPasswords(t)}}, "not host:port"},
		{"no database", Config{AdminDSN: "postgres://admin:hunter2hunter2@db.internal:5432", Roles: []string{"readonly"}}, "no database"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tt.wantErr == "":
			case err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, grants.ErrInvalid):
				t.Fatalf("Validate = %v, want an ErrInvalid mentioning %q", err, tt.wantErr)
			case strings.Contains(err.Error(), "hunter2"):
				t.Fatalf("Validate reveals the password: %v", err)
			}
		})
	}
}

func testPasswords(t *testing.T) *ProxyPasswords {
	t.Helper()
	pw, err := NewProxyPasswords([]byte(strings.Repeat("k", MinProxyKeyBytes)))
	if err != nil {
		t.Fatal(err)
	}
	return pw
}

// TestProxyPasswords: the two derivations differ from each other, per grant and per role,
// are stable for one key, and a short key is refused.
func TestProxyPasswords(t *testing.T) {
	t.Parallel()
	pw := testPasswords(t)
	other, err := NewProxyPasswords([]byte(strings.Repeat("j", MinProxyKeyBytes)))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for name, v := range map[string]string{
		"client":           pw.Client("g_a", "ab_x_a"),
		"upstream":         pw.Upstream("g_a", "ab_x_a"),
		"client, grant b":  pw.Client("g_b", "ab_x_a"),
		"client, role y":   pw.Client("g_a", "ab_y_a"),
		"client, key j":    other.Client("g_a", "ab_x_a"),
		"upstream, key j":  other.Upstream("g_a", "ab_x_a"),
		"upstream, role y": pw.Upstream("g_a", "ab_y_a"),
	} {
		if prev, dup := seen[v]; dup {
			t.Errorf("%s and %s derive the same password", name, prev)
		}
		seen[v] = name
		if len(v) != 43 {
			t.Errorf("%s: %d characters, want 43 (256 bits)", name, len(v))
		}
	}
	if pw.Client("g_a", "ab_x_a") != testPasswords(t).Client("g_a", "ab_x_a") {
		t.Error("the derivation is not stable for one key")
	}
	if _, err := NewProxyPasswords([]byte("short")); err == nil || !errors.Is(err, grants.ErrInvalid) {
		t.Errorf("a 5-byte key: %v, want ErrInvalid", err)
	}
}
