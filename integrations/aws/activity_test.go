package awsprov

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/fixtures/awsfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
	"github.com/accessbroker/accessbroker/grants/storetest"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
)

const testRoleARN = "arn:aws:iam::" + accountID + ":role/oncall-admin"

// activityEnv is a fake AWS, a SQLite store and a collector with the CloudTrail source, all on
// one fake clock.
type activityEnv struct {
	*env
	store     *sqlstore.Store
	src       *CloudTrailSource
	collector *grants.ActivityCollector
	metrics   *upRecorder
}

type upRecorder struct {
	mu       sync.Mutex
	up       []bool
	recorded int
}

func (m *upRecorder) ActivityRecorded(_ string, n int) { m.mu.Lock(); m.recorded += n; m.mu.Unlock() }
func (m *upRecorder) ActivitySourceUp(_ string, up bool) {
	m.mu.Lock()
	m.up = append(m.up, up)
	m.mu.Unlock()
}
func (m *upRecorder) last() (bool, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.up) == 0 {
		return false, false
	}
	return m.up[len(m.up)-1], true
}

func newActivityEnv(t *testing.T, opts CloudTrailOptions) *activityEnv {
	t.Helper()
	e := newEnv(t, awsfake.Options{})
	st, err := sqlstore.Open(t.Context(), "sqlite", "file:"+filepath.Join(t.TempDir(), "ab.db"), e.clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	opts.HTTPClient = httpclient.New(httpclient.Options{RetryMax: -1, ReturnLastResponse: true})
	opts.Logger = e.logger
	src := NewCloudTrailSource(e.cfg, e.clock, opts)
	m := &upRecorder{}
	c, err := grants.NewActivityCollector(st, st, e.clock, []grants.CollectorSource{{
		Name: SourceCloudTrail, Providers: []string{KindSTS, KindIdentityCenter}, Source: src, AfterEnd: 20 * time.Minute, Poll: 5 * time.Minute,
	}}, grants.CollectorOptions{Instance: "replica-1", Batch: 50, Metrics: m, Logger: e.logger})
	if err != nil {
		t.Fatal(err)
	}
	return &activityEnv{env: e, store: st, src: src, collector: c, metrics: m}
}

// stsGrant stores an aws-sts grant whose session key is keyID.
func (a *activityEnv) stsGrant(t *testing.T, keyID string, issued time.Time, revoked time.Time) *grants.Grant {
	t.Helper()
	g := storetest.NewGrant(issued, "prod-aws", time.Hour)
	g.Provider = KindSTS
	g.Handle = grants.Handle{Key: "alice-" + keyID, Data: map[string]string{DataRoleARN: testRoleARN, DataAccessKeyID: keyID}}
	if !revoked.IsZero() {
		g.State, g.RevokedAt = grants.StateRevoked, revoked
	}
	storetest.MustCreate(t, a.store, issued, g)
	return g
}

// pass runs one collector pass, advancing the fake clock whenever the collector waits on the
// rate limiter (no wall-clock waits).
func (a *activityEnv) pass(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	type res struct {
		n   int
		err error
	}
	done := make(chan res, 1)
	go func() {
		n, err := a.collector.Pass(ctx, SourceCloudTrail)
		done <- res{n, err}
	}()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			if r.err != nil {
				t.Fatalf("Pass: %v", r.err)
			}
			return r.n
		case <-tick.C:
			if a.clock.Waiters() > 0 {
				a.clock.Advance(100 * time.Millisecond)
			}
		case <-ctx.Done():
			t.Fatal("collector pass did not finish")
		}
	}
}

// activity returns the aws.activity events of a grant, by event id.
func (a *activityEnv) activity(t *testing.T, grantID string) map[string]*audit.Event {
	t.Helper()
	var evs []audit.Event
	for after := int64(0); ; {
		page, err := a.store.ReadEvents(t.Context(), after, 500)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		evs = append(evs, page...)
		after = page[len(page)-1].Seq
	}
	out := map[string]*audit.Event{}
	for i := range evs {
		e := &evs[i]
		if e.Action != audit.ActionAWSActivity || e.GrantID != grantID {
			continue
		}
		id := e.Evidence["event_id"]
		if _, dup := out[id]; dup {
			t.Errorf("event %s recorded twice on grant %s", id, grantID)
		}
		out[id] = e
	}
	return out
}

func ids(m map[string]*audit.Event) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestCloudTrailActivityTimeline: a grant's CloudTrail events appear on its timeline once
// each, with their fields; another session's events never do; an event delivered late (after
// a look-up covered its time) is still collected; a call after revocation that succeeded is
// marked after_revocation and one that was refused is not; once the after-end window has
// passed the grant is no longer looked up.
func TestCloudTrailActivityTimeline(t *testing.T) {
	a := newActivityEnv(t, CloudTrailOptions{})
	now := a.clock.Now()
	live := a.stsGrant(t, "ASIALIVE0000000001", now, time.Time{})
	ended := a.stsGrant(t, "ASIAENDED000000001", now.Add(-30*time.Minute), now.Add(-10*time.Minute))
	ev := func(key, name string, at time.Time, readOnly bool, errCode string) string {
		return a.fake.AddTrailEvent(awsfake.TrailEvent{EventTime: at, EventSource: "s3.amazonaws.com", EventName: name,
			AccessKeyID: key, Username: "alice", ReadOnly: readOnly, ErrorCode: errCode, SourceIP: "203.0.113.7",
			Resources: [][2]string{{"AWS::S3::Object", "arn:aws:s3:::prod-bucket/report.csv"}}})
	}
	put := ev("ASIALIVE0000000001", "PutObject", now.Add(time.Second), false, "")
	get := ev("ASIALIVE0000000001", "GetObject", now.Add(2*time.Second), true, "")
	denied := ev("ASIALIVE0000000001", "DeleteBucket", now.Add(3*time.Second), false, "AccessDenied")
	ev("ASIASOMEONEELSE001", "PutObject", now.Add(time.Second), false, "") // another session
	before := ev("ASIAENDED000000001", "ListBuckets", now.Add(-20*time.Minute), true, "")
	afterOK := ev("ASIAENDED000000001", "PutObject", now.Add(-5*time.Minute), false, "")
	afterRefused := ev("ASIAENDED000000001", "PutObject", now.Add(-4*time.Minute), false, "AccessDenied")

	a.clock.Advance(time.Minute)
	if n := a.pass(t); n != 6 {
		t.Fatalf("first pass recorded %d events, want 6", n)
	}
	got := a.activity(t, live.ID)
	if want := []string{put, get, denied}; !sameIDs(ids(got), want) {
		t.Fatalf("live grant events %v, want %v", ids(got), want)
	}
	p := got[put].Evidence
	for k, want := range map[string]string{"service": "s3.amazonaws.com", "api_call": "PutObject", "read_only": "false",
		"error_code": "", "source_ip": "203.0.113.7", "resources": "AWS::S3::Object arn:aws:s3:::prod-bucket/report.csv",
		"event_time": grants.Timestamp(now.Add(time.Second)), "after_revocation": "false", "region": "us-east-1"} {
		if p[k] != want {
			t.Errorf("evidence %s = %q, want %q", k, p[k], want)
		}
	}
	if got[denied].Evidence["error_code"] != "AccessDenied" || got[get].Evidence["read_only"] != "true" {
		t.Errorf("denied/read-only evidence wrong: %v / %v", got[denied].Evidence, got[get].Evidence)
	}
	if got[put].Resource != "prod-aws" || got[put].Actor.ID != "U0ALICE" {
		t.Errorf("event names resource %q actor %q", got[put].Resource, got[put].Actor.ID)
	}
	end := a.activity(t, ended.ID)
	if !sameIDs(ids(end), []string{before, afterOK, afterRefused}) {
		t.Fatalf("ended grant events %v", ids(end))
	}
	for id, want := range map[string]string{before: "false", afterOK: "true", afterRefused: "false"} {
		if end[id].Evidence["after_revocation"] != want {
			t.Errorf("event %s after_revocation = %q, want %q", end[id].Evidence["api_call"], end[id].Evidence["after_revocation"], want)
		}
	}
	for _, c := range a.fake.CallsTo(awsfake.ServiceCloudTrail, "LookupEvents") {
		attrs := fmt.Sprint(c.Params["LookupAttributes"])
		if !strings.Contains(attrs, "AccessKeyId") || strings.Contains(attrs, "SOMEONEELSE") {
			t.Errorf("look-up by %s", attrs)
		}
	}

	// Delivered late: it happened during the grant, before the last look-up's end.
	late := ev("ASIALIVE0000000001", "PutBucketPolicy", now.Add(30*time.Second), false, "")
	a.clock.Advance(5 * time.Minute)
	if n := a.pass(t); n != 1 {
		t.Fatalf("second pass recorded %d events, want 1 (the late one)", n)
	}
	if _, ok := a.activity(t, live.ID)[late]; !ok {
		t.Fatal("late event not collected")
	}
	// The ended grant's window closes 20 minutes after its end: later deliveries are not read.
	a.clock.Advance(25 * time.Minute)
	a.pass(t)
	calls := len(a.fake.CallsTo(awsfake.ServiceCloudTrail, "LookupEvents"))
	ev("ASIAENDED000000001", "PutObject", now.Add(-3*time.Minute), false, "")
	a.clock.Advance(5 * time.Minute)
	a.pass(t)
	if len(a.activity(t, ended.ID)) != 3 {
		t.Errorf("ended grant read after its window closed")
	}
	if after := a.fake.CallsTo(awsfake.ServiceCloudTrail, "LookupEvents"); len(after) != calls+1 {
		t.Errorf("%d look-ups after the window closed, want 1 (the live grant)", len(after)-calls)
	}
	curs, err := a.store.ActivityCursors(t.Context(), []string{ended.ID})
	if err != nil || len(curs) != 1 || !curs[0].Done || curs[0].Events != 3 {
		t.Errorf("ended grant cursor %+v, %v: want done with 3 events", curs, err)
	}
}

func sameIDs(got, want []string) bool {
	w := append([]string(nil), want...)
	sort.Strings(w)
	return fmt.Sprint(got) == fmt.Sprint(w)
}

// TestCloudTrailPagingResumes: with a page budget of two pages, a grant with 120 events is read
// over two passes from the stored NextToken, every event once.
func TestCloudTrailPagingResumes(t *testing.T) {
	a := newActivityEnv(t, CloudTrailOptions{PagesPerCollect: 2})
	now := a.clock.Now()
	g := a.stsGrant(t, "ASIAPAGED000000001", now, time.Time{})
	for i := range 120 {
		a.fake.AddTrailEvent(awsfake.TrailEvent{EventTime: now.Add(time.Duration(i) * time.Second), EventSource: "ec2.amazonaws.com",
			EventName: "DescribeInstances", AccessKeyID: "ASIAPAGED000000001", ReadOnly: true})
	}
	a.clock.Advance(5 * time.Minute)
	if n := a.pass(t); n != 120 {
		t.Fatalf("recorded %d, want 120 (the pass continues an unfinished scan in its next round)", n)
	}
	calls := a.fake.CallsTo(awsfake.ServiceCloudTrail, "LookupEvents")
	if len(calls) != 3 {
		t.Fatalf("%d look-ups, want 3 pages", len(calls))
	}
	if calls[2].Params["NextToken"] == nil {
		t.Errorf("third page was not read from the stored NextToken: %v", calls[2].Params)
	}
	if n := len(a.activity(t, g.ID)); n != 120 {
		t.Errorf("timeline has %d events, want 120", n)
	}
}

// TestCloudTrailThrottlingHonoured: a ThrottlingException fails the look-up (the SDK does not
// retry past the limiter), marks the source down, pauses the account's calls, and the grant is
// collected on a later pass.
func TestCloudTrailThrottlingHonoured(t *testing.T) {
	a := newActivityEnv(t, CloudTrailOptions{})
	now := a.clock.Now()
	g := a.stsGrant(t, "ASIATHROTTLED00001", now, time.Time{})
	a.fake.AddTrailEvent(awsfake.TrailEvent{EventTime: now.Add(time.Second), EventSource: "iam.amazonaws.com", EventName: "CreateUser", AccessKeyID: "ASIATHROTTLED00001"})
	a.fake.Throttle(awsfake.ServiceCloudTrail, "LookupEvents", 1)
	a.clock.Advance(time.Minute)
	if n := a.pass(t); n != 0 {
		t.Fatalf("recorded %d while throttled", n)
	}
	if up, ok := a.metrics.last(); !ok || up {
		t.Fatalf("source up = %v after throttling, want down", up)
	}
	curs, _ := a.store.ActivityCursors(t.Context(), []string{g.ID})
	if len(curs) != 1 || curs[0].Failures != 1 || !strings.Contains(curs[0].LastError, "ThrottlingException") {
		t.Fatalf("cursor after throttling: %+v", curs)
	}
	a.clock.Advance(5 * time.Minute)
	if n := a.pass(t); n != 1 {
		t.Fatalf("recorded %d after the backoff, want 1", n)
	}
	if up, _ := a.metrics.last(); !up {
		t.Error("source still down after a successful look-up")
	}
}

// TestCloudTrailRateLimitWith200Grants: 200 live grants in one account and region are looked
// up at no more than 2 calls in any second of the fake's clock (counted on the fake's side),
// and every grant's event is collected.
func TestCloudTrailRateLimitWith200Grants(t *testing.T) {
	a := newActivityEnv(t, CloudTrailOptions{})
	now := a.clock.Now()
	for i := range 200 {
		key := fmt.Sprintf("ASIARATE%010d", i)
		a.stsGrant(t, key, now, time.Time{})
		a.fake.AddTrailEvent(awsfake.TrailEvent{EventTime: now.Add(time.Second), EventSource: "s3.amazonaws.com", EventName: "GetObject", AccessKeyID: key, ReadOnly: true})
	}
	a.clock.Advance(time.Minute)
	if n := a.pass(t); n != 200 {
		t.Fatalf("recorded %d events, want 200", n)
	}
	calls := a.fake.CallsTo(awsfake.ServiceCloudTrail, "LookupEvents")
	if len(calls) != 200 {
		t.Fatalf("%d calls, want 200", len(calls))
	}
	perSecond := map[int64]int{}
	for i, c := range calls {
		perSecond[c.At.Unix()]++
		if i >= 2 && c.At.Sub(calls[i-2].At) < time.Second {
			t.Fatalf("calls %d..%d within %s: more than 2 in one second", i-2, i, c.At.Sub(calls[i-2].At))
		}
	}
	for sec, n := range perSecond {
		if n > 2 {
			t.Errorf("%d calls in second %d", n, sec)
		}
	}
	if span := calls[len(calls)-1].At.Sub(calls[0].At); span < 99*time.Second {
		t.Errorf("200 calls took %s of fake time, want at least 99.5s at 2/s", span)
	}
}

// TestCloudTrailRetryAfterPausesTheAccount: a 429 with Retry-After: 7 on one grant's look-up
// holds every look-up of the account for 7 seconds (fake clock), not only that grant's.
func TestCloudTrailRetryAfterPausesTheAccount(t *testing.T) {
	a := newActivityEnv(t, CloudTrailOptions{})
	now := a.clock.Now()
	a.stsGrant(t, "ASIARETRYAFTER0001", now, time.Time{})
	a.stsGrant(t, "ASIARETRYAFTER0002", now, time.Time{})
	a.fake.TooManyRequests(awsfake.ServiceCloudTrail, "LookupEvents", "7", 1)
	a.clock.Advance(time.Minute)
	a.pass(t)
	calls := a.fake.CallsTo(awsfake.ServiceCloudTrail, "LookupEvents")
	if len(calls) != 2 || calls[0].Status != 429 || calls[1].Status != 200 {
		t.Fatalf("calls %+v: want a 429 then a success", calls)
	}
	if gap := calls[1].At.Sub(calls[0].At); gap < 7*time.Second {
		t.Errorf("next look-up %s after the 429, want at least the 7s Retry-After", gap)
	}
}
