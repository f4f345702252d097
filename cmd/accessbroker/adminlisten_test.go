package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// TestAdminListenSeparatesAdminEndpoints: with admin_listen, /metrics and /api/v1 answer only
// there; the main listener keeps Slack, PagerDuty and the health checks. `accessbroker
// healthcheck` asks /readyz and /healthz and says 0 or 1.
func TestAdminListenSeparatesAdminEndpoints(t *testing.T) {
	p := newInProcess(t)
	base, err := os.ReadFile(p.config)
	if err != nil {
		t.Fatal(err)
	}
	p.config = filepath.Join(p.dir, "admin.yaml")
	if err := os.WriteFile(p.config, append(base, "admin_listen: \"127.0.0.1:0\"\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, ok := loadConfigFlag(p.config, io.Discard)
	if !ok {
		t.Fatal("config")
	}
	s, err := newServer(context.Background(), cfg, appOptions{logOut: io.Discard, withProviders: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, addr) }()
	main := "http://" + <-addr
	admin := "http://" + s.adminAddr
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		s.Close()
	})

	for _, tc := range []struct {
		url  string
		want int
	}{
		{main + "/healthz", http.StatusOK},
		{main + "/readyz", http.StatusOK},
		{main + "/metrics", http.StatusNotFound},
		{main + "/api/v1/grants", http.StatusNotFound},
		{admin + "/metrics", http.StatusOK},
		{admin + "/api/v1/grants", http.StatusUnauthorized}, // no token: the API itself answers
		{admin + "/healthz", http.StatusOK},
	} {
		if got, body := get(t, tc.url); got != tc.want {
			t.Errorf("GET %s = %d, want %d (%s)", tc.url, got, tc.want, body)
		}
	}

	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"healthcheck", "--url", main}, exitOK},
		{[]string{"healthcheck", "--url", main, "--live"}, exitOK},
		{[]string{"healthcheck", "--url", "http://127.0.0.1:1"}, exitFailure},
		{[]string{"healthcheck"}, exitUsage},
		{[]string{"healthcheck", "--url", main, "--timeout", "0s"}, exitUsage},
	} {
		if _, errOut, code := p.run(tc.args...); code != tc.want {
			t.Errorf("accessbroker %v: exit %d, want %d (%s)", tc.args, code, tc.want, errOut)
		}
	}
}
