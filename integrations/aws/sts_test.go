package awsprov

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/fixtures/awsfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/providertest"
)

func TestSTSProviderConformance(t *testing.T) {
	t.Parallel()
	providertest.Run(t, func(t *testing.T) providertest.Harness {
		e := newEnv(t, awsfake.Options{})
		p, _ := e.newSTS(t, 12*time.Hour, STSConfig{})
		return providertest.Harness{
			Provider: p,
			Person:   alice,
			Clock:    e.clock,
			HasAccess: func(t *testing.T, h grants.Handle, req grants.RevokeRequest) bool {
				t.Helper()
				name := h.Data[DataSessionName]
				if name == "" {
					name = SessionName(req.Person, req.GrantID)
				}
				return e.sessionWorks(t, name) == nil
			},
			InjectRevokeFault: func(t *testing.T) func() {
				return e.fake.InjectFault(awsfake.Fault{Service: awsfake.ServiceIAM, Status: 503, Times: -1})
			},
			SecretFields: []string{"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "console_url"},
		}
	})
}

func TestSTSIssue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, awsfake.Options{})
	policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:Get*","Resource":"*"}]}`
	p, role := e.newSTS(t, 4*time.Hour, STSConfig{SessionPolicy: policy})
	id := grants.NewID("g")
	iss := mustIssue(t, p, issueReq(alice, id, t0.Add(90*time.Minute)))

	name := "alice@example.com-" + id
	sess, ok := e.fake.SessionByName(name)
	if !ok {
		t.Fatalf("no session named %s at the fake", name)
	}
	got := []any{sess.DurationSeconds, sess.SourceIdentity, sess.Policy, sess.RoleARN}
	if diff := cmp.Diff([]any{5400, "alice@example.com", policy, role.ARN}, got); diff != "" {
		t.Errorf("AssumeRole parameters (-want +got):\n%s", diff)
	}
	f := fields(iss.Credential)
	if f["AWS_ACCESS_KEY_ID"] != sess.AccessKeyID || f["AWS_SECRET_ACCESS_KEY"] != sess.SecretAccessKey || f["AWS_SESSION_TOKEN"] != sess.SessionToken {
		t.Error("credential fields do not carry the session's credentials")
	}
	if f["AWS_CREDENTIAL_EXPIRATION"] != grants.Timestamp(t0.Add(90*time.Minute)) {
		t.Errorf("AWS_CREDENTIAL_EXPIRATION = %q", f["AWS_CREDENTIAL_EXPIRATION"])
	}
	if iss.Credential.Kind() != "aws-sts" {
		t.Errorf("kind %q", iss.Credential.Kind())
	}
	// The console link carries a sign-in token the federation endpoint issued for this session.
	u, err := url.Parse(f["console_url"])
	if err != nil || u.Query().Get("Action") != "login" || u.Query().Get("Destination") != DefaultConsoleDestination {
		t.Fatalf("console_url %q (%v)", f["console_url"], err)
	}
	if k, ok := e.fake.SigninTokenSession(u.Query().Get("SigninToken")); !ok || k != sess.AccessKeyID {
		t.Errorf("sign-in token belongs to %q (%v), want the issued session", k, ok)
	}
	if calls := e.fake.CallsTo(awsfake.ServiceSignin, "getSigninToken"); len(calls) != 1 || calls[0].Params["SessionDuration"] != "5400" {
		t.Errorf("federation calls %+v", calls)
	}
	wantHandle := grants.Handle{Key: name, Data: map[string]string{
		DataRoleARN: role.ARN, DataRoleName: "oncall-admin", DataRoleID: role.ID, DataSessionName: name,
		DataSourceIdentity: "alice@example.com", DataIssuedAt: grants.Timestamp(t0), DataSTSExpiry: grants.Timestamp(t0.Add(90 * time.Minute)),
		DataAccessKeyID: sess.AccessKeyID, // the session's key: activity collection looks CloudTrail up by it
	}}
	if diff := cmp.Diff(wantHandle, iss.Handle); diff != "" {
		t.Errorf("handle (-want +got):\n%s", diff)
	}
	// The delivered credentials work against AWS.
	use := iam.NewFromConfig(aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(e.fake.URL()),
		Credentials: credentials.NewStaticCredentialsProvider(f["AWS_ACCESS_KEY_ID"], f["AWS_SECRET_ACCESS_KEY"], f["AWS_SESSION_TOKEN"])})
	if _, err := use.ListRolePolicies(t.Context(), &iam.ListRolePoliciesInput{RoleName: aws.String("oncall-admin")}); err != nil {
		t.Errorf("delivered credentials do not work: %v", err)
	}
	assertNoSecretsLogged(t, e.logs.String(), sess.SecretAccessKey, sess.SessionToken, u.Query().Get("SigninToken"))
	// GetRole is cached: a second issue does not read the role again.
	mustIssue(t, p, issueReq(bob, grants.NewID("g"), t0.Add(time.Hour)))
	if n := countCalls(e, awsfake.ServiceIAM, "GetRole"); n != 1 {
		t.Errorf("GetRole called %d times, want 1 (cached)", n)
	}
}

func TestSessionDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		remaining  time.Duration
		limit      time.Duration
		want       time.Duration
		wantCapped bool
	}{
		{"remaining time", 90 * time.Minute, 4 * time.Hour, 90 * time.Minute, false},
		{"minimum 900s", 5 * time.Minute, time.Hour, 15 * time.Minute, false},
		{"rounded up to a second", 30*time.Minute + 300*time.Millisecond, time.Hour, 30*time.Minute + time.Second, false},
		{"exactly the limit", time.Hour, time.Hour, time.Hour, false},
		{"capped by the role", 13 * time.Hour, 12 * time.Hour, 12 * time.Hour, true},
		{"capped by config", 2 * time.Hour, time.Hour, time.Hour, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, capped := SessionDuration(t0, t0.Add(tc.remaining), tc.limit)
			if got != tc.want || capped != tc.wantCapped {
				t.Fatalf("SessionDuration = %v, %v; want %v, %v", got, capped, tc.want, tc.wantCapped)
			}
		})
	}
}

func TestSTSDurationThroughFake(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		roleMax  time.Duration
		cfgMax   time.Duration
		grant    time.Duration
		wantSecs int
		wantNote bool
	}{
		{"short grant gets 900s", time.Hour, 0, 5 * time.Minute, 900, false},
		{"role max caps", 2 * time.Hour, 0, 3 * time.Hour, 7200, true},
		{"configured cap below role max", 12 * time.Hour, time.Hour, 3 * time.Hour, 3600, true},
		{"fits", 12 * time.Hour, 0, 8 * time.Hour, 28800, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, awsfake.Options{})
			p, _ := e.newSTS(t, tc.roleMax, STSConfig{MaxSessionDuration: tc.cfgMax})
			id := grants.NewID("g")
			iss := mustIssue(t, p, issueReq(alice, id, t0.Add(tc.grant)))
			sess, _ := e.fake.SessionByName(SessionName(alice, id))
			if sess.DurationSeconds != tc.wantSecs {
				t.Errorf("DurationSeconds = %d, want %d", sess.DurationSeconds, tc.wantSecs)
			}
			if _, ok := fields(iss.Credential)["note"]; ok != tc.wantNote {
				t.Errorf("note present = %v, want %v", ok, tc.wantNote)
			}
		})
	}
}

func TestSTSRoleMaxLoweredAfterCaching(t *testing.T) {
	t.Parallel()
	e := newEnv(t, awsfake.Options{})
	p, _ := e.newSTS(t, 4*time.Hour, STSConfig{})
	mustIssue(t, p, issueReq(alice, grants.NewID("g"), t0.Add(3*time.Hour)))
	e.fake.AddRole("oncall-admin", time.Hour) // same name, now with a 1 hour maximum (and a new id)
	id := grants.NewID("g")
	mustIssue(t, p, issueReq(alice, id, t0.Add(3*time.Hour)))
	if s, _ := e.fake.SessionByName(SessionName(alice, id)); s.DurationSeconds != 3600 {
		t.Errorf("DurationSeconds = %d after the role max was lowered, want 3600", s.DurationSeconds)
	}
}

var sessionNameRE = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)

func TestSessionNameSanitising(t *testing.T) {
	t.Parallel()
	id := "g_abcdefghijklmnop"
	tests := []struct {
		name       string
		person     grants.Person
		wantName   string
		wantSource string
	}{
		{"email", alice, "alice@example.com-" + id, "alice@example.com"},
		{"spaces and unicode", grants.Person{Email: "zoë o'brien+ops@exa mple.com"}, "zo--o-brien+ops@exa-mple.com-" + id, "zo--o-brien+ops@exa-mple.com"},
		{"no email: slack id", grants.Person{SlackUserID: "U0ALICE"}, "U0ALICE-" + id, "U0ALICE"},
		{"nothing", grants.Person{}, "unknown-" + id, ""},
		{"aws: prefix cannot survive", grants.Person{Email: "aws:root"}, "aws-root-" + id, "aws-root"},
		{"long email truncated, grant id kept", grants.Person{Email: strings.Repeat("x", 80) + "@example.com"}, strings.Repeat("x", 64-len(id)-1) + "-" + id, strings.Repeat("x", 64)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := SessionName(tc.person, id)
			if got != tc.wantName {
				t.Errorf("SessionName = %q, want %q", got, tc.wantName)
			}
			if !sessionNameRE.MatchString(got) {
				t.Errorf("SessionName %q breaks AWS's pattern or length", got)
			}
			if src := SourceIdentity(tc.person); src != tc.wantSource {
				t.Errorf("SourceIdentity = %q, want %q", src, tc.wantSource)
			}
		})
	}
}

func FuzzSessionName(f *testing.F) {
	f.Add("alice@example.com", "U0ALICE", "g_abcdefghijklmnop")
	f.Add("", "", "")
	f.Add("é\x00\n:aws:", "U 1", "g_x")
	f.Fuzz(func(t *testing.T, email, slack, grant string) {
		p := grants.Person{Email: email, SlackUserID: slack}
		name := SessionName(p, "g_"+grant)
		if !sessionNameRE.MatchString(name) {
			t.Fatalf("SessionName(%q, %q) = %q breaks AWS's rules", email, grant, name)
		}
		if src := SourceIdentity(p); src != "" && (!sessionNameRE.MatchString(src) || strings.HasPrefix(src, "aws:")) {
			t.Fatalf("SourceIdentity = %q breaks AWS's rules", src)
		}
	})
}

// denyDocOf returns the fake's copy of the revocation policy, parsed.
func denyDocOf(t *testing.T, e *env) (*denyDoc, string) {
	t.Helper()
	role, _ := e.fake.Role("oncall-admin")
	text := role.InlinePolicies[DenyPolicyName]
	d, err := parseDenyDoc(text)
	if err != nil {
		t.Fatal(err)
	}
	return d, text
}

func TestSTSRevokeDeniesOnlyThatSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, awsfake.Options{})
	p, role := e.newSTS(t, 12*time.Hour, STSConfig{})
	idA, idA2, idB := grants.NewID("g"), grants.NewID("g"), grants.NewID("g")
	a := mustIssue(t, p, issueReq(alice, idA, t0.Add(90*time.Minute)))
	a2 := mustIssue(t, p, issueReq(alice, idA2, t0.Add(90*time.Minute))) // overlapping grant, same person
	b := mustIssue(t, p, issueReq(bob, idB, t0.Add(2*time.Hour)))
	mustRevoke(t, p, idA, alice, a.Handle)

	var denied *awsfake.DeniedError
	if err := e.sessionWorks(t, a.Handle.Key); !errors.As(err, &denied) || denied.Policy != DenyPolicyName {
		t.Fatalf("revoked session: %v, want a deny from %s", err, DenyPolicyName)
	}
	for _, h := range []grants.Handle{a2.Handle, b.Handle} {
		if err := e.sessionWorks(t, h.Key); err != nil {
			t.Errorf("session %s stopped working: %v", h.Key, err)
		}
	}
	_, text := denyDocOf(t, e)
	end := t0.Add(2 * time.Hour).Truncate(time.Hour).Unix() // 90 minutes after 05:06 ends in the 07:00 bucket
	want := `{"Version":"2012-10-17","Statement":[{"Sid":"AccessbrokerExp` + itoa(end) + `","Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:userid":["` + role.ID + `:` + a.Handle.Key + `"]}}}]}`
	if text != want {
		t.Errorf("deny policy\n got %s\nwant %s", text, want)
	}
	// Its statement has the shape of the documented example.
	assertStatementShape(t, text, "aws-iam-deny-session-by-userid-policy.json")

	puts := countCalls(e, awsfake.ServiceIAM, "PutRolePolicy")
	mustRevoke(t, p, idA, alice, a.Handle)
	mustRevoke(t, p, idA, alice, grants.Handle{})
	if n := countCalls(e, awsfake.ServiceIAM, "PutRolePolicy"); n != puts {
		t.Errorf("revoking an already denied session wrote the policy again (%d → %d puts)", puts, n)
	}
	mustRevoke(t, p, idB, bob, b.Handle)
	d, _ := denyDocOf(t, e)
	if d.sessions() != 2 {
		t.Errorf("policy holds %d sessions, want 2", d.sessions())
	}
}

func itoa(n int64) string { return strconvFormat(n) }

func TestSTSRevokeExpiredSessionChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, awsfake.Options{})
	p, _ := e.newSTS(t, time.Hour, STSConfig{})
	id := grants.NewID("g")
	iss := mustIssue(t, p, issueReq(alice, id, t0.Add(20*time.Minute)))
	e.clock.Advance(20*time.Minute + clockSkew + time.Second)
	e.fake.ResetCalls()
	mustRevoke(t, p, id, alice, iss.Handle)
	if calls := e.fake.CallsTo(awsfake.ServiceIAM, ""); len(calls) != 0 {
		t.Errorf("revoking an expired session called IAM: %+v", calls)
	}
}

func TestSTSRevokePrunesExpiredStatements(t *testing.T) {
	t.Parallel()
	e := newEnv(t, awsfake.Options{})
	p, role := e.newSTS(t, time.Hour, STSConfig{})
	idA := grants.NewID("g")
	a := mustIssue(t, p, issueReq(alice, idA, t0.Add(30*time.Minute)))
	mustRevoke(t, p, idA, alice, a.Handle)
	e.clock.Advance(2 * time.Hour)
	idB := grants.NewID("g")
	b := mustIssue(t, p, issueReq(bob, idB, e.clock.Now().Add(30*time.Minute)))
	mustRevoke(t, p, idB, bob, b.Handle)
	d, text := denyDocOf(t, e)
	if strings.Contains(text, a.Handle.Key) {
		t.Errorf("expired session %s still in the policy: %s", a.Handle.Key, text)
	}
	if !d.covers(role.ID+":"+b.Handle.Key, time.Time{}, e.clock.Now()) || d.sessions() != 1 {
		t.Errorf("policy after pruning: %s", text)
	}
	if !strings.Contains(e.logs.String(), `"pruned":1`) {
		t.Error("pruning was not logged")
	}
}

func TestSTSRevokeFallsBackWhenPolicyFull(t *testing.T) {
	t.Parallel()
	const limit = 500
	e := newEnv(t, awsfake.Options{RolePolicySizeLimit: limit})
	var mu sync.Mutex
	var collateral []CollateralRevocation
	p, role := e.newSTS(t, time.Hour, STSConfig{}, WithRolePolicySizeLimit(limit), WithCollateralHook(func(_ context.Context, c CollateralRevocation) {
		mu.Lock()
		defer mu.Unlock()
		collateral = append(collateral, c)
	}))
	type grant struct {
		id     string
		person grants.Person
		iss    grants.Issued
	}
	var gs []grant
	for i := range 8 {
		g := grant{id: grants.NewID("g"), person: grants.Person{Email: "user" + itoa(int64(i)) + "@example.com"}}
		g.iss = mustIssue(t, p, issueReq(g.person, g.id, t0.Add(time.Hour)))
		gs = append(gs, g)
	}
	revoked := 0
	for _, g := range gs[:7] {
		mustRevoke(t, p, g.id, g.person, g.iss.Handle)
		revoked++
		mu.Lock()
		n := len(collateral)
		mu.Unlock()
		if n > 0 {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(collateral) != 1 {
		t.Fatalf("no fallback after %d revocations with a %d-character budget", revoked, limit)
	}
	c := collateral[0]
	if c.RoleARN != role.ARN || !c.Cutoff.Equal(t0.Add(2*time.Second)) || !c.Until.Equal(t0.Add(2*time.Second+12*time.Hour)) {
		t.Errorf("collateral report %+v", c)
	}
	// Every session issued before the cutoff is cut, the bystander's too.
	for _, g := range gs {
		if err := e.sessionWorks(t, g.iss.Handle.Key); err == nil {
			t.Errorf("session %s still works after the fallback", g.iss.Handle.Key)
		}
	}
	_, text := denyDocOf(t, e)
	assertStatementShape(t, text, "aws-iam-revoke-older-sessions-policy.json")
	if !strings.Contains(e.logs.String(), `"alert":true`) {
		t.Error("fallback not logged as an alert")
	}
	// Revoking the rest is a no-op (already covered by the cutoff); a later session works and
	// is denied per session again.
	puts := countCalls(e, awsfake.ServiceIAM, "PutRolePolicy")
	for _, g := range gs[revoked:7] {
		mustRevoke(t, p, g.id, g.person, g.iss.Handle)
	}
	if n := countCalls(e, awsfake.ServiceIAM, "PutRolePolicy"); n != puts {
		t.Errorf("revoking sessions covered by the cutoff wrote the policy (%d → %d)", puts, n)
	}
	e.clock.Advance(time.Minute)
	id := grants.NewID("g")
	late := mustIssue(t, p, issueReq(alice, id, e.clock.Now().Add(time.Hour)))
	if err := e.sessionWorks(t, late.Handle.Key); err != nil {
		t.Fatalf("a session issued after the cutoff does not work: %v", err)
	}
	mustRevoke(t, p, id, alice, late.Handle)
	if err := e.sessionWorks(t, late.Handle.Key); err == nil {
		t.Fatal("session issued after the cutoff survived its revocation")
	}
	d, _ := denyDocOf(t, e)
	if d.older == nil || d.sessions() != 1 {
		t.Errorf("policy after the fallback and one more revocation: older=%v sessions=%d", d.older, d.sessions())
	}
	// Once every session issued before the cutoff has expired, the cutoff is pruned.
	e.clock.Advance(13 * time.Hour)
	id2 := grants.NewID("g")
	g2 := mustIssue(t, p, issueReq(bob, id2, e.clock.Now().Add(time.Hour)))
	mustRevoke(t, p, id2, bob, g2.Handle)
	if d, text := denyDocOf(t, e); d.older != nil || d.sessions() != 1 {
		t.Errorf("stale cutoff not pruned: %s", text)
	}
}

func TestSTSRevokeWithoutRoomNeedsOperator(t *testing.T) {
	t.Parallel()
	e := newEnv(t, awsfake.Options{RolePolicySizeLimit: 400})
	p, _ := e.newSTS(t, time.Hour, STSConfig{})
	big := `{"Version":"2012-10-17","Statement":[{"Sid":"Big","Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::` + strings.Repeat("b", 250) + `/*"}]}`
	if err := e.fake.SetRolePolicy("oncall-admin", "other", big); err != nil {
		t.Fatal(err)
	}
	id := grants.NewID("g")
	iss := mustIssue(t, p, issueReq(alice, id, t0.Add(time.Hour)))
	err := p.Revoke(t.Context(), grants.RevokeRequest{GrantID: id, Person: alice, Handle: iss.Handle})
	if !errors.Is(err, grants.ErrNeedsOperator) || !strings.Contains(err.Error(), "no room") {
		t.Fatalf("Revoke = %v, want a needs-operator error about room", err)
	}
	if e.sessionWorks(t, iss.Handle.Key) != nil {
		t.Error("a failed revocation changed access")
	}
}

func TestSTSRevokeRoleGone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, awsfake.Options{})
	p, _ := e.newSTS(t, time.Hour, STSConfig{})
	id := grants.NewID("g")
	iss := mustIssue(t, p, issueReq(alice, id, t0.Add(time.Hour)))
	e.fake.DeleteRole("oncall-admin")
	mustRevoke(t, p, id, alice, iss.Handle)
	p.forgetRole()
	mustRevoke(t, p, id, alice, grants.Handle{}) // GetRole answers NoSuchEntity
}

func TestSTSRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		inject  func(f *awsfake.Server)
		service string
		action  string
		calls   int
	}{
		{"throttling on AssumeRole", func(f *awsfake.Server) { f.Throttle(awsfake.ServiceSTS, "AssumeRole", 2) }, awsfake.ServiceSTS, "AssumeRole", 3},
		{"throttling on GetRole", func(f *awsfake.Server) { f.Throttle(awsfake.ServiceIAM, "GetRole", 3) }, awsfake.ServiceIAM, "GetRole", 4},
		{"503 on AssumeRole", func(f *awsfake.Server) { f.Fail5xx(awsfake.ServiceSTS, "AssumeRole", 503, 2) }, awsfake.ServiceSTS, "AssumeRole", 3},
		{"500 on GetRole", func(f *awsfake.Server) { f.Fail5xx(awsfake.ServiceIAM, "GetRole", 500, 3) }, awsfake.ServiceIAM, "GetRole", 4},
		{"429 Retry-After on AssumeRole", func(f *awsfake.Server) { f.TooManyRequests(awsfake.ServiceSTS, "AssumeRole", "30", 2) }, awsfake.ServiceSTS, "AssumeRole", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, awsfake.Options{})
			p, _ := e.newSTS(t, time.Hour, STSConfig{})
			tc.inject(e.fake)
			mustIssue(t, p, issueReq(alice, grants.NewID("g"), t0.Add(time.Hour)))
			if n := countCalls(e, tc.service, tc.action); n != tc.calls {
				t.Errorf("%s calls = %d, want %d", tc.action, n, tc.calls)
			}
		})
	}
	t.Run("throttling outlasts the retries", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, awsfake.Options{})
		p, _ := e.newSTS(t, time.Hour, STSConfig{})
		id := grants.NewID("g")
		iss := mustIssue(t, p, issueReq(alice, id, t0.Add(time.Hour)))
		e.fake.Throttle(awsfake.ServiceIAM, "PutRolePolicy", 100)
		err := p.Revoke(t.Context(), grants.RevokeRequest{GrantID: id, Person: alice, Handle: iss.Handle})
		if err == nil || errors.Is(err, grants.ErrNeedsOperator) || apiCode(err) != "Throttling" {
			t.Fatalf("Revoke = %v, want a retryable Throttling error", err)
		}
		if n := countCalls(e, awsfake.ServiceIAM, "PutRolePolicy"); n != 4 {
			t.Errorf("PutRolePolicy calls = %d, want 4 (the SDK's throttle retries)", n)
		}
	})
}

func TestSTSErrorsNeedingOperator(t *testing.T) {
	t.Parallel()
	t.Run("wrong secret fails SigV4", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, awsfake.Options{})
		role := e.fake.AddRole("oncall-admin", time.Hour)
		p, err := NewSTS(t.Context(), STSConfig{RoleARN: role.ARN}, loadConfig(t, e.fake.URL(), "not-the-secret", e.logger), e.clock, e.logger)
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Issue(t.Context(), issueReq(alice, grants.NewID("g"), t0.Add(time.Hour)))
		if !errors.Is(err, grants.ErrNeedsOperator) || apiCode(err) != "SignatureDoesNotMatch" {
			t.Fatalf("Issue = %v, want SignatureDoesNotMatch needing an operator", err)
		}
	})
	t.Run("role the broker may not assume", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, awsfake.Options{})
		e.fake.AddRole("oncall-admin", time.Hour)
		p, err := NewSTS(t.Context(), STSConfig{RoleARN: "arn:aws:iam::999999999999:role/oncall-admin"}, e.cfg, e.clock, e.logger)
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Issue(t.Context(), issueReq(alice, grants.NewID("g"), t0.Add(time.Hour)))
		if !errors.Is(err, grants.ErrNeedsOperator) || !strings.Contains(err.Error(), "sts:SetSourceIdentity") {
			t.Fatalf("Issue = %v, want AccessDenied with a trust policy hint", err)
		}
	})
}

func TestSTSConsoleLink(t *testing.T) {
	t.Parallel()
	t.Run("federation failure still delivers", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, awsfake.Options{})
		p, _ := e.newSTS(t, time.Hour, STSConfig{})
		e.fake.InjectFault(awsfake.Fault{Service: awsfake.ServiceSignin, Status: 500, Times: -1})
		id := grants.NewID("g")
		iss := mustIssue(t, p, issueReq(alice, id, t0.Add(time.Hour)))
		f := fields(iss.Credential)
		if _, ok := f["console_url"]; ok {
			t.Error("console_url present although federation failed")
		}
		sess, _ := e.fake.SessionByName(iss.Handle.Key)
		note := f["console_url_unavailable"]
		if !strings.Contains(note, "500") || strings.Contains(note, sess.SecretAccessKey) || strings.Contains(note, sess.SessionToken) {
			t.Errorf("console_url_unavailable = %q", note)
		}
		if f["AWS_SECRET_ACCESS_KEY"] == "" {
			t.Error("credentials missing")
		}
		assertNoSecretsLogged(t, e.logs.String(), sess.SecretAccessKey, sess.SessionToken)
	})
	t.Run("federation unreachable", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, awsfake.Options{})
		p, _ := e.newSTS(t, time.Hour, STSConfig{}, WithFederationURL("http://127.0.0.1:1/federation"))
		iss := mustIssue(t, p, issueReq(alice, grants.NewID("g"), t0.Add(time.Hour)))
		sess, _ := e.fake.SessionByName(iss.Handle.Key)
		note := fields(iss.Credential)["console_url_unavailable"]
		if note == "" || strings.Contains(note, sess.SecretAccessKey) || strings.Contains(note, url.QueryEscape(sess.SecretAccessKey)) {
			t.Errorf("console_url_unavailable = %q", note)
		}
		assertNoSecretsLogged(t, e.logs.String(), sess.SecretAccessKey, url.QueryEscape(sess.SecretAccessKey), sess.SessionToken, url.QueryEscape(sess.SessionToken))
	})
	t.Run("disabled", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, awsfake.Options{})
		p, _ := e.newSTS(t, time.Hour, STSConfig{}, WithFederationURL(""))
		iss := mustIssue(t, p, issueReq(alice, grants.NewID("g"), t0.Add(time.Hour)))
		f := fields(iss.Credential)
		if _, ok := f["console_url"]; ok {
			t.Error("console_url present although disabled")
		}
		if n := countCalls(e, awsfake.ServiceSignin, ""); n != 0 {
			t.Errorf("federation endpoint called %d times", n)
		}
	})
}

func TestSTSConfigValidate(t *testing.T) {
	t.Parallel()
	ok := "arn:aws:iam::123456789012:role/oncall-admin"
	tests := []struct {
		name    string
		cfg     STSConfig
		wantErr string
	}{
		{"valid", STSConfig{RoleARN: ok}, ""},
		{"valid with path", STSConfig{RoleARN: "arn:aws:iam::123456789012:role/team/oncall"}, ""},
		{"user ARN", STSConfig{RoleARN: "arn:aws:iam::123456789012:user/alice"}, "aws_sts.role_arn"},
		{"short account", STSConfig{RoleARN: "arn:aws:iam::1234:role/x"}, "aws_sts.role_arn"},
		{"aws-iso partition", STSConfig{RoleARN: "arn:aws-iso:iam::123456789012:role/x"}, "in partition aws, aws-cn or aws-us-gov"},
		{"policy without statement", STSConfig{RoleARN: ok, SessionPolicy: "{}"}, "aws_sts.session_policy"},
		{"missing role", STSConfig{}, "aws_sts.role_arn is required"},
		{"policy not JSON", STSConfig{RoleARN: ok, SessionPolicy: "allow all"}, "aws_sts.session_policy"},
		{"policy too long", STSConfig{RoleARN: ok, SessionPolicy: `{"Version":"2012-10-17","Statement":[` + strings.Repeat(" ", 2048) + `]}`}, "2048"},
		{"duration too short", STSConfig{RoleARN: ok, MaxSessionDuration: 10 * time.Minute}, "aws_sts.max_session_duration"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, grants.ErrInvalid) {
				t.Fatalf("Validate = %v, want an ErrInvalid naming %s", err, tc.wantErr)
			}
		})
	}
}

// assertStatementShape checks that every statement accessbroker wrote has the keys of the
// documented example's statement.
func assertStatementShape(t *testing.T, doc, fixture string) {
	t.Helper()
	keys := func(s string) []string {
		var v struct{ Statement json.RawMessage }
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			t.Fatal(err)
		}
		var list []map[string]any
		if err := json.Unmarshal(v.Statement, &list); err != nil {
			var one map[string]any
			if err := json.Unmarshal(v.Statement, &one); err != nil {
				t.Fatal(err)
			}
			list = []map[string]any{one}
		}
		var out []string
		for k := range list[0] {
			out = append(out, k)
		}
		for op, kv := range list[0]["Condition"].(map[string]any) {
			for k := range kv.(map[string]any) {
				out = append(out, "Condition."+op+"."+k)
			}
		}
		return sorted(out)
	}
	want := keys(string(readFixture(t, fixture)))
	want = without(want, "Sid") // the console's older-sessions example has no Sid
	got := without(keys(doc), "Sid")
	if fixture == "aws-iam-deny-session-by-userid-policy.json" {
		want = replace(want, "Condition.StringLike.aws:userid", "Condition.StringEquals.aws:userid")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("statement shape differs from %s (-want +got):\n%s", fixture, diff)
	}
}

// TestSTSRoleChainingLimit: a broker running on role credentials may only chain one-hour
// sessions; the provider learns that from AWS's answer and caps DurationSeconds.
func TestSTSRoleChainingLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, awsfake.Options{})
	brokerRole := e.fake.AddRole("broker", time.Hour)
	target := e.fake.AddRole("oncall-admin", 12*time.Hour)
	boot, err := NewSTS(t.Context(), STSConfig{RoleARN: brokerRole.ARN}, e.cfg, e.clock, e.logger, WithFederationURL(""))
	if err != nil {
		t.Fatal(err)
	}
	// A session without SourceIdentity, like an instance profile or IRSA role.
	f := fields(mustIssue(t, boot, issueReq(grants.Person{}, grants.NewID("g"), t0.Add(time.Hour))).Credential)
	httpc := loadConfig(t, e.fake.URL(), testSecret, e.logger).HTTPClient
	cfg, err := LoadAWSConfig(t.Context(), "us-east-1", e.fake.URL(), httpc.(*http.Client), WithoutSharedConfigFiles(),
		WithCredentials(credentials.NewStaticCredentialsProvider(f["AWS_ACCESS_KEY_ID"], f["AWS_SECRET_ACCESS_KEY"], f["AWS_SESSION_TOKEN"])))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewSTS(t.Context(), STSConfig{RoleARN: target.ARN}, cfg, e.clock, e.logger, WithFederationURL(""))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		id := grants.NewID("g")
		iss := mustIssue(t, p, issueReq(alice, id, t0.Add(3*time.Hour)))
		if s, _ := e.fake.SessionByName(iss.Handle.Key); s.DurationSeconds != 3600 {
			t.Errorf("DurationSeconds = %d, want 3600 under role chaining", s.DurationSeconds)
		}
		if _, ok := fields(iss.Credential)["note"]; !ok {
			t.Error("no note that the credentials end before the grant")
		}
	}
	var failed int
	for _, c := range e.fake.CallsTo(awsfake.ServiceSTS, "AssumeRole") {
		if c.ErrorCode == "ValidationError" {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("%d AssumeRole calls refused, want 1 (the limit is remembered)", failed)
	}
}

// TestSTSRevokeUsesTheHandlesRole: when the resource's role changes in the configuration, a
// grant issued on the old role is still revoked on the old role.
func TestSTSRevokeUsesTheHandlesRole(t *testing.T) {
	t.Parallel()
	e := newEnv(t, awsfake.Options{})
	old, _ := e.newSTS(t, time.Hour, STSConfig{})
	id := grants.NewID("g")
	iss := mustIssue(t, old, issueReq(alice, id, t0.Add(time.Hour)))
	newRole := e.fake.AddRole("oncall-admin-v2", time.Hour)
	moved, err := NewSTS(t.Context(), STSConfig{RoleARN: newRole.ARN}, e.cfg, e.clock, e.logger)
	if err != nil {
		t.Fatal(err)
	}
	mustRevoke(t, moved, id, alice, iss.Handle)
	if err := e.sessionWorks(t, iss.Handle.Key); err == nil {
		t.Fatal("session on the old role survived")
	}
	if r, _ := e.fake.Role("oncall-admin-v2"); len(r.InlinePolicies) != 0 {
		t.Errorf("the new role got a policy: %v", r.InlinePolicies)
	}
}
