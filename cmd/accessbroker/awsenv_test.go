package main

import (
	"os"
	"path/filepath"
	"testing"
)

// useFakeAWSCredentials makes the AWS SDK's default chain find exactly keyID and secret (a
// fixture's), for the rest of the test: no session token, no profile, no config or
// credentials file (missing files under dir) and no instance metadata, so nothing on the
// machine is read.
func useFakeAWSCredentials(t *testing.T, dir, keyID, secret string) {
	t.Helper()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": keyID, "AWS_SECRET_ACCESS_KEY": secret, "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_CONFIG_FILE": filepath.Join(dir, "no-aws-config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "no-aws-credentials"),
	} {
		t.Setenv(k, v)
	}
	for _, k := range []string{"AWS_PROFILE", "AWS_SESSION_TOKEN"} {
		t.Setenv(k, "") // restored after the test
		os.Unsetenv(k)
	}
}
