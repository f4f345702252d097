// Package awsprov implements accessbroker's AWS providers on aws-sdk-go-v2 (the folder is
// integrations/aws; the package is named awsprov so that it does not shadow the SDK's aws
// package):
//
//   - aws-sts (STSProvider): AssumeRole on a configured role for the remaining grant time, with
//     a role session name and SourceIdentity naming the person and the grant; delivers
//     environment exports and a console sign-in link; revokes early with an inline Deny on the
//     role that matches exactly that session's aws:userid.
//   - aws-identity-center (IdentityCenterProvider): an IAM Identity Center account assignment
//     of a permission set to the person's identity store user, created and deleted through the
//     asynchronous sso-admin API.
//
// Every call goes through the retrying HTTP client of integrations/httpclient (connection
// errors, 5xx, 429 with Retry-After) and the SDK's retryer limited to throttling error codes
// that arrive as HTTP 400 (IAM/STS "Throttling", JSON "ThrottlingException"), so the two layers
// never retry the same failure. Endpoints follow aws.endpoint_url (one BaseEndpoint for every
// service) and aws.region; credentials come from the SDK's default chain in production.
//
// See docs/aws.md for the IAM permissions the broker needs and the target role's trust policy.
package awsprov
