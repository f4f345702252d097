package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/fixtures/pdfake"
	"github.com/accessbroker/accessbroker/fixtures/slackfake"
	"github.com/accessbroker/accessbroker/grants"
	"github.com/accessbroker/accessbroker/integrations/pagerduty"
	"github.com/accessbroker/accessbroker/integrations/slack"
)

// rfPerson is one person of the test, the same in the fake Slack and the fake PagerDuty.
type rfPerson struct {
	Name, Slack, PagerDuty, Email string
}

// The workspace and channels of testdata/e2e/replicas-frontends.yaml.
const (
	rfTeam      = "T0DEMO"
	rfApprovals = "C0APPROVALS"
	rfAudit     = "C0AUDIT"
	rfOps       = "C0OPS"
)

// The people of testdata/e2e/replicas-frontends.yaml: four on call for prod-db's escalation
// policy, four not, and two approvers.
var (
	rfOnCall = []rfPerson{
		{Name: "oncall1", Slack: "U0ON1", PagerDuty: "PON1", Email: "oncall1@example.com"},
		{Name: "oncall2", Slack: "U0ON2", PagerDuty: "PON2", Email: "oncall2@example.com"},
		{Name: "oncall3", Slack: "U0ON3", PagerDuty: "PON3", Email: "oncall3@example.com"},
		{Name: "oncall4", Slack: "U0ON4", PagerDuty: "PON4", Email: "oncall4@example.com"},
	}
	rfOffCall = []rfPerson{
		{Name: "offcall1", Slack: "U0OFF1", PagerDuty: "POFF1", Email: "offcall1@example.com"},
		{Name: "offcall2", Slack: "U0OFF2", PagerDuty: "POFF2", Email: "offcall2@example.com"},
		{Name: "offcall3", Slack: "U0OFF3", PagerDuty: "POFF3", Email: "offcall3@example.com"},
		{Name: "offcall4", Slack: "U0OFF4", PagerDuty: "POFF4", Email: "offcall4@example.com"},
	}
	rfLeads = []rfPerson{
		{Name: "lead1", Slack: "U0LEAD1", PagerDuty: "PLEAD1", Email: "lead1@example.com"},
		{Name: "lead2", Slack: "U0LEAD2", PagerDuty: "PLEAD2", Email: "lead2@example.com"},
	}
)

const (
	rfEscalationPolicy = "PREPLEP"
	rfService          = "PSVCREP"
	rfCommands         = 30
	rfIncidents        = 5 // each one acknowledgement event, delivered to two or three replicas
	rfReacked          = 2 // each acknowledged by one person in three events at once, one per replica
)

// rfCommand is one slash command and every delivery of it (the original and its replays).
type rfCommand struct {
	who       rfPerson
	onCall    bool
	trigger   string
	replica   int   // index of the replica that got the original
	targets   []int // every replica it was delivered to, the original first
	answers   []string
	statuses  []int
	requestID string
}

// rfIncident is one acknowledged page and its resolution, each delivered to several replicas.
type rfIncident struct {
	inc   pdfake.Incident
	acker rfPerson
	// reacked: the acknowledgement is several distinct events (one per target) rather than
	// one event delivered to every target.
	reacked    bool
	targets    []int
	deliveries []pdfake.Delivery // of the acknowledgement, one per target
	statuses   []int
	answers    []string // of the acknowledgement deliveries
	resolved   []string // of the resolution deliveries
}

var rfRequestIDRE = regexp.MustCompile(`Request ` + "`" + `(r_[a-z2-7]{16})` + "`" + ` for`)

// rfPost sends req and returns the status and body.
func rfPost(hc *http.Client, req *http.Request) (int, string, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

// slackAnswer is the text of the broker's immediate JSON answer to a slash command.
func slackAnswer(body string) string {
	var a struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		return "(not Slack JSON) " + body
	}
	return a.Text
}

// TestReplicasFrontendsOnPostgres is the scale-out must-show for the front ends: three real
// `accessbroker serve` processes on one PostgreSQL schema share one fake Slack, one fake
// PagerDuty and one webhook provider, and Slack and PagerDuty traffic is spread over them.
//
//   - 30 signed /access commands from on-call and off-call people go round-robin to the
//     replicas; 12 of them are replayed, the very same signed request at the same moment, to
//     one or two other replicas (15 replays). Each command makes exactly one request: one
//     delivery is answered "received", every replay "already received".
//   - At the same time 5 signed incident.acknowledged webhooks for PSVCREP (auto_grant) are
//     each delivered to two or three replicas at once: one delivery is acted on, the others
//     are recognised as duplicates through the shared seen-keys table; one grant per incident.
//     Two more incidents are each acknowledged by one person in three distinct events at once,
//     one per replica (a re-acknowledgement): still one grant per incident. An event that
//     arrives while another event's grant is being made is answered 5xx and, redelivered as
//     PagerDuty would, then finds that grant.
//   - The off-call requests are approved through /slack/interactions on yet another replica;
//     some with the same click delivered to two replicas at once, some with both approvers
//     clicking at once on different replicas: one grant per request.
//   - incident.resolved, again delivered twice, revokes each incident's grant once.
//
// Then the grants (`grants list --format json` and the store) match the distinct requests and
// acknowledgements one to one; the webhook provider created each grant's access exactly once;
// every credential reached its owner exactly once (ephemeral for on-call commands, direct
// message for approved requests and pages) and is noted once in #audit; every replica stops
// cleanly on SIGTERM; `audit verify` passes over the one chain; no replica logged a secret.
func TestReplicasFrontendsOnPostgres(t *testing.T) {
	c := newReplicaCluster(t)
	began := time.Now()
	c.config = filepath.Join("testdata", "e2e", "replicas-frontends.yaml")
	c.fake.SetLatency(0)

	botToken, signing := "xoxb-rf-"+rfRandomHex(16), rfRandomHex(16)
	pdToken, pdSecret := "pd-rf-"+rfRandomHex(12), rfRandomHex(16)
	sl := slackfake.New(slackfake.Options{Token: botToken, TeamID: rfTeam})
	t.Cleanup(sl.Close)
	pd := pdfake.New(pdfake.Options{Token: pdToken})
	t.Cleanup(pd.Close)
	t.Cleanup(c.killAll) // before the fakes close
	var everyone []string
	for _, p := range append(append(append([]rfPerson(nil), rfOnCall...), rfOffCall...), rfLeads...) {
		sl.AddUser(slackfake.User{ID: p.Slack, Name: p.Name, RealName: p.Name, Email: p.Email})
		pd.AddUser(pdfake.User{ID: p.PagerDuty, Name: p.Name, Email: p.Email})
		everyone = append(everyone, p.Slack)
	}
	sl.AddChannel(rfApprovals, rfLeads[0].Slack, rfLeads[1].Slack)
	sl.AddChannel(rfAudit, rfLeads[0].Slack)
	sl.AddChannel(rfOps, everyone...)
	now := time.Now().UTC()
	var shifts []pdfake.OnCall
	for _, p := range rfOnCall {
		shifts = append(shifts, pdfake.OnCall{UserID: p.PagerDuty, EscalationPolicyID: rfEscalationPolicy, EscalationPolicyName: "prod-db primary",
			Level: 1, Start: now.Add(-2 * time.Hour), End: now.Add(6 * time.Hour)})
	}
	pd.SetOnCalls(shifts...)
	c.extraEnv = []string{
		"AB_SLACK_API_URL=" + sl.APIURL(),
		"AB_SLACK_BOT_TOKEN=" + botToken,
		"AB_SLACK_SIGNING_SECRET=" + signing,
		"AB_PD_API_URL=" + pd.URL,
		"AB_PD_TOKEN=" + pdToken,
		"AB_PD_WEBHOOK_SECRET=" + pdSecret,
	}
	secrets := []string{botToken, signing, pdToken, pdSecret, e2eToken, "wh-secret-"}

	reps := []*replica{c.start("replica-1"), c.start("replica-2"), c.start("replica-3")}
	url := func(i int, path string) string { return "http://" + reps[i%len(reps)].addr + path }
	hc := &http.Client{Timeout: 30 * time.Second}
	ctx := context.Background()

	// Who is told what on which response_url.
	var mu sync.Mutex
	responseUser := map[string]string{}
	newResponseURL := func(user string) string {
		u := sl.NewResponseURL()
		mu.Lock()
		responseUser[u] = user
		mu.Unlock()
		return u
	}

	// Phase 1, concurrently: slash commands with cross-replica replays, and acknowledged pages
	// each delivered to several replicas.
	people := append(append([]rfPerson(nil), rfOnCall...), rfOffCall...)
	cmds := make([]*rfCommand, rfCommands)
	for i := range cmds {
		who := people[i%len(people)]
		cmd := &rfCommand{who: who, onCall: i%len(people) < len(rfOnCall), replica: i % 3, targets: []int{i % 3}}
		switch {
		case i%10 == 0:
			cmd.targets = append(cmd.targets, (i+1)%3, (i+2)%3)
		case i%3 == 0:
			cmd.targets = append(cmd.targets, (i+1)%3)
		}
		cmds[i] = cmd
	}
	incidents := make([]*rfIncident, rfIncidents+rfReacked)
	for k := range incidents {
		acker := rfOnCall[k%len(rfOnCall)]
		at := time.Now().UTC()
		inc := pdfake.Incident{ID: fmt.Sprintf("Q0REPL%d", k+1), Number: 3100 + k, Title: fmt.Sprintf("replica test page %d", k+1),
			Status: "acknowledged", ServiceID: rfService, ServiceName: "prod-db", EscalationPolicyID: rfEscalationPolicy,
			EscalationPolicyName: "prod-db primary", Assignees: []string{acker.PagerDuty}, Acknowledgers: []string{acker.PagerDuty},
			CreatedAt: at.Add(-time.Minute), UpdatedAt: at}
		pd.PutIncident(inc)
		ri := &rfIncident{inc: inc, acker: acker, reacked: k >= rfIncidents}
		copies := 2 + k%2
		if ri.reacked {
			copies = 3
		}
		for j := range copies {
			ri.targets = append(ri.targets, (k+j)%3)
		}
		incidents[k] = ri
	}

	var wg sync.WaitGroup
	deliver := func(n int, send func(j int)) {
		var inner sync.WaitGroup
		for j := range n {
			inner.Go(func() { send(j) })
		}
		inner.Wait()
	}
	for i, cmd := range cmds {
		form, err := slackfake.CommandForm(slackfake.Command{TeamID: rfTeam, TeamDomain: "demo", ChannelID: rfOps, ChannelName: "ops",
			UserID: cmd.who.Slack, UserName: cmd.who.Name, Command: "/access", Text: fmt.Sprintf("prod-db 1h replica frontends test %d", i),
			APIAppID: "A0DEMO", ResponseURL: newResponseURL(cmd.who.Slack)})
		if err != nil {
			t.Fatal(err)
		}
		cmd.trigger = form.Get("trigger_id")
		body, signedAt := []byte(form.Encode()), time.Now()
		cmd.answers, cmd.statuses = make([]string, len(cmd.targets)), make([]int, len(cmd.targets))
		wg.Go(func() {
			// The original and its replays: the very same signed request, at the same moment.
			deliver(len(cmd.targets), func(j int) {
				req, err := slackfake.SignedRequest(ctx, url(cmd.targets[j], slack.CommandsPath), signing, signedAt, body)
				if err != nil {
					t.Error(err)
					return
				}
				status, b, err := rfPost(hc, req)
				if err != nil {
					t.Errorf("command %s to %s: %v", cmd.trigger, reps[cmd.targets[j]].name, err)
				}
				cmd.statuses[j], cmd.answers[j] = status, slackAnswer(b)
			})
		})
	}
	postDelivery := func(del pdfake.Delivery, target int) (int, string) {
		req, err := del.Request(ctx, url(target, pagerduty.WebhookPath))
		if err != nil {
			t.Error(err)
			return 0, ""
		}
		status, b, err := rfPost(hc, req)
		if err != nil {
			t.Errorf("PagerDuty delivery to %s: %v", reps[target].name, err)
		}
		return status, strings.TrimSpace(b)
	}
	for _, ri := range incidents {
		for j := range ri.targets {
			if j == 0 || ri.reacked {
				del, err := pd.IncidentDelivery("incident.acknowledged", ri.inc.ID, ri.acker.PagerDuty, time.Now(), pdSecret)
				if err != nil {
					t.Fatal(err)
				}
				ri.deliveries = append(ri.deliveries, del)
			} else {
				ri.deliveries = append(ri.deliveries, ri.deliveries[0]) // PagerDuty delivering it again
			}
		}
		ri.answers, ri.statuses = make([]string, len(ri.targets)), make([]int, len(ri.targets))
		wg.Go(func() {
			deliver(len(ri.targets), func(j int) {
				ri.statuses[j], ri.answers[j] = postDelivery(ri.deliveries[j], ri.targets[j])
			})
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// Exactly one delivery of each command recorded a request; every replay was recognised.
	var offCall []*rfCommand
	replays := 0
	for _, cmd := range cmds {
		received := 0
		for j, a := range cmd.answers {
			switch m := rfRequestIDRE.FindStringSubmatch(a); {
			case cmd.statuses[j] != http.StatusOK:
				t.Errorf("command %s at %s: HTTP %d", cmd.trigger, reps[cmd.targets[j]].name, cmd.statuses[j])
			case m != nil:
				received++
				cmd.requestID = m[1]
			case strings.Contains(a, "already received"):
				replays++
			default:
				t.Errorf("command %s at %s answered %q", cmd.trigger, reps[cmd.targets[j]].name, a)
			}
		}
		if received != 1 {
			t.Errorf("command %s delivered to %d replicas was received as new %d times (answers %q), want once", cmd.trigger, len(cmd.targets), received, cmd.answers)
		}
		if !cmd.onCall {
			offCall = append(offCall, cmd)
		}
	}
	retried := 0
	for _, ri := range incidents {
		if !ri.reacked {
			ok, dup := 0, 0
			for j, a := range ri.answers {
				switch {
				case ri.statuses[j] != http.StatusOK:
				case a == "ok":
					ok++
				case a == "duplicate: already handled":
					dup++
				}
			}
			if ok != 1 || dup != len(ri.targets)-1 {
				t.Errorf("incident %s acknowledged, one event delivered to %d replicas: HTTP %d, answers %q; want one ok and the rest duplicates",
					ri.inc.ID, len(ri.targets), ri.statuses, ri.answers)
			}
			continue
		}
		// Distinct events at once: each is acted on (finding the grant another made) or, while
		// another is being granted, refused with a 5xx so that PagerDuty delivers it again.
		for j := range ri.answers {
			if ri.statuses[j] >= 500 {
				retried++
				ri.statuses[j], ri.answers[j] = postDelivery(ri.deliveries[j], ri.targets[j]+1)
			}
			if ri.statuses[j] != http.StatusOK || ri.answers[j] != "ok" {
				t.Errorf("incident %s acknowledged in %d events at once: event %d answered HTTP %d %q (after any redelivery); want ok",
					ri.inc.ID, len(ri.targets), j, ri.statuses[j], ri.answers[j])
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("phase 1: %d commands (%d replays recognised), %d acknowledged pages delivered %d times (%d events redelivered after a 5xx), in %s",
		len(cmds), replays, len(incidents), countTargets(incidents), retried, time.Since(began).Round(time.Millisecond))

	// Phase 2: the off-call requests are approved on another replica than the one that got the
	// command; some clicks reach two replicas at once.
	within(t, 30*time.Second, "an approval request for every off-call command", func() bool {
		for _, cmd := range offCall {
			if _, ok := rfApprovalMessage(sl, cmd.requestID); !ok {
				return false
			}
		}
		return true
	})
	type click struct {
		cmd      *rfCommand
		rurls    []string // the clickers' response_urls
		answered int      // how many losing clicks must be answered "already decided"
	}
	var clicks []*click
	doubles := 0
	for j, cmd := range offCall {
		msg, _ := rfApprovalMessage(sl, cmd.requestID)
		other, yetOther := (cmd.replica+1)%3, (cmd.replica+2)%3
		var sends []func()
		ck := &click{cmd: cmd}
		switch j % 3 {
		case 0: // one click, delivered to two replicas at once (Slack retrying it)
			rurl := newResponseURL(rfLeads[0].Slack)
			body, err := rfApproveBody(rfLeads[0], cmd.requestID, msg, rurl)
			if err != nil {
				t.Fatal(err)
			}
			at := time.Now()
			for _, r := range []int{other, yetOther} {
				sends = append(sends, func() { rfClick(t, hc, url(r, slack.InteractionsPath), signing, at, body) })
			}
			ck.rurls, ck.answered = []string{rurl}, 1
			doubles++
		case 1: // both approvers click at once, on different replicas
			for n, r := range []int{other, yetOther} {
				rurl := newResponseURL(rfLeads[n].Slack)
				body, err := rfApproveBody(rfLeads[n], cmd.requestID, msg, rurl)
				if err != nil {
					t.Fatal(err)
				}
				at := time.Now()
				sends = append(sends, func() { rfClick(t, hc, url(r, slack.InteractionsPath), signing, at, body) })
				ck.rurls = append(ck.rurls, rurl)
			}
			ck.answered = 1
			doubles++
		default: // one click on yet another replica
			rurl := newResponseURL(rfLeads[j%2].Slack)
			body, err := rfApproveBody(rfLeads[j%2], cmd.requestID, msg, rurl)
			if err != nil {
				t.Fatal(err)
			}
			at := time.Now()
			sends = append(sends, func() { rfClick(t, hc, url(yetOther, slack.InteractionsPath), signing, at, body) })
		}
		clicks = append(clicks, ck)
		for _, s := range sends {
			wg.Go(s)
		}
	}

	// Phase 3, meanwhile: wait for every grant and its credential, then resolve the incidents.
	byRequest := map[string]*rfCommand{}
	for _, cmd := range cmds {
		byRequest[cmd.requestID] = cmd
	}
	incidentGrant := map[string]grants.Grant{}
	within(t, 45*time.Second, "a live grant for every command and every acknowledged page", func() bool {
		gs, err := c.store.ListGrants(ctx, grants.GrantFilter{States: []grants.State{grants.StateActive}})
		if err != nil {
			t.Logf("list grants: %v", err)
			return false
		}
		cmdsGranted, pages := map[string]bool{}, map[string]grants.Grant{}
		for _, g := range gs {
			switch {
			case g.IncidentID != "":
				pages[g.IncidentID] = g
			case byRequest[g.RequestID] != nil:
				cmdsGranted[g.RequestID] = true
			}
		}
		if len(cmdsGranted) == len(cmds) && len(pages) == len(incidents) {
			incidentGrant = pages
			return true
		}
		return false
	})
	wg.Wait() // every click was answered (200) by now
	// A losing click is answered "already decided" on its response_url, and nothing else is
	// left to happen then. Without that answer (two clicks both won?) the checks below say
	// what went wrong.
	var credCount, noteCount int
	var unanswered []string
	settled := eventually(20*time.Second, func() bool {
		credCount, noteCount, unanswered = 0, 0, nil
		told := map[string]int{}
		for _, m := range sl.Messages() {
			switch {
			case rfIsCredential(m):
				credCount++
			case m.Channel == rfAudit && strings.HasPrefix(m.Text, "Granted "):
				noteCount++
			case m.Via == slackfake.ResponseURLMethod:
				told[m.ResponseURL]++
			}
		}
		for _, ck := range clicks {
			n := 0
			for _, u := range ck.rurls {
				n += told[u]
			}
			if n < ck.answered {
				unanswered = append(unanswered, ck.cmd.requestID)
			}
		}
		return len(unanswered) == 0 && credCount >= len(cmds)+len(incidents) && noteCount >= len(cmds)+len(incidents)
	})
	if !settled {
		t.Errorf("after 20 s: %d credentials delivered, %d grants noted in #audit (want %d each); concurrent clicks on %q got no \"already decided\" answer",
			credCount, noteCount, len(cmds)+len(incidents), unanswered)
	}

	for _, ri := range incidents {
		inc := ri.inc
		inc.Status, inc.UpdatedAt = "resolved", time.Now().UTC()
		pd.PutIncident(inc)
		del, err := pd.IncidentDelivery("incident.resolved", inc.ID, ri.acker.PagerDuty, time.Now(), pdSecret)
		if err != nil {
			t.Fatal(err)
		}
		ri.resolved = make([]string, 2)
		wg.Go(func() {
			deliver(2, func(j int) {
				req, err := del.Request(ctx, url(ri.targets[0]+j+1, pagerduty.WebhookPath))
				if err != nil {
					t.Error(err)
					return
				}
				status, b, err := rfPost(hc, req)
				if err != nil || status != http.StatusOK {
					t.Errorf("incident.resolved of %s: HTTP %d %q %v", inc.ID, status, b, err)
				}
				ri.resolved[j] = strings.TrimSpace(b)
			})
		})
	}
	wg.Wait()
	for _, ri := range incidents {
		if got := strings.Join(ri.resolved, ","); got != "ok,duplicate: already handled" && got != "duplicate: already handled,ok" {
			t.Errorf("incident.resolved of %s delivered twice: answers %q, want one ok and one duplicate", ri.inc.ID, ri.resolved)
		}
	}
	within(t, 30*time.Second, "every incident grant revoked", func() bool {
		for _, g := range incidentGrant {
			cur, err := c.store.GetGrant(ctx, g.ID)
			if err != nil || cur.State != grants.StateRevoked {
				return false
			}
		}
		return true
	})

	// Everything settled: the checks.
	reqs, err := c.store.ListRequests(ctx, grants.RequestFilter{})
	if err != nil {
		t.Fatal(err)
	}
	perKey := map[string]int{}
	pageRequests := 0
	for _, r := range reqs {
		perKey[r.ExternalKey]++
		if r.Source == grants.SourcePagerDuty {
			pageRequests++
		}
	}
	for _, cmd := range cmds {
		if n := perKey["slack:"+cmd.trigger]; n != 1 {
			t.Errorf("command %s (delivered %d times) made %d requests, want 1", cmd.trigger, len(cmd.targets), n)
		}
	}
	if len(reqs) != len(cmds)+len(incidents) || pageRequests != len(incidents) {
		t.Errorf("%d requests (%d from PagerDuty), want %d: one per distinct command and one per acknowledged page", len(reqs), pageRequests, len(cmds)+len(incidents))
	}

	all, err := c.store.ListGrants(ctx, grants.GrantFilter{})
	if err != nil {
		t.Fatal(err)
	}
	out, code := c.run("grants", "list", "--config", c.config, "--format", "json", "--limit", "0")
	if code != 0 {
		t.Fatalf("grants list exit %d:\n%s", code, out)
	}
	var listed []grantView
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("grants list --format json: %v\n%s", err, out)
	}
	want := len(cmds) + len(incidents)
	if len(listed) != want || len(all) != want {
		t.Errorf("grants list shows %d grants, the store %d; want %d (%d commands + %d acknowledged pages)", len(listed), len(all), want, len(cmds), len(incidents))
	}
	inList := map[string]bool{}
	for _, v := range listed {
		inList[v.ID] = true
	}

	issueCalls := map[string]int{}
	for _, call := range c.fake.Calls() {
		if call.Path == "/issue" && call.Status == http.StatusOK {
			issueCalls[call.GrantID]++
		}
	}
	if len(issueCalls) != want {
		t.Errorf("the webhook provider created access for %d grants, want %d", len(issueCalls), want)
	}
	creds, notes := map[string][]slackfake.Message{}, map[string]int{}
	for _, m := range sl.Messages() {
		raw := m.Mrkdwn()
		for _, g := range all {
			switch {
			case rfIsCredential(m) && strings.Contains(raw, "wh-secret-"+g.ID):
				creds[g.ID] = append(creds[g.ID], m)
			case m.Channel == rfAudit && strings.HasPrefix(m.Text, "Granted ") && strings.Contains(m.Text, g.ID):
				notes[g.ID]++
			}
		}
	}
	perRequest := map[string]int{}
	for _, g := range all {
		perRequest[g.RequestID]++
		issued, revoked := c.fake.Counts(g.ID)
		active, _ := c.fake.Access(g.ID)
		if issueCalls[g.ID] != 1 || issued != 1 {
			t.Errorf("grant %s: %d answered /issue calls, access created %d times; want 1", g.ID, issueCalls[g.ID], issued)
		}
		if !inList[g.ID] {
			t.Errorf("grant %s is missing from grants list", g.ID)
		}
		if notes[g.ID] != 1 {
			t.Errorf("grant %s is noted %d times in #audit, want 1", g.ID, notes[g.ID])
		}
		if len(creds[g.ID]) != 1 {
			t.Errorf("grant %s: its credential was delivered %d times, want once", g.ID, len(creds[g.ID]))
			continue
		}
		m := creds[g.ID][0]
		owner := g.Person.SlackUserID
		switch cmd := byRequest[g.RequestID]; {
		case g.IncidentID != "":
			if g.State != grants.StateRevoked || g.RevokeCause != grants.CauseIncidentResolved || revoked != 1 || active {
				t.Errorf("incident grant %s: %s (%s), access removed %d times, still active %v; want revoked once on resolution", g.ID, g.State, g.RevokeCause, revoked, active)
			}
			if m.Channel == "" || m.Channel != sl.DMChannel(owner) {
				t.Errorf("incident grant %s: credential sent to %q, not to %s by direct message", g.ID, m.Channel, owner)
			}
		case cmd == nil:
			t.Errorf("grant %s belongs to no command and no page (request %s)", g.ID, g.RequestID)
		case owner != cmd.who.Slack || g.State != grants.StateActive:
			t.Errorf("grant %s of command %s: owner %s, state %s; want %s, active", g.ID, cmd.trigger, owner, g.State, cmd.who.Slack)
		case cmd.onCall:
			mu.Lock()
			to := responseUser[m.ResponseURL]
			mu.Unlock()
			if m.Via != slackfake.ResponseURLMethod || to != owner {
				t.Errorf("on-call grant %s: credential sent via %s to %q, want ephemerally to %s", g.ID, m.Via, to, owner)
			}
		default:
			if m.Channel == "" || m.Channel != sl.DMChannel(owner) {
				t.Errorf("approved grant %s: credential sent to %q, not to %s by direct message", g.ID, m.Channel, owner)
			}
		}
	}
	for id, n := range perRequest {
		if n != 1 {
			t.Errorf("request %s has %d grants, want 1", id, n)
		}
	}
	perIncident := map[string]int{}
	for _, g := range all {
		if g.IncidentID != "" {
			perIncident[g.IncidentID]++
		}
	}
	for _, ri := range incidents {
		if n := perIncident[ri.inc.ID]; n != 1 {
			t.Errorf("incident %s (acknowledged in %d deliveries, distinct events: %v) has %d grants, want 1", ri.inc.ID, len(ri.targets), ri.reacked, n)
		}
	}
	credTotal := 0
	for _, m := range sl.Messages() {
		if rfIsCredential(m) {
			credTotal++
		}
	}
	if credTotal != want {
		t.Errorf("%d credential messages in Slack, want %d (one per grant)", credTotal, want)
	}

	// One request.created per request and one grant.issued per grant in the shared chain.
	created, issuedEv := map[string]int{}, map[string]int{}
	var after int64
	for {
		evs, err := c.store.ReadEvents(ctx, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			break
		}
		for _, e := range evs {
			switch e.Action {
			case audit.ActionRequestCreated:
				created[e.RequestID]++
			case audit.ActionGrantIssued:
				issuedEv[e.GrantID]++
			}
		}
		after = evs[len(evs)-1].Seq
	}
	for _, r := range reqs {
		if created[r.ID] != 1 {
			t.Errorf("request %s has %d request.created events, want 1", r.ID, created[r.ID])
		}
	}
	for _, g := range all {
		if issuedEv[g.ID] != 1 {
			t.Errorf("grant %s has %d grant.issued events, want 1", g.ID, issuedEv[g.ID])
		}
	}
	spread := make([]string, len(reps))
	for i, r := range reps {
		spread[i] = fmt.Sprintf("%s %d", r.name, strings.Count(r.out.String(), `"msg":"confirmed acknowledgement handed to the broker"`))
	}
	t.Logf("%d grants for %d commands (%d approved, %d of them double-clicked) and %d pages; acknowledgements acted on per replica: %s; events up to seq %d",
		len(all), len(cmds), len(offCall), doubles, len(incidents), strings.Join(spread, ", "), after)

	// Connections the client dialed but never used would hold each replica's graceful
	// shutdown for 5 s (net/http treats them as busy until then).
	hc.CloseIdleConnections()
	for _, r := range reps {
		began := time.Now()
		r.stop(t)
		t.Logf("%s stopped %s after SIGTERM", r.name, time.Since(began).Round(time.Millisecond))
	}
	out, code = c.run("audit", "verify", "--config", c.config)
	if code != 0 {
		t.Fatalf("audit verify exit %d:\n%s", code, out)
	}
	t.Logf("audit verify: %s", strings.TrimSpace(out))
	for _, r := range reps {
		logs := r.out.String()
		for _, s := range secrets {
			if strings.Contains(logs, s) {
				t.Errorf("%s logged a secret (%.6s…)", r.name, s)
			}
		}
		for _, line := range strings.Split(logs, "\n") {
			// A concurrent acknowledgement event refused for redelivery is routine (WARN);
			// nothing may be logged as an error.
			if strings.Contains(line, `"level":"ERROR"`) {
				t.Errorf("%s logged an error: %s", r.name, line)
			}
		}
	}
	t.Logf("total %s", time.Since(began).Round(time.Millisecond))
}

// rfApproveBody is the block_actions form body of who pressing Approve on the approval message
// msg of requestID in #approvals, now.
func rfApproveBody(who rfPerson, requestID string, msg slackfake.Message, rurl string) ([]byte, error) {
	return slackfake.BlockActions(slackfake.Click{TeamID: rfTeam, TeamDomain: "demo", UserID: who.Slack, UserName: who.Name, APIAppID: "A0DEMO",
		ChannelID: rfApprovals, ChannelName: "approvals", Message: msg, BotID: "B0BOT",
		ActionID: "approve", BlockID: "decide", Value: requestID, Label: "Approve", ResponseURL: rurl, At: time.Now()})
}

// rfApprovalMessage finds the approval request for requestID that the fake Slack holds in
// #approvals.
func rfApprovalMessage(sl *slackfake.Server, requestID string) (slackfake.Message, bool) {
	for _, m := range sl.Messages() {
		if m.Channel == rfApprovals && strings.Contains(string(m.Blocks), requestID) {
			return m, true
		}
	}
	return slackfake.Message{}, false
}

// rfIsCredential reports whether m is a credential delivery (its blocks carry the credential).
func rfIsCredential(m slackfake.Message) bool {
	return strings.Contains(string(m.Blocks), `"block_id":"credential"`)
}

// rfRandomHex returns n random bytes in hex, for the test's tokens and secrets.
func rfRandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

// rfClick delivers one signed interaction and requires 200.
func rfClick(t *testing.T, hc *http.Client, url, secret string, at time.Time, body []byte) {
	t.Helper()
	req, err := slackfake.SignedRequest(context.Background(), url, secret, at, body)
	if err != nil {
		t.Error(err)
		return
	}
	status, b, err := rfPost(hc, req)
	if err != nil || status != http.StatusOK {
		t.Errorf("click to %s: HTTP %d %q %v", url, status, b, err)
	}
}

// eventually polls cond until it holds (true) or d has passed (false).
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func countTargets(incs []*rfIncident) int {
	n := 0
	for _, ri := range incs {
		n += len(ri.targets)
	}
	return n
}
