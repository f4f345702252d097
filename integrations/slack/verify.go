// Package slack is accessbroker's Slack front door: the HTTP handlers for the /access slash
// command and for interactive messages (buttons), the v0 request-signature verifier, the
// command grammar, the Block Kit messages, and the broker ports implemented on slack-go
// (Notifier, Directory, usergroup membership).
//
// Every inbound request is verified with our own verifier (the injected clock decides the
// 5-minute window) before anything else is parsed; the handlers acknowledge Slack within its
// 3-second limit and finish the work in the background.
package slack

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/grants"
)

// Header names Slack signs requests with (matched case-insensitively, as HTTP headers are).
const (
	HeaderSignature = "X-Slack-Signature"
	HeaderTimestamp = "X-Slack-Request-Timestamp"
)

// DefaultMaxBody is the largest request body the verifier reads. Slash commands are a few
// hundred bytes and interaction payloads a few kilobytes (a message with its blocks); 64 KiB
// leaves room without letting a caller make us buffer megabytes before the signature check.
const DefaultMaxBody = 64 << 10

// SignatureWindow is how far a request's timestamp may be from now, in either direction.
const SignatureWindow = 5 * time.Minute

// Verification failures. Each is wrapped with details; handlers answer 401 for all of them.
var (
	ErrBodyTooLarge     = errors.New("request body too large")
	ErrMissingHeaders   = errors.New("missing Slack signature headers")
	ErrBadTimestamp     = errors.New("malformed Slack request timestamp")
	ErrStaleTimestamp   = errors.New("stale Slack request timestamp (older than the signature window)")
	ErrFutureTimestamp  = errors.New("future Slack request timestamp (beyond the signature window)")
	ErrMalformedSig     = errors.New("malformed Slack signature")
	ErrSignatureInvalid = errors.New("mismatched Slack signature: the request was not signed with a configured signing secret")
)

// Verifier checks Slack's v0 request signatures: HMAC-SHA256, keyed with a signing secret,
// over "v0:" + X-Slack-Request-Timestamp + ":" + raw body, compared in constant time, with
// the timestamp within SignatureWindow of the injected clock. Several secrets may be
// configured so that a secret can be rotated without downtime; a request signed with any of
// them is accepted. A Verifier is safe for concurrent use.
type Verifier struct {
	secrets [][]byte
	clock   grants.Clock
	maxBody int64
}

// NewVerifier returns a verifier for the given signing secrets (at least one, none empty).
// maxBody <= 0 means DefaultMaxBody.
func NewVerifier(clock grants.Clock, maxBody int64, secrets ...string) (*Verifier, error) {
	if clock == nil {
		return nil, errors.New("slack verifier: a clock is required")
	}
	if len(secrets) == 0 {
		return nil, errors.New("slack.signing_secret is empty: copy the app's Signing Secret from api.slack.com/apps → Basic Information")
	}
	v := &Verifier{clock: clock, maxBody: maxBody}
	if v.maxBody <= 0 {
		v.maxBody = DefaultMaxBody
	}
	for i, s := range secrets {
		if strings.TrimSpace(s) == "" {
			return nil, fmt.Errorf("slack signing secret #%d is empty: copy the app's Signing Secret from api.slack.com/apps → Basic Information", i+1)
		}
		v.secrets = append(v.secrets, []byte(s))
	}
	return v, nil
}

// MaxBody is the body size limit in bytes.
func (v *Verifier) MaxBody() int64 { return v.maxBody }

// ReadRequest reads r's body, refusing bodies larger than the limit before reading them
// (Content-Length) or while reading them (http.MaxBytesReader), then verifies the signature.
// It returns the raw body, which the caller parses only after a nil error. w may be nil.
func (v *Verifier) ReadRequest(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > v.maxBody {
		return nil, fmt.Errorf("%w: Content-Length %d exceeds %d bytes", ErrBodyTooLarge, r.ContentLength, v.maxBody)
	}
	if r.Body == nil {
		return nil, v.Verify(r.Header, nil)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, v.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrBodyTooLarge, v.maxBody)
		}
		return nil, fmt.Errorf("read Slack request body: %w", err)
	}
	if err := v.Verify(r.Header, body); err != nil {
		return nil, err
	}
	return body, nil
}

// Verify checks the signature headers against body. It returns nil only when the timestamp
// is within the window and the signature matches one of the secrets.
func (v *Verifier) Verify(h http.Header, body []byte) error {
	if int64(len(body)) > v.maxBody {
		return fmt.Errorf("%w: %d bytes exceeds %d", ErrBodyTooLarge, len(body), v.maxBody)
	}
	sigHeader, tsHeader := h.Get(HeaderSignature), h.Get(HeaderTimestamp)
	if sigHeader == "" || tsHeader == "" {
		return fmt.Errorf("%w: need %s and %s", ErrMissingHeaders, HeaderSignature, HeaderTimestamp)
	}
	ts, err := parseTimestamp(tsHeader)
	if err != nil {
		return err
	}
	now := v.clock.Now().Unix()
	window := int64(SignatureWindow / time.Second)
	switch {
	case now-ts > window:
		return fmt.Errorf("%w: signed %ds ago, the limit is %ds", ErrStaleTimestamp, now-ts, window)
	case ts-now > window:
		return fmt.Errorf("%w: %ds ahead, the limit is %ds", ErrFutureTimestamp, ts-now, window)
	}
	hexSig, ok := strings.CutPrefix(sigHeader, "v0=")
	if !ok {
		return fmt.Errorf("%w: want v0=<hex>", ErrMalformedSig)
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: want v0= and %d hex characters", ErrMalformedSig, 2*sha256.Size)
	}
	matched := false
	for _, secret := range v.secrets {
		if hmac.Equal(got, Sign(secret, tsHeader, body)) {
			matched = true // keep going: the time taken does not depend on which secret matched
		}
	}
	if !matched {
		return ErrSignatureInvalid
	}
	return nil
}

// Sign returns the raw v0 HMAC-SHA256 of "v0:" + timestamp + ":" + body under secret.
func Sign(secret []byte, timestamp string, body []byte) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("v0:"))
	mac.Write([]byte(timestamp))
	mac.Write([]byte(":"))
	mac.Write(body)
	return mac.Sum(nil)
}

// SignatureHeader returns the X-Slack-Signature value Slack would send for body at timestamp.
func SignatureHeader(secret, timestamp string, body []byte) string {
	return "v0=" + hex.EncodeToString(Sign([]byte(secret), timestamp, body))
}

// parseTimestamp accepts Unix seconds as 1 to 12 ASCII digits: no sign, no spaces, no
// fraction, so that a caller cannot present one timestamp in two spellings.
func parseTimestamp(s string) (int64, error) {
	if len(s) == 0 || len(s) > 12 {
		return 0, fmt.Errorf("%w: want Unix seconds", ErrBadTimestamp)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w: want Unix seconds", ErrBadTimestamp)
		}
	}
	ts, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: want Unix seconds", ErrBadTimestamp)
	}
	return ts, nil
}
