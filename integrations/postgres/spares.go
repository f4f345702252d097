package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/accessbroker/accessbroker/grants"
)

// Spare roles (issue #16): taking PostgreSQL's own PBKDF2 off the path an engineer waits on.
//
// CREATE ROLE … PASSWORD 'SCRAM-SHA-256$4096:…' and ALTER ROLE … PASSWORD make the server
// check that the verifier is not the empty password's (plain_crypt_verify(role, verifier, "")
// in CreateRole/AlterRole), which costs it the verifier's full 4096 PBKDF2 iterations: about
// 6.5 ms of server CPU, most of an issue. The count cannot simply be lowered: clients refuse
// fewer than 4096 (pgjdbc's bundled SCRAM before 42.7.11, Bun's SQL client). So the provider
// of a non-proxied resource keeps sparesAhead spare roles made ahead by one background
// goroutine:
//
//	CREATE ROLE accessbroker_spare_<16 hex> NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE
//	    NOREPLICATION NOBYPASSRLS INHERIT VALID UNTIL '<made + spareMaxAge>'
//	    PASSWORD 'SCRAM-SHA-256$4096:…';
//	COMMENT ON ROLE … IS 'accessbroker spare role, made …';
//
// and an issue turns one into the grant's role, in the prepared transaction, with statements
// none of which hashes a password:
//
//	ALTER ROLE spare RENAME TO "ab_alice_…";     -- keeps a SCRAM verifier (only MD5 is cleared)
//	ALTER ROLE "ab_alice_…" LOGIN CONNECTION LIMIT 10 VALID UNTIL '<grant expiry>';
//	GRANT "readonly" TO "ab_alice_…";
//	COMMENT ON ROLE "ab_alice_…" IS 'accessbroker grant …';
//
// Why a spare is safe: it cannot log in (NOLOGIN), is a member of no role (so it gives no
// privilege even to someone who could log in as it), owns nothing, and its password exists
// only in the memory of the replica that made it (never stored, logged or sent as text; the
// server holds its verifier only). Its name does not start with rolePrefix, so no lookup of
// a grant's roles (Revoke, HasAccess, ListAccess, drift, RevokeBatch) can ever match one.
//
// Replicas and crashes: each replica uses only the spares whose password it holds, and never
// one older than spareMaxUse (it drops and replaces those). Spares left by a replica that
// died are dropped by any replica once their VALID UNTIL (made + spareMaxAge) has passed;
// Close drops a replica's own spares, best effort. The times come from the provider's clock.
// An operator sees at most sparesAhead NOLOGIN roles named accessbroker_spare_… per replica
// in pg_roles, each with a comment saying what it is.
//
// With no spare ready (a burst, a server that refused to make one, a proxied resource whose
// password is known only at issue) the role is created as before.

// sparesAhead is how many spare roles a provider keeps ready.
const sparesAhead = 8

// sparePrefix starts the name of every spare role. It must not start with rolePrefix: a
// spare must never look like a grant's role.
const sparePrefix = "accessbroker_spare_"

// spareMaxUse is the age after which a replica no longer uses its own spare (it drops and
// replaces it): well before spareMaxAge, so that another replica (whose clock may be a
// little ahead) never drops a spare while an issue renames it.
const spareMaxUse = 30 * time.Minute

// spareMaxAge is the age after which any replica drops a spare, whoever made it: a spare's
// VALID UNTIL is its making time plus spareMaxAge.
const spareMaxAge = time.Hour

// spareCheckEvery is how often the background goroutine looks for spares to drop when no
// issue wakes it.
const spareCheckEvery = 5 * time.Minute

// spareRetry is how long the background goroutine waits after a failure (server down).
const spareRetry = 10 * time.Second

// spare is a spare role this replica made, with its password.
type spare struct {
	name, password, verifier string
	made                     time.Time
}

// sparePool keeps up to target spare roles (see above). One goroutine, started by the first
// take, makes them; take never waits for one.
type sparePool struct {
	p      *Provider
	target int    // 0: no spares (every issue creates its role)
	prefix string // sparePrefix; tests use a prefix of their own
	manual bool   // tests: no goroutine; spares are made only by calling make

	mu        sync.Mutex
	ready     []spare // oldest first
	lastSweep time.Time

	start  sync.Once
	end    sync.Once
	wake   chan struct{}
	stop   chan struct{}      // closed by close: make no more
	ctx    context.Context    // of the goroutine's statements; cancelled by close only after a grace period
	cancel context.CancelFunc //
	done   chan struct{}
}

func newSparePool(p *Provider, target int) *sparePool {
	ctx, cancel := context.WithCancel(context.Background())
	return &sparePool{p: p, target: target, prefix: sparePrefix, wake: make(chan struct{}, 1), stop: make(chan struct{}), ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

// take returns a spare younger than spareMaxUse, if one is ready, and wakes the goroutine
// to make another.
func (s *sparePool) take() (spare, bool) {
	if s.target == 0 {
		return spare{}, false
	}
	if !s.manual {
		s.start.Do(func() { go s.run() })
		defer s.poke()
	}
	now := s.p.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	// The newest: the older ones are nearer spareMaxUse, and when the newest is too old to
	// use, all are (the goroutine, woken, drops and replaces them).
	if n := len(s.ready); n > 0 && now.Sub(s.ready[n-1].made) < spareMaxUse {
		sp := s.ready[n-1]
		s.ready = s.ready[:n-1]
		return sp, true
	}
	return spare{}, false
}

// giveBack returns a spare that a rolled-back transaction left a spare.
func (s *sparePool) giveBack(sp spare) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	for i < len(s.ready) && s.ready[i].made.Before(sp.made) {
		i++
	}
	s.ready = append(s.ready[:i], append([]spare{sp}, s.ready[i:]...)...)
}

func (s *sparePool) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *sparePool) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ready)
}

// run keeps the pool full until close: it drops what is due (sweep), makes spares up to
// target, then waits to be woken by take, or spareCheckEvery.
func (s *sparePool) run() {
	defer close(s.done)
	ctx := s.ctx
	failing := false
	for !s.stopped() {
		wait := spareCheckEvery
		if err := s.fill(ctx); err != nil {
			if s.stopped() {
				return
			}
			// Once per failure, not every spareRetry (an outage is reported by the
			// readiness check already).
			level := slog.LevelWarn
			if failing {
				level = slog.LevelDebug
			}
			s.p.log.Log(ctx, level, "postgres spare roles: cannot make or drop spares; issues create their roles meanwhile", "error", err)
			failing, wait = true, spareRetry
		} else {
			failing = false
		}
		t := s.p.clock.NewTimer(wait)
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-s.wake:
		case <-t.C():
		}
		t.Stop()
	}
}

// fill sweeps when spareCheckEvery has passed since the last sweep (or a spare of its own is
// too old to use), then makes spares until there are target.
func (s *sparePool) fill(ctx context.Context) error {
	if _, err := s.p.ready(ctx); err != nil {
		return err
	}
	now := s.p.clock.Now()
	s.mu.Lock()
	due := s.lastSweep.IsZero() || now.Sub(s.lastSweep) >= spareCheckEvery ||
		len(s.ready) > 0 && now.Sub(s.ready[0].made) >= spareMaxUse
	s.mu.Unlock()
	var sweepErr error
	if due {
		// A spare this admin may not drop (on 16+, one another admin role made) must not
		// stop the making of new ones; the next sweep is spareCheckEvery later.
		sweepErr = s.sweep(ctx)
	}
	for s.count() < s.target && !s.stopped() {
		if err := s.make(ctx); err != nil {
			return errors.Join(sweepErr, err)
		}
	}
	return sweepErr
}

// make creates one spare role and adds it to the pool.
func (s *sparePool) make(ctx context.Context) error {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("random spare name: %w", err)
	}
	sp := spare{name: s.prefix + hex.EncodeToString(b), made: s.p.clock.Now()}
	var err error
	if sp.password, sp.verifier, err = newSecret(); err != nil {
		return err
	}
	role := quoteIdent(sp.name)
	until := sp.made.Add(spareMaxAge)
	script := "CREATE ROLE " + role + " NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT" +
		" VALID UNTIL '" + sqlTime(until) + "' PASSWORD '" + sp.verifier + "';\n" +
		"COMMENT ON ROLE " + role + " IS '" + spareComment + ", made " + grants.Timestamp(sp.made) +
		": no login, no membership, its password only in the memory of the broker that made it; it becomes a grant role at issue, or is dropped after " + grants.Timestamp(until) + "'"
	if err := s.p.execScript(ctx, script); err != nil {
		return s.p.scrub(fmt.Errorf("make spare role %s: %w", sp.name, classify(err)), sp.password, sp.verifier)
	}
	s.giveBack(sp)
	return nil
}

// sweep forgets and drops this replica's spares older than spareMaxUse, and drops every
// spare (whoever made it) whose VALID UNTIL has passed and that is not one of this replica's
// (a spare of a replica that died). It never drops a younger spare of another replica.
func (s *sparePool) sweep(ctx context.Context) error {
	now := s.p.clock.Now()
	s.mu.Lock()
	s.lastSweep = now
	var drop []string
	own := map[string]bool{}
	keep := s.ready[:0]
	for _, sp := range s.ready {
		if now.Sub(sp.made) >= spareMaxUse {
			drop = append(drop, sp.name)
			continue
		}
		keep = append(keep, sp)
		own[sp.name] = true
	}
	s.ready = keep
	s.mu.Unlock()

	// Only what make makes: the name, NOLOGIN, a VALID UNTIL, the comment. A role someone
	// else named alike is never touched.
	rows, err := s.p.pool.Query(ctx, `SELECT rolname FROM pg_roles
		WHERE starts_with(rolname, $1) AND NOT rolcanlogin AND rolvaliduntil <= $2
			AND starts_with(shobj_description(oid, 'pg_authid'), $3)
		ORDER BY rolname`, s.prefix, now, spareComment)
	if err != nil {
		return s.p.scrub(fmt.Errorf("find stale spare roles: %w", classify(err)))
	}
	stale, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return s.p.scrub(fmt.Errorf("find stale spare roles: %w", classify(err)))
	}
	for _, name := range stale {
		if !own[name] && s.spareName(name) {
			drop = append(drop, name)
		}
	}
	return s.drop(ctx, drop)
}

// spareComment starts the comment of every spare role.
const spareComment = "accessbroker spare role"

// spareName reports whether name is one make could have given: the prefix and 16 lowercase
// hex digits.
func (s *sparePool) spareName(name string) bool {
	rest, ok := strings.CutPrefix(name, s.prefix)
	if !ok || len(rest) != 16 {
		return false
	}
	_, err := hex.DecodeString(rest)
	return err == nil && strings.ToLower(rest) == rest
}

// drop drops the named spare roles, in one statement, else one by one.
func (s *sparePool) drop(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	if _, err := s.p.pool.Exec(ctx, "DROP ROLE IF EXISTS "+quoteIdents(names)); err == nil {
		s.p.log.InfoContext(ctx, "postgres spare roles dropped", "roles", names)
		return nil
	}
	var errs []error
	for _, n := range names {
		if _, err := s.p.pool.Exec(ctx, "DROP ROLE IF EXISTS "+quoteIdent(n)); err != nil {
			errs = append(errs, fmt.Errorf("drop spare role %s: %w", n, classify(err)))
		}
	}
	return s.p.scrub(errors.Join(errs...))
}

func (s *sparePool) stopped() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// close stops the goroutine, waits for it, and drops this replica's spares (best effort,
// at most a few seconds: nobody can use them after this). A spare being made is let finish
// for a few seconds, so that it is dropped too rather than left for the age sweep.
func (s *sparePool) close() {
	s.end.Do(func() {
		s.start.Do(func() { close(s.done) }) // never started
		close(s.stop)
		grace, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		select {
		case <-s.done:
		case <-grace.Done():
		}
		s.cancel()
		<-s.done
		s.mu.Lock()
		names := make([]string, len(s.ready))
		for i, sp := range s.ready {
			names[i] = sp.name
		}
		s.ready = nil
		s.mu.Unlock()
		if len(names) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.drop(ctx, names); err != nil {
			s.p.log.Warn("postgres spare roles: could not drop this broker's spares at close; another broker drops them after their VALID UNTIL", "error", err)
		}
	})
	<-s.done
}
