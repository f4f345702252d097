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
	"time"
	"unicode/utf8"

	"github.com/accessbroker/accessbroker/audit"
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
// everything queued so far (up to batch), so a busy proxy writes few large batches and an
// idle one writes each event at once. A write that has not succeeded within timeout (retries
// included) calls fail, which ends every session: no audit, no access.
type recorder struct {
	rec     Recorder
	log     *slog.Logger
	batch   int
	timeout time.Duration
	fail    func(error)
	ch      chan *audit.Event
	done    chan struct{}
}

func newRecorder(rec Recorder, log *slog.Logger, batch int, timeout time.Duration, fail func(error)) *recorder {
	return &recorder{rec: rec, log: log, batch: batch, timeout: timeout, fail: fail,
		ch: make(chan *audit.Event, 4*batch), done: make(chan struct{})}
}

// errAuditBacklog: the recorder did not accept an event in time.
var errAuditBacklog = errors.New("the audit log is not keeping up")

// add queues e. It waits at most the recorder's timeout for room (the audit log is slow or
// down) and then returns an error: the caller ends its session.
func (r *recorder) add(ctx context.Context, e *audit.Event) error {
	select {
	case r.ch <- e:
		return nil
	default:
	}
	t := time.NewTimer(r.timeout)
	defer t.Stop()
	select {
	case r.ch <- e:
		return nil
	case <-t.C:
		return fmt.Errorf("record %s: %w", e.Action, errAuditBacklog)
	case <-ctx.Done():
		return fmt.Errorf("record %s: %w", e.Action, ctx.Err())
	}
}

// run writes batches until stop is closed and the queue is empty.
func (r *recorder) run(stop <-chan struct{}) {
	defer close(r.done)
	buf := make([]*audit.Event, 0, r.batch)
	for {
		var e *audit.Event
		select {
		case e = <-r.ch:
		case <-stop:
			select {
			case e = <-r.ch:
			default:
				return
			}
		}
		buf = append(buf[:0], e)
	fill:
		for len(buf) < r.batch {
			select {
			case e := <-r.ch:
				buf = append(buf, e)
			default:
				break fill
			}
		}
		r.write(buf)
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
