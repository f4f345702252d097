package main

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// TestBuildInfoMetric: the registry serves accessbroker_build_info = 1 with the version,
// commit and Go version that `accessbroker version` prints.
func TestBuildInfoMetric(t *testing.T) {
	st, err := sqlstore.Open(context.Background(), "sqlite", "file:"+filepath.Join(t.TempDir(), "m.db"), grants.RealClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	families, err := newMetrics(st).reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := readBuildInfo()
	for _, f := range families {
		if f.GetName() != "accessbroker_build_info" {
			continue
		}
		if len(f.GetMetric()) != 1 {
			t.Fatalf("accessbroker_build_info has %d series, want 1", len(f.GetMetric()))
		}
		m := f.GetMetric()[0]
		if v := m.GetGauge().GetValue(); v != 1 {
			t.Errorf("accessbroker_build_info = %v, want 1", v)
		}
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		wantLabels := map[string]string{"version": want.Version, "commit": want.Commit, "go_version": runtime.Version()}
		if diff := cmp.Diff(wantLabels, labels); diff != "" {
			t.Errorf("accessbroker_build_info labels (-want +got):\n%s", diff)
		}
		return
	}
	t.Fatal("the registry has no accessbroker_build_info")
}
