package awsprov

import (
	"fmt"
	"regexp"
)

// The ARN and id patterns of the AWS providers, in one place: the providers' Validate
// methods use them, and config check calls those methods, so a file config check accepts is
// one serve accepts.
//
// The partitions differ on purpose. aws-sts is supported in the commercial, China and
// GovCloud partitions only (its console sign-in link and revocation have not been tried
// elsewhere), so a role ARN in aws-iso or aws-iso-b is refused; IAM Identity Center instance
// and permission set ARNs are accepted in every partition that has the service.
var (
	// roleARNPartitions are the partitions an aws-sts role ARN may name, for messages.
	roleARNPartitions = "aws, aws-cn or aws-us-gov"
	// roleARNRE is an IAM role ARN; submatches: partition, account, path, role name.
	roleARNRE = regexp.MustCompile(`^arn:(aws|aws-cn|aws-us-gov):iam::(\d{12}):role/((?:[\x21-\x7e]+/)?)([\w+=,.@-]{1,64})$`)
	// instanceARNRE is an Identity Center instance ARN; submatch 2 is the instance id.
	instanceARNRE = regexp.MustCompile(`^arn:(aws|aws-us-gov|aws-cn|aws-iso|aws-iso-b):sso:::instance/((?:sso)?ins-[a-zA-Z0-9-.]{16})$`)
	// permissionSetARNRE is a permission set ARN; submatch 2 is its instance id.
	permissionSetARNRE = regexp.MustCompile(`^arn:(aws|aws-us-gov|aws-cn|aws-iso|aws-iso-b):sso:::permissionSet/((?:sso)?ins-[a-zA-Z0-9-.]{16})/ps-[a-zA-Z0-9-./]{16}$`)
	// identityStoreIDRE is an identity store id (d-… or a UUID).
	identityStoreIDRE = regexp.MustCompile(`^(d-[0-9a-f]{10}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$`)
	// accountIDRE is a twelve-digit AWS account id.
	accountIDRE = regexp.MustCompile(`^\d{12}$`)
)

// ValidateActivityAccountRole checks one activity.aws.account_roles entry: a twelve-digit
// account id and the ARN of a role in that account (the role the CloudTrail source assumes to
// read the account's event history).
func ValidateActivityAccountRole(account, roleARN string) error {
	if !accountIDRE.MatchString(account) {
		return fmt.Errorf("%q is not a twelve-digit AWS account id", account)
	}
	m := roleARNRE.FindStringSubmatch(roleARN)
	if m == nil {
		return fmt.Errorf("%q is not an IAM role ARN (arn:aws:iam::%s:role/NAME, in %s)", roleARN, account, roleARNPartitions)
	}
	if m[2] != account {
		return fmt.Errorf("role %s is in account %s, not in %s: give the role in %s that may call cloudtrail:LookupEvents and trusts the broker", roleARN, m[2], account, account)
	}
	return nil
}
