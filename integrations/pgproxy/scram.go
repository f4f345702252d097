package pgproxy

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// The client authenticates with SCRAM-SHA-256 (RFC 5802, RFC 7677; without channel binding):
// the password never crosses the wire, even inside TLS. The proxy knows the password (it
// derives it), so it computes the verifier afresh with a random salt at each login.

const (
	scramMechanism  = "SCRAM-SHA-256"
	scramIterations = 4096
)

// errBadProof: the client's proof does not match the password.
var errBadProof = errors.New("SCRAM proof does not match")

// scramExchange runs the SCRAM conversation on be for password. It returns errBadProof for
// a wrong password, another error for a malformed or broken conversation.
func scramExchange(be *pgproto3.Backend, password string) error {
	be.Send(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{scramMechanism}})
	if err := be.Flush(); err != nil {
		return fmt.Errorf("offer SCRAM: %w", err)
	}
	if err := be.SetAuthType(pgproto3.AuthTypeSASL); err != nil {
		return err
	}
	msg, err := be.Receive()
	if err != nil {
		return fmt.Errorf("read SCRAM client-first message: %w", err)
	}
	init, ok := msg.(*pgproto3.SASLInitialResponse)
	if !ok || init.AuthMechanism != scramMechanism {
		return fmt.Errorf("expected a %s initial response, got %T", scramMechanism, msg)
	}
	gs2, bare, clientNonce, err := parseClientFirst(string(init.Data))
	if err != nil {
		return err
	}
	var raw [18]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return err
	}
	var salt [16]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return err
	}
	nonce := clientNonce + base64.RawStdEncoding.EncodeToString(raw[:])
	serverFirst := fmt.Sprintf("r=%s,s=%s,i=%d", nonce, base64.StdEncoding.EncodeToString(salt[:]), scramIterations)
	be.Send(&pgproto3.AuthenticationSASLContinue{Data: []byte(serverFirst)})
	if err := be.Flush(); err != nil {
		return fmt.Errorf("send SCRAM server-first message: %w", err)
	}
	if err := be.SetAuthType(pgproto3.AuthTypeSASLContinue); err != nil {
		return err
	}
	msg, err = be.Receive()
	if err != nil {
		return fmt.Errorf("read SCRAM client-final message: %w", err)
	}
	resp, ok := msg.(*pgproto3.SASLResponse)
	if !ok {
		return fmt.Errorf("expected a SASL response, got %T", msg)
	}
	final := string(resp.Data)
	withoutProof, proofB64, found := strings.Cut(final, ",p=")
	if !found {
		return errors.New("SCRAM client-final message has no proof")
	}
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 || attrs[0] != "c="+base64.StdEncoding.EncodeToString([]byte(gs2)) || attrs[1] != "r="+nonce {
		return errors.New("SCRAM client-final message has the wrong channel binding or nonce")
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	if err != nil || len(proof) != sha256.Size {
		return errors.New("SCRAM proof is not 32 bytes of base64")
	}

	salted, err := pbkdf2.Key(sha256.New, password, salt[:], scramIterations, sha256.Size)
	if err != nil {
		return err
	}
	clientKey := hmacSum(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	authMessage := bare + "," + serverFirst + "," + withoutProof
	clientSig := hmacSum(storedKey[:], authMessage)
	recovered := make([]byte, sha256.Size)
	for i := range recovered {
		recovered[i] = proof[i] ^ clientSig[i]
	}
	check := sha256.Sum256(recovered)
	if !hmac.Equal(check[:], storedKey[:]) {
		return errBadProof
	}
	serverSig := hmacSum(hmacSum(salted, "Server Key"), authMessage)
	be.Send(&pgproto3.AuthenticationSASLFinal{Data: []byte("v=" + base64.StdEncoding.EncodeToString(serverSig))})
	return nil
}

// parseClientFirst splits "n,,n=user,r=nonce" into the GS2 header ("n,,"), the bare message
// ("n=user,r=nonce") and the client nonce. Channel binding (p=…) is refused: the proxy offers
// SCRAM-SHA-256 only.
func parseClientFirst(s string) (gs2, bare, nonce string, err error) {
	switch {
	case strings.HasPrefix(s, "n,"), strings.HasPrefix(s, "y,"):
	default:
		return "", "", "", errors.New("SCRAM client-first message asks for channel binding or is malformed; use SCRAM-SHA-256 without -PLUS")
	}
	i := strings.Index(s[2:], ",")
	if i < 0 {
		return "", "", "", errors.New("malformed SCRAM client-first message")
	}
	gs2, bare = s[:2+i+1], s[2+i+1:]
	for _, a := range strings.Split(bare, ",") {
		if v, ok := strings.CutPrefix(a, "r="); ok {
			nonce = v
		}
	}
	if nonce == "" || strings.ContainsAny(nonce, ", ") {
		return "", "", "", errors.New("SCRAM client-first message has no nonce")
	}
	return gs2, bare, nonce, nil
}

func hmacSum(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
