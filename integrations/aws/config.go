package awsprov

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go"

	"github.com/accessbroker/accessbroker/integrations/httpclient"
)

// ConfigOption adjusts LoadAWSConfig.
type ConfigOption func(*configOptions)

type configOptions struct {
	creds          aws.CredentialsProvider
	throttleTries  int
	throttleMaxGap time.Duration
	noSharedFiles  bool
}

// WithCredentials replaces the SDK's default credential chain (tests use static keys).
func WithCredentials(p aws.CredentialsProvider) ConfigOption {
	return func(o *configOptions) { o.creds = p }
}

// WithStaticCredentials uses a fixed access key (tests and the demo).
func WithStaticCredentials(accessKeyID, secretAccessKey string) ConfigOption {
	return WithCredentials(credentials.NewStaticCredentialsProvider(accessKeyID, secretAccessKey, ""))
}

// WithThrottleRetries sets how often the SDK retries an AWS throttling error (HTTP 400
// Throttling / ThrottlingException) and the cap of its jittered exponential backoff
// (defaults: 5 attempts, 20s). Tests set the backoff low.
func WithThrottleRetries(maxAttempts int, maxBackoff time.Duration) ConfigOption {
	return func(o *configOptions) { o.throttleTries, o.throttleMaxGap = maxAttempts, maxBackoff }
}

// WithoutSharedConfigFiles stops the SDK reading ~/.aws/config and ~/.aws/credentials
// (tests, so that a developer's profile never leaks in).
func WithoutSharedConfigFiles() ConfigOption {
	return func(o *configOptions) { o.noSharedFiles = true }
}

// LoadAWSConfig builds the aws.Config every AWS provider uses: the region (aws.region), one
// BaseEndpoint for all services when endpointURL (aws.endpoint_url) is set, httpClient as the
// transport of the service clients (nil: a new httpclient.New with ReturnLastResponse, so the
// SDK sees AWS's own error after retries run out, trusting AWS_CA_BUNDLE when set),
// credentials from the SDK's default chain unless an option says otherwise, and a retryer that
// retries only AWS throttling error codes (the HTTP client already retries connection errors,
// 5xx and 429).
//
// Pass an httpclient.New client built with ReturnLastResponse: true. The credential chain
// keeps the SDK's own HTTP client (it must, to honour AWS_CA_BUNDLE); a client passed in here
// trusts what its transport trusts (the system roots, SSL_CERT_FILE), not AWS_CA_BUNDLE.
//
// endpointURL must be https, or http on a loopback host (a fake); anything else is refused
// so that a typo cannot send signed requests to an arbitrary host.
func LoadAWSConfig(ctx context.Context, region, endpointURL string, httpClient *http.Client, opts ...ConfigOption) (aws.Config, error) {
	o := configOptions{throttleTries: 5, throttleMaxGap: 20 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if err := ValidateEndpointURL(endpointURL); err != nil {
		return aws.Config{}, err
	}
	if httpClient == nil {
		roots, err := caBundle()
		if err != nil {
			return aws.Config{}, err
		}
		httpClient = httpclient.New(httpclient.Options{ReturnLastResponse: true, RootCAs: roots})
	}
	// The SDK's own client is left to the credential chain (IMDS, SSO, web identity), which
	// needs it to honour AWS_CA_BUNDLE; the service clients get httpClient below.
	load := []func(*config.LoadOptions) error{
		config.WithRetryer(throttleRetryer(o.throttleTries, o.throttleMaxGap)),
	}
	if region != "" {
		load = append(load, config.WithRegion(region))
	}
	if endpointURL != "" {
		load = append(load, config.WithBaseEndpoint(strings.TrimRight(endpointURL, "/")))
	}
	if o.creds != nil {
		load = append(load, config.WithCredentialsProvider(o.creds))
	}
	if o.noSharedFiles {
		load = append(load, config.WithSharedConfigFiles([]string{}), config.WithSharedCredentialsFiles([]string{}))
	}
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	cfg.HTTPClient = httpClient
	if cfg.Region == "" {
		return aws.Config{}, errors.New("aws.region is empty and the environment names none: set aws.region (for example us-east-1)")
	}
	return cfg, nil
}

// ValidateEndpointURL checks an aws.endpoint_url value: empty (AWS's own endpoints), an https
// URL, or an http URL on a loopback host, with no path, query or fragment.
func ValidateEndpointURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := httpclient.CheckBaseURL(s)
	if err != nil {
		return fmt.Errorf("aws.endpoint_url %w", err)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("aws.endpoint_url %q must be scheme://host[:port] only (no path, query, fragment or user info)", s)
	}
	return nil
}

// caBundle returns the system roots plus the PEM file named by AWS_CA_BUNDLE, or nil when the
// variable is unset.
func caBundle() (*x509.CertPool, error) {
	path := os.Getenv("AWS_CA_BUNDLE")
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read AWS_CA_BUNDLE: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("AWS_CA_BUNDLE %s holds no PEM certificate", path)
	}
	return pool, nil
}

// throttleRetryer retries only throttling error codes that the HTTP layer did not already
// retry (it retries 429 and 5xx itself).
func throttleRetryer(maxAttempts int, maxBackoff time.Duration) func() aws.Retryer {
	return func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = maxAttempts
			o.MaxBackoff = maxBackoff
			o.Retryables = []retry.IsErrorRetryable{throttleOnly{}}
			o.RateLimiter = ratelimit.None
		})
	}
}

type throttleOnly struct{}

func (throttleOnly) IsErrorRetryable(err error) aws.Ternary {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		if code := re.HTTPStatusCode(); code == http.StatusTooManyRequests || code >= 500 {
			return aws.FalseTernary // already retried by integrations/httpclient
		}
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if _, ok := retry.DefaultThrottleErrorCodes[ae.ErrorCode()]; ok {
			return aws.TrueTernary
		}
	}
	return aws.FalseTernary
}
