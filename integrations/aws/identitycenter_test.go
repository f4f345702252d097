package awsprov

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/accessbroker/accessbroker/fixtures/awsfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/grants/providertest"
)

func icConfig() IdentityCenterConfig {
	return IdentityCenterConfig{InstanceARN: instance, IdentityStoreID: storeID, PermissionSetARN: permSet, AccountID: accountID}
}

// newIC sets up the fake's identity store and returns a provider polling every millisecond on
// the real clock (the fake finishes requests after being polled, not after time passes).
func (e *env) newIC(t *testing.T, cfg IdentityCenterConfig, opts ...IdentityCenterOption) *IdentityCenterProvider {
	t.Helper()
	e.fake.AddPermissionSet(permSet)
	opts = append([]IdentityCenterOption{WithPollInterval(time.Millisecond)}, opts...)
	p, err := NewIdentityCenter(t.Context(), cfg, e.cfg, grants.RealClock{}, e.logger, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *env) assignment(userID string) awsfake.Assignment {
	return awsfake.Assignment{InstanceARN: instance, AccountID: accountID, PermissionSetARN: permSet, PrincipalType: "USER", PrincipalID: userID}
}

func TestIdentityCenterConformance(t *testing.T) {
	t.Parallel()
	providertest.Run(t, func(t *testing.T) providertest.Harness {
		e := newEnv(t, awsfake.Options{Now: time.Now})
		u := e.fake.AddUser(awsfake.User{UserName: "alice", Email: alice.Email})
		p := e.newIC(t, icConfig())
		return providertest.Harness{
			Provider:     p,
			Person:       alice,
			SharedAccess: true,
			HasAccess: func(t *testing.T, h grants.Handle, req grants.RevokeRequest) bool {
				return e.fake.HasAssignment(e.assignment(u.UserID))
			},
			GrantPreexisting: func(t *testing.T, _ grants.Person) { e.fake.AddAssignment(e.assignment(u.UserID)) },
			InjectRevokeFault: func(t *testing.T) func() {
				return e.fake.InjectFault(awsfake.Fault{Service: awsfake.ServiceSSOAdmin, Action: "DeleteAccountAssignment", Status: 500, Times: -1})
			},
		}
	})
}

func TestIdentityCenterIssueAndRevoke(t *testing.T) {
	t.Parallel()
	e := newEnv(t, awsfake.Options{PollsUntilDone: 3})
	u := e.fake.AddUser(awsfake.User{UserName: "alice", Email: alice.Email})
	cfg := icConfig()
	cfg.PortalURL = "https://d-1234567890.awsapps.com/start"
	p := e.newIC(t, cfg)
	id := grants.NewID("g")
	iss := mustIssue(t, p, issueReq(alice, id, t0.Add(time.Hour)))
	want := grants.Handle{
		Key: "aws-sso:" + instance + ":" + accountID + ":" + permSet + ":" + u.UserID,
		Data: map[string]string{DataInstanceARN: instance, DataAccountID: accountID, DataPermissionSetARN: permSet,
			DataPrincipalID: u.UserID, DataPrincipalType: "USER"},
	}
	if diff := cmp.Diff(want, iss.Handle); diff != "" {
		t.Errorf("handle (-want +got):\n%s", diff)
	}
	if f := fields(iss.Credential); f["portal_url"] != cfg.PortalURL || f["account_id"] != accountID {
		t.Errorf("credential fields %v", f)
	}
	if !e.fake.HasAssignment(e.assignment(u.UserID)) {
		t.Fatal("no assignment after Issue")
	}
	// The request was polled until it succeeded: IN_PROGRESS three times, then SUCCEEDED.
	if n := countCalls(e, awsfake.ServiceSSOAdmin, "DescribeAccountAssignmentCreationStatus"); n != 4 {
		t.Errorf("creation status polled %d times, want 4", n)
	}
	if c := e.fake.CallsTo(awsfake.ServiceIdentityStore, "GetUserId"); len(c) != 1 {
		t.Errorf("GetUserId calls %+v", c)
	} else {
		ua := c[0].Params["AlternateIdentifier"].(map[string]any)["UniqueAttribute"].(map[string]any)
		if ua["AttributePath"] != "emails.value" || ua["AttributeValue"] != alice.Email {
			t.Errorf("GetUserId asked for %v", ua)
		}
	}
	mustRevoke(t, p, id, alice, iss.Handle)
	if e.fake.HasAssignment(e.assignment(u.UserID)) {
		t.Fatal("assignment survived Revoke")
	}
	if n := countCalls(e, awsfake.ServiceSSOAdmin, "DescribeAccountAssignmentDeletionStatus"); n != 4 {
		t.Errorf("deletion status polled %d times, want 4", n)
	}
	e.fake.ResetCalls()
	mustRevoke(t, p, id, alice, iss.Handle)
	if n := countCalls(e, awsfake.ServiceSSOAdmin, "DeleteAccountAssignment"); n != 0 {
		t.Errorf("second Revoke sent %d deletes, want none", n)
	}
}

func TestIdentityCenterAsyncFailureReported(t *testing.T) {
	t.Parallel()
	e := newEnv(t, awsfake.Options{})
	u := e.fake.AddUser(awsfake.User{UserName: "alice", Email: alice.Email})
	p := e.newIC(t, icConfig())
	reason := "Received a 404 status error: Not supported policy arn:aws:iam::aws:policy/DoesNotExist."
	e.fake.FailNextAssignmentRequest(reason)
	_, err := p.Issue(t.Context(), issueReq(alice, grants.NewID("g"), t0.Add(time.Hour)))
	if err == nil || !strings.Contains(err.Error(), "FAILED: "+reason) {
		t.Fatalf("Issue = %v, want the FailureReason", err)
	}
	if e.fake.HasAssignment(e.assignment(u.UserID)) {
		t.Error("a FAILED request left an assignment")
	}
	// A failed deletion is reported too, and the next attempt succeeds.
	id := grants.NewID("g")
	iss := mustIssue(t, p, issueReq(alice, id, t0.Add(time.Hour)))
	e.fake.FailNextAssignmentRequest("Received a 500 status error")
	err = p.Revoke(t.Context(), grants.RevokeRequest{GrantID: id, Person: alice, Handle: iss.Handle})
	if err == nil || !strings.Contains(err.Error(), "Received a 500 status error") || errors.Is(err, grants.ErrNeedsOperator) {
		t.Fatalf("Revoke = %v, want a retryable error with the FailureReason", err)
	}
	if !e.fake.HasAssignment(e.assignment(u.UserID)) {
		t.Fatal("the assignment vanished although deletion FAILED")
	}
	mustRevoke(t, p, id, alice, iss.Handle)
	if e.fake.HasAssignment(e.assignment(u.UserID)) {
		t.Fatal("assignment survived the retried Revoke")
	}
}

func TestIdentityCenterPreexistingLeftInPlace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, awsfake.Options{})
	u := e.fake.AddUser(awsfake.User{UserName: "alice", Email: alice.Email})
	p := e.newIC(t, icConfig())
	e.fake.AddAssignment(e.assignment(u.UserID))
	id := grants.NewID("g")
	iss := mustIssue(t, p, issueReq(alice, id, t0.Add(time.Hour)))
	if !iss.Handle.Preexisting {
		t.Fatal("existing assignment not reported as preexisting")
	}
	mustRevoke(t, p, id, alice, iss.Handle)
	if !e.fake.HasAssignment(e.assignment(u.UserID)) {
		t.Fatal("Revoke removed an assignment accessbroker did not create")
	}
	for _, op := range []string{"CreateAccountAssignment", "DeleteAccountAssignment"} {
		if n := countCalls(e, awsfake.ServiceSSOAdmin, op); n != 0 {
			t.Errorf("%s called %d times", op, n)
		}
	}
}

func TestIdentityCenterUserLookup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		cfg         func(c *IdentityCenterConfig, userID string)
		person      grants.Person
		wantErr     error
		wantLookups int
	}{
		{"by email", func(*IdentityCenterConfig, string) {}, alice, nil, 1},
		{"by userName attribute", func(c *IdentityCenterConfig, _ string) { c.UserAttribute = "userName" }, grants.Person{Email: "alice.login"}, nil, 1},
		{"configured id by Slack user", func(c *IdentityCenterConfig, id string) { c.UserIDs = map[string]string{"U0ALICE": id} }, grants.Person{SlackUserID: "U0ALICE"}, nil, 0},
		{"unknown email", func(*IdentityCenterConfig, string) {}, bob, grants.ErrNeedsOperator, 1},
		{"no email", func(*IdentityCenterConfig, string) {}, grants.Person{SlackUserID: "U0X"}, grants.ErrInvalid, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, awsfake.Options{})
			u := e.fake.AddUser(awsfake.User{UserName: "alice.login", Email: alice.Email})
			cfg := icConfig()
			tc.cfg(&cfg, u.UserID)
			p := e.newIC(t, cfg)
			_, err := p.Issue(t.Context(), issueReq(tc.person, grants.NewID("g"), t0.Add(time.Hour)))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Issue = %v, want %v", err, tc.wantErr)
				}
			} else if err != nil || !e.fake.HasAssignment(e.assignment(u.UserID)) {
				t.Fatalf("Issue = %v, assignment present %v", err, e.fake.HasAssignment(e.assignment(u.UserID)))
			}
			if n := countCalls(e, awsfake.ServiceIdentityStore, "GetUserId"); n != tc.wantLookups {
				t.Errorf("GetUserId calls = %d, want %d", n, tc.wantLookups)
			}
		})
	}
}

func TestIdentityCenterRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, awsfake.Options{})
	u := e.fake.AddUser(awsfake.User{UserName: "alice", Email: alice.Email})
	p := e.newIC(t, icConfig())
	e.fake.Throttle(awsfake.ServiceSSOAdmin, "ListAccountAssignments", 2)
	e.fake.Throttle(awsfake.ServiceIdentityStore, "GetUserId", 1)
	e.fake.Fail5xx(awsfake.ServiceSSOAdmin, "CreateAccountAssignment", 503, 2)
	e.fake.TooManyRequests(awsfake.ServiceSSOAdmin, "DescribeAccountAssignmentCreationStatus", "1", 1)
	mustIssue(t, p, issueReq(alice, grants.NewID("g"), t0.Add(time.Hour)))
	if !e.fake.HasAssignment(e.assignment(u.UserID)) {
		t.Fatal("no assignment")
	}
	got := map[string]int{}
	for _, c := range e.fake.Calls() {
		if c.ErrorCode != "" {
			got[c.Action+" "+c.ErrorCode]++
		}
	}
	want := map[string]int{
		"ListAccountAssignments ThrottlingException":                  2,
		"GetUserId ThrottlingException":                               1,
		"CreateAccountAssignment ServiceUnavailableException":         2,
		"DescribeAccountAssignmentCreationStatus ThrottlingException": 1,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("faults seen by the fake (-want +got):\n%s", diff)
	}
}

// TestIdentityCenterPollsOnInjectedClock drives the status polling with the fake clock: the
// provider waits on the clock's timers, so no real time passes between polls.
func TestIdentityCenterPollsOnInjectedClock(t *testing.T) {
	t.Parallel()
	e := newEnv(t, awsfake.Options{PollsUntilDone: 5})
	u := e.fake.AddUser(awsfake.User{UserName: "alice", Email: alice.Email})
	e.fake.AddPermissionSet(permSet)
	p, err := NewIdentityCenter(t.Context(), icConfig(), e.cfg, e.clock, e.logger, WithPollInterval(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	done := make(chan struct{})
	go driveClock(ctx, e.clock, time.Minute, done)
	_, err = p.Issue(ctx, issueReq(alice, grants.NewID("g"), t0.Add(time.Hour)))
	close(done)
	if err != nil {
		t.Fatal(err)
	}
	if !e.fake.HasAssignment(e.assignment(u.UserID)) {
		t.Fatal("no assignment")
	}
	if got := e.clock.Now().Sub(t0); got != 6*time.Minute {
		t.Errorf("fake clock moved %v, want 6m (six polls a minute apart)", got)
	}
}

func TestIdentityCenterWaitBoundedByContext(t *testing.T) {
	t.Parallel()
	e := newEnv(t, awsfake.Options{PollsUntilDone: 1 << 30})
	e.fake.AddUser(awsfake.User{UserName: "alice", Email: alice.Email})
	e.fake.AddPermissionSet(permSet)
	// The provider waits between polls on the test's clock, which never moves: once it waits,
	// the caller gives up. No wall-clock deadline races the calls before the wait.
	p, err := NewIdentityCenter(t.Context(), icConfig(), e.cfg, e.clock, e.logger, WithPollInterval(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	issued := make(chan error, 1)
	go func() {
		_, err := p.Issue(ctx, issueReq(alice, grants.NewID("g"), t0.Add(time.Hour)))
		issued <- err
	}()
	wctx, wcancel := context.WithTimeout(t.Context(), 30*time.Second) // a hang guard only
	defer wcancel()
	if err := e.clock.BlockUntil(wctx, 1); err != nil {
		t.Fatalf("the provider never waited on the creation request: %v", err)
	}
	cancel()
	err = <-issued
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "create account assignment") {
		t.Fatalf("Issue = %v, want the caller's cancellation while waiting on the creation request", err)
	}
}

func TestIdentityCenterConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(c *IdentityCenterConfig)
		wantErr string
	}{
		{"valid", func(*IdentityCenterConfig) {}, ""},
		{"instance", func(c *IdentityCenterConfig) { c.InstanceARN = "arn:aws:sso:::instance/x" }, "aws_identity_center.instance_arn"},
		{"store", func(c *IdentityCenterConfig) { c.IdentityStoreID = "store" }, "aws_identity_center.identity_store_id"},
		{"permission set", func(c *IdentityCenterConfig) { c.PermissionSetARN = "ps-1" }, "aws_identity_center.permission_set_arn"},
		{"permission set of another instance", func(c *IdentityCenterConfig) {
			c.PermissionSetARN = "arn:aws:sso:::permissionSet/ssoins-9999999999999999/ps-2222222222222222"
		}, "belongs to instance"},
		{"account", func(c *IdentityCenterConfig) { c.AccountID = "12345" }, "aws_identity_center.account_id"},
		{"attribute", func(c *IdentityCenterConfig) { c.UserAttribute = "displayName" }, "aws_identity_center.user_attribute"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := icConfig()
			tc.mutate(&c)
			err := c.Validate()
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
