package console

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// FuzzSessionCookie: no cookie value an attacker can send is a session unless the key
// signed it, and the decoder never panics.
func FuzzSessionCookie(f *testing.F) {
	codec := sessionCodec{key: []byte("0123456789abcdef0123456789abcdef")}
	now := time.Date(2026, 3, 2, 13, 0, 0, 0, time.UTC)
	good, err := codec.seal("session", Session{ID: "s", TeamID: "T0TEAM", UserID: "U0ALICE", Issued: now, Expires: now.Add(time.Hour)})
	if err != nil {
		f.Fatal(err)
	}
	signin, _ := codec.seal("signin", signinState{State: "s", Nonce: "n", Return: "/ui/", Expires: now.Add(time.Hour)})
	for _, s := range []string{good, signin, "", ".", "e30.", "e30.AAAA", good + "x", "x" + good} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r := httptest.NewRequest(http.MethodGet, "/ui/", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: v})
		s, err := codec.session(r, now)
		if err != nil {
			return
		}
		if v != good {
			t.Fatalf("cookie %q was accepted as session %+v", v, s)
		}
	})
}
