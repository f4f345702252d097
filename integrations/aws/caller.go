package awsprov

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// CheckCaller asks STS who the configured credentials are (sts:GetCallerIdentity, which no
// IAM policy can deny) and returns the caller's ARN. It fails when the credential chain finds
// no credentials or AWS refuses them (errors wrap grants.ErrNeedsOperator then). serve's
// readiness and `config check --online` run it once for every AWS resource; the providers'
// own Check then reads each role or Identity Center assignment.
func CheckCaller(ctx context.Context, awsCfg aws.Config) (string, error) {
	out, err := sts.NewFromConfig(awsCfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return "", wrap("aws credentials (sts:GetCallerIdentity)", err)
	}
	if aws.ToString(out.Arn) == "" {
		return "", fmt.Errorf("aws credentials: sts:GetCallerIdentity answered without an ARN")
	}
	return aws.ToString(out.Arn), nil
}
