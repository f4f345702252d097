package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/accessbroker/accessbroker/grants"
)

// buildAWSProvider builds the aws-sts and aws-identity-center providers.
func buildAWSProvider(ctx context.Context, cfg *Config, r ResourceConfig, clock grants.Clock, log *slog.Logger, client *http.Client) (grants.Provider, error) {
	return nil, fmt.Errorf("provider %q is not available in this build", r.Provider)
}
