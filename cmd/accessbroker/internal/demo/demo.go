// Package demo is `accessbroker demo`: the whole product on one machine, with no network and
// no accounts.
//
// The demo starts the real broker (the server `serve` runs, built by the Start function the
// command passes in) on the embedded SQLite, wired to the fake Slack, PagerDuty, AWS and
// GitHub servers of fixtures/ on loopback through the same SDK clients production uses, and to
// the local PostgreSQL when one answers (otherwise prod-db uses the webhook provider against
// fixtures/webhookfake, and the transcript says so). Its configuration is rendered from
// templates/ and loaded with config.LoadConfig, so it passes the same validation as any other.
//
// It then plays a story as Slack and PagerDuty would: signed slash commands and button
// clicks, signed v3 webhooks. It never calls the broker's internals to make something happen;
// it reads outcomes from what the fake Slack received and from the store, and moves a
// simulated clock instead of waiting. Secrets are masked in the transcript.
package demo

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/cmd/accessbroker/internal/config"
	"github.com/accessbroker/accessbroker/fixtures/awsfake"
	"github.com/accessbroker/accessbroker/fixtures/githubfake"
	"github.com/accessbroker/accessbroker/fixtures/pdfake"
	"github.com/accessbroker/accessbroker/fixtures/slackfake"
	"github.com/accessbroker/accessbroker/fixtures/webhookfake"
	"github.com/accessbroker/accessbroker/grants"
	awsprov "github.com/accessbroker/accessbroker/integrations/aws"
)

//go:embed templates/config.yaml templates/prod-db-postgres.yaml templates/prod-db-webhook.yaml templates/postgres-proxy.yaml
var demoTemplates embed.FS

// Wiring is what the demo needs from the command that runs it: the broker `serve` runs, and
// the other sub-commands, which the story calls as an operator would type them. The command
// owns that wiring; the demo only drives it.
type Wiring struct {
	// Start builds the broker from cfg, as `serve` does, with the demo's developer-only
	// options; Run then serves it.
	Start func(ctx context.Context, cfg *config.Config, opts BrokerOptions) (Broker, error)
	// Command runs one accessbroker sub-command (args[0] names it) and returns its exit code.
	Command func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

// BrokerOptions are the developer-only knobs the demo sets, kept out of the config contract.
type BrokerOptions struct {
	Clock  grants.Clock // the demo's simulated clock
	LogOut io.Writer    // the broker's JSON log
	// AWSConfig and AWSSTS point the AWS SDK's credentials and the console federation
	// endpoint at the fake AWS.
	AWSConfig []awsprov.ConfigOption
	AWSSTS    []awsprov.STSOption
	// ConsoleStandIn replaces the web console's Sign in with Slack by a choice of these
	// people.
	ConsoleStandIn []StandIn
}

// StandIn is a person the demo's console lets anyone sign in as.
type StandIn struct {
	Name, TeamID, UserID, Role string
}

// demoRoles are what each person is in the story, as the console's stand-in sign-in says.
var demoRoles = map[string]string{
	"alice": "engineer, on call",
	"bob":   "engineer",
	"carol": "approver and auditor",
}

// Broker is the running broker as the demo sees it: the server's lifecycle, the store's reads
// the narrator checks outcomes with, and the two operator actions it needs.
type Broker interface {
	// Run serves until ctx ends; listening receives the bound address once it listens.
	Run(ctx context.Context, listening chan<- string) error
	// Close releases the store and the providers after Run returned.
	Close() error
	// Wake makes the revoker and the request scheduler look at the clock again.
	Wake()
	ListGrants(ctx context.Context, f grants.GrantFilter) ([]grants.Grant, error)
	GetRequest(ctx context.Context, id string) (grants.Request, error)
	Search(ctx context.Context, q audit.Query) ([]audit.Event, error)
	// Revoke ends grant id on an operator's behalf (audited; the revoker does the work).
	Revoke(ctx context.Context, id string, cause grants.RevokeCause, actor audit.Actor, reason string) error
}

// Options are the demo's command-line choices and seams.
type Options struct {
	// Interactive keeps the broker serving after the story and reads commands from Stdin.
	Interactive bool
	// Keep, when set, is a new or empty directory that keeps the demo's files.
	Keep   string
	Stdin  io.Reader
	Stdout io.Writer // the transcript
	// Inspect, when set, is called after the story (and the interactive session), before
	// the teardown, with what the fakes received; tests read delivered secrets from it.
	Inspect func(Inspection)
}

// Inspection is a look at the demo's fakes before they are torn down.
type Inspection struct {
	Slack *slackfake.Server
	AWS   *awsfake.Server
	// PostgreSQL is the throwaway database prod-db used; nil with the webhook stand-in.
	PostgreSQL *PostgreSQL
}

// PostgreSQL names what the demo created on a local PostgreSQL, and where (BaseDSN may carry
// a password: it is for tests that check the cleanup, never for the transcript).
type PostgreSQL struct {
	BaseDSN, Database, Role string
}

// PostgresEnv names the PostgreSQL the demo uses for prod-db; "none" forces the webhook
// provider.
const PostgresEnv = "ACCESSBROKER_DEMO_POSTGRES_DSN"

// Mask is what the transcript shows instead of a secret.
const Mask = "••••"

const (
	demoDefaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

	demoTeam             = "T0DEMO"
	demoApprovals        = "C0APPROVALS"
	demoAuditChannel     = "C0AUDIT"
	demoOpsChannel       = "C0OPS"
	demoEscalationPolicy = "PDEMOEP"
	demoSchedule         = "PDEMOSCH"
	demoService          = "PSVC123"
	demoRoleName         = "oncall-admin"
	demoGitHubOrg        = "acme"
	demoGitHubTeam       = "infra-admins"

	// demoWait bounds each wait for an outcome, in real time. It only guards against a hang:
	// the whole demo takes a few seconds.
	demoWait = 30 * time.Second
)

// demoPerson is one of the story's people, the same person in every fake.
type demoPerson struct {
	Name, Slack, PagerDuty, Email, GitHub string
}

var demoPeople = []demoPerson{
	{Name: "alice", Slack: "U0ALICE", PagerDuty: "PALICE", Email: "alice@example.com", GitHub: "alice"},
	{Name: "bob", Slack: "U0BOB", PagerDuty: "PBOB", Email: "bob@example.com", GitHub: "bob"},
	{Name: "carol", Slack: "U0CAROL", PagerDuty: "PCAROL", Email: "carol@example.com", GitHub: "carol"},
}

var (
	demoAlice = demoPeople[0]
	demoBob   = demoPeople[1]
	demoCarol = demoPeople[2]
)

// realClock measures the demo's own wall time and paces its polling; the broker never sees it.
var realClock grants.Clock = grants.RealClock{}

// ErrUsage marks an error in the demo's options (a --keep directory that is not empty):
// the command line was wrong, and nothing was started. Test with errors.Is.
var ErrUsage = errors.New("bad demo options")

// usageError is an error that errors.Is reports as ErrUsage; its text is the wrapped error's.
type usageError struct{ error }

func (e usageError) Is(target error) bool { return target == ErrUsage }
func (e usageError) Unwrap() error        { return e.error }

// Run plays the demo: it starts the fakes and the broker, tells the story on o.Stdout (then,
// with o.Interactive, reads commands), and tears everything down, revoking what is still
// live. The error says why the demo could not start, why the story stopped, or what the
// cleanup could not undo (errors.Join of the last two); secrets in it are masked.
func Run(ctx context.Context, w Wiring, o Options) error {
	began := realClock.Now()
	d, err := startDemo(ctx, w, o.Stdout, o.Keep)
	if err != nil {
		return err
	}
	d.interactiveNext = o.Interactive
	var storyErr, cleanupErr error
	if err := d.story(ctx); err != nil {
		d.plain("")
		d.say("✗ the demo stopped: %v", err)
		storyErr = errors.New(d.mask(err.Error()))
	} else if o.Interactive {
		d.interactive(ctx, o.Stdin)
	}
	if o.Inspect != nil {
		o.Inspect(d.inspection())
	}
	if err := d.close(ctx); err != nil {
		cleanupErr = fmt.Errorf("cleanup: %s", d.mask(err.Error()))
	}
	fmt.Fprintf(o.Stdout, "\nThe demo took %.1f s of real time for %s of simulated time.\n",
		realClock.Now().Sub(began).Seconds(), audit.FormatDuration(d.clock.Now().Sub(d.start)))
	return errors.Join(storyErr, cleanupErr)
}

// demo is one run: the fakes, the broker, and what the narrator has shown so far.
type demo struct {
	out    io.Writer
	wiring Wiring
	clock  *simClock
	start  time.Time
	dir    string
	keep   bool
	// interactive: the story is followed by --interactive's session (so the summary does not
	// suggest running it).
	interactiveNext bool
	http            *http.Client

	slack *slackfake.Server
	pd    *pdfake.Server
	aws   *awsfake.Server
	gh    *githubfake.Server
	wh    *webhookfake.Server // set when prod-db uses the webhook provider
	pg    *demoPG             // set when prod-db is on PostgreSQL
	// pgSession is alice's session through the proxy, open from step 1 until her grant
	// expires in step 5.
	pgSession *pgx.Conn
	proxyAddr string // postgres_proxy.listen, when prod-db is on PostgreSQL
	noPG      string // why PostgreSQL is not used

	configPath string
	logPath    string
	logFile    *os.File
	broker     Broker
	base       string
	stop       context.CancelFunc
	done       chan error

	signingSecret string
	webhookSecret string
	awsKeyID      string

	mu        sync.Mutex
	secrets   []string          // masked wherever they would appear
	responses map[string]string // response_url → the Slack user it was handed to
	shown     map[int]int       // message seq → the number of updates already shown
	sessions  map[string]string // grant id → AWS access key id delivered for it
	blank     bool              // the last transcript line was empty
}

func (d *demo) inspection() Inspection {
	in := Inspection{Slack: d.slack, AWS: d.aws}
	if d.pg != nil {
		in.PostgreSQL = &PostgreSQL{BaseDSN: d.pg.baseDSN, Database: d.pg.db, Role: d.pg.role}
	}
	return in
}

// firstLine is s up to its first newline, cut to n bytes.
func firstLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
