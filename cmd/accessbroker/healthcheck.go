package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

const healthcheckUsage = "usage: accessbroker healthcheck [--config FILE | --url URL] [--live]"

// runHealthcheck is `accessbroker healthcheck`, for a container HEALTHCHECK (the image has no
// shell or curl): it asks the local serve's /readyz (or /healthz with --live) and exits 0 on
// 200, 1 otherwise, printing the answer. The address is the config's listen address on
// loopback, or --url.
func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newCLI("healthcheck", healthcheckUsage, stdout, stderr)
	configPath := fs.String("config", "", "the serve configuration whose listen address to ask")
	base := fs.String("url", "", "the broker's base URL instead, such as http://127.0.0.1:8080")
	live := fs.Bool("live", false, "ask /healthz (the process answers) instead of /readyz (it can grant and revoke)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	if code, ok := fs.parseNone(args); !ok {
		return code
	}
	switch {
	case *timeout <= 0:
		return fs.usageError("--timeout must be positive, such as 5s")
	case *base == "" && *configPath == "":
		return fs.usageError("give --config FILE or --url URL")
	case *base == "":
		cfg, ok := loadConfigFlag(*configPath, stderr)
		if !ok {
			return exitUsage
		}
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return fs.usageError("listen %q: %v", cfg.Listen, err)
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		*base = "http://" + net.JoinHostPort(host, port)
	}
	path := "/readyz"
	if *live {
		path = "/healthz"
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(*base, "/")+path, nil)
	if err != nil {
		return fs.usageError("%v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker healthcheck: %v\n", err)
		return exitFailure
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	fmt.Fprintf(stdout, "%s %s: %s", path, resp.Status, body)
	if resp.StatusCode != http.StatusOK {
		return exitFailure
	}
	return exitOK
}
