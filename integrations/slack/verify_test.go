package slack

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	slackfixtures "github.com/accessbroker/accessbroker/fixtures/slack"
	"github.com/accessbroker/accessbroker/grants/clocktest"
)

type signatureVector struct {
	SigningSecret string `json:"signing_secret"`
	Timestamp     string `json:"x_slack_request_timestamp"`
	Signature     string `json:"x_slack_signature"`
	SlackGo       struct {
		SigningSecret string `json:"signing_secret"`
		Timestamp     string `json:"x_slack_request_timestamp"`
		Body          string `json:"body"`
		Signature     string `json:"x_slack_signature"`
	} `json:"slack_go_test_vector"`
}

func loadVector(t testing.TB) (signatureVector, []byte) {
	t.Helper()
	var v signatureVector
	if err := json.Unmarshal(slackfixtures.Read("signature-vector.json"), &v); err != nil {
		t.Fatalf("decode signature vector: %v", err)
	}
	return v, slackfixtures.Read("signature-vector-body.txt")
}

func clockAtUnix(ts string) *clocktest.Fake {
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		panic(err)
	}
	return clocktest.New(time.Unix(n, 0))
}

func header(sig, ts string) http.Header {
	h := http.Header{}
	if sig != "" {
		h.Set(HeaderSignature, sig)
	}
	if ts != "" {
		h.Set(HeaderTimestamp, ts)
	}
	return h
}

// TestVerifyKnownAnswer checks Slack's official worked example and slack-go's test vector.
func TestVerifyKnownAnswer(t *testing.T) {
	t.Parallel()
	vec, body := loadVector(t)
	cases := []struct {
		name, secret, ts, sig string
		body                  []byte
	}{
		{"slack docs worked example", vec.SigningSecret, vec.Timestamp, vec.Signature, body},
		{"slack-go test vector", vec.SlackGo.SigningSecret, vec.SlackGo.Timestamp, vec.SlackGo.Signature, []byte(vec.SlackGo.Body)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := SignatureHeader(tc.secret, tc.ts, tc.body); got != tc.sig {
				t.Fatalf("SignatureHeader = %s, want %s", got, tc.sig)
			}
			v, err := NewVerifier(clockAtUnix(tc.ts), 0, tc.secret)
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Verify(header(tc.sig, tc.ts), tc.body); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	vec, body := loadVector(t)
	ts, _ := strconv.ParseInt(vec.Timestamp, 10, 64)
	tsAt := func(d time.Duration) string { return strconv.FormatInt(ts+int64(d/time.Second), 10) }
	signAt := func(d time.Duration) (string, string) {
		s := tsAt(d)
		return SignatureHeader(vec.SigningSecret, s, body), s
	}
	tampered := append(bytes.Clone(body), '&')
	sigEdge, tsEdge := signAt(-SignatureWindow)
	sigFutureEdge, tsFutureEdge := signAt(SignatureWindow)
	sigStale, tsStale := signAt(-SignatureWindow - time.Second)
	sigFuture, tsFuture := signAt(SignatureWindow + time.Second)
	upper := "v0=" + strings.ToUpper(strings.TrimPrefix(vec.Signature, "v0="))
	cases := []struct {
		name    string
		h       http.Header
		body    []byte
		wantErr error // nil: accepted
	}{
		{"valid", header(vec.Signature, vec.Timestamp), body, nil},
		{"exactly 5 minutes old", header(sigEdge, tsEdge), body, nil},
		{"exactly 5 minutes ahead", header(sigFutureEdge, tsFutureEdge), body, nil},
		{"hex in upper case", header(upper, vec.Timestamp), body, nil},
		{"no signature header", header("", vec.Timestamp), body, ErrMissingHeaders},
		{"no timestamp header", header(vec.Signature, ""), body, ErrMissingHeaders},
		{"no headers", http.Header{}, body, ErrMissingHeaders},
		{"stale", header(sigStale, tsStale), body, ErrStaleTimestamp},
		{"future", header(sigFuture, tsFuture), body, ErrFutureTimestamp},
		{"timestamp with sign", header(vec.Signature, "+"+vec.Timestamp), body, ErrBadTimestamp},
		{"timestamp with space", header(vec.Signature, vec.Timestamp+" "), body, ErrBadTimestamp},
		{"timestamp fraction", header(vec.Signature, vec.Timestamp+".5"), body, ErrBadTimestamp},
		{"timestamp huge", header(vec.Signature, "99999999999999999999"), body, ErrBadTimestamp},
		{"body tampered", header(vec.Signature, vec.Timestamp), tampered, ErrSignatureInvalid},
		{"wrong secret", header(SignatureHeader("not-the-secret", vec.Timestamp, body), vec.Timestamp), body, ErrSignatureInvalid},
		{"timestamp swapped for another in window", header(vec.Signature, tsAt(time.Second)), body, ErrSignatureInvalid},
		{"v1 prefix", header("v1="+strings.TrimPrefix(vec.Signature, "v0="), vec.Timestamp), body, ErrMalformedSig},
		{"no prefix", header(strings.TrimPrefix(vec.Signature, "v0="), vec.Timestamp), body, ErrMalformedSig},
		{"not hex", header("v0=zz"+vec.Signature[5:], vec.Timestamp), body, ErrMalformedSig},
		{"truncated", header(vec.Signature[:len(vec.Signature)-2], vec.Timestamp), body, ErrMalformedSig},
		{"empty v0", header("v0=", vec.Timestamp), body, ErrMalformedSig},
		{"too large", header(vec.Signature, vec.Timestamp), bytes.Repeat([]byte("a"), DefaultMaxBody+1), ErrBodyTooLarge},
	}
	v, err := NewVerifier(clockAtUnix(vec.Timestamp), 0, vec.SigningSecret)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := v.Verify(tc.h, tc.body)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify error = %v, want %v", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), vec.SigningSecret) {
				t.Fatalf("error leaks the secret: %v", err)
			}
		})
	}
}

// TestVerifyRotation: any configured secret verifies; the order does not matter.
func TestVerifyRotation(t *testing.T) {
	t.Parallel()
	vec, body := loadVector(t)
	for _, secrets := range [][]string{
		{vec.SigningSecret, "new-secret-after-rotation"},
		{"new-secret-after-rotation", vec.SigningSecret},
	} {
		v, err := NewVerifier(clockAtUnix(vec.Timestamp), 0, secrets...)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Verify(header(vec.Signature, vec.Timestamp), body); err != nil {
			t.Errorf("secrets %q: %v", secrets, err)
		}
		other := SignatureHeader("new-secret-after-rotation", vec.Timestamp, body)
		if err := v.Verify(header(other, vec.Timestamp), body); err != nil {
			t.Errorf("secrets %q, new secret: %v", secrets, err)
		}
	}
}

func TestNewVerifierRefusesEmptySecrets(t *testing.T) {
	t.Parallel()
	clk := clocktest.New(time.Unix(0, 0))
	for name, secrets := range map[string][]string{"none": nil, "empty": {""}, "blank second": {"abc", "  "}} {
		if _, err := NewVerifier(clk, 0, secrets...); err == nil {
			t.Errorf("%s: NewVerifier accepted %q", name, secrets)
		}
	}
}

// TestReadRequestLimitsBodyFirst: an oversized body is refused before its signature is looked
// at (no headers at all here), whether or not Content-Length announces it.
func TestReadRequestLimitsBodyFirst(t *testing.T) {
	t.Parallel()
	vec, _ := loadVector(t)
	v, err := NewVerifier(clockAtUnix(vec.Timestamp), 1024, vec.SigningSecret)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 2048)
	withLength := httptest.NewRequest(http.MethodPost, "/slack/commands", bytes.NewReader(big))
	chunked := httptest.NewRequest(http.MethodPost, "/slack/commands", struct{ *bytes.Reader }{bytes.NewReader(big)})
	chunked.ContentLength = -1
	for name, r := range map[string]*http.Request{"content-length": withLength, "chunked": chunked} {
		_, err := v.ReadRequest(httptest.NewRecorder(), r)
		if !errors.Is(err, ErrBodyTooLarge) {
			t.Errorf("%s: err = %v, want ErrBodyTooLarge", name, err)
		}
	}
}

func TestReadRequestReturnsBody(t *testing.T) {
	t.Parallel()
	vec, body := loadVector(t)
	v, err := NewVerifier(clockAtUnix(vec.Timestamp), 0, vec.SigningSecret)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/slack/commands", bytes.NewReader(body))
	r.Header = header(vec.Signature, vec.Timestamp)
	got, err := v.ReadRequest(httptest.NewRecorder(), r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("body changed")
	}
}

// FuzzVerify: Verify never panics, and accepts a body only with the signature made for it.
func FuzzVerify(f *testing.F) {
	vec, body := loadVector(f)
	f.Add(vec.Signature, vec.Timestamp, body)
	f.Add(vec.SlackGo.Signature, vec.SlackGo.Timestamp, []byte(vec.SlackGo.Body))
	f.Add("v0=", "", []byte{})
	f.Add("v0=00", "1531420618", []byte("token=x"))
	f.Add(vec.Signature, "+1531420618", body)
	v, err := NewVerifier(clockAtUnix(vec.Timestamp), 0, vec.SigningSecret)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sig, ts string, b []byte) {
		err := v.Verify(header(sig, ts), b)
		if err != nil {
			return
		}
		want := SignatureHeader(vec.SigningSecret, ts, b)
		if !strings.EqualFold(sig, want) {
			t.Fatalf("accepted signature %q for body %q at %q; the only valid one is %q", sig, b, ts, want)
		}
	})
}
