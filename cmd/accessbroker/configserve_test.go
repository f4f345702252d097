package main

import (
	"bytes"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/config"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	awsprov "github.com/accessbroker/accessbroker/integrations/aws"
)

// TestConfigCheckAndServeAcceptTheSameFiles runs every configuration file of the config
// tests through both paths: `config check`, and serve's construction (the same loading, then
// every provider built as serve builds it, up to but excluding network I/O: the postgres
// provider, whose constructor connects to the database, is the one left out). A file that
// config check accepts must be one serve starts with, and the other way round; among the files
// are an aws-sts role ARN in the aws-iso partition and a session policy without a Statement,
// which config check used to pass and serve refused.
func TestConfigCheckAndServeAcceptTheSameFiles(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(testdataDir, "*.yaml"))
	if err != nil || len(files) < 50 {
		t.Fatalf("glob %s: %d files, %v", testdataDir, len(files), err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			checkOK := runConfigCommand([]string{"check", "--config", file}, &stdout, &stderr, envMap(validEnv)) == exitOK
			serveErr := serveConstruction(t, file)
			switch {
			case checkOK && serveErr != nil:
				t.Errorf("config check accepts the file but serve refuses it: %v", serveErr)
			case !checkOK && serveErr == nil:
				t.Errorf("config check refuses the file but serve accepts it:\n%s", stderr.String())
			}
		})
	}
}

// serveConstruction loads file and builds its providers the way serve does, leaving out the
// postgres provider (it connects at construction). AWS gets static credentials and no shared
// files so that no developer profile or metadata endpoint is consulted.
func serveConstruction(t *testing.T, file string) error {
	t.Helper()
	cfg, err := config.LoadConfig(file, envMap(validEnv))
	if err != nil {
		return err
	}
	offline := *cfg
	offline.Resources = nil
	for _, r := range cfg.Resources {
		if r.Provider != config.ProviderPostgres {
			offline.Resources = append(offline.Resources, r)
		}
	}
	awsOpts := awsOptions{config: []awsprov.ConfigOption{awsprov.WithStaticCredentials("AKIDEXAMPLE", "not-a-secret"), awsprov.WithoutSharedConfigFiles()}}
	_, closers, err := buildProviders(t.Context(), &offline, clocktest.New(time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)), slog.New(slog.NewTextHandler(io.Discard, nil)), awsOpts)
	for _, c := range closers {
		c.Close()
	}
	return err
}
