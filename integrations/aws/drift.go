package awsprov

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssoadmin"
	ssotypes "github.com/aws/aws-sdk-go-v2/service/ssoadmin/types"

	"github.com/accessbroker/accessbroker/grants"
)

// The aws-sts provider implements neither grants.AccessLister nor grants.AccessChecker: STS
// role sessions cannot be listed or read back (AWS keeps no list of live sessions; a session
// ends only at its expiry, which Issue sets). What it revokes is a deny statement in the
// role's inline policy, which Revoke itself writes and checks.
var (
	_ grants.AccessLister  = (*IdentityCenterProvider)(nil)
	_ grants.AccessChecker = (*IdentityCenterProvider)(nil)
)

// ListAccess implements grants.AccessLister: every user assignment of the permission set on
// the account (ListAccountAssignments, every page). Group assignments are never made by the
// broker and are not listed. An assignment carries no name of the broker's, so the
// reconciler counts one as drift only when the newest grant of ours for it made it (not
// preexisting) and is revoked.
func (p *IdentityCenterProvider) ListAccess(ctx context.Context) ([]grants.Access, error) {
	pages := ssoadmin.NewListAccountAssignmentsPaginator(p.sso, &ssoadmin.ListAccountAssignmentsInput{
		InstanceArn: aws.String(p.cfg.InstanceARN), AccountId: aws.String(p.cfg.AccountID),
		PermissionSetArn: aws.String(p.cfg.PermissionSetARN),
	})
	var out []grants.Access
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, wrap("aws-identity-center list account assignments", err)
		}
		for _, a := range page.AccountAssignments {
			principal := aws.ToString(a.PrincipalId)
			if a.PrincipalType != ssotypes.PrincipalTypeUser || principal == "" {
				continue
			}
			out = append(out, grants.Access{
				Key: p.HandleKey(principal), Handle: p.handle(principal, false),
				Name: fmt.Sprintf("assignment of user %s to %s on account %s", principal, p.cfg.PermissionSetARN, p.cfg.AccountID),
			})
		}
	}
	return out, nil
}

// HasAccess implements grants.AccessChecker: whether the grant's user still has the
// assignment (listed: a deletion still IN_PROGRESS, or one that reported SUCCEEDED before
// the change is visible, still counts as there). A person with no Identity Center user has
// none.
func (p *IdentityCenterProvider) HasAccess(ctx context.Context, req grants.RevokeRequest) (bool, error) {
	principal := req.Handle.Data[DataPrincipalID]
	if principal == "" {
		var err error
		principal, err = p.principalID(ctx, req.Person)
		if apiCode(err) == "ResourceNotFoundException" || errors.Is(err, grants.ErrInvalid) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("aws-identity-center read back grant %s: %w", req.GrantID, err)
		}
	}
	ok, err := p.assignmentExists(ctx, principal)
	if err != nil {
		return false, fmt.Errorf("aws-identity-center read back grant %s: %w", req.GrantID, err)
	}
	return ok, nil
}
