package witness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
)

// maxHTTPBody bounds what Checkpoints reads from an HTTP witness (about 250 000 checkpoints).
const maxHTTPBody = 64 << 20

// HTTPConfig configures an HTTP witness.
type HTTPConfig struct {
	// URL receives POSTs and answers GETs (httpclient.CheckBaseURL: https, or http on
	// loopback). Required.
	URL string
	// BearerToken, when set, is sent as "Authorization: Bearer …". A secret.
	BearerToken string
	// Client is the HTTP client (integrations/httpclient.New, which retries). Required.
	Client *http.Client
}

// HTTP is a witness reached over HTTPS (protocol in docs/audit.md):
//
//   - Publish: POST URL with the checkpoint's JSON as the body, Content-Type
//     application/json; any 2xx answer means stored.
//   - Checkpoints: GET URL, Accept "application/json, application/x-ndjson"; the answer is a
//     JSON array of checkpoint objects, or one object per line.
type HTTP struct {
	url, token string
	client     *http.Client
}

var _ grants.Witness = (*HTTP)(nil)

// NewHTTP returns the HTTP witness of cfg.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	if _, err := httpclient.CheckBaseURL(cfg.URL); err != nil {
		return nil, fmt.Errorf("https witness url: %w", err)
	}
	if cfg.Client == nil {
		return nil, errors.New("https witness: an HTTP client is required")
	}
	return &HTTP{url: cfg.URL, token: cfg.BearerToken, client: cfg.Client}, nil
}

// Name is the URL without its query (never the token).
func (h *HTTP) Name() string { return httpclient.RedactQuery(h.url) }

func (h *HTTP) do(ctx context.Context, method string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, h.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h.Name(), err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	} else {
		req.Header.Set("Accept", "application/json, application/x-ndjson")
	}
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", h.Name(), method, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %s: %w", h.Name(), method, &httpclient.StatusError{StatusCode: resp.StatusCode, Status: resp.Status})
	}
	return resp, nil
}

// Publish POSTs c; a 2xx answer means the witness stored it.
func (h *HTTP) Publish(ctx context.Context, c audit.Checkpoint) error {
	body, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("%s: %w", h.Name(), err)
	}
	resp, err := h.do(ctx, http.MethodPost, body)
	if err != nil {
		return fmt.Errorf("publish checkpoint seq %d: %w", c.Seq, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	return resp.Body.Close()
}

// Checkpoints GETs every checkpoint the witness holds: a JSON array, or JSON lines (read as
// ReadJSONLines does, torn lines reported with grants.ErrWitnessIncomplete).
func (h *HTTP) Checkpoints(ctx context.Context) ([]audit.Checkpoint, error) {
	resp, err := h.do(ctx, http.MethodGet, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	// Read one byte past the limit: an answer cut at the limit must not pass for a witness
	// that holds less (a cut JSON line would even look like a torn one).
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read: %w", h.Name(), err)
	}
	if len(body) > maxHTTPBody {
		return nil, fmt.Errorf("%s: the answer is over %d MiB; the witness cannot be read whole", h.Name(), maxHTTPBody>>20)
	}
	br := bufio.NewReader(bytes.NewReader(body))
	first, err := firstNonSpace(br)
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: read: %w", h.Name(), err)
	}
	if first != '[' {
		return ReadJSONLines(ctx, br, h.Name())
	}
	var out []audit.Checkpoint
	dec := json.NewDecoder(br)
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("%s: the answer is not a JSON array of checkpoints: %w", h.Name(), err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: the answer has more after its JSON array of checkpoints", h.Name())
	}
	return out, nil
}

// firstNonSpace peeks at the first byte that is not white space, leaving it unread.
func firstNonSpace(br *bufio.Reader) (byte, error) {
	for {
		b, err := br.ReadByte()
		if err != nil {
			return 0, err
		}
		if b != ' ' && b != '\t' && b != '\r' && b != '\n' {
			return b, br.UnreadByte()
		}
	}
}
