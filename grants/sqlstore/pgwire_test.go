package sqlstore_test

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// wireCounter forwards PostgreSQL connections to the test server and counts the round trips
// clients make: every Sync (the end of an extended-protocol batch) and every simple Query
// waits for the server's ReadyForQuery. pgx's health checks ("-- ping") are not counted.
type wireCounter struct {
	ln    net.Listener
	trips atomic.Int64
	wg    sync.WaitGroup
}

// newWireCounter listens on a loopback port and forwards to target ("host:port") until the
// test ends.
func newWireCounter(t *testing.T, target string) *wireCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &wireCounter{ln: ln}
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
			w.wg.Go(func() { io.Copy(c, s); c.Close() })
			w.wg.Go(func() { w.frontend(c, s); s.Close() })
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

// frontend copies the client's messages to the server, counting Sync and Query messages.
func (w *wireCounter) frontend(client, server net.Conn) {
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
		if _, err := server.Write(append(hdr[:5:5], body...)); err != nil {
			return
		}
	}
}
