package slack

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	slackgo "github.com/slack-go/slack"

	"github.com/accessbroker/accessbroker/broker"
	"github.com/accessbroker/accessbroker/grants"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// golden compares v, encoded as indented JSON, with testdata/golden/name.json.
func golden(t *testing.T, name string, v any) {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "golden", name+".json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if diff := cmp.Diff(string(want), buf.String()); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got); rerun with -update if intended:\n%s", path, diff)
	}
}

var (
	goldenNow   = time.Date(2026, 3, 2, 13, 5, 0, 0, time.UTC)
	alicePerson = grants.Person{SlackTeamID: testTeam, SlackUserID: alice, Email: "alice@example.com", ResolvedBy: "config"}
)

func goldenRequest() grants.Request {
	return grants.Request{
		ID: "r_abcdefghijklmnop", Requester: alicePerson, Resource: "prod-db", Duration: 90 * time.Minute,
		Reason: "INC-42: replication lag <!channel> & <http://evil.example|click me>", Source: grants.SourceSlack,
		State: grants.RequestPending, CreatedAt: goldenNow, ExpiresAt: goldenNow.Add(time.Hour),
		Evidence: map[string]string{"on_call": "false"},
	}
}

func goldenGrant(provider string) grants.Grant {
	return grants.Grant{
		ID: "g_abcdefghijklmnop", RequestID: "r_abcdefghijklmnop", Resource: "prod-" + provider, Provider: provider,
		Person: alicePerson, State: grants.StateActive, CreatedAt: goldenNow, IssuedAt: goldenNow, ExpiresAt: goldenNow.Add(time.Hour),
	}
}

func TestApprovalBlocksGolden(t *testing.T) {
	t.Parallel()
	res := prodDBResource()
	res.Policy.ApproverSlackUsergroup = "S0DBA"
	onCall := goldenRequest()
	onCall.Evidence = map[string]string{"on_call": "true", "on_call_shifts": "escalation policy DB primary level 1 via schedule DB weekly until 2026-03-02T21:00:00.000Z"}
	unknown := goldenRequest()
	unknown.Evidence = map[string]string{"on_call": "unknown", "on_call_error": "pagerduty: 503 Service Unavailable"}
	ask := broker.ApprovalAsk{Request: goldenRequest(), Resource: res, Needed: 2}
	ext := goldenRequest()
	ext.Duration = 30 * time.Minute
	ext.Evidence = map[string]string{"on_call": "false", "kind": "extend", "extends_grant": "g_abcdefghijklmnop", "expires_at": "2026-03-02T13:35:00.000Z"}
	override := goldenRequest()
	override.Duration = 30 * time.Minute
	override.Evidence = map[string]string{"on_call": "true", "kind": "extend", "extends_grant": "g_abcdefghijklmnop", "expires_at": "2026-03-02T13:20:00.000Z",
		"scheduled_end": "incident_resolved", "scheduled_end_at": "2026-03-02T13:20:00.000Z"}
	approverAsks := prodDBResource() // alice, the requester, is one of its approvers
	approverAsks.Policy.ApproverSlackUsers = []string{carol, alice}
	cases := map[string]struct {
		ask broker.ApprovalAsk
		out *broker.ApprovalOutcome
	}{
		"approval-request":             {ask, nil},
		"approval-request-on-call":     {broker.ApprovalAsk{Request: onCall, Resource: res, Needed: 1}, nil},
		"approval-request-unknown":     {broker.ApprovalAsk{Request: unknown, Resource: res, Needed: 1}, nil},
		"approval-request-by-approver": {broker.ApprovalAsk{Request: goldenRequest(), Resource: approverAsks, Needed: 1}, nil},
		"approval-progress":            {ask, &broker.ApprovalOutcome{State: grants.RequestPending, By: []string{bob}}},
		"approval-approved":            {ask, &broker.ApprovalOutcome{State: grants.RequestApproved, By: []string{bob, carol}, GrantID: "g_abcdefghijklmnop", ExpiresAt: goldenNow.Add(90 * time.Minute)}},
		"approval-denied":              {ask, &broker.ApprovalOutcome{State: grants.RequestDenied, By: []string{bob}}},
		"approval-expired":             {ask, &broker.ApprovalOutcome{State: grants.RequestExpired}},
		"approval-extension":           {broker.ApprovalAsk{Request: ext, Resource: res, Needed: 1}, nil},
		"approval-extension-override":  {broker.ApprovalAsk{Request: override, Resource: res, Needed: 1}, nil},
		"approval-extension-approved": {broker.ApprovalAsk{Request: override, Resource: res, Needed: 1},
			&broker.ApprovalOutcome{State: grants.RequestApproved, By: []string{bob}, GrantID: "g_abcdefghijklmnop", ExpiresAt: goldenNow.Add(50 * time.Minute)}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			blocks := ApprovalBlocks(tc.ask, tc.out, goldenNow)
			checkNoInjection(t, blocks)
			golden(t, name, slackgo.Blocks{BlockSet: blocks})
		})
	}
}

func TestCredentialBlocksGolden(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		g grants.Grant
		c grants.Credential
	}{
		"credential-postgres": {goldenGrant("postgres"), grants.NewCredential("postgres",
			"connection_string", "postgres://ab_g_abc:s3cr3t-p%40ss@db.internal:5432/app?sslmode=require",
			"user", "ab_g_abc", "password", "s3cr3t-p@ss", "host", "db.internal", "port", "5432", "database", "app", "sslmode", "require")},
		"credential-aws": {goldenGrant("aws-sts"), grants.NewCredential("aws-sts",
			"access_key_id", "ASIAEXAMPLE", "secret_access_key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
			"session_token", "FwoGZXIvYXdzEXAMPLE", "console_url", "https://signin.aws.amazon.com/federation?Action=login&SigninToken=abc")},
		"credential-github":  {goldenGrant("github-team"), grants.NewCredential("github-team", "org", "acme", "team", "infra-admins")},
		"credential-webhook": {goldenGrant("webhook"), grants.NewCredential("webhook", "api_key", "k-123<script>", "endpoint", "https://internal.example/api")},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			blocks, fallback := CredentialBlocks(tc.g, tc.c, goldenNow)
			for _, f := range tc.c.Reveal() {
				if f.Name != "org" && f.Name != "team" && strings.Contains(fallback, f.Value) {
					t.Errorf("notification text %q holds credential field %s", fallback, f.Name)
				}
			}
			golden(t, name, map[string]any{"text": fallback, "blocks": slackgo.Blocks{BlockSet: blocks}})
		})
	}
}

func TestReminderBlocksGolden(t *testing.T) {
	t.Parallel()
	g := goldenGrant("postgres")
	g.ExpiresAt = goldenNow.Add(5 * time.Minute)
	for name, offer := range map[string]broker.ExtendOffer{
		"reminder-extend": {Kind: broker.OfferExtend, By: 30 * time.Minute, Note: "You are on call, so it is extended at once."},
		"reminder-extend-capped": {Kind: broker.OfferExtend, By: 20 * time.Minute,
			Note: "You are on call, so it is extended at once, up to the end of your shift at 13:30 UTC."},
		"reminder-request": {Kind: broker.OfferRequest, By: 30 * time.Minute, Note: "More time needs 1 approval(s) (not on call for prod-db; approval needed)."},
		"reminder-at-max":  {Kind: broker.OfferNone, Note: "It is at prod-postgres's maximum duration; ask again with a new request if you need more."},
		"reminder-scheduled-end": {Kind: broker.OfferNone,
			Note: "It ends early because the incident it was granted for was resolved; only an approver can extend it (`/access extend g_abcdefghijklmnop <duration> <reason>` asks them)."},
	} {
		t.Run(name, func(t *testing.T) {
			blocks, fallback := ReminderBlocks(g, offer, goldenNow)
			golden(t, name, map[string]any{"text": fallback, "blocks": slackgo.Blocks{BlockSet: blocks}})
		})
	}
}

// checkNoInjection: the user's reason never reaches Slack with live control sequences.
func checkNoInjection(t *testing.T, blocks []slackgo.Block) {
	t.Helper()
	b, _ := json.Marshal(slackgo.Blocks{BlockSet: blocks})
	s := jsonUnescaper.Replace(string(b))
	for _, bad := range []string{"<!channel>", "<http://evil.example|click me>"} {
		if strings.Contains(s, bad) {
			t.Errorf("blocks contain %q unescaped", bad)
		}
	}
}

func TestRender(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"approved by " + broker.Mention("U0BOB"):             "approved by <@U0BOB>",
		"forged \x1f@<!channel>\x1f":                         "forged @&lt;!channel&gt;",
		"bad id " + broker.Mention("not-an-id"):              "bad id @not-an-id",
		"<@U0BOB> typed by a user":                           "&lt;@U0BOB&gt; typed by a user",
		"a & b " + broker.Mention("U0BOB") + " <http://x|y>": "a &amp; b <@U0BOB> &lt;http://x|y&gt;",
	}
	for in, want := range cases {
		if got := Render(in); got != want {
			t.Errorf("Render(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestApprovalRequestNeverListsTheRequester: when the requester is one of the resource's
// approvers, the approval request names the other approvers only.
func TestApprovalRequestNeverListsTheRequester(t *testing.T) {
	t.Parallel()
	res := prodDBResource()
	res.Policy.ApproverSlackUsers = []string{carol, alice}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ApprovalBlocks(broker.ApprovalAsk{Request: goldenRequest(), Resource: res, Needed: 1}, nil, goldenNow)); err != nil {
		t.Fatal(err)
	}
	// The blocks' own marshalers escape < and > whatever the encoder says.
	text := strings.NewReplacer(`\u003c`, "<", `\u003e`, ">").Replace(buf.String())
	if !strings.Contains(text, "from <@"+carol+">.") {
		t.Errorf("the request does not name carol alone as the approver:\n%s", text)
	}
	if strings.Contains(text, "<@"+carol+">, <@"+alice+">") || strings.Contains(text, "from <@"+alice+">") {
		t.Errorf("the request lists alice, its requester, as an approver:\n%s", text)
	}
}
