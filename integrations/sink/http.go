package sink

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
)

// Headers of the HTTP sink protocol (docs/audit.md).
const (
	HeaderTimestamp = "X-Accessbroker-Timestamp" // Unix seconds when the batch was signed
	HeaderSignature = "X-Accessbroker-Signature" // "v1=" + hex HMAC-SHA256
	HeaderFirstSeq  = "X-Accessbroker-First-Seq"
	HeaderLastSeq   = "X-Accessbroker-Last-Seq"
	ContentType     = "application/x-ndjson"
)

// MinHMACSecret is the shortest HMAC secret an HTTP sink accepts (bytes).
const MinHMACSecret = 32

// Sign returns the signature header value of body sent at timestamp (Unix seconds):
// "v1=" + lowercase hex of HMAC-SHA256(secret, timestamp + "." + body).
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// HTTPConfig configures an HTTP sink.
type HTTPConfig struct {
	// URL receives the POSTed batches (httpclient.CheckBaseURL: https, or http on
	// loopback). Required.
	URL string
	// Secret signs every batch (HMAC-SHA256); at least MinHMACSecret bytes. A secret.
	Secret string
	// Format is how each event is written (one JSON object per line). Default audit.EventJSON.
	Format audit.EventFormat
	// Client sends the requests. It should not retry and should return the last response
	// (httpclient.Options{RetryMax: -1, ReturnLastResponse: true}):
	// the Streamer retries on its clock, and each attempt is signed afresh. Required.
	Client *http.Client
	// Clock stamps each attempt and reads Retry-After dates. Required.
	Clock grants.Clock
}

// HTTP POSTs each batch of events to an endpoint (protocol in docs/audit.md):
//
//   - the body is one event per line (Content-Type application/x-ndjson), each with its seq;
//   - X-Accessbroker-Timestamp is the Unix time of the attempt and X-Accessbroker-Signature
//     is Sign(secret, timestamp, body); the receiver recomputes it, compares in constant
//     time and refuses a timestamp more than 5 minutes from its clock;
//   - X-Accessbroker-First-Seq and X-Accessbroker-Last-Seq give the batch's range;
//   - any 2xx answer means stored. 429 and 503 may carry Retry-After (seconds or an HTTP
//     date), which the Streamer honours; every other answer is retried with backoff.
//
// A batch may arrive more than once (a lost answer, a crash before the cursor was saved):
// the receiver deduplicates by seq.
type HTTP struct {
	url    string
	secret []byte
	format audit.EventFormat
	client *http.Client
	clock  grants.Clock
}

var _ grants.Sink = (*HTTP)(nil)

// NewHTTP returns the HTTP sink of cfg.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	if _, err := httpclient.CheckBaseURL(cfg.URL); err != nil {
		return nil, fmt.Errorf("https sink url: %w", err)
	}
	if len(cfg.Secret) < MinHMACSecret {
		return nil, fmt.Errorf("https sink %s: the HMAC secret must be at least %d bytes", httpclient.RedactQuery(cfg.URL), MinHMACSecret)
	}
	if cfg.Client == nil || cfg.Clock == nil {
		return nil, errors.New("https sink: an HTTP client and a clock are required")
	}
	if cfg.Format == "" {
		cfg.Format = audit.EventJSON
	}
	if _, err := audit.ParseEventFormat(string(cfg.Format)); err != nil {
		return nil, fmt.Errorf("https sink: %w", err)
	}
	return &HTTP{url: cfg.URL, secret: []byte(cfg.Secret), format: cfg.Format, client: cfg.Client, clock: cfg.Clock}, nil
}

// Name is "https " and the URL without its query (never the secret).
func (h *HTTP) Name() string { return "https " + httpclient.RedactQuery(h.url) }

// DeliveryError is a refused batch: the status, and how long the receiver asked to wait.
type DeliveryError struct {
	StatusCode int
	Status     string
	Wait       time.Duration // from Retry-After; 0 when absent
}

func (e *DeliveryError) Error() string {
	if e.Wait > 0 {
		return fmt.Sprintf("answered %s (Retry-After %s)", e.Status, e.Wait)
	}
	return "answered " + e.Status
}

// RetryAfter implements grants.RetryAfterer.
func (e *DeliveryError) RetryAfter() time.Duration { return e.Wait }

// Deliver implements grants.Sink: one signed POST of every event.
func (h *HTTP) Deliver(ctx context.Context, events []audit.Event) error {
	var body bytes.Buffer
	for _, e := range events {
		line, err := h.format.Encode(e)
		if err != nil {
			return fmt.Errorf("%s: encode seq %d: %w", h.Name(), e.Seq, err)
		}
		body.Write(line)
		body.WriteByte('\n')
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body.Bytes()))
	if err != nil {
		return fmt.Errorf("%s: %w", h.Name(), err)
	}
	ts := strconv.FormatInt(h.clock.Now().Unix(), 10)
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(h.secret, ts, body.Bytes()))
	req.Header.Set(HeaderFirstSeq, strconv.FormatInt(events[0].Seq, 10))
	req.Header.Set(HeaderLastSeq, strconv.FormatInt(events[len(events)-1].Seq, 10))
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: POST: %w", h.Name(), err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	return fmt.Errorf("%s: POST: %w", h.Name(), &DeliveryError{StatusCode: resp.StatusCode, Status: resp.Status, Wait: retryAfter(resp.Header.Get("Retry-After"), h.clock.Now())})
}

// retryAfter reads a Retry-After value: seconds, or an HTTP date compared with now.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Duration(min(max(secs, 0), 86400)) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(at.Sub(now), 0)
	}
	return 0
}
