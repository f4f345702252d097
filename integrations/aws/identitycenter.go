package awsprov

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/identitystore"
	"github.com/aws/aws-sdk-go-v2/service/identitystore/document"
	istypes "github.com/aws/aws-sdk-go-v2/service/identitystore/types"
	"github.com/aws/aws-sdk-go-v2/service/ssoadmin"
	ssotypes "github.com/aws/aws-sdk-go-v2/service/ssoadmin/types"

	"github.com/accessbroker/accessbroker/grants"
)

// KindIdentityCenter is the provider kind of IdentityCenterProvider.
const KindIdentityCenter = "aws-identity-center"

// DefaultPollInterval is how often an asynchronous account assignment request is polled.
const DefaultPollInterval = 2 * time.Second

// IdentityCenterConfig is the configuration of one aws-identity-center resource.
type IdentityCenterConfig struct {
	// InstanceARN is the IAM Identity Center instance (arn:aws:sso:::instance/ssoins-…).
	InstanceARN string
	// IdentityStoreID is the instance's identity store (d-1234567890).
	IdentityStoreID string
	// PermissionSetARN is the permission set to assign (arn:aws:sso:::permissionSet/ssoins-…/ps-…).
	PermissionSetARN string
	// AccountID is the 12-digit AWS account the permission set is assigned on.
	AccountID string
	// UserIDs, optional, maps a person's email, Slack user id or GitHub login to an identity
	// store user id, for people whose Identity Center email differs.
	UserIDs map[string]string
	// UserAttribute is the unique attribute looked up with the person's email: "emails.value"
	// (default) or "userName" (when user names are email addresses).
	UserAttribute string
	// PortalURL, optional, is the AWS access portal shown to the person
	// (https://d-1234567890.awsapps.com/start).
	PortalURL string
}

// Validate checks the configuration and returns every problem, each a *grants.FieldError
// naming its key (aws_identity_center.…) and matching grants.ErrInvalid. It is the one rule
// for this block: config check and NewIdentityCenter both call it.
func (c IdentityCenterConfig) Validate() error {
	var errs []error
	bad := func(field, value, format string, args ...any) {
		errs = append(errs, &grants.FieldError{Block: "aws_identity_center", Field: field, Value: value, Msg: fmt.Sprintf(format, args...)})
	}
	required := func(field, value, hint string) bool {
		if strings.TrimSpace(value) == "" {
			bad(field, "", "is required: %s", hint)
			return false
		}
		return true
	}
	var instance string
	if required("instance_arn", c.InstanceARN, "arn:aws:sso:::instance/ssoins-…") {
		if m := instanceARNRE.FindStringSubmatch(c.InstanceARN); m == nil {
			bad("instance_arn", c.InstanceARN, "is not an Identity Center instance ARN (arn:aws:sso:::instance/ssoins-…)")
		} else {
			instance = m[2]
		}
	}
	if required("identity_store_id", c.IdentityStoreID, "d-… (IAM Identity Center settings)") && !identityStoreIDRE.MatchString(c.IdentityStoreID) {
		bad("identity_store_id", c.IdentityStoreID, "is not an identity store id (d-1234567890)")
	}
	if required("permission_set_arn", c.PermissionSetARN, "arn:aws:sso:::permissionSet/ssoins-…/ps-…") {
		if m := permissionSetARNRE.FindStringSubmatch(c.PermissionSetARN); m == nil {
			bad("permission_set_arn", c.PermissionSetARN, "is not a permission set ARN (arn:aws:sso:::permissionSet/ssoins-…/ps-…)")
		} else if instance != "" && m[2] != instance {
			bad("permission_set_arn", "", "belongs to instance %s, not to instance_arn's %s", m[2], instance)
		}
	}
	if required("account_id", c.AccountID, "the twelve-digit AWS account id") && !accountIDRE.MatchString(c.AccountID) {
		bad("account_id", c.AccountID, "is not a twelve-digit AWS account id")
	}
	if c.UserAttribute != "" && c.UserAttribute != "emails.value" && c.UserAttribute != "userName" {
		bad("user_attribute", c.UserAttribute, "must be emails.value or userName")
	}
	return errors.Join(errs...)
}

// IdentityCenterOption adjusts an IdentityCenterProvider.
type IdentityCenterOption func(*IdentityCenterProvider)

// WithPollInterval sets how often asynchronous requests are polled (default
// DefaultPollInterval). The waits use the provider's clock.
func WithPollInterval(d time.Duration) IdentityCenterOption {
	return func(p *IdentityCenterProvider) { p.poll = d }
}

// IdentityCenterProvider is the aws-identity-center provider. It is safe for concurrent use.
//
// Caveat: deleting an account assignment stops new sign-ins and new role sessions for the
// permission set, but console and CLI sessions already obtained through it stay valid until
// they expire (the permission set's session duration, 1 hour by default, up to 12 hours).
// Keep the permission set's session duration short for resources granted this way.
type IdentityCenterProvider struct {
	cfg   IdentityCenterConfig
	sso   *ssoadmin.Client
	ids   *identitystore.Client
	clock grants.Clock
	log   *slog.Logger
	poll  time.Duration
}

// NewIdentityCenter builds the aws-identity-center provider from its configuration and an
// aws.Config from LoadAWSConfig. It validates the configuration but does not call AWS (see
// Check).
func NewIdentityCenter(ctx context.Context, cfg IdentityCenterConfig, awsCfg aws.Config, clock grants.Clock, logger *slog.Logger, opts ...IdentityCenterOption) (*IdentityCenterProvider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.UserAttribute == "" {
		cfg.UserAttribute = "emails.value"
	}
	if clock == nil {
		clock = grants.RealClock{}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &IdentityCenterProvider{
		cfg:   cfg,
		sso:   ssoadmin.NewFromConfig(awsCfg),
		ids:   identitystore.NewFromConfig(awsCfg),
		clock: clock,
		log: logger.With("provider", KindIdentityCenter, "account_id", cfg.AccountID,
			"permission_set_arn", cfg.PermissionSetARN),
		poll: DefaultPollInterval,
	}
	for _, o := range opts {
		o(p)
	}
	if p.poll <= 0 {
		return nil, fmt.Errorf("aws-identity-center poll interval must be positive: %w", grants.ErrInvalid)
	}
	return p, nil
}

// Kind returns "aws-identity-center".
func (p *IdentityCenterProvider) Kind() string { return KindIdentityCenter }

// Check lists the assignments of the permission set on the account, which confirms the
// broker's credentials, permissions, instance, permission set and account.
func (p *IdentityCenterProvider) Check(ctx context.Context) error {
	_, err := p.sso.ListAccountAssignments(ctx, &ssoadmin.ListAccountAssignmentsInput{
		InstanceArn: aws.String(p.cfg.InstanceARN), AccountId: aws.String(p.cfg.AccountID),
		PermissionSetArn: aws.String(p.cfg.PermissionSetARN), MaxResults: aws.Int32(1),
	})
	return wrap("aws-identity-center check: list account assignments", err)
}

// Handle.Data keys of an aws-identity-center grant.
const (
	DataInstanceARN      = "instance_arn"
	DataAccountID        = "account_id"
	DataPermissionSetARN = "permission_set_arn"
	DataPrincipalID      = "principal_id"
	DataPrincipalType    = "principal_type"
)

// HandleKey is the Handle.Key of the assignment of the permission set to a user:
// "aws-sso:<instance>:<account>:<permission set>:<principal>". Two grants of the same
// resource to the same person share it.
func (p *IdentityCenterProvider) HandleKey(principalID string) string {
	return "aws-sso:" + p.cfg.InstanceARN + ":" + p.cfg.AccountID + ":" + p.cfg.PermissionSetARN + ":" + principalID
}

func (p *IdentityCenterProvider) handle(principalID string, preexisting bool) grants.Handle {
	return grants.Handle{
		Key:         p.HandleKey(principalID),
		Preexisting: preexisting,
		Data: map[string]string{
			DataInstanceARN:      p.cfg.InstanceARN,
			DataAccountID:        p.cfg.AccountID,
			DataPermissionSetARN: p.cfg.PermissionSetARN,
			DataPrincipalID:      principalID,
			DataPrincipalType:    string(ssotypes.PrincipalTypeUser),
		},
	}
}

func (p *IdentityCenterProvider) credential() grants.Credential {
	pairs := []string{
		"account_id", p.cfg.AccountID,
		"permission_set_arn", p.cfg.PermissionSetARN,
		"how", "sign in through the AWS access portal and choose this account and permission set",
	}
	if p.cfg.PortalURL != "" {
		pairs = append(pairs, "portal_url", p.cfg.PortalURL)
	}
	return grants.NewCredential(KindIdentityCenter, pairs...)
}

// Issue assigns the permission set on the account to the person's identity store user (found
// by email, or through UserIDs) and waits until the asynchronous request SUCCEEDED; a FAILED
// request is an error carrying AWS's FailureReason. If the assignment already exists it is
// left alone and the handle says Preexisting.
func (p *IdentityCenterProvider) Issue(ctx context.Context, req grants.IssueRequest) (grants.Issued, error) {
	principal, err := p.principalID(ctx, req.Person)
	if err != nil {
		return grants.Issued{}, fmt.Errorf("aws-identity-center issue grant %s: %w", req.GrantID, err)
	}
	log := p.log.With("grant_id", req.GrantID, "resource", req.Resource, "principal_id", principal)
	for {
		exists, err := p.assignmentExists(ctx, principal)
		if err != nil {
			return grants.Issued{}, fmt.Errorf("aws-identity-center issue grant %s: %w", req.GrantID, err)
		}
		if exists {
			log.InfoContext(ctx, "account assignment already exists; leaving it as it is")
			return grants.Issued{Handle: p.handle(principal, true), Credential: p.credential()}, nil
		}
		out, err := p.sso.CreateAccountAssignment(ctx, &ssoadmin.CreateAccountAssignmentInput{
			InstanceArn: aws.String(p.cfg.InstanceARN), PermissionSetArn: aws.String(p.cfg.PermissionSetARN),
			PrincipalId: aws.String(principal), PrincipalType: ssotypes.PrincipalTypeUser,
			TargetId: aws.String(p.cfg.AccountID), TargetType: ssotypes.TargetTypeAwsAccount,
		})
		if apiCode(err) == "ConflictException" {
			// Another request on this assignment is in progress: wait, then look again.
			if err := p.sleep(ctx); err != nil {
				return grants.Issued{}, fmt.Errorf("aws-identity-center issue grant %s: wait for a concurrent assignment request: %w", req.GrantID, err)
			}
			continue
		}
		if err != nil {
			return grants.Issued{}, wrap(fmt.Sprintf("aws-identity-center issue grant %s: create account assignment", req.GrantID), err)
		}
		st := out.AccountAssignmentCreationStatus
		if err := p.wait(ctx, st, p.describeCreation); err != nil {
			return grants.Issued{}, fmt.Errorf("aws-identity-center issue grant %s: create account assignment: %w", req.GrantID, err)
		}
		log.InfoContext(ctx, "account assignment created", "request_id", aws.ToString(st.RequestId))
		return grants.Issued{Handle: p.handle(principal, false), Credential: p.credential()}, nil
	}
}

// Revoke deletes the account assignment and waits until the deletion SUCCEEDED. An
// assignment (or user) that no longer exists is success; a preexisting handle is left alone.
// With an empty Handle the user is looked up again from the person.
func (p *IdentityCenterProvider) Revoke(ctx context.Context, req grants.RevokeRequest) error {
	if req.Handle.Preexisting {
		return nil
	}
	principal := req.Handle.Data[DataPrincipalID]
	if principal == "" {
		var err error
		principal, err = p.principalID(ctx, req.Person)
		if apiCode(err) == "ResourceNotFoundException" || errors.Is(err, grants.ErrInvalid) {
			return nil // no such user (or no way to name one): Issue cannot have assigned anything
		}
		if err != nil {
			return fmt.Errorf("aws-identity-center revoke grant %s: %w", req.GrantID, err)
		}
	}
	log := p.log.With("grant_id", req.GrantID, "resource", req.Resource, "principal_id", principal)
	for {
		exists, err := p.assignmentExists(ctx, principal)
		if err != nil {
			return fmt.Errorf("aws-identity-center revoke grant %s: %w", req.GrantID, err)
		}
		if !exists {
			log.DebugContext(ctx, "account assignment already gone")
			return nil
		}
		out, err := p.sso.DeleteAccountAssignment(ctx, &ssoadmin.DeleteAccountAssignmentInput{
			InstanceArn: aws.String(p.cfg.InstanceARN), PermissionSetArn: aws.String(p.cfg.PermissionSetARN),
			PrincipalId: aws.String(principal), PrincipalType: ssotypes.PrincipalTypeUser,
			TargetId: aws.String(p.cfg.AccountID), TargetType: ssotypes.TargetTypeAwsAccount,
		})
		switch apiCode(err) {
		case "ResourceNotFoundException":
			return nil
		case "ConflictException":
			if err := p.sleep(ctx); err != nil {
				return fmt.Errorf("aws-identity-center revoke grant %s: wait for a concurrent assignment request: %w", req.GrantID, err)
			}
			continue
		}
		if err != nil {
			return wrap(fmt.Sprintf("aws-identity-center revoke grant %s: delete account assignment", req.GrantID), err)
		}
		st := out.AccountAssignmentDeletionStatus
		if err := p.wait(ctx, st, p.describeDeletion); err != nil {
			// A failed deletion of something that is gone anyway is a success.
			if exists, lerr := p.assignmentExists(ctx, principal); lerr == nil && !exists {
				return nil
			}
			return fmt.Errorf("aws-identity-center revoke grant %s: delete account assignment: %w", req.GrantID, err)
		}
		log.InfoContext(ctx, "account assignment deleted", "request_id", aws.ToString(st.RequestId))
		return nil
	}
}

// principalID finds the person's identity store user id.
func (p *IdentityCenterProvider) principalID(ctx context.Context, person grants.Person) (string, error) {
	for _, k := range []string{person.Email, person.SlackUserID, person.GitHubLogin} {
		if id, ok := p.cfg.UserIDs[k]; ok && k != "" {
			return id, nil
		}
	}
	if person.Email == "" {
		return "", fmt.Errorf("person %s has no email to find their Identity Center user: add them to aws_identity_center.user_ids: %w", person.Label(), grants.ErrInvalid)
	}
	out, err := p.ids.GetUserId(ctx, &identitystore.GetUserIdInput{
		IdentityStoreId: aws.String(p.cfg.IdentityStoreID),
		AlternateIdentifier: &istypes.AlternateIdentifierMemberUniqueAttribute{Value: istypes.UniqueAttribute{
			AttributePath: aws.String(p.cfg.UserAttribute), AttributeValue: document.NewLazyDocument(person.Email),
		}},
	})
	if apiCode(err) == "ResourceNotFoundException" {
		return "", fmt.Errorf("no Identity Center user with %s %q in identity store %s (map them in aws_identity_center.user_ids): %w (%w)",
			p.cfg.UserAttribute, person.Email, p.cfg.IdentityStoreID, err, grants.ErrNeedsOperator)
	}
	if err != nil {
		return "", wrap(fmt.Sprintf("find Identity Center user %q", person.Email), err)
	}
	if id := aws.ToString(out.UserId); id != "" {
		return id, nil
	}
	return "", fmt.Errorf("identitystore GetUserId answered without a UserId for %q", person.Email)
}

// assignmentExists lists the permission set's assignments on the account (every page).
func (p *IdentityCenterProvider) assignmentExists(ctx context.Context, principal string) (bool, error) {
	pages := ssoadmin.NewListAccountAssignmentsPaginator(p.sso, &ssoadmin.ListAccountAssignmentsInput{
		InstanceArn: aws.String(p.cfg.InstanceARN), AccountId: aws.String(p.cfg.AccountID),
		PermissionSetArn: aws.String(p.cfg.PermissionSetARN),
	})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return false, wrap("list account assignments", err)
		}
		for _, a := range out.AccountAssignments {
			if a.PrincipalType == ssotypes.PrincipalTypeUser && aws.ToString(a.PrincipalId) == principal {
				return true, nil
			}
		}
	}
	return false, nil
}

type describeFunc func(ctx context.Context, requestID string) (*ssotypes.AccountAssignmentOperationStatus, error)

func (p *IdentityCenterProvider) describeCreation(ctx context.Context, id string) (*ssotypes.AccountAssignmentOperationStatus, error) {
	out, err := p.sso.DescribeAccountAssignmentCreationStatus(ctx, &ssoadmin.DescribeAccountAssignmentCreationStatusInput{
		InstanceArn: aws.String(p.cfg.InstanceARN), AccountAssignmentCreationRequestId: aws.String(id),
	})
	if err != nil {
		return nil, wrap("describe account assignment creation status", err)
	}
	return out.AccountAssignmentCreationStatus, nil
}

func (p *IdentityCenterProvider) describeDeletion(ctx context.Context, id string) (*ssotypes.AccountAssignmentOperationStatus, error) {
	out, err := p.sso.DescribeAccountAssignmentDeletionStatus(ctx, &ssoadmin.DescribeAccountAssignmentDeletionStatusInput{
		InstanceArn: aws.String(p.cfg.InstanceARN), AccountAssignmentDeletionRequestId: aws.String(id),
	})
	if err != nil {
		return nil, wrap("describe account assignment deletion status", err)
	}
	return out.AccountAssignmentDeletionStatus, nil
}

// wait polls an asynchronous request until SUCCEEDED (nil) or FAILED (an error with AWS's
// FailureReason), waiting the poll interval on the provider's clock between polls; ctx bounds
// it.
func (p *IdentityCenterProvider) wait(ctx context.Context, st *ssotypes.AccountAssignmentOperationStatus, describe describeFunc) error {
	if st == nil || aws.ToString(st.RequestId) == "" {
		return fmt.Errorf("AWS answered without a request status")
	}
	id := aws.ToString(st.RequestId)
	for {
		switch st.Status {
		case ssotypes.StatusValuesSucceeded:
			return nil
		case ssotypes.StatusValuesFailed:
			return fmt.Errorf("request %s FAILED: %s", id, aws.ToString(st.FailureReason))
		}
		if err := p.sleep(ctx); err != nil {
			return fmt.Errorf("request %s still %s: %w", id, st.Status, err)
		}
		next, err := describe(ctx, id)
		if err != nil {
			return err
		}
		if next == nil {
			return fmt.Errorf("request %s: AWS answered without a status", id)
		}
		st = next
	}
}

func (p *IdentityCenterProvider) sleep(ctx context.Context) error {
	t := p.clock.NewTimer(p.poll)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SSOSession names the role sessions of an aws-identity-center grant as CloudTrail records
// them in the grant's account: IAM Identity Center signs the person in to the role
// AWSReservedSSO_<PermissionSetName>_<suffix> with a session named after their Identity
// Center user name (userIdentity.arn
// arn:aws:sts::<AccountID>:assumed-role/AWSReservedSSO_<PermissionSetName>_<suffix>/<UserName>).
type SSOSession struct {
	AccountID         string
	PermissionSetName string
	UserName          string
}

// SSOSession resolves the names CloudTrail shows for the sessions of the grant with handle h:
// the permission set's name (ssoadmin DescribePermissionSet) and the user's name (identitystore
// DescribeUser of the handle's principal id). A handle without an account, permission set or
// principal, or a user or permission set that no longer exists, wraps
// grants.ErrActivityNotCollectable.
func (p *IdentityCenterProvider) SSOSession(ctx context.Context, h grants.Handle) (SSOSession, error) {
	account, ps, principal := h.Data[DataAccountID], h.Data[DataPermissionSetARN], h.Data[DataPrincipalID]
	if account == "" || ps == "" || principal == "" {
		return SSOSession{}, fmt.Errorf("the grant's handle names no account, permission set or user (never issued): %w", grants.ErrActivityNotCollectable)
	}
	instance := h.Data[DataInstanceARN]
	if instance == "" {
		instance = p.cfg.InstanceARN
	}
	pso, err := p.sso.DescribePermissionSet(ctx, &ssoadmin.DescribePermissionSetInput{InstanceArn: aws.String(instance), PermissionSetArn: aws.String(ps)})
	if apiCode(err) == "ResourceNotFoundException" {
		return SSOSession{}, fmt.Errorf("permission set %s no longer exists: %w", ps, grants.ErrActivityNotCollectable)
	}
	if err != nil {
		return SSOSession{}, wrap("describe permission set "+ps, err)
	}
	user, err := p.ids.DescribeUser(ctx, &identitystore.DescribeUserInput{IdentityStoreId: aws.String(p.cfg.IdentityStoreID), UserId: aws.String(principal)})
	if apiCode(err) == "ResourceNotFoundException" {
		return SSOSession{}, fmt.Errorf("user %s no longer exists in identity store %s: %w", principal, p.cfg.IdentityStoreID, grants.ErrActivityNotCollectable)
	}
	if err != nil {
		return SSOSession{}, wrap("describe Identity Center user "+principal, err)
	}
	s := SSOSession{AccountID: account, UserName: aws.ToString(user.UserName)}
	if pso.PermissionSet != nil {
		s.PermissionSetName = aws.ToString(pso.PermissionSet.Name)
	}
	if s.PermissionSetName == "" || s.UserName == "" {
		return SSOSession{}, fmt.Errorf("AWS answered without the permission set's name or the user's name")
	}
	return s, nil
}
