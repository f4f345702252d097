package httpclient

import (
	"strings"
	"testing"
)

func TestCheckBaseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url     string
		wantMsg string // "" = accepted
	}{
		{"https://slack.com/api/", ""},
		{"https://slack.example.com:8443/", ""},
		{"http://127.0.0.1:8080/", ""},
		{"http://127.1.2.3/", ""},
		{"http://localhost:9000", ""},
		{"http://LOCALHOST:9000", ""},
		{"http://[::1]:9000/api", ""},
		{"http://slack.example.com/", "must use https"},
		{"http://10.0.0.1/", "must use https"},
		{"http://localhost.example.com/", "must use https"},
		{"http://[::2]/", "must use https"},
		{"ftp://127.0.0.1/", "must be an absolute https:// URL"},
		{"slack.com/api", "must be an absolute https:// URL"},
		{"https://", "must be an absolute https:// URL"},
		{"", "must be an absolute https:// URL"},
		{"https://user:pass@slack.com/", "must not contain credentials"},
		{"http://user:pass@127.0.0.1/", "must not contain credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			t.Parallel()
			u, err := CheckBaseURL(tt.url)
			switch {
			case tt.wantMsg == "" && (err != nil || u == nil):
				t.Errorf("rejected: %v", err)
			case tt.wantMsg != "" && (err == nil || !strings.Contains(err.Error(), tt.wantMsg)):
				t.Errorf("error = %v, want one containing %q", err, tt.wantMsg)
			case err != nil && strings.Contains(err.Error(), "pass"):
				t.Errorf("error repeats the credentials: %v", err)
			}
		})
	}
}
