package config

import (
	"strings"
	"testing"
	"time"
)

const consoleSlack = `slack: {team_id: T0ACME, bot_token: xoxb-1, signing_secret: s, audit_channel: C0AUDIT}
`

// TestConsoleConfig: the console section's defaults, and each mistake named with its key.
func TestConsoleConfig(t *testing.T) {
	t.Parallel()
	good := `console: {base_url: "https://access.example.com", slack_client_id: "1.2", slack_client_secret: "0123456789abcdef01", auditors: {slack_users: [U0SEC], slack_usergroup: S0SEC}}
`
	cfg, err := ParseConfig([]byte(minimalBase(t)+consoleSlack+good), envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	cc := cfg.Console
	if cc == nil || cc.IssuerURL != DefaultConsoleIssuer || cc.SessionTTL != 8*time.Hour || cc.Auditors.SlackUsergroup != "S0SEC" {
		t.Fatalf("console = %+v; want the defaults (issuer %s, 8h) and the auditors", cc, DefaultConsoleIssuer)
	}
	if strings.Contains(cfg.Console.SlackClientSecret.String(), "0123") {
		t.Error("the client secret prints")
	}
	tests := []struct {
		name, console, slack, wantPath, wantMsg string
	}{
		{"no slack section", good, "-", "console", "needs the slack section"},
		{"no base url", `console: {slack_client_id: "1.2", slack_client_secret: "0123456789abcdef01"}`, "", "console.base_url", "is required"},
		{"base url with a path", `console: {base_url: "https://a.example.com/ui", slack_client_id: "1.2", slack_client_secret: "0123456789abcdef01"}`, "", "console.base_url", "bare address"},
		{"plain http off loopback", `console: {base_url: "http://access.example.com", slack_client_id: "1.2", slack_client_secret: "0123456789abcdef01"}`, "", "console.base_url", "https"},
		{"no client id", `console: {base_url: "https://a.example.com", slack_client_secret: "0123456789abcdef01"}`, "", "console.slack_client_id", "is required"},
		{"no client secret", `console: {base_url: "https://a.example.com", slack_client_id: "1.2"}`, "", "console.slack_client_secret", "is required"},
		{"short client secret", `console: {base_url: "https://a.example.com", slack_client_id: "1.2", slack_client_secret: "short"}`, "", "console.slack_client_secret", "too short"},
		{"bad auditor", `console: {base_url: "https://a.example.com", slack_client_id: "1.2", slack_client_secret: "0123456789abcdef01", auditors: {slack_users: [alice]}}`, "", "console.auditors.slack_users[0]", "Slack user id"},
		{"bad auditor group", `console: {base_url: "https://a.example.com", slack_client_id: "1.2", slack_client_secret: "0123456789abcdef01", auditors: {slack_usergroup: security}}`, "", "console.auditors.slack_usergroup", "user group id"},
		{"session too long", `console: {base_url: "https://a.example.com", slack_client_id: "1.2", slack_client_secret: "0123456789abcdef01", session_ttl: 48h}`, "", "console.session_ttl", "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slack := consoleSlack
			if tt.slack == "-" {
				slack = ""
			}
			_, err := ParseConfig([]byte(minimalBase(t)+slack+strings.TrimSuffix(tt.console, "\n")+"\n"), envMap(nil))
			ce := mustConfigError(t, err)
			for _, p := range ce.Problems {
				if p.Path == tt.wantPath && strings.Contains(p.Msg, tt.wantMsg) {
					if strings.Contains(p.Msg, "0123456789abcdef01") {
						t.Errorf("the problem shows the secret: %s", p.Msg)
					}
					return
				}
			}
			t.Fatalf("problems %v; want %s: …%s…", ce.Problems, tt.wantPath, tt.wantMsg)
		})
	}
}
