package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/accessbroker/accessbroker/audit"
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
	families, err := newMetrics(st, nil).reg.Gather()
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

// TestLabelledCountersStartAtZero: before anything happened, serve's registry has every
// labelled counter (and the lag histogram) for each configured provider kind and witness, at 0.
func TestLabelledCountersStartAtZero(t *testing.T) {
	p, _ := newWitnessed(t)
	cfg, ok := loadConfigFlag(p.config, io.Discard)
	if !ok {
		t.Fatal("config")
	}
	s, err := newServer(context.Background(), cfg, appOptions{logOut: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	families, err := s.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{} // family{labels} → value (histograms: sample count)
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := m.GetCounter().GetValue()
			if m.GetHistogram() != nil {
				v = float64(m.GetHistogram().GetSampleCount())
			}
			got[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	ws, err := buildWitnesses(context.Background(), cfg, grants.RealClock{}, awsOptions{})
	if err != nil || len(ws) != 1 {
		t.Fatalf("witnesses: %v, %v", ws, err)
	}
	witnessName := ws[0].Name()
	for _, want := range []string{
		"accessbroker_grants_issued_total{provider=webhook}",
		"accessbroker_grants_revoked_total{provider=webhook}",
		"accessbroker_revoke_failures_total{class=retryable,provider=webhook}",
		"accessbroker_revoke_failures_total{class=needs_operator,provider=webhook}",
		"accessbroker_revocation_lag_seconds{provider=webhook}",
		"accessbroker_witness_failures_total{witness=" + witnessName + "}",
		"accessbroker_witness_published_total{witness=" + witnessName + "}",
	} {
		v, ok := got[want]
		if !ok {
			t.Errorf("%s is not exported before its first event", want)
		} else if v != 0 {
			t.Errorf("%s = %v before anything happened, want 0", want, v)
		}
	}
}

// TestAuditWriteFailuresCounted: a change (with its audit events) that cannot be written is
// counted in accessbroker_audit_write_failures_total and logged once as an ERROR an alert can
// match; a conflict (an answer, not a failure) is not.
func TestAuditWriteFailuresCounted(t *testing.T) {
	st, err := sqlstore.Open(context.Background(), "sqlite", "file:"+filepath.Join(t.TempDir(), "m.db"), grants.RealClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	m := newMetrics(st, slog.New(slog.NewJSONHandler(&logs, nil)))
	now := time.Now().UTC()
	g := &grants.Grant{ID: grants.NewID("g"), Resource: "prod-db", Provider: "webhook", State: grants.StateActive,
		CreatedAt: now, IssuedAt: now, ExpiresAt: now.Add(time.Hour), DueAt: now.Add(time.Hour)}
	change := func() *grants.Change {
		return &grants.Change{Grants: []grants.GrantWrite{{Grant: g, Create: true}},
			Events: []*audit.Event{{ID: grants.NewID("e"), Time: now, Actor: audit.Actor{Kind: audit.ActorOperator, ID: "t"}, Action: audit.ActionGrantIssued, GrantID: g.ID}}}
	}
	if err := m.timedStore.Apply(context.Background(), change()); err != nil {
		t.Fatal(err)
	}
	if err := m.timedStore.Apply(context.Background(), change()); !errors.Is(err, grants.ErrConflict) {
		t.Fatalf("duplicate grant: %v, want a conflict", err)
	}
	if v := testutil.ToFloat64(m.auditWriteFail); v != 0 {
		t.Fatalf("a conflict counted as a write failure: %v", v)
	}
	st.Close()
	if err := m.timedStore.Apply(context.Background(), change()); err == nil {
		t.Fatal("Apply on a closed store succeeded")
	}
	if v := testutil.ToFloat64(m.auditWriteFail); v != 1 {
		t.Fatalf("accessbroker_audit_write_failures_total = %v, want 1", v)
	}
	if !strings.Contains(logs.String(), `"msg":"audit write failed; the action was not done"`) || !strings.Contains(logs.String(), `"actions":"grant.issued"`) {
		t.Fatalf("no ERROR line naming the action:\n%s", logs.String())
	}
}
