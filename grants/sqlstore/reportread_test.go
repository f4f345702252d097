package sqlstore_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// searchOnly hides the store's ReportScanner: audit.ReadReport then reads through Search in
// pages, the path every report took before the scanner.
type searchOnly struct{ s *sqlstore.Store }

func (o searchOnly) Search(ctx context.Context, q audit.Query) ([]audit.Event, error) {
	return o.s.Search(ctx, q)
}

var (
	eqStart = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	eqSince = eqStart.AddDate(0, 0, 10)
	eqUntil = eqSince.AddDate(0, 0, 7)
)

// randomReportLog makes n events over three and a half weeks whose ids, people and evidence
// collide often enough for every rule of the report to fire: grants written ahead long
// before the window (their history read on its own), refusals in bursts, the same approver
// again and again, sessions open at until, statements of every class, activity after the
// end, the unit separator and escapes in any text column (read column by column), duplicate
// evidence keys.
func randomReportLog(seed uint64, n int) []*audit.Event {
	rng := rand.New(rand.NewPCG(seed, 16))
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	actions := []audit.Action{
		audit.ActionRequestCreated, audit.ActionOnCallChecked, audit.ActionRequestApproved, audit.ActionRequestDenied,
		audit.ActionRequestRejected, audit.ActionRequestExpired, audit.ActionApprovalRecorded, audit.ActionGrantIssuing,
		audit.ActionGrantIssued, audit.ActionGrantExtended, audit.ActionGrantRevokeQueued, audit.ActionGrantRevoked,
		audit.ActionGrantRevokeFailed, audit.ActionGrantIssueFailed, audit.ActionSessionStarted, audit.ActionSessionStatement,
		audit.ActionSessionStatement, audit.ActionSessionStatement, audit.ActionSessionEnded, audit.ActionSessionLoginFailed,
		audit.ActionAWSActivity, audit.ActionGitHubActivity, audit.ActionWebhookRejected, audit.ActionSummaryPosted,
		audit.ActionReviewRecorded,
	}
	keys := []string{"person", "source", "on_call", "on_call_until", "on_call_shifts", "on_call_error", "path", "approvers",
		"break_glass", "incident", "incident_id", "acknowledged_by", "expires_at", "old_expires_at", "cause", "session_id",
		"sqlstate", "tag", "text", "role", audit.EvidenceActivityReadOnly, audit.EvidenceActivityErrorCode,
		audit.EvidenceActivityAfterRevocation, audit.EvidenceActivityEventTime, audit.EvidenceRefusedClick, "order", "rows", "noise"}
	value := func(k string, at time.Time) string {
		ts := func(d time.Duration) string { return grants.Timestamp(at.Add(d)) }
		switch k {
		case "person", "acknowledged_by":
			return pick("alice@example.com", "bob@example.com", "U01", "U02", "carol@example.com")
		case "approvers":
			return pick("U07", "U07, U08", "U08", "")
		case "on_call":
			return pick("true", "false", "unknown", "")
		case "path":
			return pick("auto_approve", "approval", "break_glass", "page", "auto_grant", "")
		case "expires_at", "old_expires_at", "on_call_until", audit.EvidenceActivityEventTime:
			return pick(ts(time.Hour), ts(-time.Hour), ts(30*time.Minute), ts(9*24*time.Hour), "not a time")
		case "cause":
			return pick("expired", "manual", "incident_resolved", "shift_ended", "delivery_failed", "odd")
		case "session_id":
			return pick("s1", "s2", "s3")
		case "sqlstate":
			return pick("", "", "42501", "42P01")
		case "tag":
			return pick("SELECT 1", "INSERT 0 1", "UPDATE 2", "CREATE TABLE", "COPY 3", "")
		case "text":
			return pick("COPY t FROM STDIN", "COPY (SELECT 1) TO STDOUT", "SELECT 1", "say \"hi\"\\n", "tab\there")
		case audit.EvidenceActivityReadOnly, audit.EvidenceActivityAfterRevocation, "break_glass":
			return pick("true", "false")
		case audit.EvidenceActivityErrorCode, audit.EvidenceRefusedClick:
			return pick("", "AccessDenied")
		}
		return pick("x", "y\x1fz", "é", "")
	}
	t := eqStart
	out := make([]*audit.Event, 0, n)
	for i := range n {
		t = t.Add(time.Duration(rng.Int64N(int64(45 * time.Minute))))
		a := actions[rng.IntN(len(actions))]
		e := &audit.Event{ID: fmt.Sprintf("e_%05d", i), Time: t, Action: a,
			RequestID: pick("r1", "r2", "r3", "r4", "r5", "r6", ""), Resource: pick("prod-db", "prod-aws", "team", ""),
			Reason: pick("", "checking lag", "odd\x1freason", "back\\slash")}
		switch rng.IntN(5) {
		case 0:
			e.Actor = audit.Actor{Kind: audit.ActorSystem, ID: "accessbroker"}
		case 1:
			e.Actor = audit.Actor{Kind: audit.ActorPagerDuty, ID: "PD1"}
		case 2:
			e.Actor = audit.Actor{Kind: audit.ActorOperator, ID: "ops"}
		default:
			id := pick("U01", "U02", "U07", "U08")
			e.Actor = audit.Actor{Kind: audit.ActorUser, ID: id, Email: pick("", "", id+"@example.com", "alice@example.com")}
		}
		if a != audit.ActionRequestCreated && a != audit.ActionOnCallChecked && rng.IntN(6) > 0 {
			e.GrantID = fmt.Sprintf("g%d", rng.IntN(14))
		}
		if rng.IntN(8) > 0 {
			e.Evidence = map[string]string{}
			for range 1 + rng.IntN(6) {
				k := keys[rng.IntN(len(keys))]
				e.Evidence[k] = value(k, t)
			}
		}
		if a == audit.ActionSummaryPosted || a == audit.ActionReviewRecorded {
			wk := eqSince.Add(-time.Duration(rng.IntN(2)) * 7 * 24 * time.Hour)
			e.Evidence = map[string]string{"week": grants.Timestamp(wk)[:10], "since": wk.Format(time.RFC3339),
				"until": wk.AddDate(0, 0, 7).Format(time.RFC3339), "report_sha256": "ab", "reviewer": "U07"}
		}
		out = append(out, e)
	}
	return out
}

// TestReportScanMatchesSearch is the equivalence of the report's two read paths over
// randomized logs, on SQLite and on PostgreSQL: the report read through the store's
// ReportScanner (only the columns and evidence keys a report reads, pipelined), through
// Search in pages (the path before it), and BuildReport over every event read back whole
// are the same report, in every format and review hash.
func TestReportScanMatchesSearch(t *testing.T) {
	t.Parallel()
	backends := map[string]func(t *testing.T) *sqlstore.Store{
		"sqlite":   func(t *testing.T) *sqlstore.Store { return openSQLite(t, grants.RealClock{}) },
		"postgres": func(t *testing.T) *sqlstore.Store { return openPG(t, newPGSchema(t), grants.RealClock{}) },
	}
	for name, open := range backends {
		for seed := range uint64(4) {
			t.Run(fmt.Sprintf("%s/seed=%d", name, seed), func(t *testing.T) {
				s := open(t)
				ctx := t.Context()
				evs := randomReportLog(seed, 2500)
				for i := 0; i < len(evs); i += 500 {
					if err := s.Apply(ctx, &grants.Change{Events: evs[i:min(i+500, len(evs))]}); err != nil {
						t.Fatal(err)
					}
				}
				var all []audit.Event
				for after := int64(0); ; {
					page, err := s.ReadEvents(ctx, after, 1000)
					if err != nil {
						t.Fatal(err)
					}
					if len(page) == 0 {
						break
					}
					all = append(all, page...)
					after = page[len(page)-1].Seq
				}
				for _, w := range []struct{ since, until time.Time }{{eqSince, eqUntil}, {eqStart, eqStart.Add(36 * time.Hour)}, {eqUntil, eqUntil.AddDate(0, 0, 30)}} {
					from := w.since.Add(-audit.ReportLookback)
					var inRange []audit.Event
					for _, e := range all {
						if !e.Time.Before(from) {
							inRange = append(inRange, e)
						}
					}
					want := audit.BuildReport(inRange, w.since, w.until, audit.ReportOptions{})
					old, err := audit.ReadReport(ctx, searchOnly{s}, w.since, w.until, audit.ReportOptions{})
					if err != nil {
						t.Fatal(err)
					}
					got, err := audit.ReadReport(ctx, s, w.since, w.until, audit.ReportOptions{})
					if err != nil {
						t.Fatal(err)
					}
					if want.Grants == 0 && len(want.Anomalies) == 0 && w.since == eqSince {
						t.Fatalf("the random log's window has no grant and no anomaly: the comparison proves little")
					}
					if d := cmp.Diff(old, got); d != "" {
						t.Errorf("window %s: scanned report differs from the searched one (-search +scan):\n%s", w.since, d)
					}
					// BuildReport over the range read whole differs from ReadReport only for
					// grants written before the lookback (ReadReport reads their history).
					if len(got.Rows) != len(want.Rows) || got.Grants != want.Grants {
						t.Errorf("window %s: %d rows, BuildReport %d", w.since, len(got.Rows), len(want.Rows))
					}
					for _, f := range audit.ReportFormats {
						var a, b bytes.Buffer
						if err := audit.RenderReport(&a, old, f); err != nil {
							t.Fatal(err)
						}
						if err := audit.RenderReport(&b, got, f); err != nil {
							t.Fatal(err)
						}
						if !bytes.Equal(a.Bytes(), b.Bytes()) {
							t.Errorf("window %s: %s differs", w.since, f)
						}
					}
					h1, err1 := audit.ReportSHA256(old)
					h2, err2 := audit.ReportSHA256(got)
					if err1 != nil || err2 != nil || h1 != h2 {
						t.Errorf("window %s: review hash %s / %s (%v %v)", w.since, h1, h2, err1, err2)
					}
				}
			})
		}
	}
}
