// Package pagerduty connects accessbroker to PagerDuty: the broker.OnCall port on the REST
// API v2 (through github.com/PagerDuty/go-pagerduty and the retrying client of
// integrations/httpclient), and the handler of v3 webhooks (POST /pagerduty/webhook) that
// turns confirmed incident acknowledgements and resolutions into broker.PageAck and
// broker.PageResolved.
//
// Nothing here ever assumes someone is on call: every PagerDuty error, after the HTTP
// client's retries, is returned to the caller, who falls back to the approval path.
package pagerduty

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	pd "github.com/PagerDuty/go-pagerduty"

	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
)

// DefaultAPIURL is PagerDuty's REST API.
const DefaultAPIURL = "https://api.pagerduty.com"

// DefaultUserCacheTTL is how long an email → PagerDuty user id answer is reused.
const DefaultUserCacheTTL = 5 * time.Minute

// maxPages bounds how many pages of 100 a single list call may read.
const maxPages = 10

// Config configures a Client.
type Config struct {
	// APIURL is the REST API base (config pagerduty.api_url); empty means DefaultAPIURL. It
	// must be https, except for a loopback host (tests and the demo).
	APIURL string
	// Token is the REST API key (config pagerduty.token); a read-only key is enough.
	Token string
	// HTTP performs the requests. Nil builds the project's retrying client
	// (httpclient.New with ReturnLastResponse, so that PagerDuty's own error reaches us).
	HTTP *http.Client
	// Clock is the only source of "now" (required).
	Clock grants.Clock
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// UserCacheTTL is how long an email → user id answer is reused (default 5m).
	UserCacheTTL time.Duration
}

// Client talks to the PagerDuty REST API. It implements broker.OnCall and is safe for
// concurrent use.
type Client struct {
	api   *pd.Client
	clock grants.Clock
	log   *slog.Logger
	ttl   time.Duration

	mu      sync.Mutex
	byEmail map[string]cachedUser // lower-cased email → user id
}

type cachedUser struct {
	id      string
	expires time.Time
}

// New validates cfg and returns a Client. Errors name the configuration key at fault.
func New(cfg Config) (*Client, error) {
	if cfg.Clock == nil {
		return nil, errors.New("pagerduty: a clock is required")
	}
	base, err := ValidateAPIURL(cfg.APIURL)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(cfg.Token) == "" {
		return nil, errors.New("pagerduty.token is empty: set it to a PagerDuty REST API key (a read-only key is enough)")
	}
	if strings.ContainsAny(cfg.Token, " \t\r\n") {
		return nil, errors.New("pagerduty.token contains whitespace: paste the REST API key alone, without spaces or newlines")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hc := cfg.HTTP
	if hc == nil {
		hc = httpclient.New(httpclient.Options{Logger: log, Clock: cfg.Clock, ReturnLastResponse: true})
	}
	ttl := cfg.UserCacheTTL
	if ttl <= 0 {
		ttl = DefaultUserCacheTTL
	}
	api := pd.NewClient(cfg.Token, pd.WithAPIEndpoint(base))
	api.HTTPClient = hc
	return &Client{api: api, clock: cfg.Clock, log: log.With("component", "pagerduty"), ttl: ttl, byEmail: map[string]cachedUser{}}, nil
}

// ValidateAPIURL checks a configured pagerduty.api_url and returns the base to use (no
// trailing slash). Empty means DefaultAPIURL. Only https is accepted, except http to a
// loopback address, so that a typo cannot send the API key in clear text to another host.
func ValidateAPIURL(raw string) (string, error) {
	if raw == "" {
		return DefaultAPIURL, nil
	}
	u, err := httpclient.CheckBaseURL(raw)
	if err != nil {
		return "", fmt.Errorf("pagerduty.api_url %w (use https://api.pagerduty.com or leave it empty)", err)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("pagerduty.api_url %q must not carry a query or fragment", raw)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// ErrNoUser is matched (errors.Is) by the error returned when an email names no PagerDuty
// user, or more than one.
var ErrNoUser = errors.New("no PagerDuty user")

// NoUserError says why an email could not be resolved to exactly one PagerDuty user.
type NoUserError struct {
	Email   string
	Matches int // users whose email equals Email ignoring case: 0 or more than 1
}

func (e *NoUserError) Error() string {
	if e.Matches > 1 {
		return fmt.Sprintf("no PagerDuty user for %s: %d PagerDuty users have this email, so none is chosen; "+
			"map the person to a PagerDuty user id in the identities section of the configuration", e.Email, e.Matches)
	}
	return fmt.Sprintf("no PagerDuty user for %s: no PagerDuty user has exactly this email; "+
		"set it on the PagerDuty profile or map the person in the identities section of the configuration", e.Email)
}

// Is makes errors.Is(err, ErrNoUser) true.
func (e *NoUserError) Is(target error) bool { return target == ErrNoUser }

// ErrNotFound is matched (errors.Is) when PagerDuty answers that an incident or user does not
// exist.
var ErrNotFound = errors.New("not found in PagerDuty")

// User is a PagerDuty user.
type User struct {
	ID    string
	Name  string
	Email string
}

// UserIDByEmail returns the id of the one PagerDuty user whose email equals email, compared
// as broker.FoldEmail folds them (case and Unicode compatibility forms do not matter).
// GET /users?query= matches loosely (names, parts of addresses), so the results are
// filtered for an exact match; none or several give a *NoUserError, never a guess. An email
// broker.CheckEmail refuses (a non-ASCII look-alike) is refused before PagerDuty is asked,
// and a PagerDuty user whose own email is such a look-alike never matches. Answers are cached
// for the configured TTL on the injected clock; failures are not cached.
func (c *Client) UserIDByEmail(ctx context.Context, email string) (string, error) {
	email = strings.TrimSpace(email)
	if email == "" {
		return "", errors.New("no PagerDuty user for a person without an email address")
	}
	key, err := broker.CheckEmail(email)
	if err != nil {
		return "", fmt.Errorf("look up PagerDuty user: %w", err)
	}
	email = key
	now := c.clock.Now()
	c.mu.Lock()
	if e, ok := c.byEmail[key]; ok && now.Before(e.expires) {
		c.mu.Unlock()
		return e.id, nil
	}
	c.mu.Unlock()

	var ids []string
	opts := pd.ListUsersOptions{Query: email, Limit: 100}
	for page := 0; ; page++ {
		if page == maxPages {
			return "", fmt.Errorf("look up PagerDuty user %s: more than %d users match the query", email, maxPages*100)
		}
		resp, err := c.api.ListUsersWithContext(ctx, opts)
		if err != nil {
			return "", fmt.Errorf("look up PagerDuty user %s: %w", email, apiErr(err))
		}
		for _, u := range resp.Users {
			if theirs, err := broker.CheckEmail(u.Email); err == nil && theirs == key && u.ID != "" {
				ids = append(ids, u.ID)
			}
		}
		if !resp.More || len(resp.Users) == 0 {
			break
		}
		opts.Offset += uint(len(resp.Users))
	}
	if len(ids) != 1 {
		return "", &NoUserError{Email: email, Matches: len(ids)}
	}

	c.mu.Lock()
	if len(c.byEmail) >= 10000 {
		for k, e := range c.byEmail {
			if !now.Before(e.expires) {
				delete(c.byEmail, k)
			}
		}
	}
	c.byEmail[key] = cachedUser{id: ids[0], expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return ids[0], nil
}

// UserByID returns a PagerDuty user (GET /users/{id}); an unknown id gives an error matching
// ErrNotFound.
func (c *Client) UserByID(ctx context.Context, id string) (User, error) {
	if id == "" {
		return User{}, errors.New("get PagerDuty user: empty id")
	}
	u, err := c.api.GetUserWithContext(ctx, url.PathEscape(id), pd.GetUserOptions{})
	if err != nil {
		return User{}, fmt.Errorf("get PagerDuty user %s: %w", id, apiErr(err))
	}
	return User{ID: u.ID, Name: u.Name, Email: u.Email}, nil
}

// Incident is the current state of a PagerDuty incident, as the REST API reports it.
type Incident struct {
	ID            string
	Number        int
	Title         string
	Status        string // "triggered", "acknowledged" or "resolved"
	URL           string // html_url
	ServiceID     string
	ServiceName   string
	Acknowledgers []string // user ids of the current acknowledgements
	Assignees     []string // user ids of the current assignments
}

// Incident returns the current state of an incident (GET /incidents/{id}); an unknown id
// gives an error matching ErrNotFound.
func (c *Client) Incident(ctx context.Context, id string) (Incident, error) {
	if id == "" {
		return Incident{}, errors.New("get PagerDuty incident: empty id")
	}
	inc, err := c.api.GetIncidentWithContext(ctx, url.PathEscape(id))
	if err != nil {
		return Incident{}, fmt.Errorf("get PagerDuty incident %s: %w", id, apiErr(err))
	}
	out := Incident{
		ID: inc.ID, Number: int(inc.IncidentNumber), Title: inc.Title, Status: inc.Status, URL: inc.HTMLURL,
		ServiceID: inc.Service.ID, ServiceName: inc.Service.Summary,
	}
	for _, a := range inc.Acknowledgements {
		if a.Acknowledger.ID != "" {
			out.Acknowledgers = append(out.Acknowledgers, a.Acknowledger.ID)
		}
	}
	for _, a := range inc.Assignments {
		if a.Assignee.ID != "" {
			out.Assignees = append(out.Assignees, a.Assignee.ID)
		}
	}
	return out, nil
}

// apiErr keeps go-pagerduty's error text (it never contains the API key) and adds
// ErrNotFound for a 404 or PagerDuty code 2100.
func apiErr(err error) error {
	var ae pd.APIError
	if errors.As(err, &ae) && ae.NotFound() {
		return fmt.Errorf("%w (HTTP %d)", ErrNotFound, ae.StatusCode)
	}
	return err
}

// timeLayout is how since/until are sent: RFC 3339 in UTC, whole seconds.
const timeLayout = time.RFC3339

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// CheckAccess is the PagerDuty check of serve's readiness and `config check --online`: one
// authenticated read (GET /users?limit=1), which any REST API key that can see the account
// may make. It fails when PagerDuty refuses the key (401 names pagerduty.token) or does not
// answer.
func (c *Client) CheckAccess(ctx context.Context) error {
	_, err := c.api.ListUsersWithContext(ctx, pd.ListUsersOptions{Limit: 1})
	var ae pd.APIError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae) && (ae.StatusCode == http.StatusUnauthorized || ae.StatusCode == http.StatusForbidden):
		return fmt.Errorf("pagerduty: the API refuses pagerduty.token (HTTP %d); create a REST API key (read-only is enough) and set it: %w", ae.StatusCode, err)
	default:
		return fmt.Errorf("pagerduty: list users: %w", apiErr(err))
	}
}
