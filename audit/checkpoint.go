package audit

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Checkpoint is a signed statement "the chain hash after the event with this Seq is Hash",
// made at Time by the key identified by KeyID. Seq 0 with Hash == Genesis is the checkpoint of
// an empty log. Quiet periods are checkpointed too: several checkpoints may share one Seq.
//
// A checkpoint protects everything up to its Seq against rewriting, even by someone who can
// recompute every later hash, and against removal of the tail (see Verify).
//
// JSON: {"seq":N,"hash":"<hex>","time":"<RFC 3339 ms UTC>","key_id":"<hex>","signature":"<base64>"}.
type Checkpoint struct {
	Seq       int64     `json:"seq"`
	Hash      Hash      `json:"hash"`
	Time      time.Time `json:"time"`
	KeyID     string    `json:"key_id"`
	Signature []byte    `json:"signature"`
}

// checkpointContext is the domain separator and version of the signed checkpoint message.
// The chain formula has no room for domain separation, so it lives here: a signature over
// this message can never be confused with a signature over anything else.
const checkpointContext = "accessbroker audit checkpoint v1\n"

// CheckpointMessage returns the exact bytes that are signed:
//
//	"accessbroker audit checkpoint v1\n" + decimal seq + "\n" + lowercase hex hash + "\n" +
//	UTC RFC 3339 time with milliseconds + "\n"
//
// for example "accessbroker audit checkpoint v1\n42\n<64 hex>\n2026-11-22T10:00:00.000Z\n".
// Changing this format requires a new version string.
func CheckpointMessage(seq int64, h Hash, t time.Time) []byte {
	b := make([]byte, 0, len(checkpointContext)+20+1+2*HashSize+1+len(timeLayout)+1)
	b = append(b, checkpointContext...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, '\n')
	b = appendHex(b, h[:])
	b = append(b, '\n')
	b = append(b, FormatTime(t)...)
	b = append(b, '\n')
	return b
}

// SignCheckpoint signs (seq, h) at time t with key. t is stored truncated to the millisecond in
// UTC, exactly as it is signed. It panics if key is not an ed25519 private key of the right
// length (ParsePrivateKey and GenerateKey only return valid keys).
func SignCheckpoint(key ed25519.PrivateKey, seq int64, h Hash, t time.Time) Checkpoint {
	t = t.UTC().Truncate(time.Millisecond)
	return Checkpoint{
		Seq:       seq,
		Hash:      h,
		Time:      t,
		KeyID:     KeyID(PublicKeyOf(key)),
		Signature: ed25519.Sign(key, CheckpointMessage(seq, h, t)),
	}
}

// Verify reports whether c carries a valid signature by pub over its Seq, Hash and Time, and
// was made by that key (c.KeyID == KeyID(pub)). It is false for a malformed public key, a
// negative Seq or a time that cannot be written in RFC 3339. It says nothing about whether
// the log matches the checkpoint; the package-level Verify checks that.
func (c Checkpoint) Verify(pub ed25519.PublicKey) bool {
	return c.problem(pub) == ""
}

// problem explains why c does not verify with pub, or returns "".
func (c Checkpoint) problem(pub ed25519.PublicKey) string {
	switch {
	case len(pub) != ed25519.PublicKeySize:
		return fmt.Sprintf("public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	case c.Seq < 0:
		return fmt.Sprintf("negative seq %d", c.Seq)
	case c.Time.UTC().Year() < 0 || c.Time.UTC().Year() > 9999:
		return "time outside years 0000..9999"
	case c.KeyID != KeyID(pub):
		return fmt.Sprintf("signed by key id %q, verifying with key id %s (wrong public key, or a forged checkpoint)", c.KeyID, KeyID(pub))
	case len(c.Signature) != ed25519.SignatureSize:
		return fmt.Sprintf("signature has %d bytes, want %d", len(c.Signature), ed25519.SignatureSize)
	case !ed25519.Verify(pub, CheckpointMessage(c.Seq, c.Hash, c.Time), c.Signature):
		return "ed25519 signature does not match seq, hash and time"
	}
	return ""
}

// KeyID names a public key: the lowercase hex of the first 8 bytes of SHA-256(pub).
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// checkpointJSON is the wire form: the time as RFC 3339 with milliseconds in UTC.
type checkpointJSON struct {
	Seq       int64  `json:"seq"`
	Hash      Hash   `json:"hash"`
	Time      string `json:"time"`
	KeyID     string `json:"key_id"`
	Signature []byte `json:"signature"`
}

// MarshalJSON writes c with its time in UTC RFC 3339 with milliseconds.
func (c Checkpoint) MarshalJSON() ([]byte, error) {
	if y := c.Time.UTC().Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("audit checkpoint seq %d: time year %d outside 0000..9999", c.Seq, y)
	}
	return json.Marshal(checkpointJSON{Seq: c.Seq, Hash: c.Hash, Time: FormatTime(c.Time), KeyID: c.KeyID, Signature: c.Signature})
}

// UnmarshalJSON reads the form written by MarshalJSON. The time must be RFC 3339.
func (c *Checkpoint) UnmarshalJSON(b []byte) error {
	var j checkpointJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("audit checkpoint: %w", err)
	}
	t, err := time.Parse(time.RFC3339Nano, j.Time)
	if err != nil {
		return fmt.Errorf("audit checkpoint seq %d: time %q: want RFC 3339 such as 2026-11-22T10:00:00.000Z", j.Seq, j.Time)
	}
	*c = Checkpoint{Seq: j.Seq, Hash: j.Hash, Time: t.UTC(), KeyID: j.KeyID, Signature: j.Signature}
	return nil
}
