package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/config"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// orphanedGrants groups, by resource, the live grants whose resource cfg no longer has
// (removed or renamed): their revocation could not call any provider.
func orphanedGrants(cfg *config.Config, live []sqlstore.LiveGrant) map[string][]string {
	known := map[string]bool{}
	for _, r := range cfg.Resources {
		known[r.Name] = true
	}
	out := map[string][]string{}
	for _, g := range live {
		if !known[g.Resource] {
			out[g.Resource] = append(out[g.Resource], g.ID)
		}
	}
	return out
}

// checkLiveGrants is config check's last step: a file that drops a resource with live grants
// is refused (exit 2), each such resource named with its grants. It reads a SQLite store (a
// local file, opened read-only) always and a PostgreSQL one only with --online, since the
// offline check contacts nothing. A store that cannot be read is reported and does not fail
// the check (the file itself is valid).
func checkLiveGrants(ctx context.Context, cfg *config.Config, online bool, stdout, stderr io.Writer) int {
	if cfg.Store.Driver != "sqlite" && !online {
		return exitOK
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	live, err := sqlstore.PeekLiveGrants(ctx, cfg.Store.Driver, cfg.Store.DSN.Reveal())
	orphans := orphanedGrants(cfg, live)
	if err != nil {
		fmt.Fprintf(stdout, "note: the store could not be read to compare its live grants with this file: %v\n", err)
		return exitOK
	}
	if len(orphans) == 0 {
		return exitOK
	}
	names := make([]string, 0, len(orphans))
	for name := range orphans {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ids := orphans[name]
		fmt.Fprintf(stderr, "resources: %q has %d live %s (%s) but is not in this file: their revocation could not run. Keep the resource until they end, or revoke them first (accessbroker grants revoke ID --reason …)\n",
			name, len(ids), plural(len(ids), "grant", "grants"), strings.Join(ids, ", "))
	}
	fmt.Fprintf(stderr, "accessbroker config check: %d removed or renamed %s still %s live grants\n", len(names), plural(len(names), "resource", "resources"), plural(len(names), "has", "have"))
	return exitUsage
}
