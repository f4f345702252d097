package pgproxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// Audit actions of the session proxy (DESIGN.md: every one names its grant where there is one).
const (
	ActionSessionStarted     = audit.ActionSessionStarted
	ActionSessionStatement   = audit.ActionSessionStatement
	ActionSessionEnded       = audit.ActionSessionEnded
	ActionSessionLoginFailed = audit.ActionSessionLoginFailed
)

// Why a session ended (session.ended evidence "reason").
const (
	EndClientQuit       = "client_quit"       // Terminate
	EndClientLost       = "client_lost"       // the client's connection broke
	EndGrantRevoked     = "grant_revoked"     // the grant was revoked (or is being revoked)
	EndGrantExpired     = "grant_expired"     // the grant's expiry passed
	EndUpstreamLost     = "upstream_lost"     // the PostgreSQL server closed or broke the connection
	EndAuditUnavailable = "audit_unavailable" // statements could not be recorded in time (fail closed)
	EndProxyStopped     = "proxy_stopped"     // the broker is shutting down
	EndProtocolError    = "protocol_error"    // the client sent something the proxy cannot relay
)

// Why a login failed (session.login_failed evidence "reason").
const (
	LoginUnknownRole     = "unknown_role"     // no grant of a proxied resource has that role
	LoginWrongPassword   = "wrong_password"   // the password is not the grant's proxy password
	LoginGrantNotActive  = "grant_not_active" // the grant is revoked, being revoked or expired
	LoginTLSRequired     = "tls_required"     // a plaintext startup
	LoginUpstreamRefused = "upstream_refused" // the PostgreSQL server refused the grant's role
	LoginProtocol        = "protocol_error"   // no password, a replication connection, …
)

// Recorder appends audit-only events to the chain (grants.Manager.Record).
type Recorder interface {
	Record(ctx context.Context, events ...*audit.Event) error
}

// recorder writes statement and end events in batches from one goroutine: each write takes
// everything queued so far (up to batch), waiting up to linger after the first for more, so a
// busy proxy writes few large batches (one transaction each) and an idle one writes each
// event within linger. A write that has not succeeded within timeout (retries included)
// calls fail, which ends every session: no audit, no access.
//
// A statement is queued as it finished (queueStatement) and its event (evidence, SHA-256 of
// the text) is built by the recorder's goroutine: none of that is on the relay's path.
type recorder struct {
	rec     Recorder
	log     *slog.Logger
	batch   int
	linger  time.Duration
	timeout time.Duration
	fail    func(error)
	build   func(*queuedStatement) *audit.Event
	scratch queuedStatement // the statement being built (see event)
	ch      chan queued
	full    chan struct{} // a batch is queued: the linger may end
	held    atomic.Int64  // events a lingering recorder holds, for queued
	done    chan struct{}
	// lingerClock times the linger: the wall clock (grants.RealClock), not Config.Clock (see
	// run); tests give it a fake clock.
	lingerClock grants.Clock
}

// queued is an event to write, or (e nil) a finished statement to make one of. The
// statement is held by value: one allocation less per statement on a busy proxy.
type queued struct {
	e  *audit.Event
	st queuedStatement
}

// queuedStatement is a finished statement of a session, not yet an event.
type queuedStatement struct {
	sessionID string
	grant     *grants.Grant
	st        Statement
}

// defaultLinger is how long the recorder waits after an event for more to write with it: a
// transaction per few statements costs more than the statements. On SQLite a commit writes
// every page it dirtied (the table's and each index's last page) and syncs, whatever the
// number of rows: at pgbench's pace (6,000 statements a second) 25 ms makes batches of ~150
// instead of ~30 and cuts the CPU time per recorded statement by a quarter
// (BenchmarkRecordStatements/paced-6k). Nothing waits on it: statements are answered as
// the server answers, and the fail-closed bound is the audit timeout, seconds.
const defaultLinger = 25 * time.Millisecond

func newRecorder(rec Recorder, log *slog.Logger, batch int, timeout time.Duration, fail func(error), build func(*queuedStatement) *audit.Event) *recorder {
	return &recorder{rec: rec, log: log, batch: batch, linger: defaultLinger, timeout: timeout, fail: fail, build: build,
		ch: make(chan queued, 4*batch), full: make(chan struct{}, 1), done: make(chan struct{}), lingerClock: grants.RealClock{}}
}

// errAuditBacklog: the recorder did not accept an event in time.
var errAuditBacklog = errors.New("the audit log is not keeping up")

// add queues e. It waits at most the recorder's timeout for room (the audit log is slow or
// down) and then returns an error: the caller ends its session.
func (r *recorder) add(ctx context.Context, e *audit.Event) error {
	return r.put(ctx, queued{e: e}, e.Action)
}

// addStatement queues a finished statement, like add.
func (r *recorder) addStatement(ctx context.Context, st *queuedStatement) error {
	return r.put(ctx, queued{st: *st}, ActionSessionStatement)
}

func (r *recorder) put(ctx context.Context, q queued, action audit.Action) error {
	select {
	case r.ch <- q:
		r.queued()
		return nil
	default:
	}
	t := time.NewTimer(r.timeout)
	defer t.Stop()
	select {
	case r.ch <- q:
		r.queued()
		return nil
	case <-t.C:
		return fmt.Errorf("record %s: %w", action, errAuditBacklog)
	case <-ctx.Done():
		return fmt.Errorf("record %s: %w", action, ctx.Err())
	}
}

// queued tells a lingering recorder when the queue and what it holds make a batch.
func (r *recorder) queued() {
	if int64(len(r.ch))+r.held.Load() >= int64(r.batch) {
		select {
		case r.full <- struct{}{}:
		default:
		}
	}
}

// event is q's event.
func (r *recorder) event(q queued) *audit.Event {
	if q.e != nil {
		return q.e
	}
	// Through a field of the recorder (only its goroutine builds): &q.st handed to build
	// would move every received q to the heap.
	r.scratch = q.st
	e := r.build(&r.scratch)
	r.scratch = queuedStatement{}
	return e
}

// run writes batches until stop is closed and the queue is empty.
func (r *recorder) run(stop <-chan struct{}) {
	defer close(r.done)
	buf := make([]*audit.Event, 0, r.batch)
	for {
		var q queued
		stopping := false
		select {
		case q = <-r.ch:
		case <-stop:
			select {
			case q = <-r.ch:
				stopping = true
			default:
				return
			}
		}
		buf = append(buf[:0], r.event(q))
		r.fill(&buf)
		if len(buf) < r.batch && !stopping && r.linger > 0 {
			// Wait a moment for more: the next events share this transaction. They wait in
			// the queue meanwhile, taken at once when the linger ends or a batch is queued
			// (put signals full), not one wake-up of this goroutine per event.
			// Wall time, not Config.Clock: the linger bounds how late an event is written,
			// it is no time of the record (a fake clock of the proxy's would hold events
			// back); only the recorder's own tests give lingerClock a fake one.
			select {
			case <-r.full: // from before this batch: the queue was drained since
			default:
			}
			r.held.Store(int64(len(buf)))
			if len(r.ch) < r.batch-len(buf) {
				linger := r.lingerClock.NewTimer(r.linger)
				select {
				case <-linger.C():
				case <-r.full:
				case <-stop:
				}
				linger.Stop()
			}
			r.held.Store(0)
			r.fill(&buf)
		}
		r.write(buf)
		clear(buf)
	}
}

// fill adds what is queued now to buf, up to batch.
func (r *recorder) fill(buf *[]*audit.Event) {
	for len(*buf) < r.batch {
		select {
		case q := <-r.ch:
			*buf = append(*buf, r.event(q))
		default:
			return
		}
	}
}

func (r *recorder) write(events []*audit.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		err := r.rec.Record(ctx, events...)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			r.log.Error("audit log unavailable: ending every proxied session", "events", len(events), "err", err)
			r.fail(fmt.Errorf("record %d session events: %w", len(events), err))
			return
		}
		r.log.Warn("recording session events failed; retrying", "events", len(events), "attempt", attempt+1, "err", err)
		t := time.NewTimer(min(50*time.Millisecond<<attempt, time.Second))
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// truncateText cuts s to at most limit bytes on a UTF-8 boundary.
func truncateText(s string, limit int) (string, bool) {
	if len(s) <= limit {
		return s, false
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut], true
}

// statementEvidence is the session.statement evidence: never a row; bind values only when
// the resource records them (st.Values).
func statementEvidence(sessionID string, st Statement, textLimit int) map[string]string {
	sum := sha256.Sum256([]byte(st.Text))
	text, truncated := truncateText(st.Text, textLimit)
	ev := map[string]string{
		"session_id":  sessionID,
		"order":       strconv.Itoa(st.Seq),
		"protocol":    st.Protocol,
		"text":        text,
		"text_sha256": hex.EncodeToString(sum[:]),
		"text_bytes":  strconv.Itoa(len(st.Text)),
		"params":      strconv.Itoa(st.Params),
		"duration":    audit.FormatDuration(st.End.Sub(st.Start)),
		"duration_us": strconv.FormatInt(st.End.Sub(st.Start).Microseconds(), 10),
	}
	if truncated {
		ev["text_truncated"] = "true"
	}
	if st.Values != nil {
		// A JSON array: strings, and null for NULL. Marshal cannot fail on these types.
		b, _ := json.Marshal(st.Values)
		ev["param_values"] = string(b)
		if st.ValuesCut {
			ev["param_values_truncated"] = "true"
		}
	}
	if st.Tag != "" {
		ev["tag"] = st.Tag
		ev["rows"] = strconv.FormatInt(st.Rows, 10)
	}
	if st.Commands > 1 {
		ev["commands"] = strconv.Itoa(st.Commands)
	}
	if st.Interrupted {
		ev["interrupted"] = "true"
	}
	if st.SQLState != "" {
		// The message is not recorded: PostgreSQL quotes input values in it.
		ev["sqlstate"] = st.SQLState
	}
	return ev
}
