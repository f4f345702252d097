package slack

import (
	"strings"
	"testing"

	slackgo "github.com/slack-go/slack"

	"github.com/accessbroker/accessbroker/fixtures/slackfake"
	"github.com/accessbroker/accessbroker/integrations/httpclient"
)

func TestCheckAuth(t *testing.T) {
	t.Parallel()
	fake, api, hc := newFakeSlack(t, nil)
	wrongToken, err := NewClient(ClientOptions{Token: "xoxb-not-the-token", APIURL: fake.APIURL(), HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	noRetry := httpclient.New(httpclient.Options{RetryMax: -1})
	down, err := NewClient(ClientOptions{Token: testToken, APIURL: "http://127.0.0.1:1/api/", HTTPClient: noRetry})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		api     *slackgo.Client
		team    string
		fail500 int    // auth.test answers 500 this many times (the client retries 3 times)
		wantErr string // "" = passes
	}{
		{name: "token and team match", api: api, team: testTeam},
		{name: "no team_id configured", api: api, team: ""},
		{name: "token of another workspace", api: api, team: "T0OTHER", wantErr: "belongs to workspace T0TEAM, but slack.team_id is T0OTHER"},
		{name: "token refused", api: wrongToken, team: testTeam, wantErr: "invalid_auth"},
		{name: "slack unreachable", api: down, team: testTeam, wantErr: "slack auth.test"},
		{name: "slack answers 500", api: api, team: testTeam, fail500: 4, wantErr: "500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			faults := make([]slackfake.Fault, tt.fail500)
			for i := range faults {
				faults[i] = slackfake.Fault{Status: 500}
			}
			if len(faults) > 0 {
				fake.FailNext("auth.test", faults...)
			}
			err := CheckAuth(t.Context(), tt.api, tt.team)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("CheckAuth: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("CheckAuth = %v, want an error mentioning %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), testToken) {
				t.Errorf("error leaks the token: %v", err)
			}
		})
	}
}
