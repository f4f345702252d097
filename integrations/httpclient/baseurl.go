package httpclient

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// CheckBaseURL is the one rule for every configured upstream URL that receives a token or a
// signed request (slack.api_url, pagerduty.api_url, github.api_url, aws.endpoint_url,
// webhook.url): an absolute https URL, or plain http only to a loopback host (localhost in
// any case, 127.0.0.0/8, ::1: the fakes of tests and the demo), without user info. It returns
// the parsed URL, or an error whose text fits after the key's name ("slack.api_url: must use
// https …") and never repeats the URL's user info. Callers add their own further rules (no
// path, no query) after it.
func CheckBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, errors.New("must be an absolute https:// URL")
	}
	if u.User != nil {
		return nil, errors.New("must not contain credentials; they belong in the token key")
	}
	if u.Scheme == "http" && !IsLoopback(u.Hostname()) {
		return nil, fmt.Errorf("must use https (plain http is only allowed for loopback hosts such as 127.0.0.1 or localhost), not http://%s", u.Host)
	}
	return u, nil
}

// IsLoopback reports whether host (a URL's Hostname) is localhost, in any case, or a loopback
// IP address.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
