package pgproxy_test

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"

	"github.com/accessbroker/accessbroker/integrations/postgres"
)

func mustPasswords(t *testing.T, key []byte) *postgres.ProxyPasswords {
	t.Helper()
	pw, err := postgres.NewProxyPasswords(key)
	if err != nil {
		t.Fatal(err)
	}
	return pw
}

// scramMatches reports whether password is the one a SCRAM-SHA-256 verifier
// (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, RFC 5803) was made from.
func scramMatches(t *testing.T, password, verifier string) bool {
	t.Helper()
	rest, ok := strings.CutPrefix(verifier, "SCRAM-SHA-256$")
	parts := strings.Split(rest, "$")
	if !ok || len(parts) != 2 {
		t.Fatalf("verifier %q is not SCRAM-SHA-256", verifier)
	}
	iterSalt := strings.Split(parts[0], ":")
	keys := strings.Split(parts[1], ":")
	if len(iterSalt) != 2 || len(keys) != 2 {
		t.Fatalf("verifier %q is malformed", verifier)
	}
	iter, err := strconv.Atoi(iterSalt[0])
	if err != nil {
		t.Fatal(err)
	}
	salt, err := base64.StdEncoding.DecodeString(iterSalt[1])
	if err != nil {
		t.Fatal(err)
	}
	stored, err := base64.StdEncoding.DecodeString(keys[0])
	if err != nil {
		t.Fatal(err)
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, salted)
	m.Write([]byte("Client Key"))
	sum := sha256.Sum256(m.Sum(nil))
	return hmac.Equal(sum[:], stored)
}
