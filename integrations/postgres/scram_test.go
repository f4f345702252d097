package postgres

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
)

type scramVector struct {
	Password                string `json:"password"`
	SaltBase64              string `json:"salt_base64"`
	Iterations              int    `json:"iterations"`
	ClientFirstBare         string `json:"client_first_bare"`
	ServerFirst             string `json:"server_first"`
	ClientFinalWithoutProof string `json:"client_final_without_proof"`
	ClientProofBase64       string `json:"client_proof_base64"`
	ServerSignatureBase64   string `json:"server_signature_base64"`
}

// parsedVerifier is a SCRAM-SHA-256 verifier split into its parts.
type parsedVerifier struct {
	iterations           int
	salt, stored, server []byte
}

func parseVerifier(t *testing.T, v string) parsedVerifier {
	t.Helper()
	rest, ok := strings.CutPrefix(v, "SCRAM-SHA-256$")
	if !ok {
		t.Fatalf("verifier does not start with SCRAM-SHA-256$")
	}
	iterSalt, keys, ok := strings.Cut(rest, "$")
	iter, salt, ok2 := strings.Cut(iterSalt, ":")
	stored, server, ok3 := strings.Cut(keys, ":")
	if !ok || !ok2 || !ok3 {
		t.Fatalf("verifier has the wrong shape")
	}
	n, err := strconv.Atoi(iter)
	if err != nil {
		t.Fatalf("iterations: %v", err)
	}
	dec := func(s string) []byte {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("base64: %v", err)
		}
		return b
	}
	return parsedVerifier{iterations: n, salt: dec(salt), stored: dec(stored), server: dec(server)}
}

// TestScramVerifierAgainstRFC7677 plays the server side of RFC 7677's example exchange with
// nothing but the verifier: the client's proof must check out and the server signature must
// be the one the RFC shows.
func TestScramVerifierAgainstRFC7677(t *testing.T) {
	raw, err := os.ReadFile("testdata/rfc7677-scram-sha-256.json")
	if err != nil {
		t.Fatal(err)
	}
	var vec scramVector
	if err := json.Unmarshal(raw, &vec); err != nil {
		t.Fatal(err)
	}
	salt, _ := base64.StdEncoding.DecodeString(vec.SaltBase64)
	v, err := scramVerifierWithSalt(vec.Password, salt, vec.Iterations)
	if err != nil {
		t.Fatal(err)
	}
	pv := parseVerifier(t, v)
	authMessage := vec.ClientFirstBare + "," + vec.ServerFirst + "," + vec.ClientFinalWithoutProof

	serverSig := hmacSHA256(pv.server, authMessage)
	if got := base64.StdEncoding.EncodeToString(serverSig); got != vec.ServerSignatureBase64 {
		t.Errorf("server signature = %s, want %s", got, vec.ServerSignatureBase64)
	}
	proof, _ := base64.StdEncoding.DecodeString(vec.ClientProofBase64)
	clientSig := hmacSHA256(pv.stored, authMessage)
	clientKey := make([]byte, len(proof))
	for i := range proof {
		clientKey[i] = proof[i] ^ clientSig[i]
	}
	if sum := sha256.Sum256(clientKey); !hmac.Equal(sum[:], pv.stored) {
		t.Error("the RFC's client proof does not verify against the stored key")
	}
}

func TestNewPasswordShape(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		pw, err := newPassword()
		if err != nil {
			t.Fatal(err)
		}
		if len(pw) < 32 {
			t.Fatalf("password has %d characters, want at least 32", len(pw))
		}
		if strings.Trim(pw, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			t.Fatal("password has characters outside URL-safe base64")
		}
		if seen[pw] {
			t.Fatal("password repeated")
		}
		seen[pw] = true
	}
}
