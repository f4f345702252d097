package broker_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/accessbroker/accessbroker/broker"
)

func TestCheckEmail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want, refusal string
	}{
		{"alice@example.com", "alice@example.com", ""},
		{"  Alice@EXAMPLE.com ", "alice@example.com", ""},
		{"a.b+tag@sub.example.co.uk", "a.b+tag@sub.example.co.uk", ""},
		{"", "", "empty"},
		{"alice", "", "not an address"},
		{"@example.com", "", "not an address"},
		{"alice@", "", "not an address"},
		{"a@b@example.com", "", "not an address"},
		{"ali ce@example.com", "", "contains a space"},
		{"\u0430lice@example.com", "", "outside ASCII after Unicode normalisation"}, // Cyrillic а
		{"al\u0131ce@example.com", "", "outside ASCII after Unicode normalisation"}, // dotless ı
		{"alice@ex\u0430mple.com", "", "outside ASCII after Unicode normalisation"}, // look-alike domain
		{"\uff41lice@example.com", "", `normalise to "alice@example.com"`},          // fullwidth ａ
		{"\u212aate@example.com", "", `normalise to "kate@example.com"`},            // Kelvin sign
		{"alice\u200b@example.com", "", "outside ASCII"},                            // zero-width space
	} {
		got, err := broker.CheckEmail(tc.in)
		switch {
		case tc.refusal == "" && (err != nil || got != tc.want):
			t.Errorf("CheckEmail(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		case tc.refusal != "" && (!errors.Is(err, broker.ErrEmailRefused) || !strings.Contains(err.Error(), tc.refusal) || got != ""):
			t.Errorf("CheckEmail(%q) = %q, %v; want a refusal mentioning %q", tc.in, got, err, tc.refusal)
		}
	}
}

func TestFoldEmailMakesLookalikesCollide(t *testing.T) {
	t.Parallel()
	// FoldEmail is what conflicts are detected with: every spelling below is Alice's address
	// for that purpose (and CheckEmail refuses the non-ASCII ones).
	for _, s := range []string{"alice@example.com", "ALICE@Example.COM", " alice@example.com", "\uff41lice@example.com", "Alice@example.com"} {
		if got := broker.FoldEmail(s); got != "alice@example.com" {
			t.Errorf("FoldEmail(%q) = %q", s, got)
		}
	}
	if got := broker.FoldEmail("\u0430lice@example.com"); got == "alice@example.com" {
		t.Errorf("a Cyrillic look-alike folds to the ASCII address; it must stay distinct (and be refused by CheckEmail)")
	}
}

func TestIdentityConflictIsUnknownPerson(t *testing.T) {
	t.Parallel()
	c := &broker.IdentityConflict{Email: "alice@example.com", ClaimedBySlackUser: "U0ALICE", SlackUser: "U0MALLORY", Via: "slack_users_info"}
	if !errors.Is(c, broker.ErrUnknownPerson) {
		t.Error("a conflict is not ErrUnknownPerson")
	}
	for _, want := range []string{"alice@example.com", "U0ALICE", "Slack user U0MALLORY", "identities"} {
		if !strings.Contains(c.Error(), want) {
			t.Errorf("%q lacks %q", c.Error(), want)
		}
	}
	pd := &broker.IdentityConflict{Email: "alice@example.com", ClaimedBySlackUser: "U0ALICE", PagerDutyUser: "PEVIL", Via: "pagerduty"}
	if !strings.Contains(pd.Error(), "PagerDuty user PEVIL") {
		t.Errorf("%q does not name the PagerDuty user", pd.Error())
	}
}
