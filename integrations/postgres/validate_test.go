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
		{"unlimited connections", Config{AdminDSN: dsn, Roles: []string{"readonly"}, ConnectionLimit: -1}, "connection_limit -1 is negative"},
		{"bad port", Config{AdminDSN: dsn, Roles: []string{"readonly"}, Port: "0"}, "port"},
		{"bad sslmode", Config{AdminDSN: dsn, Roles: []string{"readonly"}, SSLMode: "sometimes"}, "sslmode"},
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
