package broker_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/broker/brokertest"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/clocktest"
	"github.com/accessbroker/accessbroker/grants/sqlstore"
)

// The summary is scheduled on Mondays at 09:00 UTC; 2026-03-02 is a Monday (ISO week 10).
var (
	sumSlot     = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	sumPrevSlot = sumSlot.AddDate(0, 0, -7)
)

const sumChannel = "C0SUMMARY"

// sumPoster is a fake SummaryPoster: it records what it was asked to post and fails the
// first failN calls.
type sumPoster struct {
	mu       sync.Mutex
	attempts int
	failN    int
	posts    []sumPost
}

type sumPost struct {
	channel      string
	since, until time.Time
	grants       int
	checkpoint   string // Report.Checkpoint.String(), "" when the report has none
}

func (p *sumPoster) PostSummary(_ context.Context, channel string, r audit.Report) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts++
	if p.failN > 0 {
		p.failN--
		return errors.New("slack: 503 service unavailable")
	}
	post := sumPost{channel: channel, since: r.Since, until: r.Until, grants: r.Grants}
	if r.Checkpoint != nil {
		post.checkpoint = r.Checkpoint.String()
	}
	p.posts = append(p.posts, post)
	return nil
}

func (p *sumPoster) posted() []sumPost {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]sumPost(nil), p.posts...)
}

// failingRecorder fails its first n Records (n < 0: always), as a full disk or a crash would.
type failingRecorder struct {
	mu   sync.Mutex
	n    int
	next broker.SummaryRecorder
}

func (f *failingRecorder) Record(ctx context.Context, events ...*audit.Event) error {
	f.mu.Lock()
	fail := f.n != 0
	if f.n > 0 {
		f.n--
	}
	f.mu.Unlock()
	if fail {
		return errors.New("disk I/O error")
	}
	return f.next.Record(ctx, events...)
}

// sumProcess is one broker process: its own store handle on the shared database file.
type sumProcess struct {
	store *sqlstore.Store
	mgr   *grants.Manager
}

func sumOpen(t *testing.T, clock grants.Clock, path string) sumProcess {
	t.Helper()
	st, err := sqlstore.Open(t.Context(), "sqlite", "file:"+path, clock, nil)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	res := grants.Resource{Name: "prod-db", Provider: "postgres", DefaultDuration: time.Hour, MaxDuration: 4 * time.Hour}
	mgr := grants.NewManager(st, map[string]grants.Provider{"prod-db": brokertest.NewProvider("postgres")}, []grants.Resource{res}, clock, nil, grants.ManagerOptions{})
	return sumProcess{store: st, mgr: mgr}
}

func (p sumProcess) summary(t *testing.T, clock grants.Clock, holder string, poster broker.SummaryPoster, rec broker.SummaryRecorder) *broker.Summary {
	t.Helper()
	if rec == nil {
		rec = p.mgr
	}
	return broker.NewSummary(broker.SummaryDeps{
		Clock: clock, Events: p.store, Leases: p.store, Recorder: rec, Poster: poster, Channel: sumChannel,
		Weekday: time.Monday, Hour: 9, Minute: 0, Holder: holder, Logger: slog.New(slog.NewTextHandler(sumLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
}

// runSummary runs s until the returned stop is called (a clean shutdown, or a crash: Run keeps
// nothing on disk that a crash would lose).
func runSummary(t *testing.T, s *broker.Summary) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v, want nil on shutdown", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// idle waits until n summary loops are asleep on the fake clock (each has finished its
// attempt and set its next timer).
func idle(t *testing.T, clock *clocktest.Fake, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := clock.BlockUntil(ctx, n); err != nil {
		t.Fatalf("waiting for %d summary loops to sleep: %v", n, err)
	}
}

// summaryRecords returns the week ids of the summary.posted events.
func summaryRecords(t *testing.T, st *sqlstore.Store) []string {
	t.Helper()
	evs, err := st.Search(t.Context(), audit.Query{Action: audit.ActionSummaryPosted, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var weeks []string
	for _, e := range evs {
		weeks = append(weeks, e.Evidence["week"])
	}
	return weeks
}

func TestSummaryPostsAtTheScheduledMinute(t *testing.T) {
	clock := clocktest.New(time.Date(2026, 2, 25, 10, 0, 0, 0, time.UTC)) // Wednesday of the week before
	p := sumOpen(t, clock, filepath.Join(t.TempDir(), "ab.db"))
	if _, _, err := p.mgr.Issue(t.Context(), grants.IssueInput{Resource: "prod-db", Person: grants.Person{SlackUserID: "U0ALICE", Email: "alice@example.com"},
		Duration: time.Hour, Reason: "replication lag", Actor: audit.Actor{Kind: audit.ActorOperator, ID: "ops"}, Evidence: map[string]string{"source": "cli"}}); err != nil {
		t.Fatal(err)
	}
	clock.Set(sumSlot.Add(-time.Hour))
	poster := &sumPoster{}
	runSummary(t, p.summary(t, clock, "i_one", poster, nil))

	idle(t, clock, 1)
	clock.Set(sumSlot.Add(-time.Minute))
	idle(t, clock, 1)
	if got := poster.posted(); len(got) != 0 {
		t.Fatalf("posted before the scheduled minute: %+v", got)
	}
	clock.Set(sumSlot)
	idle(t, clock, 1)
	want := []sumPost{{channel: sumChannel, since: sumPrevSlot, until: sumSlot, grants: 1}}
	if diff := cmp.Diff(want, poster.posted(), cmp.AllowUnexported(sumPost{})); diff != "" {
		t.Fatalf("posts at the scheduled minute (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"2026-W10"}, summaryRecords(t, p.store)); diff != "" {
		t.Errorf("summary.posted records (-want +got):\n%s", diff)
	}

	// Nothing more that week; the next Monday posts the next week, which had no grants.
	for _, d := range []time.Duration{time.Minute, time.Hour, 3 * 24 * time.Hour} {
		clock.Advance(d)
		idle(t, clock, 1)
	}
	if n := len(poster.posted()); n != 1 {
		t.Fatalf("%d posts during the week, want 1", n)
	}
	clock.Set(sumSlot.AddDate(0, 0, 7))
	idle(t, clock, 1)
	want = append(want, sumPost{channel: sumChannel, since: sumSlot, until: sumSlot.AddDate(0, 0, 7), grants: 0})
	if diff := cmp.Diff(want, poster.posted(), cmp.AllowUnexported(sumPost{})); diff != "" {
		t.Errorf("posts after two weeks (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"2026-W10", "2026-W11"}, summaryRecords(t, p.store)); diff != "" {
		t.Errorf("summary.posted records (-want +got):\n%s", diff)
	}
}

func TestSummaryRestartAtTheScheduledMinutePostsOnce(t *testing.T) {
	clock := clocktest.New(sumSlot.Add(-time.Hour))
	path := filepath.Join(t.TempDir(), "ab.db")
	poster := &sumPoster{}

	first := sumOpen(t, clock, path)
	stop := runSummary(t, first.summary(t, clock, "i_before", poster, nil))
	idle(t, clock, 1)
	clock.Set(sumSlot)
	idle(t, clock, 1)
	stop()
	first.store.Close()

	// The restarted process comes up within the same minute, with a new instance id.
	clock.Advance(20 * time.Second)
	second := sumOpen(t, clock, path)
	runSummary(t, second.summary(t, clock, "i_after", poster, nil))
	idle(t, clock, 1)
	for _, d := range []time.Duration{time.Minute, 10 * time.Minute, time.Hour} {
		clock.Advance(d)
		idle(t, clock, 1)
	}
	if n := len(poster.posted()); n != 1 {
		t.Errorf("%d posts across the restart, want 1", n)
	}
	if diff := cmp.Diff([]string{"2026-W10"}, summaryRecords(t, second.store)); diff != "" {
		t.Errorf("summary.posted records (-want +got):\n%s", diff)
	}
}

func TestSummaryTwoProcessesPostOnce(t *testing.T) {
	clock := clocktest.New(sumSlot.Add(-time.Hour))
	path := filepath.Join(t.TempDir(), "ab.db")
	poster := &sumPoster{}
	a, b := sumOpen(t, clock, path), sumOpen(t, clock, path)
	runSummary(t, a.summary(t, clock, "i_a", poster, nil))
	runSummary(t, b.summary(t, clock, "i_b", poster, nil))
	for week := range 3 {
		slot := sumSlot.AddDate(0, 0, 7*week)
		idle(t, clock, 2)
		clock.Set(slot)
		idle(t, clock, 2)
		// The loser looks again after a minute and finds the record; a lease lasts 10m.
		for range 12 {
			clock.Advance(time.Minute)
			idle(t, clock, 2)
		}
		if n := len(poster.posted()); n != week+1 {
			t.Fatalf("week %d: %d posts in all, want %d", week+1, n, week+1)
		}
		clock.Advance(24 * time.Hour)
	}
	if diff := cmp.Diff([]string{"2026-W10", "2026-W11", "2026-W12"}, summaryRecords(t, a.store)); diff != "" {
		t.Errorf("summary.posted records (-want +got):\n%s", diff)
	}
}

// TestSummaryCrashBetweenPostAndRecordPostsAgain documents the at-least-once choice: a
// process that dies after posting but before recording leaves the week unrecorded, and the
// next process posts it again once the dead one's lease has expired.
func TestSummaryCrashBetweenPostAndRecordPostsAgain(t *testing.T) {
	clock := clocktest.New(sumSlot.Add(-time.Hour))
	path := filepath.Join(t.TempDir(), "ab.db")
	poster := &sumPoster{}
	dying := sumOpen(t, clock, path)
	stop := runSummary(t, dying.summary(t, clock, "i_dying", poster, &failingRecorder{n: -1, next: dying.mgr}))
	idle(t, clock, 1)
	clock.Set(sumSlot)
	idle(t, clock, 1)
	stop() // the crash: posted, never recorded
	if n := len(poster.posted()); n != 1 {
		t.Fatalf("%d posts before the crash, want 1", n)
	}

	clock.Advance(30 * time.Second)
	next := sumOpen(t, clock, path)
	runSummary(t, next.summary(t, clock, "i_next", poster, nil))
	idle(t, clock, 1)
	for range 11 {
		if len(poster.posted()) == 2 {
			break
		}
		clock.Advance(time.Minute)
		idle(t, clock, 1)
	}
	got := poster.posted()
	if len(got) != 2 || !got[1].until.Equal(sumSlot) {
		t.Fatalf("posts = %+v, want the week posted again after the lease expired", got)
	}
	if diff := cmp.Diff([]string{"2026-W10"}, summaryRecords(t, next.store)); diff != "" {
		t.Errorf("summary.posted records (-want +got):\n%s", diff)
	}
	clock.Advance(time.Hour)
	idle(t, clock, 1)
	if n := len(poster.posted()); n != 2 {
		t.Errorf("%d posts, want no third one once recorded", n)
	}
}

func TestSummaryRetries(t *testing.T) {
	cases := map[string]struct {
		postFails, recordFails int
		wantAttempts           int
		// minutes after the slot at which the week is recorded: backoff 1m, then 2m.
		recordedAfter time.Duration
	}{
		"post fails twice":  {postFails: 2, wantAttempts: 3, recordedAfter: 3 * time.Minute},
		"record fails once": {recordFails: 1, wantAttempts: 1, recordedAfter: time.Minute},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			clock := clocktest.New(sumSlot.Add(-time.Hour))
			p := sumOpen(t, clock, filepath.Join(t.TempDir(), "ab.db"))
			poster := &sumPoster{failN: tc.postFails}
			runSummary(t, p.summary(t, clock, "i_one", poster, &failingRecorder{n: tc.recordFails, next: p.mgr}))
			idle(t, clock, 1)
			clock.Set(sumSlot)
			idle(t, clock, 1)
			for clock.Now().Before(sumSlot.Add(tc.recordedAfter)) {
				if len(summaryRecords(t, p.store)) != 0 {
					t.Fatalf("recorded at %s, before %s", clock.Now(), sumSlot.Add(tc.recordedAfter))
				}
				clock.Advance(time.Minute)
				idle(t, clock, 1)
			}
			clock.Advance(time.Hour)
			idle(t, clock, 1)
			if diff := cmp.Diff([]string{"2026-W10"}, summaryRecords(t, p.store)); diff != "" {
				t.Errorf("summary.posted records (-want +got):\n%s", diff)
			}
			poster.mu.Lock()
			attempts, posts := poster.attempts, len(poster.posts)
			poster.mu.Unlock()
			if attempts != tc.wantAttempts || posts != 1 {
				t.Errorf("%d post attempts, %d posts; want %d attempts and one post", attempts, posts, tc.wantAttempts)
			}
		})
	}
}

// TestSummaryAtStart: what a process starting after the scheduled time does with the week.
func TestSummaryAtStart(t *testing.T) {
	cases := map[string]struct {
		now          time.Time
		earlierWeek  bool // a summary of the week before was recorded
		wantPostedAt time.Time
	}{
		"new installation, two days after the slot: waits for the next Monday": {
			now: sumSlot.Add(48 * time.Hour), wantPostedAt: sumSlot.AddDate(0, 0, 7)},
		"new installation, 30 minutes after the slot: posts now": {
			now: sumSlot.Add(30 * time.Minute), wantPostedAt: sumSlot.Add(30 * time.Minute)},
		"summaries were posted before, down on Monday: posts the missed week now": {
			now: sumSlot.Add(48 * time.Hour), earlierWeek: true, wantPostedAt: sumSlot.Add(48 * time.Hour)},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			clock := clocktest.New(sumPrevSlot.Add(time.Hour))
			p := sumOpen(t, clock, filepath.Join(t.TempDir(), "ab.db"))
			if tc.earlierWeek {
				if err := p.mgr.Record(t.Context(), &audit.Event{Actor: grants.SystemActor(), Action: audit.ActionSummaryPosted,
					Reason: "weekly summary", Evidence: map[string]string{"week": broker.WeekID(sumPrevSlot)}}); err != nil {
					t.Fatal(err)
				}
			}
			clock.Set(tc.now)
			poster := &sumPoster{}
			runSummary(t, p.summary(t, clock, "i_one", poster, nil))
			idle(t, clock, 1)
			if !tc.wantPostedAt.Equal(tc.now) {
				if n := len(poster.posted()); n != 0 {
					t.Fatalf("posted %d summaries at start, want none", n)
				}
				clock.Set(tc.wantPostedAt)
				idle(t, clock, 1)
			}
			got := poster.posted()
			if len(got) != 1 {
				t.Fatalf("%d posts by %s, want 1", len(got), tc.wantPostedAt)
			}
			if !got[0].until.Equal(lastMonday9(tc.wantPostedAt)) {
				t.Errorf("posted the week ending %s, want the week ending %s", got[0].until, lastMonday9(tc.wantPostedAt))
			}
		})
	}
}

// lastMonday9 is the latest Monday 09:00 UTC at or before t, worked out day by day.
func lastMonday9(t time.Time) time.Time {
	for d := t.Truncate(time.Minute); ; d = d.Add(-time.Minute) {
		if d.Weekday() == time.Monday && d.Hour() == 9 && d.Minute() == 0 {
			return d
		}
	}
}

func TestSummarySchedule(t *testing.T) {
	mk := func(day time.Weekday, h, m int) *broker.Summary {
		return broker.NewSummary(broker.SummaryDeps{Clock: clocktest.New(sumSlot), Events: nopSearcher{}, Leases: nopLeases{},
			Recorder: nopRecorder{}, Poster: &sumPoster{}, Channel: sumChannel, Weekday: day, Hour: h, Minute: m})
	}
	cases := []struct {
		name string
		s    *broker.Summary
		now  time.Time
		want time.Time
		week string
	}{
		{"at the minute", mk(time.Monday, 9, 0), sumSlot, sumSlot, "2026-W10"},
		{"a millisecond before", mk(time.Monday, 9, 0), sumSlot.Add(-time.Millisecond), sumPrevSlot, "2026-W09"},
		{"later the same day", mk(time.Monday, 9, 0), sumSlot.Add(14 * time.Hour), sumSlot, "2026-W10"},
		{"Sunday night", mk(time.Monday, 9, 0), sumSlot.Add(6*24*time.Hour + 14*time.Hour), sumSlot, "2026-W10"},
		{"friday 17:30 schedule, on Monday", mk(time.Friday, 17, 30), sumSlot, time.Date(2026, 2, 27, 17, 30, 0, 0, time.UTC), "2026-W09"},
		{"sunday schedule across the year", mk(time.Sunday, 23, 59), time.Date(2027, 1, 1, 12, 0, 0, 0, time.UTC), time.Date(2026, 12, 27, 23, 59, 0, 0, time.UTC), "2026-W52"},
		{"first ISO week of 2027", mk(time.Monday, 0, 0), time.Date(2027, 1, 5, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 4, 0, 0, 0, 0, time.UTC), "2027-W01"},
	}
	for _, tc := range cases {
		got := tc.s.LastSlot(tc.now)
		if !got.Equal(tc.want) || broker.WeekID(got) != tc.week {
			t.Errorf("%s: LastSlot(%s) = %s (%s), want %s (%s)", tc.name, tc.now, got, broker.WeekID(got), tc.want, tc.week)
		}
	}
}

func TestNewSummaryRefusesBadDeps(t *testing.T) {
	good := broker.SummaryDeps{Clock: clocktest.New(sumSlot), Events: nopSearcher{}, Leases: nopLeases{}, Recorder: nopRecorder{},
		Poster: &sumPoster{}, Channel: sumChannel, Weekday: time.Monday, Hour: 9}
	for name, mutate := range map[string]func(*broker.SummaryDeps){
		"no channel": func(d *broker.SummaryDeps) { d.Channel = "" },
		"no poster":  func(d *broker.SummaryDeps) { d.Poster = nil },
		"hour 24":    func(d *broker.SummaryDeps) { d.Hour = 24 },
		"minute 60":  func(d *broker.SummaryDeps) { d.Minute = 60 },
	} {
		d := good
		mutate(&d)
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: NewSummary accepted it", name)
				}
			}()
			broker.NewSummary(d)
		}()
	}
}

// sumLogWriter sends the summary's log lines to the test log.
type sumLogWriter struct{ t *testing.T }

func (w sumLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

type nopSearcher struct{}

func (nopSearcher) Search(context.Context, audit.Query) ([]audit.Event, error) { return nil, nil }

type nopLeases struct{}

func (nopLeases) AcquireLease(context.Context, string, string, time.Duration) (bool, error) {
	return true, nil
}

type nopRecorder struct{}

func (nopRecorder) Record(context.Context, ...*audit.Event) error { return nil }

// sumCheckpoints is a fake SummaryCheckpoints.
type sumCheckpoints struct {
	c   audit.ReportCheckpoint
	err error
}

func (f sumCheckpoints) LatestCheckpoint(context.Context) (audit.ReportCheckpoint, bool, error) {
	return f.c, f.err == nil, f.err
}

// TestSummaryCarriesLatestCheckpoint: the posted report names the latest checkpoint; when it
// cannot be read the summary is still posted, without it.
func TestSummaryCarriesLatestCheckpoint(t *testing.T) {
	cp := audit.ReportCheckpoint{Seq: 42, Hash: audit.Genesis, Time: sumSlot.Add(-time.Hour), Witnesses: 2, Published: 1}
	tests := []struct {
		name string
		cps  sumCheckpoints
		want string
	}{
		{"known", sumCheckpoints{c: cp}, cp.String()},
		{"unreadable", sumCheckpoints{err: errors.New("database is locked")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := clocktest.New(sumSlot.Add(-time.Hour))
			p := sumOpen(t, clock, filepath.Join(t.TempDir(), "ab.db"))
			poster := &sumPoster{}
			s := broker.NewSummary(broker.SummaryDeps{
				Clock: clock, Events: p.store, Leases: p.store, Recorder: p.mgr, Poster: poster, Channel: sumChannel,
				Weekday: time.Monday, Hour: 9, Holder: "i_one", Checkpoints: tt.cps,
			})
			runSummary(t, s)
			idle(t, clock, 1)
			clock.Set(sumSlot)
			idle(t, clock, 1)
			got := poster.posted()
			if len(got) != 1 || got[0].checkpoint != tt.want {
				t.Fatalf("posts %+v, want one carrying checkpoint %q", got, tt.want)
			}
		})
	}
}
