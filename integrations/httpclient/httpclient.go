// Package httpclient builds the one retrying HTTP client that every upstream SDK in
// accessbroker uses (slack-go, go-pagerduty, aws-sdk-go-v2, go-github). It is a thin,
// opinionated layer over github.com/hashicorp/go-retryablehttp:
//
//   - retries connection errors, 5xx except 501, 429, and GitHub's rate-limit 403s (a 403 that
//     carries Retry-After, or X-RateLimit-Remaining: 0);
//   - honours Retry-After (seconds or HTTP date) on any retried response, capped by
//     Options.MaxRetryAfter so that a server cannot park a revocation for an hour;
//   - otherwise waits with jittered exponential backoff between WaitMin and WaitMax;
//   - logs through log/slog and never logs request bodies, headers or URL query strings
//     (slack-go sends the bot token in the form body; some APIs take tokens in the query).
//
// # Retried POSTs
//
// go-retryablehttp retries every method, POST included, because it cannot know whether a
// request had an effect before the connection broke or the 5xx came back. accessbroker accepts
// that because every write it sends through this client is idempotent or checked by its caller:
// AWS PutRolePolicy/DeleteRolePolicy replace whole documents, AssumeRole only mints another
// short-lived session, Identity Center assignment calls are checked against
// ListAccountAssignments and answer ConflictException on duplicates, GitHub team membership
// PUT/DELETE are idempotent, and Slack/PagerDuty posts are at worst duplicated notices. A caller
// for which a duplicate would do harm must not use this client for that call.
package httpclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/accessbroker/accessbroker/grants"
)

// Defaults applied by New when an Options field is zero.
const (
	DefaultRetryMax      = 4
	DefaultWaitMin       = 200 * time.Millisecond
	DefaultWaitMax       = 5 * time.Second
	DefaultMaxRetryAfter = 30 * time.Second
)

// Options configures New. The zero value is usable: every zero field takes its default.
type Options struct {
	// Logger receives retry and failure messages (never bodies, headers or query strings).
	// Nil discards them.
	Logger *slog.Logger
	// RetryMax is how many times a request is retried after the first attempt (default 4, so 5
	// attempts in all). A negative value disables retries.
	RetryMax int
	// WaitMin and WaitMax bound the exponential backoff used when the server gives no
	// Retry-After (defaults 200ms and 5s).
	WaitMin, WaitMax time.Duration
	// MaxRetryAfter caps how long a server's Retry-After (or rate-limit reset) may make us wait
	// before one retry (default 30s). Tests set it low.
	MaxRetryAfter time.Duration
	// Timeout bounds each attempt, not the whole retried call (0: no per-attempt timeout; the
	// request's context still bounds everything).
	Timeout time.Duration
	// Transport performs the attempts (default: a pooled cleanhttp transport).
	Transport http.RoundTripper
	// RootCAs, when set and Transport is nil, replaces the system roots the default transport
	// trusts (for an upstream behind a private CA, such as AWS_CA_BUNDLE).
	RootCAs *x509.CertPool
	// ReturnLastResponse makes an exhausted retry return the last response (status and body
	// intact) instead of an error, so that an SDK can build its own typed error from it (the
	// AWS SDK's "api error Throttling", slack-go's RateLimitedError, go-github's
	// RateLimitError). When false, exhausted retries return an error naming the method, the
	// URL without its query, the number of attempts and the last status.
	ReturnLastResponse bool
	// Clock reads the time to interpret Retry-After dates and X-RateLimit-Reset (default
	// grants.RealClock). The waits themselves are retryablehttp's real timers.
	Clock grants.Clock
}

func (o Options) withDefaults() Options {
	if o.RetryMax == 0 {
		o.RetryMax = DefaultRetryMax
	}
	if o.RetryMax < 0 {
		o.RetryMax = 0
	}
	if o.WaitMin <= 0 {
		o.WaitMin = DefaultWaitMin
	}
	if o.WaitMax <= 0 {
		o.WaitMax = DefaultWaitMax
	}
	if o.WaitMax < o.WaitMin {
		o.WaitMax = o.WaitMin
	}
	if o.MaxRetryAfter <= 0 {
		o.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if o.Clock == nil {
		o.Clock = grants.RealClock{}
	}
	if o.Transport == nil {
		t := cleanhttp.DefaultPooledTransport()
		if o.RootCAs != nil {
			t.TLSClientConfig = &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12}
		}
		o.Transport = t
	}
	return o
}

// New returns a standard *http.Client whose transport retries as described in the package
// documentation. It is safe for concurrent use; build one per upstream and share it.
func New(opts Options) *http.Client {
	return NewRetryable(opts).StandardClient()
}

// NewRetryable returns the underlying *retryablehttp.Client configured like New, for callers
// that want retryablehttp's own API.
func NewRetryable(opts Options) *retryablehttp.Client {
	o := opts.withDefaults()
	rc := &retryablehttp.Client{
		HTTPClient:   &http.Client{Transport: o.Transport, Timeout: o.Timeout},
		RetryWaitMin: o.WaitMin,
		RetryWaitMax: o.WaitMax,
		RetryMax:     o.RetryMax,
		CheckRetry:   retryPolicy,
		Backoff:      backoff(o.MaxRetryAfter, o.Clock.Now),
	}
	// retryablehttp panics on a typed nil; only set a logger when there is one.
	if o.Logger != nil {
		rc.Logger = NewLeveledLogger(o.Logger)
	}
	rc.ErrorHandler = finalFailure(o.Logger, o.ReturnLastResponse)
	return rc
}

// finalFailure is called once when a request failed for good (retries exhausted, or an error
// that is not retried). It logs the failure once at ERROR (the attempts before it were logged
// at WARN), except when the caller's context ended, and returns what the caller gets: the
// last response (returnLast) or an error naming the request and the attempts.
func finalFailure(log *slog.Logger, returnLast bool) retryablehttp.ErrorHandler {
	return func(resp *http.Response, err error, attempts int) (*http.Response, error) {
		what := ""
		if resp != nil && resp.Request != nil {
			what = resp.Request.Method + " " + RedactQuery(resp.Request.URL.String()) + " "
		}
		if log != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			attrs := []any{"component", "httpclient", "attempts", attempts, "error", scrubValue(err)}
			if resp != nil {
				attrs = append(attrs, "status", resp.StatusCode)
			}
			if what != "" {
				attrs = append(attrs, "request", strings.TrimSpace(what))
			}
			log.Error("request failed; no more retries", attrs...)
		}
		if returnLast {
			return passLastResponse(resp, err, attempts)
		}
		if resp != nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // so the connection is reused
			resp.Body.Close()
		}
		if err == nil {
			return nil, fmt.Errorf("%sgiving up after %d attempt(s)", what, attempts)
		}
		return nil, fmt.Errorf("%sgiving up after %d attempt(s): %w", what, attempts, err)
	}
}

// passLastResponse hands the last response of an exhausted retry to the caller as if it had
// succeeded at the HTTP level; without a response (connection error) it returns the error.
func passLastResponse(resp *http.Response, err error, _ int) (*http.Response, error) {
	if resp != nil {
		return resp, nil
	}
	return nil, err
}

// retryPolicy decides whether to retry. When it retries a response it returns an error naming
// the status, which becomes the error of an exhausted retry.
func retryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		// Connection errors: retried, except the permanent ones retryablehttp recognises
		// (bad scheme, bad header, redirect loops, untrusted certificate).
		retry, perr := retryablehttp.ErrorPropagatedRetryPolicy(ctx, nil, err)
		if perr == nil {
			perr = err
		}
		return retry, perr
	}
	if Retryable(resp) {
		return true, &StatusError{StatusCode: resp.StatusCode, Status: resp.Status}
	}
	return false, nil
}

// Retryable reports whether a response is one this client retries: 429, 5xx except 501 (and
// the invalid status 0), and a GitHub rate-limit 403 (Retry-After present or
// X-RateLimit-Remaining: 0).
func Retryable(resp *http.Response) bool {
	switch code := resp.StatusCode; {
	case code == http.StatusTooManyRequests:
		return true
	case code == 0, code >= 500 && code != http.StatusNotImplemented:
		return true
	case code == http.StatusForbidden:
		return resp.Header.Get("Retry-After") != "" || resp.Header.Get("X-RateLimit-Remaining") == "0"
	}
	return false
}

// StatusError is the error an exhausted retry reports (wrapped) when the last attempt got a
// retryable status and Options.ReturnLastResponse is false.
type StatusError struct {
	StatusCode int
	Status     string // e.g. "503 Service Unavailable"
}

func (e *StatusError) Error() string {
	if e.Status != "" {
		return "server answered " + e.Status
	}
	return "server answered HTTP " + strconv.Itoa(e.StatusCode)
}

// backoff honours Retry-After (and GitHub's X-RateLimit-Reset when the limit is used up)
// capped by maxRetryAfter, and otherwise waits a jittered exponential backoff.
func backoff(maxRetryAfter time.Duration, now func() time.Time) retryablehttp.Backoff {
	return func(min, max time.Duration, attempt int, resp *http.Response) time.Duration {
		if resp != nil {
			if d, ok := serverWait(resp, now); ok {
				return min64(d, maxRetryAfter)
			}
		}
		return jittered(min, max, attempt)
	}
}

// serverWait reads how long the server asked us to wait. Retry-After dates and rate-limit
// resets are wall-clock times set by the server, compared with now.
func serverWait(resp *http.Response, now func() time.Time) (time.Duration, bool) {
	if v := resp.Header.Get("Retry-After"); v != "" {
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
			if secs < 0 {
				return 0, false
			}
			if secs > int64(24*time.Hour/time.Second) {
				secs = int64(24 * time.Hour / time.Second)
			}
			return time.Duration(secs) * time.Second, true
		}
		if at, err := http.ParseTime(v); err == nil {
			return max(at.Sub(now()), 0), true
		}
	}
	if resp.Header.Get("X-RateLimit-Remaining") == "0" {
		if reset, err := strconv.ParseInt(resp.Header.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			return max(time.Unix(reset, 0).Sub(now()), 0), true
		}
	}
	return 0, false
}

// jittered is "equal jitter" exponential backoff: half of min·2^attempt (capped at max) plus a
// random part of the other half, so concurrent clients spread out but never retry instantly.
func jittered(min, max time.Duration, attempt int) time.Duration {
	d := max
	if attempt < 32 {
		if e := min << uint(attempt); e > 0 && e < max {
			d = e
		}
	}
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half+1)
}

func min64(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}

// NewLeveledLogger adapts an slog.Logger to retryablehttp.LeveledLogger. Every value is
// scrubbed of URL query strings (retryablehttp logs full URLs, and url.Error messages embed
// them); retryablehttp itself never passes bodies or headers to its logger.
func NewLeveledLogger(l *slog.Logger) retryablehttp.LeveledLogger {
	return leveled{l: l}
}

type leveled struct{ l *slog.Logger }

// retryablehttp logs at Error each attempt that failed ("request failed") and at Debug each
// retry it is about to make ("retrying request"): both are part of a retry, so both are WARN
// here. The final failure is logged once, at ERROR, by finalFailure.
func (a leveled) Error(msg string, kv ...any) { a.log(slog.LevelWarn, msg, kv) }
func (a leveled) Info(msg string, kv ...any)  { a.log(slog.LevelInfo, msg, kv) }
func (a leveled) Debug(msg string, kv ...any) {
	level := slog.LevelDebug
	if msg == "retrying request" {
		level = slog.LevelWarn
	}
	a.log(level, msg, kv)
}
func (a leveled) Warn(msg string, kv ...any) { a.log(slog.LevelWarn, msg, kv) }

func (a leveled) log(level slog.Level, msg string, kv []any) {
	ctx := context.Background() // retryablehttp gives the logger no context
	if !a.l.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, len(kv)/2+1)
	attrs = append(attrs, slog.String("component", "httpclient"))
	for i := 0; i+1 < len(kv); i += 2 {
		key, ok := kv[i].(string)
		if !ok {
			key = fmt.Sprint(kv[i])
		}
		attrs = append(attrs, slog.Any(key, scrubValue(kv[i+1])))
	}
	a.l.LogAttrs(ctx, level, RedactQuery(msg), attrs...)
}

func scrubValue(v any) any {
	switch x := v.(type) {
	case time.Duration, int, int64, bool: // before fmt.Stringer, which time.Duration implements
		return x
	case string:
		return RedactQuery(x)
	case error:
		return RedactQuery(x.Error())
	case fmt.Stringer:
		return RedactQuery(x.String())
	default:
		return RedactQuery(fmt.Sprint(x))
	}
}

var queryRE = regexp.MustCompile(`(?i)(\b[a-z][a-z0-9+.-]*://[^\s?#"']*)\?[^\s#"']*`)

// RedactQuery replaces the query string of every URL in s with "?[REDACTED]".
func RedactQuery(s string) string {
	return queryRE.ReplaceAllString(s, "$1?[REDACTED]")
}

// IsStatus reports whether err is an exhausted retry whose last answer had the given status.
func IsStatus(err error, code int) bool {
	var se *StatusError
	return errors.As(err, &se) && se.StatusCode == code
}
