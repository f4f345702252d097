package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// pgCounter is a TCP proxy in front of a PostgreSQL server that reads the PostgreSQL wire
// protocol (v3) the clients send and counts, per temporary role, what the postgres provider
// asked the server to do:
//
//   - lookups: Bind of the provider's "find the grant's roles" query (the first thing each
//     Revoke call does, also when the role is already gone), keyed by the grant-id suffix
//     parameter ("_<suffix>"), or by the suffix of the role name when it looks the handle's
//     role up by name: one per provider Revoke call; a RevokeBatch's lookup of many grants
//     counts one for each suffix in its array;
//   - nologins: "ALTER ROLE … NOLOGIN" in a simple Query, keyed by the same suffix (the role
//     name ends with it): one per call that found the role and started to remove it.
//
// It forwards every byte unchanged. Clients must not use TLS (sslmode=disable): an encrypted
// stream cannot be read.
type pgCounter struct {
	t        *testing.T
	ln       net.Listener
	upstream string

	mu       sync.Mutex
	lookups  map[string]int
	nologins map[string]int
	conns    int
	total    int
	errs     []error
	wg       sync.WaitGroup
	closed   bool
	active   map[net.Conn]struct{}
	delay    time.Duration // held before forwarding each role lookup (injected latency)
	reached  []watch       // notified when the lookups reach a total
}

type watch struct {
	total int
	ch    chan struct{}
}

// findRolesSQL is the start of the provider's role lookup (integrations/postgres findRoles).
const findRolesSQL = "SELECT oid, rolname FROM pg_roles WHERE starts_with(rolname,"

// findRoleByNameSQL is the provider's lookup of the role a grant's handle names
// (integrations/postgres findRoleByNameSQL); its one parameter is the role name.
const findRoleByNameSQL = "SELECT oid, rolname FROM pg_roles WHERE rolname = $1"

// findRolesBatchSQL is the start of the lookup of many grants' roles that begins each
// RevokeBatch (integrations/postgres findRolesBatchSQL); its third parameter is a text[] of
// suffixes, one provider call per grant.
const findRolesBatchSQL = "SELECT oid, rolname FROM pg_roles WHERE right(rolname,"

// textArray decodes a text[] parameter, binary (what pgx sends) or text ({a,b}).
func textArray(b []byte) ([]string, error) {
	if len(b) > 0 && b[0] == '{' {
		inner := strings.Trim(string(b), "{}")
		if inner == "" {
			return nil, nil
		}
		return strings.Split(inner, ","), nil
	}
	if len(b) < 12 {
		return nil, errors.New("short array")
	}
	ndim := int(binary.BigEndian.Uint32(b))
	b = b[12:] // ndim, has-null flag, element type
	if ndim == 0 {
		return nil, nil
	}
	if ndim != 1 || len(b) < 8 {
		return nil, fmt.Errorf("array of %d dimensions", ndim)
	}
	n := int(binary.BigEndian.Uint32(b))
	b = b[8:] // size, lower bound
	out := make([]string, 0, n)
	for range n {
		if len(b) < 4 {
			return nil, errors.New("short array element")
		}
		l := int(int32(binary.BigEndian.Uint32(b)))
		b = b[4:]
		if l < 0 || len(b) < l {
			return nil, errors.New("bad array element")
		}
		out = append(out, string(b[:l]))
		b = b[l:]
	}
	return out, nil
}

var nologinRE = regexp.MustCompile(`ALTER ROLE "?(ab_[A-Za-z0-9_.@+-]+?)"? NOLOGIN`)

// newPGCounter listens on a free loopback port and forwards to upstream (host:port).
func newPGCounter(t *testing.T, upstream string) *pgCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgCounter{t: t, ln: ln, upstream: upstream, lookups: map[string]int{}, nologins: map[string]int{},
		active: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// addr is the proxy's host:port.
func (p *pgCounter) addr() string { return p.ln.Addr().String() }

func (p *pgCounter) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.upstream)
		if err != nil {
			c.Close()
			p.fail(fmt.Errorf("dial upstream: %w", err))
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			up.Close()
			return
		}
		p.conns++
		p.active[c], p.active[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(c, up)
			c.Close()
		}()
		go func() {
			defer p.wg.Done()
			if err := p.relay(up, c); err != nil {
				p.fail(err)
			}
			up.Close()
			p.mu.Lock()
			delete(p.active, c)
			delete(p.active, up)
			p.mu.Unlock()
		}()
	}
}

func (p *pgCounter) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.errs = append(p.errs, err)
	}
}

// relay copies the client's messages to the server, message by message, reading each.
func (p *pgCounter) relay(up io.Writer, client io.Reader) error {
	r := bufio.NewReaderSize(client, 64<<10)
	stmts := map[string]string{} // prepared statement name → SQL, per connection
	// Startup: untyped messages (length, code). An SSLRequest or GSSENCRequest is answered by
	// the server with one byte and is followed by another untyped message.
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil // closed before starting
		}
		n := int(binary.BigEndian.Uint32(hdr[:4]))
		code := binary.BigEndian.Uint32(hdr[4:])
		if n < 8 || n > 1<<20 {
			return fmt.Errorf("startup message of %d bytes", n)
		}
		body := make([]byte, n-8)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil
		}
		if _, err := up.Write(append(hdr[:], body...)); err != nil {
			return nil
		}
		if code == 80877103 || code == 80877104 { // SSLRequest, GSSENCRequest
			continue
		}
		if code == 80877102 { // CancelRequest: nothing follows
			return nil
		}
		break
	}
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil
		}
		n := int(binary.BigEndian.Uint32(hdr[1:]))
		if n < 4 || n > 64<<20 {
			return fmt.Errorf("message %q of %d bytes", hdr[0], n)
		}
		body := make([]byte, n-4)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil
		}
		if err := p.look(hdr[0], body, stmts); err != nil {
			return err
		}
		if _, err := up.Write(append(hdr[:], body...)); err != nil {
			return nil
		}
	}
}

// look counts what one client message asks for.
func (p *pgCounter) look(typ byte, body []byte, stmts map[string]string) error {
	switch typ {
	case 'Q':
		q, _, _ := cstring(body)
		for _, m := range nologinRE.FindAllStringSubmatch(q, -1) {
			p.mu.Lock()
			p.nologins[roleSuffix(m[1])]++
			p.mu.Unlock()
		}
	case 'P':
		name, rest, ok := cstring(body)
		if !ok {
			return errors.New("malformed Parse")
		}
		q, _, ok := cstring(rest)
		if !ok {
			return errors.New("malformed Parse")
		}
		stmts[name] = q
	case 'B':
		_, rest, ok := cstring(body) // portal
		if !ok {
			return errors.New("malformed Bind")
		}
		name, rest, ok := cstring(rest)
		if !ok {
			return errors.New("malformed Bind")
		}
		q := strings.TrimSpace(stmts[name])
		batch := strings.HasPrefix(q, findRolesBatchSQL)
		byName := q == findRoleByNameSQL
		if !batch && !byName && !strings.HasPrefix(q, findRolesSQL) {
			return nil
		}
		params, err := bindParams(rest)
		if err != nil {
			return err
		}
		want := 3
		if byName {
			want = 1
		}
		if len(params) != want {
			return fmt.Errorf("role lookup with %d parameters, want %d", len(params), want)
		}
		var suffixes []string
		switch {
		case byName:
			suffixes = []string{roleSuffix(string(params[0]))}
		case batch:
			if suffixes, err = textArray(params[2]); err != nil {
				return fmt.Errorf("batch role lookup: %w", err)
			}
		default:
			suffixes = []string{string(params[2])}
		}
		p.mu.Lock()
		for _, s := range suffixes {
			p.lookups[s]++
		}
		p.total += len(suffixes)
		kept := p.reached[:0]
		for _, w := range p.reached {
			if p.total >= w.total {
				close(w.ch)
				continue
			}
			kept = append(kept, w)
		}
		p.reached = kept
		d := p.delay
		p.mu.Unlock()
		if d > 0 {
			time.Sleep(d) // latency injected on the wire; never a timing assertion
		}
	}
	return nil
}

// setLookupDelay makes every provider role lookup wait d before it reaches the server, as a
// slow or distant database would.
func (p *pgCounter) setLookupDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// whenLookups returns a channel closed once total role lookups have been seen.
func (p *pgCounter) whenLookups(total int) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := make(chan struct{})
	if p.total >= total {
		close(ch)
		return ch
	}
	p.reached = append(p.reached, watch{total: total, ch: ch})
	return ch
}

// bindParams reads a Bind message's parameter values after the statement name.
func bindParams(b []byte) ([][]byte, error) {
	short := errors.New("short Bind")
	if len(b) < 2 {
		return nil, short
	}
	nf := int(binary.BigEndian.Uint16(b))
	b = b[2+2*nf:]
	if len(b) < 2 {
		return nil, short
	}
	np := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	out := make([][]byte, 0, np)
	for range np {
		if len(b) < 4 {
			return nil, short
		}
		l := int(int32(binary.BigEndian.Uint32(b)))
		b = b[4:]
		if l < 0 {
			out = append(out, nil)
			continue
		}
		if len(b) < l {
			return nil, short
		}
		out = append(out, b[:l])
		b = b[l:]
	}
	return out, nil
}

func cstring(b []byte) (string, []byte, bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", nil, false
	}
	return string(b[:i]), b[i+1:], true
}

// roleSuffix is the "_<grant suffix>" a temporary role's name ends with.
func roleSuffix(role string) string {
	if i := strings.LastIndexByte(role, '_'); i >= 0 {
		return role[i:]
	}
	return role
}

// counts returns copies of the lookups and nologins per grant suffix.
func (p *pgCounter) counts() (lookups, nologins map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	lookups, nologins = make(map[string]int, len(p.lookups)), make(map[string]int, len(p.nologins))
	for k, v := range p.lookups {
		lookups[k] = v
	}
	for k, v := range p.nologins {
		nologins[k] = v
	}
	return lookups, nologins
}

// errors returns the protocol errors seen (none expected).
func (p *pgCounter) errors() []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]error(nil), p.errs...)
}

func (p *pgCounter) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.active {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}
