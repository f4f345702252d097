package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type checkpointVectorFile struct {
	Description string             `json:"description"`
	Seed        string             `json:"seed"`
	PublicKey   string             `json:"public_key"`
	KeyID       string             `json:"key_id"`
	Vectors     []checkpointVector `json:"vectors"`
}

type checkpointVector struct {
	Seq       int64  `json:"seq"`
	Hash      string `json:"hash"`
	Time      string `json:"time"` // input; any RFC 3339
	Message   string `json:"message"`
	Signature string `json:"signature"` // base64
}

// TestCheckpointVectors checks the signed message format and signatures against
// testdata/checkpoint_vectors.json. ed25519 signatures are deterministic, so they are known
// answers; they are also checked with crypto/ed25519 directly over the stored message.
func TestCheckpointVectors(t *testing.T) {
	const path = "testdata/checkpoint_vectors.json"
	var f checkpointVectorFile
	readJSONFile(t, path, &f)
	seed, err := hex.DecodeString(f.Seed)
	if err != nil || len(seed) != ed25519.SeedSize {
		t.Fatalf("bad seed in %s", path)
	}
	key := ed25519.NewKeyFromSeed(seed)
	pub := PublicKeyOf(key)
	sum := sha256.Sum256(pub)
	if *update {
		f.PublicKey, f.KeyID = hex.EncodeToString(pub), KeyID(pub)
	}
	if f.PublicKey != hex.EncodeToString(pub) {
		t.Errorf("public key %s, file says %s", hex.EncodeToString(pub), f.PublicKey)
	}
	if f.KeyID != hex.EncodeToString(sum[:8]) || KeyID(pub) != f.KeyID {
		t.Errorf("KeyID = %s, file says %s, first 8 bytes of SHA-256 are %x", KeyID(pub), f.KeyID, sum[:8])
	}
	for i := range f.Vectors {
		v := &f.Vectors[i]
		h, err := ParseHash(v.Hash)
		if err != nil {
			t.Fatal(err)
		}
		ts, err := time.Parse(time.RFC3339Nano, v.Time)
		if err != nil {
			t.Fatal(err)
		}
		c := SignCheckpoint(key, v.Seq, h, ts)
		if *update {
			v.Message = string(CheckpointMessage(v.Seq, h, ts))
			v.Signature = base64.StdEncoding.EncodeToString(c.Signature)
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(v.Signature)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(v.Message, "accessbroker audit checkpoint v1\n") {
			t.Errorf("seq %d: stored message lacks the context line: %q", v.Seq, v.Message)
		}
		if !ed25519.Verify(pub, []byte(v.Message), sig) {
			t.Errorf("seq %d: stored signature does not verify over the stored message", v.Seq)
		}
		if got := string(CheckpointMessage(v.Seq, h, ts)); got != v.Message {
			t.Errorf("seq %d: CheckpointMessage = %q, want %q", v.Seq, got, v.Message)
		}
		if !bytes.Equal(c.Signature, sig) {
			t.Errorf("seq %d: SignCheckpoint signature differs from the vector", v.Seq)
		}
		if !c.Verify(pub) {
			t.Errorf("seq %d: Verify = false for a fresh checkpoint", v.Seq)
		}
		if !c.Time.Equal(ts.Truncate(time.Millisecond)) || c.Time.Location() != time.UTC {
			t.Errorf("seq %d: checkpoint time %v, want %v truncated to ms in UTC", v.Seq, c.Time, ts)
		}
	}
	if *update {
		writeJSONFile(t, path, f)
		t.Logf("rewrote %s", path)
	}
}

// TestCheckpointOpenSSLInterop checks a key and signature made by OpenSSL, not by Go:
// testdata/openssl_checkpoint.msg was signed with
// `openssl pkeyutl -sign -rawin -inkey openssl_ed25519_test_key.pem`.
func TestCheckpointOpenSSLInterop(t *testing.T) {
	t.Parallel()
	pemBytes, err := os.ReadFile("testdata/openssl_ed25519_test_key.pem")
	if err != nil {
		t.Fatal(err)
	}
	key, err := ParsePrivateKey(pemBytes)
	if err != nil {
		t.Fatalf("ParsePrivateKey(openssl key): %v", err)
	}
	pubPEM, err := os.ReadFile("testdata/openssl_ed25519_test_key.pub.pem")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey(pubPEM)
	if err != nil {
		t.Fatalf("ParsePublicKey(openssl public key): %v", err)
	}
	if !pub.Equal(PublicKeyOf(key)) {
		t.Fatal("openssl public key does not match the private key")
	}
	msg, err := os.ReadFile("testdata/openssl_checkpoint.msg")
	if err != nil {
		t.Fatal(err)
	}
	sig, err := os.ReadFile("testdata/openssl_checkpoint.sig")
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHash("e642e248a03aab21e9b5f71559fc2da81ea5a85c105ca9f64119c311b648ae3b")
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 11, 22, 10, 5, 0, 250_000_000, time.UTC)
	if got := CheckpointMessage(5, h, ts); !bytes.Equal(got, msg) {
		t.Fatalf("CheckpointMessage = %q, openssl signed %q", got, msg)
	}
	c := SignCheckpoint(key, 5, h, ts)
	if !bytes.Equal(c.Signature, sig) {
		t.Errorf("SignCheckpoint signature differs from openssl's")
	}
	c.Signature = sig
	if !c.Verify(pub) {
		t.Errorf("Verify rejects openssl's signature")
	}
}

func TestCheckpointVerifyRejects(t *testing.T) {
	t.Parallel()
	key := testKey()
	pub := PublicKeyOf(key)
	good := SignCheckpoint(key, 42, Hash{0xab}, baseTime)
	if !good.Verify(pub) {
		t.Fatal("fresh checkpoint does not verify")
	}
	tests := []struct {
		name      string
		edit      func(c *Checkpoint)
		pub       ed25519.PublicKey
		wantInWhy string
	}{
		{"seq changed", func(c *Checkpoint) { c.Seq = 43 }, pub, "signature does not match"},
		{"hash changed", func(c *Checkpoint) { c.Hash[31] ^= 1 }, pub, "signature does not match"},
		{"time changed by 1ms", func(c *Checkpoint) { c.Time = c.Time.Add(time.Millisecond) }, pub, "signature does not match"},
		{"signature bit flipped", func(c *Checkpoint) { c.Signature[0] ^= 1 }, pub, "signature does not match"},
		{"signature truncated", func(c *Checkpoint) { c.Signature = c.Signature[:63] }, pub, "signature has 63 bytes"},
		{"no signature", func(c *Checkpoint) { c.Signature = nil }, pub, "signature has 0 bytes"},
		{"key id changed", func(c *Checkpoint) { c.KeyID = "0000000000000000" }, pub, "signed by key id"},
		{"negative seq", func(c *Checkpoint) { *c = SignCheckpoint(key, -1, Genesis, baseTime) }, pub, "negative seq"},
		{"other key's public key", func(*Checkpoint) {}, PublicKeyOf(otherKey()), "signed by key id"},
		{"signed by other key, relabelled", func(c *Checkpoint) {
			o := SignCheckpoint(otherKey(), c.Seq, c.Hash, c.Time)
			c.Signature = o.Signature
		}, pub, "signature does not match"},
		{"short public key", func(*Checkpoint) {}, pub[:31], "public key has 31 bytes"},
		{"nil public key", func(*Checkpoint) {}, nil, "public key has 0 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := good
			c.Signature = bytes.Clone(good.Signature)
			tc.edit(&c)
			if c.Verify(tc.pub) {
				t.Fatal("Verify = true, want false")
			}
			if why := c.problem(tc.pub); !strings.Contains(why, tc.wantInWhy) {
				t.Errorf("problem = %q, want it to mention %q", why, tc.wantInWhy)
			}
		})
	}
}

func TestCheckpointGenesisOfEmptyLog(t *testing.T) {
	t.Parallel()
	key := testKey()
	c := SignCheckpoint(key, 0, Genesis, baseTime)
	if !c.Verify(PublicKeyOf(key)) {
		t.Fatal("checkpoint of the empty log (seq 0, genesis) does not verify")
	}
	want := "accessbroker audit checkpoint v1\n0\n" + strings.Repeat("0", 64) + "\n2026-11-22T10:00:00.000Z\n"
	if got := string(CheckpointMessage(0, Genesis, baseTime)); got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
}

func TestCheckpointJSONRoundTrip(t *testing.T) {
	t.Parallel()
	key := testKey()
	c := SignCheckpoint(key, 7, Hash{1, 2, 3}, time.Date(2026, 11, 22, 11, 0, 0, 5_678_900, time.FixedZone("", 3600)))
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	wantRaw := map[string]any{
		"seq":       float64(7),
		"hash":      Hash{1, 2, 3}.String(),
		"time":      "2026-11-22T10:00:00.005Z",
		"key_id":    KeyID(PublicKeyOf(key)),
		"signature": base64.StdEncoding.EncodeToString(c.Signature),
	}
	if diff := cmp.Diff(wantRaw, raw); diff != "" {
		t.Errorf("checkpoint JSON (-want +got):\n%s", diff)
	}
	var back Checkpoint
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if !back.Verify(PublicKeyOf(key)) {
		t.Error("round-tripped checkpoint does not verify")
	}
	for _, bad := range []string{`{"seq":1,"time":"yesterday"}`, `{"seq":1,"hash":"zz"}`, `[1]`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("Unmarshal(%s) succeeded, want an error", bad)
		}
	}
}

func TestKeyFiles(t *testing.T) {
	t.Parallel()
	key, err := GenerateKey(bytes.NewReader(testSeed[:]))
	if err != nil {
		t.Fatal(err)
	}
	if !key.Equal(testKey()) {
		t.Error("GenerateKey with a fixed reader is not the key of that seed")
	}
	random, err := GenerateKey(nil)
	if err != nil || random.Equal(key) {
		t.Fatalf("GenerateKey(nil) = err %v, equal to the fixed key: %v", err, random.Equal(key))
	}
	if _, err := GenerateKey(bytes.NewReader([]byte("short"))); err == nil {
		t.Error("GenerateKey with a short reader succeeded")
	}

	pemBytes, err := MarshalPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(pemBytes, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Errorf("private key file does not start with a PRIVATE KEY block:\n%.40s", pemBytes)
	}
	back, err := ParsePrivateKey(pemBytes)
	if err != nil || !back.Equal(key) {
		t.Fatalf("ParsePrivateKey(MarshalPrivateKey(k)) = %v, equal %v", err, back.Equal(key))
	}
	pubPEM, err := MarshalPublicKey(PublicKeyOf(key))
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string][]byte{"public key file": pubPEM, "private key file": pemBytes} {
		pub, err := ParsePublicKey(in)
		if err != nil || !pub.Equal(PublicKeyOf(key)) {
			t.Errorf("ParsePublicKey(%s) = %v, equal %v", name, err, pub.Equal(PublicKeyOf(key)))
		}
	}
}

func TestParseKeyErrors(t *testing.T) {
	t.Parallel()
	p256, err := os.ReadFile("testdata/openssl_p256_test_key.pem")
	if err != nil {
		t.Fatal(err)
	}
	good, err := MarshalPrivateKey(testKey())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := MarshalPublicKey(PublicKeyOf(testKey()))
	if err != nil {
		t.Fatal(err)
	}
	garbled := bytes.Replace(good, []byte("MC4CAQAw"), []byte("MC4CAQAx"), 1)
	tests := []struct {
		name    string
		in      []byte
		private bool
		wantErr string
	}{
		{"empty", nil, true, "no PEM block found"},
		{"not PEM", []byte("hello"), true, "no PEM block found"},
		{"public key given as private", pubPEM, true, `PEM block type is "PUBLIC KEY", want "PRIVATE KEY"`},
		{"ECDSA key", p256, true, "want ed25519"},
		{"two keys in one file", append(bytes.Clone(good), good...), true, "unexpected data after"},
		{"garbled DER", garbled, true, "not valid PKCS #8"},
		{"certificate given as public", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), false, `PEM block type is "CERTIFICATE"`},
		{"ECDSA private key given as public", p256, false, "want ed25519"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var err error
			if tc.private {
				_, err = ParsePrivateKey(tc.in)
			} else {
				_, err = ParsePublicKey(tc.in)
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "BEGIN") || strings.Contains(err.Error(), "MC4C") {
				t.Errorf("error leaks key material: %v", err)
			}
		})
	}
	if _, err := MarshalPrivateKey(ed25519.PrivateKey{1, 2}); err == nil {
		t.Error("MarshalPrivateKey accepted a 2-byte key")
	}
	if _, err := MarshalPublicKey(ed25519.PublicKey{1, 2}); err == nil {
		t.Error("MarshalPublicKey accepted a 2-byte key")
	}
}
