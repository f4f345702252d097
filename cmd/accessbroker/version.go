package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strconv"
)

// buildInfo is what this binary knows about how it was built, from the information the Go
// toolchain embeds (runtime/debug.ReadBuildInfo). It is shown by `accessbroker version` and
// exported as the accessbroker_build_info metric.
type buildInfo struct {
	// Version is the main module's version: a release tag (v1.4.0) for
	// `go install …@v1.4.0`, a pseudo-version derived from the VCS for a `go build` in a
	// checkout (+dirty when it had uncommitted changes), or "(devel)".
	Version string `json:"version"`
	// Commit is the VCS revision (vcs.revision), or "unknown" when the toolchain stamped none
	// (go run, -buildvcs=false, or a build context without .git, as in the Dockerfile).
	Commit string `json:"commit"`
	// Modified reports uncommitted changes in the checkout at build time (vcs.modified).
	Modified bool `json:"modified"`
	// CommitTime is the commit's time (vcs.time, RFC 3339, UTC), or "" when unknown. Go
	// records no build wall time (builds are reproducible), so this is the build's date.
	CommitTime string `json:"commit_time,omitempty"`
	// GoVersion is the toolchain that built the binary (go1.26.8).
	GoVersion string `json:"go_version"`
	// Platform is GOOS/GOARCH.
	Platform string `json:"platform"`
}

const unknownCommit = "unknown"

// readBuildInfo returns this binary's buildInfo.
func readBuildInfo() buildInfo {
	bi, _ := debug.ReadBuildInfo() // nil when the binary has no build information
	return buildInfoFrom(bi)
}

// buildInfoFrom extracts a buildInfo from bi (nil: a binary built without module support).
func buildInfoFrom(bi *debug.BuildInfo) buildInfo {
	info := buildInfo{Version: "(devel)", Commit: unknownCommit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		return info
	}
	if bi.Main.Version != "" {
		info.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	var goos, goarch string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if s.Value != "" {
				info.Commit = s.Value
			}
		case "vcs.time":
			info.CommitTime = s.Value
		case "vcs.modified":
			info.Modified, _ = strconv.ParseBool(s.Value)
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	if goos != "" && goarch != "" {
		info.Platform = goos + "/" + goarch
	}
	return info
}

const versionUsage = "usage: accessbroker version [--json]"

// runVersion prints the build information: `accessbroker version [--json]`.
func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newCLI("version", versionUsage, stdout, stderr)
	asJSON := fs.Bool("json", false, "print the build information as one JSON object")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "accessbroker version: unexpected arguments %q\n%s\n", pos, versionUsage)
		return exitUsage
	}
	info := readBuildInfo()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(info); err != nil {
			fmt.Fprintf(stderr, "accessbroker version: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	printBuildInfo(stdout, info)
	return exitOK
}

func printBuildInfo(w io.Writer, info buildInfo) {
	commit := info.Commit
	switch {
	case commit == unknownCommit:
		commit += " (built without VCS information: go run, -buildvcs=false, or no .git in the build context)"
	case info.Modified:
		commit += " (with uncommitted changes)"
	}
	fmt.Fprintf(w, "accessbroker %s\n", info.Version)
	fmt.Fprintf(w, "  commit       %s\n", commit)
	if info.CommitTime != "" {
		fmt.Fprintf(w, "  commit time  %s\n", info.CommitTime)
	}
	fmt.Fprintf(w, "  go           %s %s\n", info.GoVersion, info.Platform)
}
