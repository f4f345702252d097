package main

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// The weekly report benchmark over a store of 1,000,000 events spread over 8 weeks, with the
// week reported in the middle (the fifth): what `accessbroker report` and the Slack summary
// do every Monday on a store that has been running for a while.
var (
	weeklyStart = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	weeklySince = weeklyStart.AddDate(0, 0, 4*7)
	weeklyUntil = weeklySince.AddDate(0, 0, 7)
)

const (
	weeklyEvents = 1_000_000
	weeklySpan   = 8 * 7 * 24 * time.Hour
)

// weeklyEvent orders pending events by time, then by the order they were made in.
type weeklyEvent struct {
	e   *audit.Event
	ord int
}

type weeklyHeap []weeklyEvent

func (h weeklyHeap) Len() int { return len(h) }
func (h weeklyHeap) Less(i, j int) bool {
	if !h[i].e.Time.Equal(h[j].e.Time) {
		return h[i].e.Time.Before(h[j].e.Time)
	}
	return h[i].ord < h[j].ord
}
func (h weeklyHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *weeklyHeap) Push(x any)   { *h = append(*h, x.(weeklyEvent)) }
func (h *weeklyHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// writeWeeklyStore writes, into a new SQLite store at path, weeklyEvents chained audit events
// over weeklySpan, as the broker writes them: grants with their requests (on-call auto
// approvals, approvals, pages, break-glass, operators; refusals and denials), extensions,
// early and late revocations and failed attempts; proxied database sessions with their
// statements (reads, writes, DDL, failures, permission denied), refused proxy logins; AWS
// and GitHub activity (some after the grant ended); webhook rejections and weekly summaries.
// Statements and activity are most of the events, as they are in a store whose resources are
// used through the proxy. It is deterministic.
func writeWeeklyStore(tb testing.TB, path string) {
	tb.Helper()
	st, err := sqlstore.Open(context.Background(), "sqlite", "file:"+path, grants.RealClock{}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(16, 5))
	var pending weeklyHeap
	ord, written := 0, 0
	c := &grants.Change{}
	flush := func(before time.Time, all bool) {
		for pending.Len() > 0 && (all || pending[0].e.Time.Before(before)) && written < weeklyEvents {
			c.Events = append(c.Events, heap.Pop(&pending).(weeklyEvent).e)
			written++
			if len(c.Events) == 5000 {
				if err := st.Apply(ctx, c); err != nil {
					tb.Fatal(err)
				}
				c = &grants.Change{}
			}
		}
	}
	sys := audit.Actor{Kind: audit.ActorSystem, ID: "accessbroker"}
	ts := grants.Timestamp
	add := func(at time.Time, a audit.Actor, action audit.Action, rid, gid, res, reason string, kv ...string) {
		e := &audit.Event{ID: fmt.Sprintf("e_%08d", ord), Time: at, Actor: a, Action: action, RequestID: rid, GrantID: gid, Resource: res, Reason: reason}
		if len(kv) > 0 {
			e.Evidence = map[string]string{}
			for k := 0; k+1 < len(kv); k += 2 {
				if kv[k+1] != "" {
					e.Evidence[kv[k]] = kv[k+1]
				}
			}
		}
		heap.Push(&pending, weeklyEvent{e: e, ord: ord})
		ord++
	}
	// About 17 events a grant: one grant every 77 s on average over the 8 weeks (the last
	// hours are cut at weeklyEvents).
	const grantsMade = weeklyEvents / 16
	step := weeklySpan / grantsMade
	resources := []string{"prod-db", "orders-db", "billing-db", "analytics-db", "prod-aws", "audit-aws", "infra-admins", "prod-sso"}
	reads := []string{"SELECT * FROM orders WHERE id = $1", "SELECT count(*) FROM pg_stat_replication", "SHOW max_connections", "SELECT pg_last_wal_replay_lsn()"}
	for i := 0; i < grantsMade && written < weeklyEvents; i++ {
		t0 := weeklyStart.Add(time.Duration(i)*step + time.Duration(rng.Int64N(int64(step))))
		flush(t0, false)
		rid, gid := fmt.Sprintf("r_%07d", i), fmt.Sprintf("g_%07d", i)
		u := rng.IntN(300)
		user := audit.Actor{Kind: audit.ActorUser, ID: fmt.Sprintf("U%04d", u), Email: fmt.Sprintf("user%d@example.com", u)}
		if rng.IntN(4) == 0 {
			user.Email = "" // the id alone, resolved through other events
		}
		person := fmt.Sprintf("user%d@example.com", u)
		res := resources[rng.IntN(len(resources))]
		dur := time.Duration(30+rng.IntN(210)) * time.Minute
		reason := "checking replication lag"
		onCall, path, approvers := "true", "auto_approve", ""
		switch r := rng.IntN(100); {
		case r < 25:
			onCall, path, approvers = "false", "approval", fmt.Sprintf("U9%03d", rng.IntN(6))
		case r < 30:
			onCall, path = "unknown", "approval"
			approvers = fmt.Sprintf("U9%03d", rng.IntN(6))
		case r < 32:
			path = "break_glass"
		case r < 40:
			path = "page"
		}
		add(t0, user, audit.ActionRequestCreated, rid, "", res, reason, "source", "slack", "duration", dur.String())
		until := t0.Add(time.Duration(rng.IntN(300)) * time.Minute)
		add(t0.Add(300*time.Millisecond), sys, audit.ActionOnCallChecked, rid, "", res, "", "on_call", onCall, "on_call_until", ts(until),
			"on_call_shifts", "PABC123 level 1", "person", person)
		t := t0.Add(time.Second)
		if approvers != "" {
			if rng.IntN(10) == 0 { // denied: no grant
				add(t.Add(2*time.Minute), audit.Actor{Kind: audit.ActorUser, ID: approvers}, audit.ActionRequestDenied, rid, "", res, "not now", "person", person)
				continue
			}
			t = t.Add(time.Duration(1+rng.IntN(10)) * time.Minute)
			ap := audit.Actor{Kind: audit.ActorUser, ID: approvers, Email: "lead" + approvers + "@example.com"}
			add(t, ap, audit.ActionApprovalRecorded, rid, "", res, "", "approver", approvers, "person", person)
			add(t, ap, audit.ActionRequestApproved, rid, "", res, "", "approvers", approvers, "path", "approval")
		}
		if rng.IntN(40) == 0 {
			add(t, user, audit.ActionRequestRejected, rid, "", res, "duration over the maximum", "person", person)
			continue
		}
		exp := t.Add(dur)
		issuer := sys
		if path == "page" {
			issuer = audit.Actor{Kind: audit.ActorPagerDuty, ID: "PD"}
		}
		add(t, issuer, audit.ActionGrantIssuing, rid, gid, res, reason, "person", person, "path", path, "approvers", approvers,
			"expires_at", ts(exp), "on_call", onCall, "on_call_until", ts(until), "incident", map[bool]string{true: "Q1ABC"}[path == "page"])
		if rng.IntN(200) == 0 {
			add(t.Add(2*time.Second), sys, audit.ActionGrantIssueFailed, rid, gid, res, "", "error", "provider unavailable")
			continue
		}
		add(t.Add(time.Second), sys, audit.ActionGrantIssued, rid, gid, res, "", "person", person, "expires_at", ts(exp))
		if rng.IntN(10) == 0 {
			old := exp
			exp = exp.Add(30 * time.Minute)
			add(t.Add(dur/2), user, audit.ActionGrantExtended, rid, gid, res, "more time", "old_expires_at", ts(old), "expires_at", ts(exp))
		}
		end := exp
		cause := "expired"
		if r := rng.IntN(100); r < 20 {
			end = t.Add(dur / 3)
			cause = "manual"
			add(end, user, audit.ActionGrantRevokeQueued, rid, gid, res, "done", "cause", cause)
		} else if r < 25 && path == "page" {
			end = t.Add(dur / 4)
			cause = "incident_resolved"
			add(end, sys, audit.ActionGrantRevokeQueued, rid, gid, res, "", "cause", cause)
		}
		switch {
		case res == "prod-aws" || res == "audit-aws" || res == "prod-sso":
			for k, n := 0, rng.IntN(14); k < n; k++ {
				at := t.Add(time.Duration(rng.Int64N(int64(end.Sub(t)) + int64(10*time.Minute))))
				after := at.After(end) && rng.IntN(5) == 0
				errCode := map[bool]string{true: "AccessDenied"}[rng.IntN(15) == 0]
				add(at.Add(15*time.Minute), user, audit.ActionAWSActivity, rid, gid, res, "", "event_id", fmt.Sprintf("ev-%d-%d", i, k),
					"event_time", ts(at), "service", "ec2.amazonaws.com", "api_call", "DescribeInstances", "read_only", fmt.Sprint(rng.IntN(3) > 0),
					"error_code", errCode, "region", "us-east-1", "source_ip", "203.0.113.9", "after_revocation", fmt.Sprint(after && errCode == ""))
			}
		case res == "infra-admins":
			for k, n := 0, rng.IntN(8); k < n; k++ {
				at := t.Add(time.Duration(rng.Int64N(int64(end.Sub(t)))))
				add(at.Add(5*time.Minute), user, audit.ActionGitHubActivity, rid, gid, res, "", "action", "repo.push", "event_time", ts(at), "after_revocation", "false")
			}
		default:
			if rng.IntN(5) == 0 {
				break // granted, never used
			}
			for sIdx, ns := 0, 1+rng.IntN(3); sIdx < ns; sIdx++ {
				sid := fmt.Sprintf("s_%d_%d", i, sIdx)
				s0 := t.Add(time.Duration(rng.Int64N(int64(end.Sub(t)) / 2)))
				add(s0, user, audit.ActionSessionStarted, rid, gid, res, "", "session_id", sid, "role", "ab_"+gid, "client_addr", "10.0.0.7:51234",
					"database", "app", "upstream_pid", "4242", "person", person)
				at := s0
				for k, n := 0, rng.IntN(20); k < n; k++ {
					at = at.Add(time.Duration(1+rng.IntN(20)) * time.Second)
					text, tag, sqlstate := reads[rng.IntN(len(reads))], "SELECT 1", ""
					switch r := rng.IntN(100); {
					case r < 10:
						text, tag = "UPDATE orders SET state = 'paid' WHERE id = $1", "UPDATE 1"
					case r < 12:
						text, tag = "CREATE INDEX CONCURRENTLY orders_state ON orders(state)", "CREATE INDEX"
					case r < 14:
						text, tag, sqlstate = "DROP TABLE payments", "", "42501"
					case r < 16:
						text, tag, sqlstate = "SELECT * FROM missing", "", "42P01"
					case r < 17:
						text, tag = "COPY orders FROM STDIN", "COPY 10"
					}
					add(at, user, audit.ActionSessionStatement, rid, gid, res, "", "session_id", sid, "order", fmt.Sprint(k+1), "protocol", "simple",
						"text", text, "text_sha256", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "text_bytes", fmt.Sprint(len(text)),
						"params", "0", "duration", "2ms", "duration_us", "2113", "tag", tag, "rows", map[bool]string{true: "1"}[tag != ""], "sqlstate", sqlstate)
				}
				if rng.IntN(20) > 0 {
					add(at.Add(3*time.Second), user, audit.ActionSessionEnded, rid, gid, res, "", "session_id", sid, "reason", "client closed")
				}
			}
			if rng.IntN(30) == 0 {
				for k := range 3 {
					add(t.Add(time.Duration(k)*time.Minute), audit.Actor{Kind: audit.ActorUnknown}, audit.ActionSessionLoginFailed, "", gid, res, "", "role", "ab_"+gid, "reason", "bad password")
				}
			}
		}
		switch r := rng.IntN(100); {
		case r < 3: // never revoked
		case r < 8:
			add(end.Add(2*time.Second), sys, audit.ActionGrantRevokeFailed, rid, gid, res, "", "cause", cause, "attempt", "1", "error", "timeout")
			add(end.Add(3*time.Minute), sys, audit.ActionGrantRevoked, rid, gid, res, "", "cause", cause, "person", person)
		default:
			add(end.Add(time.Duration(rng.IntN(3000))*time.Millisecond), sys, audit.ActionGrantRevoked, rid, gid, res, "", "cause", cause, "person", person)
		}
		if rng.IntN(50) == 0 {
			add(t0, audit.Actor{Kind: audit.ActorUnknown, ID: "203.0.113.7"}, audit.ActionWebhookRejected, "", "", "", "bad signature", "path", "/slack/commands")
		}
	}
	flush(time.Time{}, true)
	if len(c.Events) > 0 {
		if err := st.Apply(ctx, c); err != nil {
			tb.Fatal(err)
		}
	}
	if written != weeklyEvents {
		tb.Fatalf("wrote %d events, want %d", written, weeklyEvents)
	}
}

// weeklyStore returns the path of the benchmark's store: $ACCESSBROKER_REPORT_BENCH_DB when
// set (written there first if it does not exist, so that later runs and other commits reuse
// it), else a new one in a temporary directory.
func weeklyStore(b *testing.B) string {
	b.Helper()
	path := os.Getenv("ACCESSBROKER_REPORT_BENCH_DB")
	if path == "" {
		path = filepath.Join(b.TempDir(), "weekly.db")
	}
	if _, err := os.Stat(path); err == nil {
		return path
	}
	t0 := time.Now()
	writeWeeklyStore(b, path)
	b.Logf("wrote %d events to %s in %s", weeklyEvents, path, time.Since(t0).Round(time.Second))
	return path
}

// BenchmarkWeeklyReport1M builds the weekly report of the fifth of eight weeks in a store of
// 1,000,000 events (writeWeeklyStore) exactly as `accessbroker report` does (the reporter:
// audit.ReadReport, then the reviews; the Slack summary calls the same audit.ReadReport),
// and renders it as JSON. cpu-s/op is the process's CPU time per report (every goroutine).
func BenchmarkWeeklyReport1M(b *testing.B) {
	path := weeklyStore(b)
	st, err := sqlstore.Open(context.Background(), "sqlite", "file:"+path, grants.RealClock{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	cpu0 := cpuTime()
	for b.Loop() {
		ct, body, err := newReporter(st, audit.ReportOptions{}).Report(ctx, weeklySince, weeklyUntil, audit.FormatJSON)
		if err != nil || ct == "" || len(body) == 0 {
			b.Fatal(err)
		}
	}
	b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/report")
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/report")
	r, err := newReporter(st, audit.ReportOptions{}).Build(ctx, weeklySince, weeklyUntil)
	if err != nil {
		b.Fatal(err)
	}
	grantsSeen := r.Grants
	b.ReportMetric(float64(grantsSeen), "grants")
}
