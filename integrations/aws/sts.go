package awsprov

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
)

// KindSTS is the provider kind of STSProvider.
const KindSTS = "aws-sts"

// Defaults for the console sign-in link.
const (
	DefaultFederationURL      = "https://signin.aws.amazon.com/federation"
	DefaultConsoleDestination = "https://console.aws.amazon.com/"
)

// clockSkew is how long after a session's recorded expiry accessbroker still treats it as
// possibly alive (its clock and AWS's may disagree).
const clockSkew = 2 * time.Minute

// STSConfig is the configuration of one aws-sts resource.
type STSConfig struct {
	// RoleARN is the role to assume: arn:aws:iam::<12-digit account>:role/[path/]name.
	RoleARN string
	// SessionPolicy, optional, is an inline session policy (JSON, at most 2048 characters) that
	// narrows what the session may do.
	SessionPolicy string
	// MaxSessionDuration, optional, caps DurationSeconds below the role's own
	// MaxSessionDuration (read with iam:GetRole); at least 15 minutes when set.
	MaxSessionDuration time.Duration
}

// Validate checks the configuration and returns every problem, each a *grants.FieldError
// naming its key (aws_sts.…) and matching grants.ErrInvalid. It is the one rule for this
// block: config check and NewSTS both call it.
func (c STSConfig) Validate() error {
	var errs []error
	bad := func(field, value, format string, args ...any) {
		errs = append(errs, &grants.FieldError{Block: "aws_sts", Field: field, Value: value, Msg: fmt.Sprintf(format, args...)})
	}
	switch {
	case strings.TrimSpace(c.RoleARN) == "":
		bad("role_arn", "", "is required: the IAM role to assume, arn:aws:iam::123456789012:role/name")
	case !roleARNRE.MatchString(c.RoleARN):
		bad("role_arn", c.RoleARN, "is not an IAM role ARN (arn:aws:iam::123456789012:role/name, in partition %s)", roleARNPartitions)
	}
	if c.SessionPolicy != "" {
		trimmed := strings.TrimSpace(c.SessionPolicy)
		var doc struct {
			Version   string
			Statement json.RawMessage
		}
		switch {
		case !json.Valid([]byte(trimmed)) || !strings.HasPrefix(trimmed, "{"):
			bad("session_policy", "", "must be an IAM policy document as a JSON object")
		case len(c.SessionPolicy) > 2048:
			bad("session_policy", "", "is %d characters; AWS accepts at most 2048", len(c.SessionPolicy))
		case json.Unmarshal([]byte(trimmed), &doc) != nil || doc.Version == "" || len(doc.Statement) == 0:
			bad("session_policy", "", `must be an IAM policy document with Version and Statement, e.g. {"Version": "2012-10-17", "Statement": [...]}`)
		}
	}
	if d := c.MaxSessionDuration; d != 0 && (d < MinSessionDuration || d > 12*time.Hour) {
		bad("max_session_duration", "", "must be between 15m and 12h, not %s", d)
	}
	return errors.Join(errs...)
}

// STSOption adjusts an STSProvider.
type STSOption func(*stsOptions)

type stsOptions struct {
	federationURL string
	destination   string
	issuer        string
	sizeLimit     int
	onCollateral  func(context.Context, CollateralRevocation)
}

// WithFederationURL sets the console federation endpoint (default DefaultFederationURL).
// An empty string disables the console link.
func WithFederationURL(u string) STSOption { return func(o *stsOptions) { o.federationURL = u } }

// WithConsoleDestination sets the console page the sign-in link opens (default
// DefaultConsoleDestination) and the Issuer shown when the console session ends.
func WithConsoleDestination(destination, issuer string) STSOption {
	return func(o *stsOptions) { o.destination, o.issuer = destination, issuer }
}

// WithRolePolicySizeLimit sets the inline policy size budget the revocation policy must fit
// (default DefaultRolePolicySizeLimit). IAM's own LimitExceeded is honoured as well.
func WithRolePolicySizeLimit(n int) STSOption { return func(o *stsOptions) { o.sizeLimit = n } }

// WithCollateralHook is called whenever a revocation had to fall back to denying every older
// session of the role (other people's too), so the caller can alert (audit channel).
func WithCollateralHook(f func(context.Context, CollateralRevocation)) STSOption {
	return func(o *stsOptions) { o.onCollateral = f }
}

// CollateralRevocation describes a fallback revocation that cut more than one session.
type CollateralRevocation struct {
	RoleARN     string
	SessionName string    // the session that was being revoked
	Cutoff      time.Time // every session of the role issued before this is denied
	Until       time.Time // when accessbroker removes that deny
	Reason      string
}

// STSProvider is the aws-sts provider. It is safe for concurrent use.
type STSProvider struct {
	cfg      STSConfig
	roleName string
	sts      *sts.Client
	iam      *iam.Client
	http     aws.HTTPClient
	clock    grants.Clock
	log      *slog.Logger
	opts     stsOptions
	endpoint string // names the AWS the role lives in, for roleLocks

	mu      sync.Mutex
	role    *roleInfo
	chained bool // the broker's credentials are a role session: AWS caps sessions at 1 hour
}

type roleInfo struct {
	id         string
	arn        string
	maxSession time.Duration
}

// roleLocks holds one lock per role (and endpoint), shared by every provider using the role,
// so that two resources on the same role never overwrite each other's deny statements: the
// revocation policy is read, changed and written back, and IAM has no conditional write.
var roleLocks sync.Map

func (p *STSProvider) lockFor(roleARN string) chan struct{} {
	l, _ := roleLocks.LoadOrStore(p.endpoint+"|"+roleARN, make(chan struct{}, 1))
	return l.(chan struct{})
}

// NewSTS builds the aws-sts provider from its configuration and an aws.Config from
// LoadAWSConfig. It validates the configuration but does not call AWS (see Check).
func NewSTS(ctx context.Context, cfg STSConfig, awsCfg aws.Config, clock grants.Clock, logger *slog.Logger, opts ...STSOption) (*STSProvider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := stsOptions{federationURL: DefaultFederationURL, destination: DefaultConsoleDestination, issuer: "accessbroker", sizeLimit: DefaultRolePolicySizeLimit}
	for _, opt := range opts {
		opt(&o)
	}
	if o.federationURL != "" {
		if u, err := url.Parse(o.federationURL); err != nil || u.Host == "" || u.RawQuery != "" {
			return nil, fmt.Errorf("federation URL %q must be an absolute URL without a query: %w", o.federationURL, grants.ErrInvalid)
		}
	}
	if clock == nil {
		clock = grants.RealClock{}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := roleARNRE.FindStringSubmatch(cfg.RoleARN)
	httpc := awsCfg.HTTPClient
	if httpc == nil {
		httpc = httpclient.New(httpclient.Options{Logger: logger})
	}
	return &STSProvider{
		cfg:      cfg,
		roleName: m[4],
		sts:      sts.NewFromConfig(awsCfg),
		iam:      iam.NewFromConfig(awsCfg),
		http:     httpc,
		clock:    clock,
		log:      logger.With("provider", KindSTS, "role_arn", cfg.RoleARN),
		opts:     o,
		endpoint: aws.ToString(awsCfg.BaseEndpoint),
	}, nil
}

// Kind returns "aws-sts".
func (p *STSProvider) Kind() string { return KindSTS }

// Check reads the role (iam:GetRole) to confirm the broker's credentials, permissions and the
// role exist; for config check and readiness.
func (p *STSProvider) Check(ctx context.Context) error {
	p.forgetRole()
	_, err := p.roleInfo(ctx)
	return err
}

func (p *STSProvider) forgetRole() {
	p.mu.Lock()
	p.role = nil
	p.mu.Unlock()
}

// roleInfo returns the role id and maximum session duration, read once with iam:GetRole and
// cached.
func (p *STSProvider) roleInfo(ctx context.Context) (*roleInfo, error) {
	p.mu.Lock()
	r := p.role
	p.mu.Unlock()
	if r != nil {
		return r, nil
	}
	out, err := p.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(p.roleName)})
	if err != nil {
		return nil, wrap(fmt.Sprintf("read role %s (iam:GetRole)", p.roleName), err)
	}
	if out.Role == nil || aws.ToString(out.Role.RoleId) == "" {
		return nil, fmt.Errorf("read role %s: iam:GetRole answered without a role id", p.roleName)
	}
	maxSession := time.Hour
	if v := aws.ToInt32(out.Role.MaxSessionDuration); v > 0 {
		maxSession = time.Duration(v) * time.Second
	}
	r = &roleInfo{id: aws.ToString(out.Role.RoleId), arn: aws.ToString(out.Role.Arn), maxSession: maxSession}
	p.mu.Lock()
	p.role = r
	p.mu.Unlock()
	return r, nil
}

func (p *STSProvider) durationLimit(r *roleInfo) time.Duration {
	limit := r.maxSession
	if p.cfg.MaxSessionDuration > 0 && p.cfg.MaxSessionDuration < limit {
		limit = p.cfg.MaxSessionDuration
	}
	p.mu.Lock()
	chained := p.chained
	p.mu.Unlock()
	if chained && limit > time.Hour {
		limit = time.Hour
	}
	return limit
}

// Handle.Data keys of an aws-sts grant.
const (
	DataRoleARN        = "role_arn"
	DataRoleName       = "role_name"
	DataRoleID         = "role_id"
	DataSessionName    = "session_name"
	DataSourceIdentity = "source_identity"
	DataIssuedAt       = "issued_at"
	DataSTSExpiry      = "sts_expiry"
	// DataAccessKeyID is the session's AccessKeyId (ASIA…; not secret): CloudTrail records it
	// with every call the session makes, and activity collection looks events up by it.
	DataAccessKeyID = "access_key_id"
)

// Issue assumes the role for the person: DurationSeconds is the time left in the grant (at
// least 900 s, at most the role's MaxSessionDuration), RoleSessionName is SessionName and
// SourceIdentity the person. The credential carries the environment exports, their expiry
// and, when the federation endpoint answers, a console sign-in URL; if it does not, the
// credential says so in console_url_unavailable and the grant still succeeds.
//
// Handle.Key is the session name, unique per grant; Handle.Data holds the role name, role id
// (AROA…), session name and STS expiry that Revoke needs, and the session's AccessKeyId
// (not secret) that activity collection looks CloudTrail events up by.
func (p *STSProvider) Issue(ctx context.Context, req grants.IssueRequest) (grants.Issued, error) {
	if req.GrantID == "" {
		return grants.Issued{}, fmt.Errorf("aws-sts issue: empty grant id: %w", grants.ErrInvalid)
	}
	now := p.clock.Now()
	if !req.ExpiresAt.After(now) {
		return grants.Issued{}, fmt.Errorf("aws-sts issue grant %s: expiry %s is not in the future: %w", req.GrantID, grants.Timestamp(req.ExpiresAt), grants.ErrInvalid)
	}
	name := SessionName(req.Person, req.GrantID)
	src := SourceIdentity(req.Person)
	var (
		out    *sts.AssumeRoleOutput
		role   *roleInfo
		dur    time.Duration
		capped bool
	)
	for attempt := 0; ; attempt++ {
		var err error
		role, err = p.roleInfo(ctx)
		if err != nil {
			return grants.Issued{}, fmt.Errorf("aws-sts issue grant %s: %w", req.GrantID, err)
		}
		dur, capped = SessionDuration(now, req.ExpiresAt, p.durationLimit(role))
		in := &sts.AssumeRoleInput{
			RoleArn:         aws.String(p.cfg.RoleARN),
			RoleSessionName: aws.String(name),
			DurationSeconds: aws.Int32(int32(dur / time.Second)),
		}
		if src != "" {
			in.SourceIdentity = aws.String(src)
		}
		if p.cfg.SessionPolicy != "" {
			in.Policy = aws.String(p.cfg.SessionPolicy)
		}
		out, err = p.sts.AssumeRole(ctx, in)
		if err != nil && attempt < 2 && apiCode(err) == "ValidationError" && dur > time.Hour {
			switch msg := err.Error(); {
			case strings.Contains(msg, "chaining"):
				// The broker itself runs on role credentials: AWS limits chained sessions to
				// one hour. Remember it and ask again.
				p.mu.Lock()
				p.chained = true
				p.mu.Unlock()
				p.log.WarnContext(ctx, "the broker's own credentials are a role session (role chaining): sessions are limited to one hour")
				continue
			case strings.Contains(msg, "MaxSessionDuration"):
				// The role's maximum was lowered since it was cached: read it again.
				p.forgetRole()
				continue
			}
		}
		if err != nil {
			e := wrap(fmt.Sprintf("aws-sts issue grant %s: assume role %s as %s", req.GrantID, p.cfg.RoleARN, name), err)
			if apiCode(err) == "AccessDenied" {
				e = fmt.Errorf("%w; check that the role's trust policy allows sts:AssumeRole and sts:SetSourceIdentity for the broker's principal", e)
			}
			return grants.Issued{}, e
		}
		break
	}
	if out.Credentials == nil {
		return grants.Issued{}, fmt.Errorf("aws-sts issue grant %s: AssumeRole answered without credentials", req.GrantID)
	}
	c := out.Credentials
	expiry := aws.ToTime(c.Expiration).UTC()
	if expiry.IsZero() {
		expiry = now.Add(dur)
	}
	issuedAt := expiry.Add(-dur)
	log := p.log.With("grant_id", req.GrantID, "resource", req.Resource, "session_name", name)
	if capped {
		log.WarnContext(ctx, "role maximum session duration is shorter than the grant; the credentials expire first",
			"sts_expiry", grants.Timestamp(expiry), "grant_expiry", grants.Timestamp(req.ExpiresAt))
	}
	pairs := []string{
		"AWS_ACCESS_KEY_ID", aws.ToString(c.AccessKeyId),
		"AWS_SECRET_ACCESS_KEY", aws.ToString(c.SecretAccessKey),
		"AWS_SESSION_TOKEN", aws.ToString(c.SessionToken),
		"AWS_CREDENTIAL_EXPIRATION", grants.Timestamp(expiry),
	}
	if p.opts.federationURL != "" {
		link, err := p.consoleURL(ctx, aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken), dur)
		if err != nil {
			log.WarnContext(ctx, "console sign-in link unavailable; delivering the credentials without it", "error", err.Error())
			pairs = append(pairs, "console_url_unavailable", "the AWS console sign-in link could not be created ("+err.Error()+"); use the environment variables")
		} else {
			pairs = append(pairs, "console_url", link)
		}
	}
	if capped {
		pairs = append(pairs, "note", fmt.Sprintf("these credentials expire at %s, before the grant ends at %s, because the role's maximum session duration is %s",
			grants.Timestamp(expiry), grants.Timestamp(req.ExpiresAt), p.durationLimit(role)))
	}
	log.InfoContext(ctx, "assumed role", "sts_expiry", grants.Timestamp(expiry), "duration_seconds", int(dur/time.Second))
	return grants.Issued{
		Handle: grants.Handle{
			Key: name,
			Data: map[string]string{
				DataRoleARN:        p.cfg.RoleARN,
				DataRoleName:       p.roleName,
				DataRoleID:         role.id,
				DataSessionName:    name,
				DataSourceIdentity: src,
				DataIssuedAt:       grants.Timestamp(issuedAt),
				DataSTSExpiry:      grants.Timestamp(expiry),
				DataAccessKeyID:    aws.ToString(c.AccessKeyId),
			},
		},
		Credential: grants.NewCredential(KindSTS, pairs...),
	}, nil
}

// consoleURL exchanges the session credentials for a sign-in token at the federation
// endpoint and builds the console login URL. Errors never contain the request URL (its query
// holds the credentials).
func (p *STSProvider) consoleURL(ctx context.Context, keyID, secret, token string, dur time.Duration) (string, error) {
	session, err := json.Marshal(map[string]string{"sessionId": keyID, "sessionKey": secret, "sessionToken": token})
	if err != nil {
		return "", fmt.Errorf("encode session: %w", err)
	}
	consoleDur := min(dur, maxConsoleSession)
	q := url.Values{
		"Action":          {"getSigninToken"},
		"SessionDuration": {strconv.Itoa(int(consoleDur / time.Second))},
		"Session":         {string(session)},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.opts.federationURL+"?"+q.Encode(), nil)
	if err != nil {
		return "", errors.New("build federation request")
	}
	resp, err := p.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", fmt.Errorf("federation endpoint unreachable: %s", httpclient.RedactQuery(err.Error()))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("federation endpoint answered %s", resp.Status)
	}
	var tok struct {
		SigninToken string `json:"SigninToken"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.SigninToken == "" {
		return "", errors.New("federation endpoint answered without a SigninToken")
	}
	login := url.Values{
		"Action":      {"login"},
		"Issuer":      {p.opts.issuer},
		"Destination": {p.opts.destination},
		"SigninToken": {tok.SigninToken},
	}
	return p.opts.federationURL + "?" + login.Encode(), nil
}

// sessionRef is what Revoke needs to know about a session.
type sessionRef struct {
	roleName string // the role the session belongs to (from the handle: the configuration may have moved on)
	roleARN  string
	name     string
	roleID   string
	expiry   time.Time // STS (and console) expiry
	issuedAt time.Time // zero when unknown
}

// Revoke denies the grant's session through the role's revocation policy (see
// DenyPolicyName), so its credentials stop working even though STS keeps them valid:
//
//   - a session whose STS expiry has passed needs nothing: success without a policy change;
//   - a session already denied (its aws:userid is listed, or an older-sessions cutoff covers
//     it) needs nothing: Revoke is idempotent;
//   - expired entries are pruned whenever the policy is written;
//   - when the policy would exceed the role's inline policy budget, every session of the role
//     issued until now is denied instead; that is logged at error level and reported to the
//     WithCollateralHook callback, because it cuts other people's sessions too;
//   - a role that no longer exists (or was recreated with a new id) has no live sessions:
//     success.
//
// With an empty Handle (an interrupted issue) the session name is recomputed from the person
// and grant id and the session is assumed to live as long as the role allows from now.
func (p *STSProvider) Revoke(ctx context.Context, req grants.RevokeRequest) error {
	if req.Handle.Preexisting {
		return nil
	}
	ref, gone, err := p.sessionRef(ctx, req)
	if err != nil {
		return fmt.Errorf("aws-sts revoke grant %s: %w", req.GrantID, err)
	}
	log := p.log.With("grant_id", req.GrantID, "resource", req.Resource, "session_name", ref.name)
	if gone {
		log.InfoContext(ctx, "role no longer exists or was recreated; its sessions are already unusable")
		return nil
	}
	now := p.clock.Now()
	if now.After(ref.expiry.Add(clockSkew)) {
		log.DebugContext(ctx, "session already expired at STS; nothing to deny", "sts_expiry", grants.Timestamp(ref.expiry))
		return nil
	}
	lock := p.lockFor(ref.roleARN)
	select {
	case lock <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("aws-sts revoke grant %s: wait for the role's policy lock: %w", req.GrantID, ctx.Err())
	}
	defer func() { <-lock }()

	if err := p.denySession(ctx, log, ref, now); err != nil {
		return fmt.Errorf("aws-sts revoke grant %s: %w", req.GrantID, err)
	}
	return nil
}

// sessionRef reads the session from the handle, or reconstructs it from the request. gone
// reports that the role it belonged to no longer exists.
func (p *STSProvider) sessionRef(ctx context.Context, req grants.RevokeRequest) (sessionRef, bool, error) {
	d := req.Handle.Data
	ref := sessionRef{roleName: p.roleName, roleARN: p.cfg.RoleARN, name: d[DataSessionName], roleID: d[DataRoleID]}
	if d[DataRoleARN] != "" && d[DataRoleARN] != p.cfg.RoleARN {
		m := roleARNRE.FindStringSubmatch(d[DataRoleARN])
		if m == nil || ref.roleID == "" || d[DataSTSExpiry] == "" {
			return ref, false, fmt.Errorf("handle names role %q, which is not this resource's role %s and is incomplete: %w", d[DataRoleARN], p.cfg.RoleARN, grants.ErrNeedsOperator)
		}
		ref.roleName, ref.roleARN = m[4], d[DataRoleARN]
	}
	if ref.name == "" {
		ref.name = SessionName(req.Person, req.GrantID)
	}
	if t, err := time.Parse(time.RFC3339Nano, d[DataSTSExpiry]); err == nil {
		ref.expiry = t
	}
	if t, err := time.Parse(time.RFC3339Nano, d[DataIssuedAt]); err == nil {
		ref.issuedAt = t
	}
	if ref.roleID != "" && !ref.expiry.IsZero() {
		return ref, false, nil
	}
	role, err := p.roleInfo(ctx)
	if err != nil {
		if apiCode(err) == "NoSuchEntity" {
			return ref, true, nil
		}
		return ref, false, err
	}
	if ref.roleID == "" {
		ref.roleID = role.id
	} else if ref.roleID != role.id {
		return ref, true, nil
	}
	if ref.expiry.IsZero() {
		ref.expiry = p.clock.Now().Add(role.maxSession)
	}
	return ref, false, nil
}

// denySession adds the session to the revocation policy (or falls back), holding the role
// lock.
func (p *STSProvider) denySession(ctx context.Context, log *slog.Logger, ref sessionRef, now time.Time) error {
	userID := ref.roleID + ":" + ref.name
	doc, err := p.readDenyDoc(ctx, ref.roleName)
	if err != nil {
		return err
	}
	if doc.covers(userID, ref.issuedAt, now) {
		log.DebugContext(ctx, "session already denied")
		return nil
	}
	pruned := doc.prune(now)
	doc.add(userID, ref.expiry)
	text := doc.render()
	if policySize(text) <= p.opts.sizeLimit {
		err := p.putDenyDoc(ctx, ref.roleName, text)
		switch {
		case err == nil:
			log.InfoContext(ctx, "session denied by inline policy", "policy", DenyPolicyName, "aws_userid", userID,
				"sessions_denied", doc.sessions(), "pruned", pruned, "policy_size", policySize(text))
			return nil
		case apiCode(err) == "NoSuchEntity":
			log.InfoContext(ctx, "role no longer exists; its sessions are already unusable")
			return nil
		case apiCode(err) != "LimitExceeded":
			return wrap(fmt.Sprintf("put inline policy %s on role %s", DenyPolicyName, ref.roleName), err)
		}
	}
	// The per-session form does not fit: deny every session issued until now.
	notBefore := ref.issuedAt
	if notBefore.IsZero() {
		notBefore = now.Add(clockSkew) // issue time unknown: allow for a broker clock behind AWS's
	}
	fb := doc.fallback(now, notBefore)
	fbText := fb.render()
	if err := p.putDenyDoc(ctx, ref.roleName, fbText); err != nil {
		if apiCode(err) == "LimitExceeded" {
			return fmt.Errorf("role %s has no room left for accessbroker's deny policy (IAM limits a role's inline policies to %d characters in all): remove or shrink its other inline policies: %w (%w)",
				ref.roleName, p.opts.sizeLimit, err, grants.ErrNeedsOperator)
		}
		if apiCode(err) == "NoSuchEntity" {
			return nil
		}
		return wrap(fmt.Sprintf("put inline policy %s on role %s", DenyPolicyName, ref.roleName), err)
	}
	ev := CollateralRevocation{
		RoleARN: ref.roleARN, SessionName: ref.name, Cutoff: fb.older.cutoff, Until: fb.older.until,
		Reason: fmt.Sprintf("the role's revocation policy is full (%d sessions); every session of %s issued before %s is denied until %s",
			doc.sessions(), ref.roleName, grants.Timestamp(fb.older.cutoff), grants.Timestamp(fb.older.until)),
	}
	log.ErrorContext(ctx, "revoked ALL older sessions of the role: the per-session deny policy is full", "alert", true,
		"cutoff", grants.Timestamp(ev.Cutoff), "until", grants.Timestamp(ev.Until), "sessions_replaced", doc.sessions())
	if p.opts.onCollateral != nil {
		p.opts.onCollateral(ctx, ev)
	}
	return nil
}

func (p *STSProvider) readDenyDoc(ctx context.Context, roleName string) (*denyDoc, error) {
	out, err := p.iam.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(roleName), PolicyName: aws.String(DenyPolicyName)})
	if err != nil {
		if apiCode(err) == "NoSuchEntity" {
			return newDenyDoc(), nil // no policy yet (or no role: the put will tell)
		}
		return nil, wrap(fmt.Sprintf("read inline policy %s on role %s", DenyPolicyName, roleName), err)
	}
	text, err := decodePolicyDocument(aws.ToString(out.PolicyDocument))
	if err != nil {
		return nil, err
	}
	doc, err := parseDenyDoc(text)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, grants.ErrNeedsOperator)
	}
	return doc, nil
}

func (p *STSProvider) putDenyDoc(ctx context.Context, roleName, text string) error {
	_, err := p.iam.PutRolePolicy(ctx, &iam.PutRolePolicyInput{
		RoleName: aws.String(roleName), PolicyName: aws.String(DenyPolicyName), PolicyDocument: aws.String(text),
	})
	return err
}
