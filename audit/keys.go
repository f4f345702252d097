package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
)

// PEM block types of the checkpoint key files.
const (
	pemPrivateKey = "PRIVATE KEY" // PKCS #8
	pemPublicKey  = "PUBLIC KEY"  // PKIX (SubjectPublicKeyInfo)
)

// GenerateKey returns a new ed25519 checkpoint signing key. rand supplies the 32-byte seed;
// nil means a secure random source. Tests may pass a fixed reader for a reproducible key.
func GenerateKey(rand io.Reader) (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("generate audit checkpoint key: %w", err)
	}
	return priv, nil
}

// PublicKeyOf returns the public half of key. It panics if key does not have
// ed25519.PrivateKeySize bytes.
func PublicKeyOf(key ed25519.PrivateKey) ed25519.PublicKey {
	if len(key) != ed25519.PrivateKeySize {
		panic(fmt.Sprintf("audit: ed25519 private key has %d bytes, want %d", len(key), ed25519.PrivateKeySize))
	}
	return key.Public().(ed25519.PublicKey)
}

// MarshalPrivateKey encodes key as a PEM "PRIVATE KEY" block (PKCS #8), the format of
// audit.signing_key_file. The result is a secret: write it with mode 0600 and never log it.
func MarshalPrivateKey(key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("marshal audit checkpoint key: ed25519 private key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal audit checkpoint key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// ParsePrivateKey decodes a key written by MarshalPrivateKey (or by
// `openssl genpkey -algorithm ed25519`). The input must hold exactly one PEM block, of type
// "PRIVATE KEY", containing an ed25519 key. Errors never include key material.
func ParsePrivateKey(pemBytes []byte) (ed25519.PrivateKey, error) {
	der, err := decodeOnePEM(pemBytes, pemPrivateKey)
	if err != nil {
		return nil, fmt.Errorf("parse audit checkpoint key: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, errors.New("parse audit checkpoint key: the PRIVATE KEY block is not valid PKCS #8: generate one with `openssl genpkey -algorithm ed25519`")
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("parse audit checkpoint key: key is %T, want ed25519: generate one with `openssl genpkey -algorithm ed25519`", k)
	}
	return priv, nil
}

// MarshalPublicKey encodes pub as a PEM "PUBLIC KEY" block (PKIX), for verifiers that must not
// hold the signing key.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("marshal audit public key: ed25519 public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal audit public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublicKey, Bytes: der}), nil
}

// ParsePublicKey decodes a key written by MarshalPublicKey (one PEM "PUBLIC KEY" block holding
// an ed25519 key), or derives the public key from a "PRIVATE KEY" file so that an operator can
// point verification at either file.
func ParsePublicKey(pemBytes []byte) (ed25519.PublicKey, error) {
	if block, _ := pem.Decode(pemBytes); block != nil && block.Type == pemPrivateKey {
		priv, err := ParsePrivateKey(pemBytes)
		if err != nil {
			return nil, err
		}
		return PublicKeyOf(priv), nil
	}
	der, err := decodeOnePEM(pemBytes, pemPublicKey)
	if err != nil {
		return nil, fmt.Errorf("parse audit public key: %w", err)
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse audit public key: the PUBLIC KEY block is not valid PKIX: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("parse audit public key: key is %T, want ed25519", k)
	}
	return pub, nil
}

// decodeOnePEM returns the bytes of the single PEM block of type want in b.
func decodeOnePEM(b []byte, want string) ([]byte, error) {
	block, rest := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("no PEM block found: want a %q block", want)
	}
	if block.Type != want {
		return nil, fmt.Errorf("PEM block type is %q, want %q", block.Type, want)
	}
	if len(block.Headers) != 0 {
		return nil, fmt.Errorf("%q block has headers (encrypted keys are not supported)", want)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("unexpected data after the %q block: the file must hold one key", want)
	}
	return block.Bytes, nil
}
