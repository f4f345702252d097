package postgres

import (
	"context"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/accessbroker/accessbroker/grants"
)

// Issuing fast without giving up write-ahead (issue #16).
//
// Most of an issue's time is PostgreSQL checking the SCRAM verifier it is given: CREATE ROLE
// … PASSWORD 'SCRAM-SHA-256$4096:…' makes sure the verifier is not the empty password's, which
// costs the server the same 4096 PBKDF2 iterations the broker spent making it (and, with
// OpenSSL re-initialising HMAC at every iteration, several times more CPU). Two things take
// that off the path an engineer waits on, without changing what is stored or checked:
//
//   - PrepareIssue (grants.IssuePreparer) sends BEGIN; CREATE ROLE …; COMMENT ON ROLE … while
//     the grant's write-ahead record commits, and leaves the transaction open. Until Commit
//     sends COMMIT, after the record is durable, no other session can see the role, log in
//     as it or be granted it; if the broker dies in between, PostgreSQL rolls it back.
//   - The random password and its verifier of a non-proxied role are made ahead, by one
//     background goroutine, at most secretsAhead at a time; each is used for one role only
//     and lives only in memory (secretPool).

// PrepareIssue implements grants.IssuePreparer: the role is created in a transaction left
// open until Commit. It never fails by itself: an error is Commit's answer.
func (p *Provider) PrepareIssue(ctx context.Context, req grants.IssueRequest) grants.PreparedIssue {
	pi := &preparedRole{p: p, req: req}
	pi.err = pi.prepare(ctx)
	return pi
}

// preparedRole is a role created in an open transaction on conn.
type preparedRole struct {
	p    *Provider
	req  grants.IssueRequest
	st   roleSQL
	conn *pgxpool.Conn // holds the open transaction; nil once ended (or when prepare failed)
	err  error         // why preparing failed
}

func (pi *preparedRole) prepare(ctx context.Context) error {
	st, err := pi.p.roleStatements(ctx, pi.req)
	if err != nil {
		return err
	}
	pi.st = st
	conn, err := pi.p.pool.Acquire(ctx)
	if err != nil {
		if st.spare != nil {
			pi.p.spares.giveBack(*st.spare)
		}
		return st.failed(pi.p, err)
	}
	for {
		err = pi.begin(ctx, conn)
		if err == nil {
			pi.conn = conn
			return nil
		}
		// The spare could not become the role: it is a spare again (or gone); with a new
		// password, CREATE ROLE instead, unless the grant's role exists (Commit reissues).
		if retry, e := pi.st.spareFailed(pi.p, err); e != nil {
			err = e
		} else if retry && conn.Conn().PgConn().TxStatus() == 'I' {
			continue
		}
		conn.Release()
		return err
	}
}

// begin sends BEGIN and the role's statements in one round trip, leaving the transaction
// open. On failure it ends the transaction: the pool destroys a connection released inside
// a transaction, should ROLLBACK fail too.
func (pi *preparedRole) begin(ctx context.Context, conn *pgxpool.Conn) error {
	res, err := conn.Conn().PgConn().Exec(ctx, "BEGIN;\n"+pi.st.create).ReadAll()
	if err == nil {
		err = resultErr(res)
	}
	if err != nil {
		_, _ = conn.Conn().PgConn().Exec(ctx, "ROLLBACK").ReadAll()
	}
	return err
}

// Commit implements grants.PreparedIssue: it commits the role's transaction. When preparing
// failed because the grant's role exists (a retried issue), it issues as Issue does.
func (pi *preparedRole) Commit(ctx context.Context) (grants.Issued, error) {
	if pi.conn == nil {
		if pi.st.name == "" { // the request or the server check failed: Issue's own error
			return grants.Issued{}, pi.err
		}
		if pgCode(pi.err) == "42710" { // duplicate_object: this grant's role exists; issue again
			return pi.p.Issue(ctx, pi.req)
		}
		return grants.Issued{}, pi.st.failed(pi.p, pi.err)
	}
	conn := pi.conn
	pi.conn = nil
	res, err := conn.Conn().PgConn().Exec(ctx, "COMMIT").ReadAll()
	conn.Release()
	if err == nil && (len(res) != 1 || res[0].CommandTag.String() != "COMMIT") {
		err = fmt.Errorf("the transaction was rolled back, not committed")
	}
	if err == nil {
		err = resultErr(res)
	}
	if err != nil {
		// The outcome of a COMMIT whose answer was lost is unknown: the caller revokes.
		return grants.Issued{}, pi.st.failed(pi.p, fmt.Errorf("commit: %w", err))
	}
	return pi.p.issued(ctx, pi.req, pi.st, false), nil
}

// Abort implements grants.PreparedIssue: the role's transaction is rolled back.
func (pi *preparedRole) Abort(ctx context.Context) {
	if pi.conn == nil {
		return
	}
	conn := pi.conn
	pi.conn = nil
	_, err := conn.Conn().PgConn().Exec(ctx, "ROLLBACK").ReadAll()
	if sp := pi.st.spare; sp != nil && err == nil {
		pi.p.spares.giveBack(*sp) // rolled back: still a spare, its password unused
	}
	conn.Release() // destroyed by the pool if the ROLLBACK did not end the transaction
}

// secretsAhead is how many password/verifier pairs a provider keeps ready.
const secretsAhead = 8

// secretPool makes random passwords and their SCRAM verifiers ahead of need, so that an
// issue does not wait for 4096 PBKDF2 iterations when the broker had time to spare. One
// goroutine, started by the first take, fills it up to secretsAhead and then waits; take
// computes a pair itself when none is ready (under a burst). Each pair is handed out once.
type secretPool struct {
	start sync.Once
	end   sync.Once
	ready chan secret
	stop  chan struct{}
	done  chan struct{}
}

type secret struct{ password, verifier string }

func newSecretPool() *secretPool {
	return &secretPool{ready: make(chan secret, secretsAhead), stop: make(chan struct{}), done: make(chan struct{})}
}

// take returns a fresh random password and its verifier.
func (s *secretPool) take() (password, verifier string, err error) {
	s.start.Do(func() { go s.fill() })
	select {
	case sec := <-s.ready:
		return sec.password, sec.verifier, nil
	default:
		return newSecret()
	}
}

func newSecret() (password, verifier string, err error) {
	if password, err = newPassword(); err != nil {
		return "", "", err
	}
	if verifier, err = scramVerifier(password); err != nil {
		return "", "", err
	}
	return password, verifier, nil
}

func (s *secretPool) fill() {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		default:
		}
		password, verifier, err := newSecret()
		if err != nil {
			return // take makes its own, and reports the error
		}
		select {
		case s.ready <- secret{password, verifier}:
		case <-s.stop:
			return
		}
	}
}

// close stops the goroutine (if it started) and waits for it; unused pairs are dropped.
func (s *secretPool) close() {
	s.end.Do(func() {
		s.start.Do(func() { close(s.done) }) // never started: nothing to wait for
		close(s.stop)
	})
	<-s.done
}
