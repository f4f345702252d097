package grants_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDomainPackagesStayPure fails when audit, grants or broker import an integration, a
// fixture, an SDK or a database driver: dependencies point inward (DESIGN.md, STYLE.md §3.2).
func TestDomainPackagesStayPure(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not on PATH; the dependency rule cannot be checked")
	}
	const mod = "github.com/accessbroker/accessbroker/"
	forbidden := []struct{ prefix, why string }{
		{mod + "integrations/", "an integration (integrations implement the domain's interfaces, not the reverse)"},
		{mod + "fixtures/", "a fixture (fakes are for tests and the demo)"},
		{mod + "cmd/", "the command (cmd only wires)"},
		{mod + "grants/sqlstore", "the SQL store (the domain declares Store; cmd picks the implementation)"},
		{"github.com/slack-go/", "the Slack SDK"},
		{"github.com/PagerDuty/", "the PagerDuty SDK"},
		{"github.com/aws/", "the AWS SDK"},
		{"github.com/google/go-github/", "the GitHub SDK"},
		{"github.com/hashicorp/go-retryablehttp", "the HTTP client library"},
		{"github.com/jackc/", "a PostgreSQL driver"},
		{"modernc.org/sqlite", "the SQLite driver"},
		{"github.com/prometheus/", "the metrics library (metrics are a decorator in cmd)"},
		{"database/sql", "database/sql"},
	}
	for _, pkg := range []string{mod + "audit", mod + "grants", mod + "broker"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				if strings.HasPrefix(dep, f.prefix) {
					t.Errorf("%s imports %s: it must not depend on %s", pkg, dep, f.why)
				}
			}
		}
	}
	// audit is the leaf: nothing of ours at all.
	out, err := exec.Command("go", "list", "-deps", mod+"audit").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, mod) && dep != mod+"audit" {
			t.Errorf("audit imports %s: audit is a leaf package", dep)
		}
	}
}
