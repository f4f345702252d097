package sqlstore_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// wireCounter forwards PostgreSQL connections to the test server and counts the round trips
// clients make: every Sync (the end of an extended-protocol batch) and every simple Query
// waits for the server's ReadyForQuery. pgx's health checks ("-- ping") are not counted.
//
// It can also lose the answer to a COMMIT (see CutAtNextCommit).
type wireCounter struct {
	ln    net.Listener
	trips atomic.Int64
	wg    sync.WaitGroup

	// cutArmed makes the next COMMIT executed on any connection lose its answer; cutDone is
	// closed once that connection's server side has ended.
	cutArmed atomic.Bool
	cutDone  chan struct{}
	cutOnce  sync.Once
	cutSeen  atomic.Bool  // a COMMIT's answer was lost
	begins   atomic.Int64 // transactions begun after that
}

// wireConn is one forwarded connection.
type wireConn struct {
	client, server net.Conn

	mu  sync.Mutex
	cut bool // the server's bytes are no longer forwarded to the client

	stmts   map[string]string // prepared statement name → SQL
	portals map[string]string // portal name → SQL
}

// newWireCounter listens on a loopback port and forwards to target ("host:port") until the
// test ends.
func newWireCounter(t *testing.T, target string) *wireCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &wireCounter{ln: ln, cutDone: make(chan struct{})}
	var mu sync.Mutex
	var conns []net.Conn
	w.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			wc := &wireConn{client: c, server: s, stmts: map[string]string{}, portals: map[string]string{}}
			w.wg.Go(func() { w.backend(wc) })
			w.wg.Go(func() { w.frontend(wc) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		w.wg.Wait()
	})
	return w
}

// Addr is the counter's "127.0.0.1:port".
func (w *wireCounter) Addr() string { return w.ln.Addr().String() }

// Trips is the number of round trips counted so far.
func (w *wireCounter) Trips() int64 { return w.trips.Load() }

// CutAtNextCommit makes the next COMMIT that a client executes reach the server while its
// answer never reaches the client: the proxy stops forwarding the server's bytes to the
// client before it forwards the COMMIT (a simple Query, or the Execute of a statement
// parsed as COMMIT), forwards the client's messages up to the end of that batch (its
// Sync), then closes the client's connection and half-closes the server's, so that the
// server runs what it was sent (the COMMIT included) and ends the session. The channel it
// returns is closed once the server has ended it: the COMMIT's outcome is then settled.
func (w *wireCounter) CutAtNextCommit() <-chan struct{} {
	w.cutArmed.Store(true)
	return w.cutDone
}

// BeginsAfterCut is the number of transactions clients began after a COMMIT's answer was
// lost.
func (w *wireCounter) BeginsAfterCut() int64 { return w.begins.Load() }

// backend copies the server's bytes to the client until the connection is cut; after that
// it reads (and drops) them until the server ends the session.
func (w *wireCounter) backend(wc *wireConn) {
	defer wc.server.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := wc.server.Read(buf)
		if n > 0 {
			wc.mu.Lock()
			cut := wc.cut
			var werr error
			if !cut {
				_, werr = wc.client.Write(buf[:n])
			}
			wc.mu.Unlock()
			if werr != nil {
				wc.client.Close()
				return
			}
		}
		if err != nil {
			wc.mu.Lock()
			cut := wc.cut
			wc.mu.Unlock()
			if cut {
				w.cutOnce.Do(func() { close(w.cutDone) })
			} else {
				wc.client.Close()
			}
			return
		}
	}
}

// cstring splits a NUL-terminated string off b.
func cstring(b []byte) (string, []byte) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return string(b), nil
	}
	return string(b[:i]), b[i+1:]
}

// executes returns the SQL that message typ (with body) makes the server run now, if any,
// and records the statements and portals it names.
func (wc *wireConn) executes(typ byte, body []byte) (string, bool) {
	switch typ {
	case 'Q':
		q, _ := cstring(body)
		return q, true
	case 'P': // Parse: statement name, query
		name, rest := cstring(body)
		q, _ := cstring(rest)
		wc.stmts[name] = q
	case 'B': // Bind: portal name, statement name
		portal, rest := cstring(body)
		stmt, _ := cstring(rest)
		wc.portals[portal] = wc.stmts[stmt]
	case 'E': // Execute: portal name
		portal, _ := cstring(body)
		return wc.portals[portal], true
	}
	return "", false
}

// frontend copies the client's messages to the server, counting Sync and Query messages,
// and cuts the connection at a COMMIT if asked to (see CutAtNextCommit).
func (w *wireCounter) frontend(wc *wireConn) {
	client, server := wc.client, wc.server
	keep := false // the server's side stays open for backend to drain
	defer func() {
		if !keep {
			server.Close()
		}
	}()
	var hdr [5]byte
	// Startup: untyped messages (an SSL or GSS request, answered with one byte, then the
	// startup message itself).
	for {
		if _, err := io.ReadFull(client, hdr[:4]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[:4]))
		body := make([]byte, n-4)
		if _, err := io.ReadFull(client, body); err != nil {
			return
		}
		if _, err := server.Write(append(hdr[:4:4], body...)); err != nil {
			return
		}
		if len(body) >= 4 {
			if code := binary.BigEndian.Uint32(body[:4]); code == 80877103 || code == 80877104 {
				continue // SSLRequest, GSSENCRequest
			}
		}
		break
	}
	cutting := false // the COMMIT was forwarded; cut at the end of its batch
	for {
		if _, err := io.ReadFull(client, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[1:]))
		body := make([]byte, n-4)
		if _, err := io.ReadFull(client, body); err != nil {
			return
		}
		switch hdr[0] {
		case 'S':
			w.trips.Add(1)
		case 'Q':
			if string(body) != "-- ping\x00" {
				w.trips.Add(1)
			}
		}
		if q, ok := wc.executes(hdr[0], body); ok {
			verb := strings.ToUpper(strings.TrimSpace(q))
			if strings.HasPrefix(verb, "BEGIN") && w.cutSeen.Load() {
				w.begins.Add(1)
			}
			if verb == "COMMIT" && !cutting && w.cutArmed.CompareAndSwap(true, false) {
				// Nothing the server sends from now on (its answer to the COMMIT among it)
				// reaches the client.
				wc.mu.Lock()
				wc.cut = true
				wc.mu.Unlock()
				w.cutSeen.Store(true)
				cutting = true
			}
		}
		if _, err := server.Write(append(hdr[:5:5], body...)); err != nil {
			return
		}
		if cutting && (hdr[0] == 'S' || hdr[0] == 'Q') {
			// The server has the whole batch: the client loses its connection, and the
			// server, at the end of its input, runs what it read and ends the session.
			client.Close()
			if tc, ok := server.(*net.TCPConn); ok {
				keep = tc.CloseWrite() == nil
			}
			return
		}
	}
}
