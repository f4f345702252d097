package awsprov

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/fixtures/awsfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/storetest"
)

const (
	memberAccount = "111122223333"
	ssoPermSet    = "DatabaseAdministrator"
	ssoSuffix     = "1234567890abcdef"
)

// ssoEnv is an activity env whose CloudTrail source reads the member account through a role
// there and resolves Identity Center grants through a real aws-identity-center provider on
// the fake.
type ssoEnv struct {
	*activityEnv
	ic    *IdentityCenterProvider
	alice awsfake.User
}

func newSSOEnv(t *testing.T, withRole bool) *ssoEnv {
	t.Helper()
	// The provider and source are built by newActivityEnv's source options; the provider
	// needs the fake first, so build the env, then swap the source's options in place.
	a := newActivityEnv(t, CloudTrailOptions{})
	cfg := icConfig()
	cfg.AccountID = memberAccount
	a.fake.AddNamedPermissionSet(permSet, ssoPermSet)
	ic, err := NewIdentityCenter(t.Context(), cfg, a.cfg, grants.RealClock{}, a.logger, WithPollInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	a.src.opts.IdentityCenter = map[string]SSOSessionResolver{"prod-sso": ic}
	if withRole {
		reader := a.fake.AddAccountRole(memberAccount, "accessbroker-activity")
		a.src.opts.AccountRoles = map[string]string{memberAccount: reader.ARN}
	}
	alice := a.fake.AddUser(awsfake.User{UserName: "alice@example.com", Email: "alice@example.com"})
	a.fake.AddUser(awsfake.User{UserName: "bob@example.com", Email: "bob@example.com"})
	return &ssoEnv{activityEnv: a, ic: ic, alice: alice}
}

// icGrant issues an Identity Center grant to alice through the real provider and stores it
// with the provider's handle.
func (e *ssoEnv) icGrant(t *testing.T, issued, revoked time.Time) *grants.Grant {
	t.Helper()
	person := grants.Person{SlackUserID: "U0ALICE", Email: "alice@example.com"}
	g := storetest.NewGrant(issued, "prod-sso", time.Hour)
	iss := mustIssue(t, e.ic, issueReq(person, g.ID, issued.Add(time.Hour)))
	g.Provider, g.Handle = KindIdentityCenter, iss.Handle
	if !revoked.IsZero() {
		g.State, g.RevokedAt = grants.StateRevoked, revoked
	}
	storetest.MustCreate(t, e.store, issued, g)
	return g
}

// ssoEvent adds an event of an Identity Center session to the fake.
func (e *ssoEnv) ssoEvent(account, permissionSet, user, name string, at time.Time, errCode string) string {
	return e.fake.AddTrailEvent(awsfake.SSOTrailEvent(awsfake.TrailEvent{EventTime: at, EventSource: "rds.amazonaws.com", EventName: name,
		AccessKeyID: "ASIASSOSESSION0001", ErrorCode: errCode, SourceIP: "198.51.100.4"}, account, permissionSet, ssoSuffix, "eu-west-2", user))
}

// TestCloudTrailIdentityCenterTimeline: an aws-identity-center grant's CloudTrail events, those
// of the person's AWSReservedSSO session of the grant's permission set in the grant's account
// (read through the configured role there), appear on its timeline once each; another
// person's session, another permission set's session (even one whose name extends this one's),
// a look-alike role outside the aws-reserved path, the same session in another account and
// events outside the window are never recorded; a late event is collected; a call after the
// grant ended that succeeded is after_revocation; once the after-end window passed the grant
// is no longer read; the names are resolved once per grant.
func TestCloudTrailIdentityCenterTimeline(t *testing.T) {
	e := newSSOEnv(t, true)
	now := e.clock.Now()
	g := e.icGrant(t, now.Add(-30*time.Minute), now.Add(-10*time.Minute))

	during := e.ssoEvent(memberAccount, ssoPermSet, "alice@example.com", "DescribeDBInstances", now.Add(-20*time.Minute), "")
	afterOK := e.ssoEvent(memberAccount, ssoPermSet, "alice@example.com", "ModifyDBInstance", now.Add(-5*time.Minute), "")
	afterRefused := e.ssoEvent(memberAccount, ssoPermSet, "alice@example.com", "DeleteDBInstance", now.Add(-4*time.Minute), "AccessDenied")
	never := map[string]string{
		e.ssoEvent(memberAccount, ssoPermSet, "bob@example.com", "DeleteDBInstance", now.Add(-20*time.Minute), ""):                 "another person's session",
		e.ssoEvent(memberAccount, ssoPermSet+"_ReadOnly", "alice@example.com", "DescribeDBLogFiles", now.Add(-20*time.Minute), ""): "another permission set's session",
		e.ssoEvent(memberAccount, "PowerUser", "alice@example.com", "CreateDBInstance", now.Add(-20*time.Minute), ""):              "another permission set's session",
		e.ssoEvent(accountID, ssoPermSet, "alice@example.com", "CreateDBInstance", now.Add(-20*time.Minute), ""):                   "another account",
		e.ssoEvent(memberAccount, ssoPermSet, "alice@example.com", "CreateDBSnapshot", now.Add(-2*time.Hour), ""):                  "before the grant",
		e.fake.AddTrailEvent(awsfake.TrailEvent{EventTime: now.Add(-20 * time.Minute), EventName: "CreateDBInstance", Account: memberAccount,
			Username: "alice@example.com", RoleName: "AWSReservedSSO_" + ssoPermSet + "_" + ssoSuffix}): "a look-alike role outside aws-reserved",
	}

	e.clock.Advance(time.Minute)
	if n := e.pass(t); n != 3 {
		t.Fatalf("first pass recorded %d events, want 3", n)
	}
	got := e.activity(t, g.ID)
	if !sameIDs(ids(got), []string{during, afterOK, afterRefused}) {
		t.Fatalf("timeline %v, want %v", ids(got), []string{during, afterOK, afterRefused})
	}
	for id, why := range never {
		if _, ok := got[id]; ok {
			t.Errorf("recorded %s's event", why)
		}
	}
	ev := got[during]
	wantIdentity := "arn:aws:sts::" + memberAccount + ":assumed-role/AWSReservedSSO_" + ssoPermSet + "_" + ssoSuffix + "/alice@example.com"
	for k, want := range map[string]string{"service": "rds.amazonaws.com", "api_call": "DescribeDBInstances", "after_revocation": "false",
		"identity": wantIdentity, "source_ip": "198.51.100.4"} {
		if ev.Evidence[k] != want {
			t.Errorf("evidence %s = %q, want %q", k, ev.Evidence[k], want)
		}
	}
	if ev.Resource != "prod-sso" || ev.Actor.ID != "U0ALICE" || ev.GrantID != g.ID {
		t.Errorf("event names resource %q actor %q grant %q", ev.Resource, ev.Actor.ID, ev.GrantID)
	}
	for id, want := range map[string]string{afterOK: "true", afterRefused: "false"} {
		if got[id].Evidence["after_revocation"] != want {
			t.Errorf("%s after_revocation = %q, want %q", got[id].Evidence["api_call"], got[id].Evidence["after_revocation"], want)
		}
	}
	for _, c := range e.fake.CallsTo(awsfake.ServiceCloudTrail, "LookupEvents") {
		if attrs := c.Params["LookupAttributes"]; !strings.Contains(strings.ToLower(fmt.Sprint(attrs)), "username") {
			t.Errorf("look-up by %v, want Username", attrs)
		}
	}

	// Delivered late: it happened during the grant, before the last look-up's end.
	late := e.ssoEvent(memberAccount, ssoPermSet, "alice@example.com", "RebootDBInstance", now.Add(-15*time.Minute), "")
	e.clock.Advance(5 * time.Minute)
	if n := e.pass(t); n != 1 {
		t.Fatalf("second pass recorded %d events, want 1 (the late one)", n)
	}
	if _, ok := e.activity(t, g.ID)[late]; !ok {
		t.Fatal("late event not collected")
	}
	// The window closes 20 minutes after the end.
	e.clock.Advance(25 * time.Minute)
	e.pass(t)
	e.ssoEvent(memberAccount, ssoPermSet, "alice@example.com", "StopDBInstance", now.Add(-3*time.Minute), "")
	calls := len(e.fake.CallsTo(awsfake.ServiceCloudTrail, "LookupEvents"))
	e.clock.Advance(5 * time.Minute)
	e.pass(t)
	if n := len(e.activity(t, g.ID)); n != 4 {
		t.Errorf("timeline has %d events after the window closed, want 4", n)
	}
	if after := len(e.fake.CallsTo(awsfake.ServiceCloudTrail, "LookupEvents")); after != calls {
		t.Errorf("%d look-ups after the window closed", after-calls)
	}
	curs, err := e.store.ActivityCursors(t.Context(), []string{g.ID})
	if err != nil || len(curs) != 1 || !curs[0].Done || curs[0].Events != 4 {
		t.Errorf("cursor %+v, %v: want done with 4 events", curs, err)
	}
	if n := countCalls(e.env, awsfake.ServiceIdentityStore, "DescribeUser"); n != 1 {
		t.Errorf("DescribeUser called %d times, want once per grant (the name is kept in the cursor)", n)
	}
}

// TestCloudTrailIdentityCenterNeedsAccountRole: a grant in an account the broker's own
// credentials are not of, with no role configured for it, is not read with the wrong
// account's history: the look-up fails (source down) naming activity.aws.account_roles.
func TestCloudTrailIdentityCenterNeedsAccountRole(t *testing.T) {
	e := newSSOEnv(t, false)
	now := e.clock.Now()
	g := e.icGrant(t, now, time.Time{})
	e.ssoEvent(memberAccount, ssoPermSet, "alice@example.com", "DescribeDBInstances", now.Add(time.Second), "")
	e.clock.Advance(time.Minute)
	if n := e.pass(t); n != 0 {
		t.Fatalf("recorded %d events without a way to read the account", n)
	}
	curs, _ := e.store.ActivityCursors(t.Context(), []string{g.ID})
	if len(curs) != 1 || curs[0].Failures != 1 || !strings.Contains(curs[0].LastError, "activity.aws.account_roles") {
		t.Fatalf("cursor %+v: want a failure naming activity.aws.account_roles", curs)
	}
	if n := len(e.fake.CallsTo(awsfake.ServiceCloudTrail, "LookupEvents")); n != 0 {
		t.Errorf("%d look-ups in the broker's own account for a grant in %s", n, memberAccount)
	}
}

// TestSSOSessionMatch: the documented shape of an Identity Center session's userIdentity
// (fixtures/aws/aws-cloudtrail-useridentity-sso.json) matches its user, permission set and
// account, and each variant that names someone or something else does not.
func TestSSOSessionMatch(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "fixtures", "aws", "aws-cloudtrail-useridentity-sso.json"))
	if err != nil {
		t.Fatal(err)
	}
	doc := `{"eventVersion":"1.08","userIdentity":` + string(raw) + `}`
	sess := SSOSession{AccountID: "111122223333", PermissionSetName: "DatabaseAdministrator", UserName: "alice@example.com"}
	const role = "AWSReservedSSO_DatabaseAdministrator_1234567890abcdef"
	for _, tc := range []struct {
		name string
		edit func(string) string
		sess SSOSession
		want bool
	}{
		{name: "the documented session", want: true},
		{name: "us-east-1 identity source: no region in the path", edit: func(s string) string {
			return strings.Replace(s, "sso.amazonaws.com/eu-west-2/", "sso.amazonaws.com/", 1)
		}, want: true},
		{name: "another person", sess: SSOSession{AccountID: "111122223333", PermissionSetName: "DatabaseAdministrator", UserName: "bob@example.com"}},
		{name: "a user name that only starts like it", sess: SSOSession{AccountID: "111122223333", PermissionSetName: "DatabaseAdministrator", UserName: "alice"}},
		{name: "another permission set", sess: SSOSession{AccountID: "111122223333", PermissionSetName: "Database", UserName: "alice@example.com"}},
		{name: "another account", sess: SSOSession{AccountID: "444455556666", PermissionSetName: "DatabaseAdministrator", UserName: "alice@example.com"}},
		{name: "a longer permission set name", edit: func(s string) string {
			return strings.ReplaceAll(s, role, "AWSReservedSSO_DatabaseAdministrator_ReadOnly_1234567890abcdef")
		}},
		{name: "look-alike role outside aws-reserved", edit: func(s string) string {
			return strings.Replace(s, "role/aws-reserved/sso.amazonaws.com/eu-west-2/", "role/", 1)
		}},
		{name: "issuer of another role", edit: func(s string) string {
			return strings.Replace(s, "eu-west-2/"+role, "eu-west-2/AWSReservedSSO_DatabaseAdministrator_abcdef0123456789", 1)
		}},
		{name: "not an assumed role", edit: func(s string) string { return strings.Replace(s, `"AssumedRole"`, `"IAMUser"`, 1) }},
		{name: "not JSON", edit: func(string) string { return "{" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, s := doc, sess
			if tc.edit != nil {
				d = tc.edit(d)
			}
			if tc.sess != (SSOSession{}) {
				s = tc.sess
			}
			if _, got := ssoSessionMatches(d, s); got != tc.want {
				t.Errorf("match = %v, want %v", got, tc.want)
			}
		})
	}
}
