package awsprov

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	cttypes "github.com/aws/aws-sdk-go-v2/service/cloudtrail/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"golang.org/x/time/rate"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// SourceCloudTrail is the activity source name of CloudTrail look-ups (cursor key and the
// metrics label).
const SourceCloudTrail = "aws-cloudtrail"

// CloudTrailOptions tunes a CloudTrail activity source. Zero values take the defaults.
type CloudTrailOptions struct {
	// CallsPerSecond is the LookupEvents rate allowed per account and region, shared by every
	// grant (default 2, CloudTrail's documented quota for LookupEvents).
	CallsPerSecond float64
	// Lateness is how far back each look-up re-reads before the end of the previous one:
	// CloudTrail delivers events minutes after they happened (default 20 minutes).
	Lateness time.Duration
	// PagesPerCollect caps the pages read for one grant in one Collect (default 10, i.e. 500
	// events); the collector comes back for the rest in its next round.
	PagesPerCollect int
	// HTTPClient, when set, replaces cfg's HTTP client for CloudTrail. Pass one that does not
	// retry (httpclient RetryMax -1): a retry below the SDK would bypass the rate limiter.
	HTTPClient aws.HTTPClient
	Logger     *slog.Logger
	// AccountRoles maps an account id to the role the source assumes to read that account's
	// CloudTrail (its event history is per account). An account without one is read with
	// cfg's own credentials, which must then be of that account (checked with
	// sts:GetCallerIdentity; a grant in another account fails with a message naming
	// activity.aws.account_roles).
	AccountRoles map[string]string
	// IdentityCenter resolves the role session names of aws-identity-center grants, by the
	// grant's resource name. A grant whose resource has none is not collected.
	IdentityCenter map[string]SSOSessionResolver
}

// SSOSessionResolver names the AWSReservedSSO role sessions of an aws-identity-center grant
// (IdentityCenterProvider implements it).
type SSOSessionResolver interface {
	SSOSession(ctx context.Context, h grants.Handle) (SSOSession, error)
}

// CloudTrailSource collects the CloudTrail management events of aws-sts sessions, looking
// them up by the session's AccessKeyId (kept in the grant's handle), and of
// aws-identity-center grants, looking up the person's AWSReservedSSO role sessions of the
// grant's permission set in the grant's account. It implements grants.ActivitySource.
type CloudTrailSource struct {
	client   *cloudtrail.Client
	cfg      aws.Config
	region   string
	clock    grants.Clock
	opts     CloudTrailOptions
	log      *slog.Logger
	mu       sync.Mutex
	limiters map[string]*callLimiter       // by account/region
	clients  map[string]*cloudtrail.Client // by account, through AccountRoles
	caller   string                        // the account of cfg's credentials, once known
}

var _ grants.ActivitySource = (*CloudTrailSource)(nil)

// NewCloudTrailSource builds the source on cfg (the aws section's region, endpoint and
// credentials). The SDK's own retries are off: every call, retries included, goes through
// the shared rate limiter, and a throttled look-up is retried by the collector later.
func NewCloudTrailSource(cfg aws.Config, clock grants.Clock, opts CloudTrailOptions) *CloudTrailSource {
	if opts.CallsPerSecond <= 0 {
		opts.CallsPerSecond = 2
	}
	if opts.Lateness <= 0 {
		opts.Lateness = 20 * time.Minute
	}
	if opts.PagesPerCollect <= 0 {
		opts.PagesPerCollect = 10
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if clock == nil {
		clock = grants.RealClock{}
	}
	if opts.HTTPClient != nil {
		cfg.HTTPClient = opts.HTTPClient
	}
	cfg.Retryer = func() aws.Retryer { return aws.NopRetryer{} }
	return &CloudTrailSource{client: cloudtrail.NewFromConfig(cfg), cfg: cfg, region: cfg.Region, clock: clock, opts: opts,
		log: opts.Logger.With("source", SourceCloudTrail), limiters: map[string]*callLimiter{}, clients: map[string]*cloudtrail.Client{}}
}

// clientFor is the CloudTrail client that reads account's event history: through the
// account's role (AccountRoles), else with cfg's own credentials when they are of that
// account.
func (s *CloudTrailSource) clientFor(ctx context.Context, account string) (*cloudtrail.Client, error) {
	if role := s.opts.AccountRoles[account]; role != "" {
		s.mu.Lock()
		defer s.mu.Unlock()
		c := s.clients[account]
		if c == nil {
			sc := sts.NewFromConfig(s.cfg)
			creds := aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sc, role, func(o *stscreds.AssumeRoleOptions) {
				o.RoleSessionName = "accessbroker-activity"
			}))
			c = cloudtrail.NewFromConfig(s.cfg, func(o *cloudtrail.Options) { o.Credentials = creds })
			s.clients[account] = c
		}
		return c, nil
	}
	if account == "" {
		return s.client, nil
	}
	s.mu.Lock()
	caller := s.caller
	s.mu.Unlock()
	if caller == "" {
		out, err := sts.NewFromConfig(s.cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			return nil, wrap("cloudtrail: whose account the broker's credentials are (sts:GetCallerIdentity)", err)
		}
		caller = aws.ToString(out.Account)
		s.mu.Lock()
		s.caller = caller
		s.mu.Unlock()
	}
	if caller != account {
		return nil, fmt.Errorf("cloudtrail: the broker's credentials are of account %s and cannot read account %s's CloudTrail: "+
			"add activity.aws.account_roles: {\"%s\": <role in %s allowed cloudtrail:LookupEvents, trusting the broker>}", caller, account, account, account)
	}
	return s.client, nil
}

// callLimiter is the LookupEvents budget of one account and region: a token bucket of burst
// one (so no window of one second ever sees more than the rate), and a pause after a
// throttling answer.
type callLimiter struct {
	mu     sync.Mutex
	lim    *rate.Limiter
	paused time.Time
}

func (s *CloudTrailSource) limiter(account string) *callLimiter {
	key := account + "/" + s.region
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.limiters[key]
	if l == nil {
		l = &callLimiter{lim: rate.NewLimiter(rate.Limit(s.opts.CallsPerSecond), 1)}
		s.limiters[key] = l
	}
	return l
}

// wait blocks until one call may be made (on the injected clock).
func (l *callLimiter) wait(ctx context.Context, clock grants.Clock) error {
	l.mu.Lock()
	now := clock.Now() // read under the lock: the limiter never sees time go backwards
	from := now
	if l.paused.After(from) {
		from = l.paused
	}
	r := l.lim.ReserveN(from, 1)
	l.mu.Unlock()
	if !r.OK() {
		return fmt.Errorf("cloudtrail rate limiter refused a call")
	}
	d := r.DelayFrom(now)
	if d <= 0 {
		return nil
	}
	t := clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		r.CancelAt(clock.Now())
		return ctx.Err()
	}
}

// pause holds every call of the account and region until until (after throttling).
func (l *callLimiter) pause(until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if until.After(l.paused) {
		l.paused = until
	}
}

// ctCursor is a CloudTrail cursor: a scan in progress (Token, with its window) or the end of
// the last complete scan (Mark).
type ctCursor struct {
	Token string `json:"token,omitempty"`
	Start int64  `json:"start,omitempty"` // unix ms of the scan in progress
	End   int64  `json:"end,omitempty"`
	Mark  int64  `json:"mark,omitempty"` // unix ms: the last complete scan read up to here
	// SSO is the resolved role session of an aws-identity-center grant, kept so that it is
	// resolved once per grant (a user renamed later is still matched by the name they had).
	SSO *SSOSession `json:"sso,omitempty"`
}

// trailQuery is what one grant's look-up asks CloudTrail (one attribute), in which account,
// and which of the answered events are the grant's.
type trailQuery struct {
	account string
	attr    cttypes.LookupAttribute
	match   func(cttypes.Event) (identity string, ok bool)
}

// stsQuery looks an aws-sts grant's events up by its session's access key id: every event
// answered is the session's.
func stsQuery(g grants.Grant) (trailQuery, error) {
	keyID := g.Handle.Data[DataAccessKeyID]
	if keyID == "" {
		return trailQuery{}, fmt.Errorf("aws-sts grant %s: its handle has no session access key id (issued before activity collection, or never issued): %w",
			g.ID, grants.ErrActivityNotCollectable)
	}
	account := ""
	if m := roleARNRE.FindStringSubmatch(g.Handle.Data[DataRoleARN]); m != nil {
		account = m[2]
	}
	return trailQuery{account: account,
		attr:  cttypes.LookupAttribute{AttributeKey: cttypes.LookupAttributeKeyAccessKeyId, AttributeValue: aws.String(keyID)},
		match: func(cttypes.Event) (string, bool) { return "", true }}, nil
}

// ssoQuery looks an aws-identity-center grant's events up by the person's Identity Center user
// name (CloudTrail's Username of an assumed-role event is its session name) in the grant's
// account, and keeps only those whose identity is the AWSReservedSSO role of the grant's
// permission set with that session name (ssoSessionMatches). cur carries the resolved names.
func (s *CloudTrailSource) ssoQuery(ctx context.Context, g grants.Grant, cur *ctCursor) (trailQuery, error) {
	if cur.SSO == nil {
		r := s.opts.IdentityCenter[g.Resource]
		if r == nil {
			return trailQuery{}, fmt.Errorf("aws-identity-center grant %s: resource %q is not an aws-identity-center resource of this configuration: %w",
				g.ID, g.Resource, grants.ErrActivityNotCollectable)
		}
		sess, err := r.SSOSession(ctx, g.Handle)
		if err != nil {
			return trailQuery{}, fmt.Errorf("aws-identity-center grant %s: %w", g.ID, err)
		}
		cur.SSO = &sess
	}
	sess := *cur.SSO
	return trailQuery{account: sess.AccountID,
		attr: cttypes.LookupAttribute{AttributeKey: cttypes.LookupAttributeKeyUsername, AttributeValue: aws.String(sess.UserName)},
		match: func(e cttypes.Event) (string, bool) {
			return ssoSessionMatches(aws.ToString(e.CloudTrailEvent), sess)
		}}, nil
}

var (
	// assumedRoleARNRE is a role session's ARN; submatches: account, role name, session name.
	assumedRoleARNRE = regexp.MustCompile(`^arn:aws[a-z-]*:sts::(\d{12}):assumed-role/([\w+=,.@-]+)/(.+)$`)
	// ssoRoleARNRE is the ARN of a role IAM Identity Center created for a permission set, on
	// the aws-reserved path (with the identity source's region unless it is us-east-1);
	// submatches: account, role name.
	ssoRoleARNRE = regexp.MustCompile(`^arn:aws[a-z-]*:iam::(\d{12}):role/aws-reserved/sso\.amazonaws\.com/(?:[a-z0-9-]+/)?([\w+=,.@-]+)$`)
	// ssoSuffixRE is the unique suffix of an AWSReservedSSO role (16 hex digits in AWS's
	// examples; a new one each time the role is recreated).
	ssoSuffixRE = regexp.MustCompile(`^[0-9a-f]+$`)
)

// ssoSessionMatches reports whether the CloudTrail record raw was made by sess: an
// AssumedRole identity in sess's account whose role is AWSReservedSSO_<permission set>_<hex
// suffix>, issued from the aws-reserved/sso.amazonaws.com path, with the user's name as its
// session name. It returns the identity's ARN. Another person's session, another permission
// set's (AWSReservedSSO_Admin_… is not AWSReservedSSO_Admin_ReadOnly_…), another account's or a
// role merely named like one outside the reserved path never match.
func ssoSessionMatches(raw string, sess SSOSession) (string, bool) {
	var rec struct {
		UserIdentity struct {
			Type           string `json:"type"`
			ARN            string `json:"arn"`
			SessionContext struct {
				SessionIssuer struct {
					Type string `json:"type"`
					ARN  string `json:"arn"`
				} `json:"sessionIssuer"`
			} `json:"sessionContext"`
		} `json:"userIdentity"`
	}
	if json.Unmarshal([]byte(raw), &rec) != nil || rec.UserIdentity.Type != "AssumedRole" {
		return "", false
	}
	id := rec.UserIdentity
	m := assumedRoleARNRE.FindStringSubmatch(id.ARN)
	if m == nil || m[1] != sess.AccountID || m[3] != sess.UserName {
		return "", false
	}
	suffix, ok := strings.CutPrefix(m[2], "AWSReservedSSO_"+sess.PermissionSetName+"_")
	if !ok || !ssoSuffixRE.MatchString(suffix) {
		return "", false
	}
	im := ssoRoleARNRE.FindStringSubmatch(id.SessionContext.SessionIssuer.ARN)
	if id.SessionContext.SessionIssuer.Type != "Role" || im == nil || im[1] != sess.AccountID || im[2] != m[2] {
		return "", false
	}
	return id.ARN, true
}

// Collect implements grants.ActivitySource: it reads the events of the grant's session (an
// aws-sts session's key, an aws-identity-center grant's AWSReservedSSO session of the
// person), from the grant's start (or Lateness before the previous scan's end) to w.To,
// newest first, at most PagesPerCollect pages, resuming an unfinished scan from its
// NextToken.
func (s *CloudTrailSource) Collect(ctx context.Context, g grants.Grant, w grants.ActivityWindow, cursor string) (grants.ActivityBatch, error) {
	var cur ctCursor
	if cursor != "" {
		if err := json.Unmarshal([]byte(cursor), &cur); err != nil {
			cur = ctCursor{} // unreadable: start over; duplicates are dropped by event id
		}
	}
	var q trailQuery
	var err error
	if g.Provider == KindIdentityCenter {
		q, err = s.ssoQuery(ctx, g, &cur)
	} else {
		q, err = stsQuery(g)
	}
	if err != nil {
		return grants.ActivityBatch{}, err
	}
	start, end := w.From.Add(-5*time.Minute), w.To // a little before issue: clocks differ
	if cur.Token != "" {
		start, end = time.UnixMilli(cur.Start).UTC(), time.UnixMilli(cur.End).UTC()
	} else if cur.Mark != 0 {
		if m := time.UnixMilli(cur.Mark).Add(-s.opts.Lateness); m.After(start) {
			start = m
		}
	}
	if !end.After(start) {
		return grants.ActivityBatch{Cursor: cursor, Complete: true}, nil
	}
	client, err := s.clientFor(ctx, q.account)
	if err != nil {
		return grants.ActivityBatch{}, fmt.Errorf("cloudtrail look-up for grant %s: %w", g.ID, err)
	}
	in := &cloudtrail.LookupEventsInput{
		LookupAttributes: []cttypes.LookupAttribute{q.attr},
		StartTime:        aws.Time(start),
		EndTime:          aws.Time(end),
		MaxResults:       aws.Int32(50),
	}
	if cur.Token != "" {
		in.NextToken = aws.String(cur.Token)
	}
	lim := s.limiter(q.account)
	pager := cloudtrail.NewLookupEventsPaginator(client, in)
	var items []grants.ActivityItem
	token := ""
	for page := 0; page < s.opts.PagesPerCollect && pager.HasMorePages(); page++ {
		if err := lim.wait(ctx, s.clock); err != nil {
			return grants.ActivityBatch{}, err
		}
		out, err := pager.NextPage(ctx)
		if err != nil {
			if isThrottle(err) {
				lim.pause(s.clock.Now().Add(retryAfter(err, time.Second)))
			}
			// Items read so far are kept only by a later complete read: the cursor did not
			// move, and the event ids make the re-read harmless.
			return grants.ActivityBatch{}, wrap(fmt.Sprintf("cloudtrail look-up for grant %s", g.ID), err)
		}
		token = aws.ToString(out.NextToken)
		for _, e := range out.Events {
			if identity, ok := q.match(e); ok {
				items = append(items, trailItem(g, e, w.End, identity))
			}
		}
	}
	next := ctCursor{Mark: end.UnixMilli(), SSO: cur.SSO}
	complete := true
	if token != "" {
		// The page budget ran out: the next Collect continues this scan.
		next = ctCursor{Token: token, Start: start.UnixMilli(), End: end.UnixMilli(), Mark: cur.Mark, SSO: cur.SSO}
		complete = false
	}
	raw, err := json.Marshal(next)
	if err != nil {
		return grants.ActivityBatch{}, fmt.Errorf("cloudtrail cursor: %w", err)
	}
	return grants.ActivityBatch{Items: items, Cursor: string(raw), Complete: complete}, nil
}

// trailItem turns one looked-up event into an aws.activity audit event.
// identity, when not empty, is the matched session's ARN (aws-identity-center grants).
func trailItem(g grants.Grant, e cttypes.Event, end time.Time, identity string) grants.ActivityItem {
	var rec struct {
		ErrorCode       string `json:"errorCode"`
		SourceIPAddress string `json:"sourceIPAddress"`
		AWSRegion       string `json:"awsRegion"`
	}
	if e.CloudTrailEvent != nil {
		_ = json.Unmarshal([]byte(*e.CloudTrailEvent), &rec) // fields stay empty when it is not JSON
	}
	var res []string
	for _, r := range e.Resources {
		name := aws.ToString(r.ResourceName)
		if t := aws.ToString(r.ResourceType); t != "" {
			name = t + " " + name
		}
		res = append(res, name)
	}
	at := aws.ToTime(e.EventTime).UTC()
	after := !end.IsZero() && at.After(end) && rec.ErrorCode == ""
	ev := &audit.Event{
		Actor:  audit.Actor{Kind: audit.ActorUser, ID: g.Person.SlackUserID, Email: g.Person.Email},
		Action: audit.ActionAWSActivity,
		Evidence: map[string]string{
			"event_id":                            aws.ToString(e.EventId),
			audit.EvidenceActivityEventTime:       grants.Timestamp(at),
			"service":                             aws.ToString(e.EventSource),
			"api_call":                            aws.ToString(e.EventName),
			"resources":                           strings.Join(res, ", "),
			audit.EvidenceActivityReadOnly:        strconv.FormatBool(strings.EqualFold(aws.ToString(e.ReadOnly), "true")),
			audit.EvidenceActivityErrorCode:       rec.ErrorCode,
			"source_ip":                           rec.SourceIPAddress,
			"region":                              rec.AWSRegion,
			audit.EvidenceActivityAfterRevocation: strconv.FormatBool(after),
		},
	}
	if identity != "" {
		ev.Evidence["identity"] = identity
	}
	return grants.ActivityItem{Key: aws.ToString(e.EventId), Event: ev}
}

// isThrottle reports whether err is CloudTrail's throttling answer (or an HTTP 429).
func isThrottle(err error) bool {
	switch apiCode(err) {
	case "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded":
		return true
	}
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusTooManyRequests
}

// retryAfter is the Retry-After (seconds) of err's HTTP response, else def.
func retryAfter(err error, def time.Duration) time.Duration {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		if n, perr := strconv.Atoi(strings.TrimSpace(re.Response.Header.Get("Retry-After"))); perr == nil && n > 0 {
			return min(time.Duration(n)*time.Second, 5*time.Minute)
		}
	}
	return def
}
