package awsprov

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	cttypes "github.com/aws/aws-sdk-go-v2/service/cloudtrail/types"
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
}

// CloudTrailSource collects the CloudTrail management events of aws-sts sessions, looking
// them up by the session's AccessKeyId (kept in the grant's handle). It implements
// grants.ActivitySource.
type CloudTrailSource struct {
	client   *cloudtrail.Client
	region   string
	clock    grants.Clock
	opts     CloudTrailOptions
	log      *slog.Logger
	mu       sync.Mutex
	limiters map[string]*callLimiter // by account/region
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
	client := cloudtrail.NewFromConfig(cfg, func(o *cloudtrail.Options) {
		o.Retryer = aws.NopRetryer{}
		if opts.HTTPClient != nil {
			o.HTTPClient = opts.HTTPClient
		}
	})
	return &CloudTrailSource{client: client, region: cfg.Region, clock: clock, opts: opts,
		log: opts.Logger.With("source", SourceCloudTrail), limiters: map[string]*callLimiter{}}
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
}

// Collect implements grants.ActivitySource: it reads the events signed with the grant's
// session key, from the grant's start (or Lateness before the previous scan's end) to w.To,
// newest first, at most PagesPerCollect pages, resuming an unfinished scan from its
// NextToken.
func (s *CloudTrailSource) Collect(ctx context.Context, g grants.Grant, w grants.ActivityWindow, cursor string) (grants.ActivityBatch, error) {
	keyID := g.Handle.Data[DataAccessKeyID]
	if keyID == "" {
		return grants.ActivityBatch{}, fmt.Errorf("aws-sts grant %s: its handle has no session access key id (issued before activity collection, or never issued): %w",
			g.ID, grants.ErrActivityNotCollectable)
	}
	account := ""
	if m := roleARNRE.FindStringSubmatch(g.Handle.Data[DataRoleARN]); m != nil {
		account = m[2]
	}
	var cur ctCursor
	if cursor != "" {
		if err := json.Unmarshal([]byte(cursor), &cur); err != nil {
			cur = ctCursor{} // unreadable: start over; duplicates are dropped by event id
		}
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
	in := &cloudtrail.LookupEventsInput{
		LookupAttributes: []cttypes.LookupAttribute{{AttributeKey: cttypes.LookupAttributeKeyAccessKeyId, AttributeValue: aws.String(keyID)}},
		StartTime:        aws.Time(start),
		EndTime:          aws.Time(end),
		MaxResults:       aws.Int32(50),
	}
	if cur.Token != "" {
		in.NextToken = aws.String(cur.Token)
	}
	lim := s.limiter(account)
	pager := cloudtrail.NewLookupEventsPaginator(s.client, in)
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
			items = append(items, trailItem(g, e, w.End))
		}
	}
	next := ctCursor{Mark: end.UnixMilli()}
	complete := true
	if token != "" {
		// The page budget ran out: the next Collect continues this scan.
		next = ctCursor{Token: token, Start: start.UnixMilli(), End: end.UnixMilli(), Mark: cur.Mark}
		complete = false
	}
	raw, err := json.Marshal(next)
	if err != nil {
		return grants.ActivityBatch{}, fmt.Errorf("cloudtrail cursor: %w", err)
	}
	return grants.ActivityBatch{Items: items, Cursor: string(raw), Complete: complete}, nil
}

// trailItem turns one looked-up event into an aws.activity audit event.
func trailItem(g grants.Grant, e cttypes.Event, end time.Time) grants.ActivityItem {
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
