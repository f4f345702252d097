package postgres

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// scramIterations is PostgreSQL's default scram_iterations.
const scramIterations = 4096

// scramVerifier returns the SCRAM-SHA-256 verifier PostgreSQL stores for password, in the
// form it accepts as an already-encrypted PASSWORD:
//
//	SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
//
// Sending the verifier instead of the password keeps the password itself out of the SQL
// text, and so out of server logs (log_statement), pg_stat_activity and any error that
// quotes the statement. (RFC 5802, RFC 7677; PostgreSQL's scram_build_secret.) The password
// must be ASCII without control characters, for which SASLprep is the identity.
func scramVerifier(password string) (string, error) {
	return saltedVerifier(password, scramIterations)
}

// proxyIterations is the PBKDF2 iteration count of a proxied role's verifier.
//
// A proxied role's password is ProxyPasswords.Upstream: 256 bits of HMAC-SHA-256 output,
// never delivered to anyone, used only by the session proxy's own client (pgconn, which
// accepts any positive count). Iterations slow down guessing a password from its stored
// verifier; for a uniformly random 256-bit value guessing is hopeless at one iteration as at
// a million, so they add nothing, while 4096 of them cost the broker (making the verifier),
// PostgreSQL (CREATE ROLE checks it is not the empty password's, the largest step of an
// issue) and the proxy's upstream login alike. The delivered passwords of non-proxied roles
// keep 4096 (scramIterations): some clients refuse fewer.
const proxyIterations = 16

// proxyVerifier is the SCRAM-SHA-256 verifier of a proxied role's upstream password, with
// proxyIterations iterations.
func proxyVerifier(password string) (string, error) {
	return saltedVerifier(password, proxyIterations)
}

// saltedVerifier is password's SCRAM-SHA-256 verifier with a fresh random 16-byte salt.
func saltedVerifier(password string, iterations int) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("random salt: %w", err)
	}
	return scramVerifierWithSalt(password, salt, iterations)
}

func scramVerifierWithSalt(password string, salt []byte, iterations int) (string, error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("pbkdf2: %w", err)
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := hmacSHA256(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(storedKey[:]), b64(serverKey)), nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// passwordBytes is the entropy of a generated password: 30 bytes = 240 bits, 40 characters.
const passwordBytes = 30

// newPassword returns a random password of URL-safe base64 characters, so it needs no
// escaping in a connection URL.
func newPassword() (string, error) {
	b := make([]byte, passwordBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
