package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
)

// Session is a signed-in person, as the session cookie carries it. It is signed (HMAC-SHA256
// with the session key), not encrypted: it holds identifiers only, never a token.
type Session struct {
	ID      string    `json:"sid"` // random; the CSRF token is derived from it
	TeamID  string    `json:"team"`
	UserID  string    `json:"user"`
	Name    string    `json:"name,omitempty"`
	Email   string    `json:"email,omitempty"`
	Issued  time.Time `json:"iat"`
	Expires time.Time `json:"exp"`
}

// signinState is the short-lived cookie of one sign-in: the OAuth state and OpenID nonce
// it must come back with, and the page to return to.
type signinState struct {
	State   string    `json:"state"`
	Nonce   string    `json:"nonce"`
	Return  string    `json:"return"`
	Expires time.Time `json:"exp"`
}

// Cookie names. With an https base URL the session cookie is a __Host- cookie (Secure,
// Path=/, no Domain: no other host or path can set or read it).
const (
	sessionCookie       = "ab_console"
	signinCookie        = "ab_console_signin"
	secureSessionCookie = "__Host-ab_console"
	secureSigninCookie  = "__Host-ab_console_signin"
	signinStateTTL      = 10 * time.Minute
)

// Errors of a session cookie.
var (
	errNoSession      = errors.New("not signed in")
	errBadSession     = errors.New("the session cookie is not valid")
	errExpiredSession = errors.New("the session expired")
)

type sessionCodec struct {
	key    []byte
	secure bool
}

func (c sessionCodec) name(plain, secure string) string {
	if c.secure {
		return secure
	}
	return plain
}

func (c sessionCodec) mac(purpose string, payload []byte) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write(payload)
	return m.Sum(nil)
}

func (c sessionCodec) seal(purpose string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(b) + "." + enc.EncodeToString(c.mac(purpose, b)), nil
}

func (c sessionCodec) open(purpose, s string, v any) error {
	enc := base64.RawURLEncoding
	p, sig, ok := strings.Cut(s, ".")
	if !ok {
		return errBadSession
	}
	b, err1 := enc.DecodeString(p)
	want, err2 := enc.DecodeString(sig)
	if err1 != nil || err2 != nil || !hmac.Equal(want, c.mac(purpose, b)) {
		return errBadSession
	}
	if json.Unmarshal(b, v) != nil {
		return errBadSession
	}
	return nil
}

func (c sessionCodec) cookie(name, value string, expires time.Time, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", Expires: expires, MaxAge: maxAge,
		Secure: c.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode}
}

// setSession writes the session cookie. SameSite=Lax: the cookie comes along when a person
// follows a link to the console (from Slack, say), never on another site's POST; changes are
// refused cross-origin anyway (CrossOriginProtection and the CSRF token).
func (c sessionCodec) setSession(w http.ResponseWriter, s Session, now time.Time) error {
	v, err := c.seal("session", s)
	if err != nil {
		return err
	}
	http.SetCookie(w, c.cookie(c.name(sessionCookie, secureSessionCookie), v, s.Expires, int(s.Expires.Sub(now)/time.Second)))
	return nil
}

func (c sessionCodec) clearSession(w http.ResponseWriter) {
	http.SetCookie(w, c.cookie(c.name(sessionCookie, secureSessionCookie), "", time.Unix(0, 0), -1))
}

// session reads the session cookie: errNoSession, errBadSession or errExpiredSession when
// there is no valid one at now.
func (c sessionCodec) session(r *http.Request, now time.Time) (Session, error) {
	ck, err := r.Cookie(c.name(sessionCookie, secureSessionCookie))
	if err != nil || ck.Value == "" {
		return Session{}, errNoSession
	}
	var s Session
	if err := c.open("session", ck.Value, &s); err != nil {
		return Session{}, err
	}
	if s.ID == "" || s.TeamID == "" || s.UserID == "" {
		return Session{}, errBadSession
	}
	if !now.Before(s.Expires) {
		return s, errExpiredSession
	}
	return s, nil
}

func (c sessionCodec) setSignin(w http.ResponseWriter, st signinState, now time.Time) error {
	v, err := c.seal("signin", st)
	if err != nil {
		return err
	}
	// SameSite=Lax so that the cookie comes back on the provider's top-level redirect.
	http.SetCookie(w, c.cookie(c.name(signinCookie, secureSigninCookie), v, st.Expires, int(st.Expires.Sub(now)/time.Second)))
	return nil
}

func (c sessionCodec) signin(r *http.Request, now time.Time) (signinState, error) {
	ck, err := r.Cookie(c.name(signinCookie, secureSigninCookie))
	if err != nil || ck.Value == "" {
		return signinState{}, errNoSession
	}
	var st signinState
	if err := c.open("signin", ck.Value, &st); err != nil {
		return st, err
	}
	if !now.Before(st.Expires) {
		return st, errExpiredSession
	}
	return st, nil
}

func (c sessionCodec) clearSignin(w http.ResponseWriter) {
	http.SetCookie(w, c.cookie(c.name(signinCookie, secureSigninCookie), "", time.Unix(0, 0), -1))
}

// csrfToken is the form token of a session: a MAC of its random id, so it changes with
// every sign-in and cannot be computed without the key.
func (c sessionCodec) csrfToken(s Session) string {
	return base64.RawURLEncoding.EncodeToString(c.mac("csrf", []byte(s.ID)))
}

func (c sessionCodec) checkCSRF(s Session, token string) bool {
	want := c.csrfToken(s)
	return token != "" && hmac.Equal([]byte(token), []byte(want))
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
