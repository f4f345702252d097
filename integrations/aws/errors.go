package awsprov

import (
	"errors"
	"fmt"

	"github.com/aws/smithy-go"

	"github.com/accessbroker/accessbroker/grants"
)

// needsOperator lists AWS error codes that retrying will not fix: missing permissions,
// broken configuration, malformed requests.
var needsOperator = map[string]bool{
	"AccessDenied":                  true,
	"AccessDeniedException":         true,
	"UnrecognizedClientException":   true,
	"InvalidClientTokenId":          true,
	"SignatureDoesNotMatch":         true,
	"InvalidSignatureException":     true,
	"IncompleteSignature":           true,
	"MissingAuthenticationToken":    true,
	"ValidationError":               true,
	"ValidationException":           true,
	"MalformedPolicyDocument":       true,
	"PackedPolicyTooLarge":          true,
	"RegionDisabledException":       true,
	"ServiceQuotaExceededException": true,
	"UnmodifiableEntity":            true,
	"ExpiredToken":                  true, // the broker's own credentials expired
	"ExpiredTokenException":         true,
}

// apiCode returns the AWS error code inside err, or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// wrap adds the operation to err and marks errors an operator must fix with
// grants.ErrNeedsOperator; everything else (throttling that outlasted the retries, 5xx,
// timeouts) stays retryable.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if needsOperator[apiCode(err)] {
		return fmt.Errorf("%s: %w (%w)", op, err, grants.ErrNeedsOperator)
	}
	return fmt.Errorf("%s: %w", op, err)
}
