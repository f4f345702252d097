package awsprov

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/accessbroker/accessbroker/grants"
)

func TestValidateEndpointURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		wantErr string
	}{
		{"", ""},
		{"https://aws.internal.example.com", ""},
		{"https://vpce-1.sts.us-east-1.vpce.amazonaws.com:443/", ""},
		{"http://127.0.0.1:4566", ""},
		{"http://localhost:4566", ""},
		{"http://[::1]:4566", ""},
		{"http://aws.example.com", "plain http"},
		{"ftp://127.0.0.1", "https://"},
		{"127.0.0.1:4566", "https://"},
		{"https://aws.example.com/sts", "no path"},
		{"https://aws.example.com/?x=1", "no path"},
		{"https://user:pw@aws.example.com", "must not contain credentials"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			err := ValidateEndpointURL(tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "aws.endpoint_url") {
				t.Fatalf("ValidateEndpointURL(%q) = %v, want an error naming aws.endpoint_url and %q", tc.in, err, tc.wantErr)
			}
		})
	}
}

func TestLoadAWSConfig(t *testing.T) {
	t.Parallel()
	if _, err := LoadAWSConfig(t.Context(), "us-east-1", "http://example.com", nil, WithoutSharedConfigFiles()); err == nil {
		t.Fatal("a plain-http non-loopback endpoint was accepted")
	}
	hc := &http.Client{}
	cfg, err := LoadAWSConfig(t.Context(), "eu-west-1", "http://127.0.0.1:1/", hc, WithStaticCredentials("AKID", "SECRET"), WithoutSharedConfigFiles())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Region != "eu-west-1" || aws.ToString(cfg.BaseEndpoint) != "http://127.0.0.1:1" || cfg.HTTPClient != aws.HTTPClient(hc) {
		t.Errorf("config region %q endpoint %q client %T", cfg.Region, aws.ToString(cfg.BaseEndpoint), cfg.HTTPClient)
	}
	creds, err := cfg.Credentials.Retrieve(t.Context())
	if err != nil || creds.AccessKeyID != "AKID" {
		t.Errorf("credentials %v %v", creds.AccessKeyID, err)
	}
	if n := cfg.Retryer().MaxAttempts(); n != 5 {
		t.Errorf("retryer max attempts %d, want 5", n)
	}
}

func responseErr(status int, code string) error {
	return &smithy.OperationError{ServiceID: "IAM", OperationName: "GetRole", Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
			Err: &smithy.GenericAPIError{Code: code, Message: "m"}},
	}}
}

func TestThrottleOnlyRetryable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want aws.Ternary
	}{
		{"400 Throttling", responseErr(400, "Throttling"), aws.TrueTernary},
		{"400 ThrottlingException", responseErr(400, "ThrottlingException"), aws.TrueTernary},
		{"400 TooManyRequestsException", responseErr(400, "TooManyRequestsException"), aws.TrueTernary},
		{"429 already retried by the HTTP client", responseErr(429, "ThrottlingException"), aws.FalseTernary},
		{"503 already retried by the HTTP client", responseErr(503, "ServiceUnavailable"), aws.FalseTernary},
		{"403 AccessDenied", responseErr(403, "AccessDenied"), aws.FalseTernary},
		{"connection error", errors.New("connection reset"), aws.FalseTernary},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := (throttleOnly{}).IsErrorRetryable(tc.err); got != tc.want {
				t.Fatalf("IsErrorRetryable = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWrapClassifies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code          string
		needsOperator bool
	}{
		{"AccessDenied", true},
		{"AccessDeniedException", true},
		{"MalformedPolicyDocument", true},
		{"SignatureDoesNotMatch", true},
		{"Throttling", false},
		{"ServiceUnavailable", false},
		{"InternalServerException", false},
	}
	for _, tc := range tests {
		err := wrap("op", responseErr(400, tc.code))
		if got := errors.Is(err, grants.ErrNeedsOperator); got != tc.needsOperator {
			t.Errorf("%s: needs operator = %v, want %v (%v)", tc.code, got, tc.needsOperator, err)
		}
		if apiCode(err) != tc.code || !strings.HasPrefix(err.Error(), "op: ") {
			t.Errorf("%s: wrapped error %q lost its code or operation", tc.code, err)
		}
	}
	if wrap("op", nil) != nil {
		t.Error("wrap(nil) is not nil")
	}
}
