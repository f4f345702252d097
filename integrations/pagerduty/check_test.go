package pagerduty_test

import (
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/fixtures/pdfake"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
	"github.com/accessbroker/accessbroker/integrations/pagerduty"
)

func TestCheckAccess(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		token   string
		fault   *pdfake.Fault
		wantErr string // "" = passes
	}{
		{name: "key accepted", token: apiToken},
		{name: "wrong key", token: "u+not-the-key-0000", wantErr: "refuses pagerduty.token (HTTP 401)"},
		{name: "pagerduty answers 503", token: apiToken, fault: &pdfake.Fault{Status: 503}, wantErr: "503"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, t0)
			if tt.fault != nil {
				e.fake.InjectFault(*tt.fault)
			}
			hc := httpclient.New(httpclient.Options{RetryMax: 1, WaitMin: time.Millisecond, WaitMax: time.Millisecond, ReturnLastResponse: true, Clock: e.clock})
			c, err := pagerduty.New(pagerduty.Config{APIURL: e.fake.URL + "/", Token: tt.token, HTTP: hc, Clock: e.clock})
			if err != nil {
				t.Fatal(err)
			}
			err = c.CheckAccess(t.Context())
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("CheckAccess: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("CheckAccess = %v, want an error mentioning %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), tt.token) {
				t.Errorf("error leaks the key: %v", err)
			}
			if calls := e.fake.Calls(); len(calls) == 0 || calls[0].Path != "/users" {
				t.Errorf("calls %+v, want GET /users", calls)
			}
		})
	}
}
