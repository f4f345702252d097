package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestBuildInfoFrom: the version, commit, commit time and platform come from the build
// information the toolchain embeds, in each way accessbroker gets built.
func TestBuildInfoFrom(t *testing.T) {
	const head = "go\tgo1.26.8\npath\tgithub.com/accessbroker/accessbroker/cmd/accessbroker\n"
	for _, tc := range []struct {
		name string
		text string // `go version -m` format; "" = no build information at all
		want buildInfo
	}{
		{
			name: "go install at a release tag",
			text: head + "mod\tgithub.com/accessbroker/accessbroker\tv1.4.0\th1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nbuild\tGOOS=linux\nbuild\tGOARCH=arm64\n",
			want: buildInfo{Version: "v1.4.0", Commit: unknownCommit, GoVersion: "go1.26.8", Platform: "linux/arm64"},
		},
		{
			name: "go build in a checkout with local changes",
			text: head + "mod\tgithub.com/accessbroker/accessbroker\tv0.0.0-20261202180500-c994608abcde+dirty\t\n" +
				"build\tGOOS=darwin\nbuild\tGOARCH=amd64\nbuild\tvcs=git\nbuild\tvcs.revision=c994608abcdef0123456789abcdef0123456789a\n" +
				"build\tvcs.time=2026-12-02T18:05:00Z\nbuild\tvcs.modified=true\n",
			want: buildInfo{Version: "v0.0.0-20261202180500-c994608abcde+dirty", Commit: "c994608abcdef0123456789abcdef0123456789a",
				Modified: true, CommitTime: "2026-12-02T18:05:00Z", GoVersion: "go1.26.8", Platform: "darwin/amd64"},
		},
		{
			name: "go run or -buildvcs=false",
			text: head + "mod\tgithub.com/accessbroker/accessbroker\t(devel)\t\nbuild\tGOOS=linux\nbuild\tGOARCH=amd64\n",
			want: buildInfo{Version: "(devel)", Commit: unknownCommit, GoVersion: "go1.26.8", Platform: "linux/amd64"},
		},
		{
			name: "no build information",
			want: buildInfo{Version: "(devel)", Commit: unknownCommit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var bi *debug.BuildInfo
			if tc.text != "" {
				var err error
				if bi, err = debug.ParseBuildInfo(tc.text); err != nil {
					t.Fatal(err)
				}
			}
			if diff := cmp.Diff(tc.want, buildInfoFrom(bi)); diff != "" {
				t.Errorf("buildInfoFrom (-want +got):\n%s", diff)
			}
		})
	}
}

// TestVersionCommand: `version` prints this binary's build information, as text or JSON, and
// refuses arguments it does not know.
func TestVersionCommand(t *testing.T) {
	want := readBuildInfo()
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &out, &errOut); code != exitOK {
		t.Fatalf("version: exit %d\n%s", code, errOut.String())
	}
	for _, s := range []string{"accessbroker " + want.Version + "\n", "commit       " + want.Commit, "go           " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("version output lacks %q:\n%s", s, out.String())
		}
	}

	out.Reset()
	if code := run(context.Background(), []string{"version", "--json"}, &out, &errOut); code != exitOK {
		t.Fatalf("version --json: exit %d\n%s", code, errOut.String())
	}
	var got buildInfo
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("version --json is not JSON: %v\n%s", err, out.String())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("version --json (-want +got):\n%s", diff)
	}

	for _, args := range [][]string{{"version", "--short"}, {"version", "now"}} {
		out.Reset()
		errOut.Reset()
		if code := run(context.Background(), args, &out, &errOut); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
		if !strings.Contains(errOut.String(), versionUsage) {
			t.Errorf("%q: stderr %q lacks the usage", args, errOut.String())
		}
	}
}

// TestVersionOfTheBinary: the real binary reports the toolchain that built it and a module
// version (the build information is read from the executable, not from the test binary).
func TestVersionOfTheBinary(t *testing.T) {
	out, err := exec.Command(accessbrokerBinary(t), "version", "--json").Output()
	if err != nil {
		t.Fatalf("accessbroker version --json: %v", err)
	}
	var got buildInfo
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if got.GoVersion != runtime.Version() || got.Platform != runtime.GOOS+"/"+runtime.GOARCH || got.Version == "" || got.Commit == "" {
		t.Errorf("accessbroker version --json = %+v; want go %s on %s/%s and a version and commit", got, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	}
}
