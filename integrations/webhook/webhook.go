// Package webhook is a generic grants.Provider that delegates issuing and revoking access to
// an HTTP service the operator runs. Anything that speaks the protocol below can be plugged
// into accessbroker without changing it.
//
// # Wire protocol (version 1)
//
// Every request is a POST with a JSON body, "Content-Type: application/json" and
// "Authorization: Bearer TOKEN", where TOKEN is the configured token. Times are UTC RFC 3339
// with milliseconds ("2025-01-02T15:04:05.000Z").
//
// Issue: POST {url}/issue
//
//	{
//	  "grant_id":   "g_k3x…",              // unique per grant; name what you create after it
//	  "resource":   "prod-db",
//	  "person":     {"slack_team_id": "T0…", "slack_user_id": "U0…", "email": "alice@example.com",
//	                 "pagerduty_id": "P…", "github_login": "alice"},
//	  "expires_at": "2025-01-02T16:04:05.000Z",  // enforce it upstream too if you can
//	  "reason":     "checking replication lag"
//	}
//
// Answer 200 with
//
//	{
//	  "handle":      {"key": "acct-42", "data": {"account": "acct-42"}},   // non-secret, stored
//	  "preexisting": false,     // true: the person had this access before; revocation leaves it
//	  "credential":  {"kind": "vpn", "fields": [{"name": "password", "value": "…"}]}   // optional
//	}
//
// handle.key names the access itself: two grants with the same key share one access, and
// accessbroker only asks for its revocation when no other live grant holds it. An empty key
// becomes "webhook:<grant_id>" (one access per grant). The credential is delivered once to
// its owner and never stored or logged; omit it when there is nothing secret to deliver.
//
// Revoke: POST {url}/revoke
//
//	{"grant_id": "g_k3x…", "resource": "prod-db", "person": {…},
//	 "handle": {"key": "acct-42", "data": {"account": "acct-42"}}}
//
// The handle is the one /issue returned, or empty ({}) when accessbroker crashed before
// /issue answered: the service must then find what it created from grant_id alone. Answers:
//
//   - 200 or 204: revoked.
//   - 404: nothing to revoke (already gone or never created); counts as revoked.
//   - 408, 429, 5xx, or no answer: temporary; accessbroker retries with backoff, honouring
//     Retry-After (seconds) on 429 and 503.
//   - any other 4xx: an operator must act (bad token, bad configuration); accessbroker keeps
//     retrying and alerts on every attempt.
//
// /issue answers the same way, except that 404 is an error like any other 4xx. A non-2xx
// answer may carry a short plain-text or JSON {"error": "…"} body: it is shown to operators,
// so it must not contain secrets.
//
// Revoke is never sent for a handle with "preexisting": true: access the person had before
// accessbroker is left in place.
//
// # Drift
//
// The provider implements neither grants.AccessLister nor grants.AccessChecker: version 1
// has no call that lists what the service holds or reads one grant back, so the drift
// reconciler cannot compare it and a 2xx from /revoke is the service's word. Adding such a
// call would be a protocol version 2, which every receiver would have to implement.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
)

// DefaultKind is the provider kind used when Config.Kind is empty.
const DefaultKind = "webhook"

// maxBody bounds how much of an upstream answer is read.
const maxBody = 1 << 20

// Config configures one webhook provider.
type Config struct {
	// Kind is the provider name reported by Kind(); default "webhook".
	Kind string
	// URL is the base URL; /issue and /revoke are appended. It must be https, or http on a
	// loopback host, and carry no user, query or fragment.
	URL string
	// Token is sent as "Authorization: Bearer TOKEN". Required.
	Token string
}

// Provider implements grants.Provider over the webhook protocol. It is safe for concurrent
// use. It does not retry by itself: the client passed to New may, and the revoker does.
type Provider struct {
	kind   string
	base   *url.URL
	token  string
	client *http.Client
}

var _ grants.Provider = (*Provider)(nil)

// New validates cfg and returns a provider. A nil client means a plain http.Client with a
// 30-second timeout.
func New(cfg Config, client *http.Client) (*Provider, error) {
	kind := cfg.Kind
	if kind == "" {
		kind = DefaultKind
	}
	base, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("webhook provider %q: %w", kind, err)
	}
	if strings.TrimSpace(cfg.Token) == "" {
		return nil, fmt.Errorf("webhook provider %q: token is empty; set token to the bearer token the webhook service expects: %w", kind, grants.ErrInvalid)
	}
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	return &Provider{kind: kind, base: base, token: cfg.Token, client: client}, nil
}

// ParseURL checks a webhook base URL: absolute, https (or http on a loopback host so that
// tokens are never sent in clear over a network), no user info, query or fragment.
func ParseURL(raw string) (*url.URL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, fmt.Errorf("url is empty; set url to the webhook service's base URL, e.g. https://access.internal.example.com/accessbroker: %w", grants.ErrInvalid)
	}
	u, err := httpclient.CheckBaseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("url %w (e.g. https://access.internal.example.com/accessbroker): %w", err, grants.ErrInvalid)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("url %q must not have a query or fragment: %w", raw, grants.ErrInvalid)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// Kind returns the configured provider kind.
func (p *Provider) Kind() string { return p.kind }

type wirePerson struct {
	SlackTeamID string `json:"slack_team_id,omitempty"`
	SlackUserID string `json:"slack_user_id,omitempty"`
	Email       string `json:"email,omitempty"`
	PagerDutyID string `json:"pagerduty_id,omitempty"`
	GitHubLogin string `json:"github_login,omitempty"`
}

func toWire(p grants.Person) wirePerson {
	return wirePerson{
		SlackTeamID: p.SlackTeamID,
		SlackUserID: p.SlackUserID,
		Email:       p.Email,
		PagerDutyID: p.PagerDutyID,
		GitHubLogin: p.GitHubLogin,
	}
}

type issueBody struct {
	GrantID   string     `json:"grant_id"`
	Resource  string     `json:"resource"`
	Person    wirePerson `json:"person"`
	ExpiresAt string     `json:"expires_at"`
	Reason    string     `json:"reason"`
}

type wireHandle struct {
	Key         string            `json:"key,omitempty"`
	Data        map[string]string `json:"data,omitempty"`
	Preexisting bool              `json:"preexisting,omitempty"`
}

type issueAnswer struct {
	Handle      wireHandle `json:"handle"`
	Preexisting bool       `json:"preexisting"`
	Credential  *struct {
		Kind   string `json:"kind"`
		Fields []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"fields"`
	} `json:"credential"`
}

type revokeBody struct {
	GrantID  string     `json:"grant_id"`
	Resource string     `json:"resource"`
	Person   wirePerson `json:"person"`
	Handle   wireHandle `json:"handle"`
}

// Issue asks the service to create access. Errors never contain the token or credential
// values; a 4xx answer (other than 408 and 429) wraps grants.ErrNeedsOperator.
func (p *Provider) Issue(ctx context.Context, req grants.IssueRequest) (grants.Issued, error) {
	if req.GrantID == "" {
		return grants.Issued{}, fmt.Errorf("webhook issue: empty grant id: %w", grants.ErrInvalid)
	}
	body := issueBody{
		GrantID:   req.GrantID,
		Resource:  req.Resource,
		Person:    toWire(req.Person),
		ExpiresAt: grants.Timestamp(req.ExpiresAt),
		Reason:    req.Reason,
	}
	status, hdr, raw, err := p.post(ctx, "issue", body)
	if err != nil {
		return grants.Issued{}, fmt.Errorf("webhook issue grant %s: %w", req.GrantID, err)
	}
	if status != http.StatusOK {
		return grants.Issued{}, fmt.Errorf("webhook issue grant %s: %w", req.GrantID, p.statusError("issue", status, hdr, raw))
	}
	var ans issueAnswer
	if err := json.Unmarshal(raw, &ans); err != nil {
		// The body may hold a credential: describe the failure without quoting it.
		return grants.Issued{}, fmt.Errorf("webhook issue grant %s: answer is not the JSON object the protocol defines (%s)", req.GrantID, describeJSONError(err))
	}
	h := grants.Handle{
		Key:         ans.Handle.Key,
		Preexisting: ans.Preexisting || ans.Handle.Preexisting,
		Data:        ans.Handle.Data,
	}
	if h.Key == "" {
		h.Key = p.kind + ":" + req.GrantID
	}
	var cred grants.Credential
	if ans.Credential != nil {
		kind := ans.Credential.Kind
		if kind == "" {
			kind = p.kind
		}
		pairs := make([]string, 0, 2*len(ans.Credential.Fields))
		seen := make(map[string]bool, len(ans.Credential.Fields))
		for i, f := range ans.Credential.Fields {
			if f.Name == "" || seen[f.Name] {
				return grants.Issued{}, fmt.Errorf("webhook issue grant %s: credential field %d has an empty or repeated name", req.GrantID, i)
			}
			seen[f.Name] = true
			pairs = append(pairs, f.Name, f.Value)
		}
		cred = grants.NewCredential(kind, pairs...)
	}
	return grants.Issued{Handle: h, Credential: cred}, nil
}

// Revoke asks the service to remove access. It is idempotent: 404 is success. A handle marked
// Preexisting is left alone without calling the service.
func (p *Provider) Revoke(ctx context.Context, req grants.RevokeRequest) error {
	if req.Handle.Preexisting {
		return nil
	}
	body := revokeBody{
		GrantID:  req.GrantID,
		Resource: req.Resource,
		Person:   toWire(req.Person),
		Handle:   wireHandle{Key: req.Handle.Key, Data: req.Handle.Data},
	}
	status, hdr, raw, err := p.post(ctx, "revoke", body)
	if err != nil {
		return fmt.Errorf("webhook revoke grant %s: %w", req.GrantID, err)
	}
	switch status {
	case http.StatusOK, http.StatusNoContent, http.StatusNotFound:
		return nil
	}
	return fmt.Errorf("webhook revoke grant %s: %w", req.GrantID, p.statusError("revoke", status, hdr, raw))
}

func (p *Provider) post(ctx context.Context, op string, body any) (int, http.Header, []byte, error) {
	payload, err := json.Marshal(body)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("encode %s request: %w", op, err)
	}
	u := *p.base
	u.Path += "/" + op
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(payload))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("build %s request: %w", op, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	hreq.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := p.client.Do(hreq)
	if err != nil {
		return 0, nil, nil, p.scrubbed(fmt.Sprintf("POST %s", u.Redacted()), unwrapURLError(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, nil, nil, p.scrubbed(fmt.Sprintf("read %s answer (HTTP %d)", op, resp.StatusCode), err)
	}
	return resp.StatusCode, resp.Header, raw, nil
}

// unwrapURLError drops net/http's *url.Error wrapper, whose text repeats the URL we already
// print.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// scrubbedError shows a message with secrets removed. The cause stays reachable for errors.Is
// (context.DeadlineExceeded, net errors) only when its own text held no secret.
type scrubbedError struct {
	msg string
	err error
}

func (p *Provider) scrubbed(prefix string, err error) error {
	raw := prefix + ": " + err.Error()
	clean := p.scrub(raw)
	if clean != raw {
		return &scrubbedError{msg: clean}
	}
	return &scrubbedError{msg: raw, err: err}
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// StatusError is a non-success answer from the webhook service. Callers may use errors.As to
// read RetryAfter.
type StatusError struct {
	Op         string        // "issue" or "revoke"
	StatusCode int           // HTTP status
	RetryAfter time.Duration // from Retry-After (seconds form); zero when absent
	Message    string        // the service's explanation, scrubbed and truncated
	operator   bool
}

// Error describes the answer.
func (e *StatusError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "webhook %s answered HTTP %d", e.Op, e.StatusCode)
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	if e.operator {
		b.WriteString("; check the webhook service's token and configuration")
	}
	return b.String()
}

// Unwrap returns grants.ErrNeedsOperator for answers retrying alone will not fix.
func (e *StatusError) Unwrap() error {
	if e.operator {
		return grants.ErrNeedsOperator
	}
	return nil
}

// Temporary reports whether the answer is worth retrying as is (408, 429, 5xx).
func (e *StatusError) Temporary() bool { return !e.operator }

func (p *Provider) statusError(op string, status int, hdr http.Header, raw []byte) *StatusError {
	e := &StatusError{Op: op, StatusCode: status, Message: p.scrub(summarize(raw))}
	if s := hdr.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n >= 0 {
			e.RetryAfter = time.Duration(n) * time.Second
		}
	}
	e.operator = status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
	if status < 400 { // an unexpected 1xx/2xx/3xx: the service does not speak the protocol
		e.operator = true
	}
	return e
}

// summarize returns a short, printable explanation from an error body: the "error" or
// "message" member of a JSON object, or the text itself.
func summarize(raw []byte) string {
	var obj map[string]any
	if json.Unmarshal(raw, &obj) == nil {
		for _, k := range []string{"error", "message"} {
			if s, ok := obj[k].(string); ok {
				raw = []byte(s)
				break
			}
		}
	}
	s := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, string(raw))
	s = strings.TrimSpace(s)
	const max = 200
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8Start(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

func (p *Provider) scrub(s string) string {
	if p.token != "" {
		s = strings.ReplaceAll(s, p.token, "[REDACTED]")
	}
	return s
}

func describeJSONError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("member %q has the wrong type", te.Field)
	default:
		return "unexpected end or shape"
	}
}
