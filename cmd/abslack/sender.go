package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// sender sends one signed command on the i-th of the round's concurrent connections and
// returns the answer's status and body once it has been read whole.
type sender interface {
	// prepare serialises r ahead of the round, so that the stopwatch covers only the send.
	prepare(r *http.Request) (prepared, error)
	send(i int, p prepared) (status int, body []byte, err error)
	close()
}

// prepared is a request ready to go: the request itself (net/http) or its bytes (raw).
type prepared struct {
	req *http.Request
	raw []byte
}

// Client kinds for -client.
const (
	clientRaw     = "raw"
	clientNetHTTP = "net/http"
)

func newSender(kind, base string, concurrent int) (sender, error) {
	switch kind {
	case clientNetHTTP:
		// Slack keeps connections to the app alive; so does this client.
		return &httpSender{c: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			MaxIdleConns: concurrent, MaxIdleConnsPerHost: concurrent, IdleConnTimeout: time.Minute}}}, nil
	case clientRaw:
		u, err := url.Parse(base)
		if err != nil {
			return nil, fmt.Errorf("server address %q: %w", base, err)
		}
		return &rawSender{addr: u.Host, conns: make([]*rawConn, concurrent)}, nil
	}
	return nil, fmt.Errorf("-client %q: must be %q or %q", kind, clientRaw, clientNetHTTP)
}

// httpSender is net/http's client: a pool of kept-alive connections, each with its read and
// write goroutines.
type httpSender struct{ c *http.Client }

func (s *httpSender) prepare(r *http.Request) (prepared, error) { return prepared{req: r}, nil }

func (s *httpSender) send(_ int, p prepared) (int, []byte, error) {
	resp, err := s.c.Do(p.req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

func (s *httpSender) close() { s.c.CloseIdleConnections() }

// rawSender keeps one HTTP/1.1 connection per concurrent command, kept alive across rounds as
// Slack keeps its connections to an app, writes each pre-serialised request on its own
// connection and reads the answer with net/http's response parser. As wrk does, it puts
// nothing between the stopwatch and the socket (no pool, no hand-off to transport
// goroutines), so that the load generator's own CPU, on the same two cores as serve, weighs
// as little as it can on what is measured.
type rawSender struct {
	addr  string
	conns []*rawConn // one per concurrent command; nil until dialled or after a failure
}

type rawConn struct {
	c net.Conn
	r *bufio.Reader
}

func (s *rawSender) prepare(r *http.Request) (prepared, error) {
	var b bytes.Buffer
	if err := r.Write(&b); err != nil {
		return prepared{}, fmt.Errorf("serialise the request: %w", err)
	}
	return prepared{raw: b.Bytes()}, nil
}

func (s *rawSender) send(i int, p prepared) (int, []byte, error) {
	c := s.conns[i]
	if c == nil {
		nc, err := net.DialTimeout("tcp", s.addr, 10*time.Second)
		if err != nil {
			return 0, nil, err
		}
		c = &rawConn{c: nc, r: bufio.NewReaderSize(nc, 8<<10)}
		s.conns[i] = c
	}
	status, body, keep, err := c.roundTrip(p.raw)
	if err != nil || !keep {
		c.c.Close()
		s.conns[i] = nil // dialled again by the next send on this slot
	}
	return status, body, err
}

// roundTrip writes one request and reads its answer whole; keep says the connection can
// carry the next one.
func (c *rawConn) roundTrip(raw []byte) (status int, body []byte, keep bool, err error) {
	if err := c.c.SetDeadline(wall().Add(30 * time.Second)); err != nil {
		return 0, nil, false, err
	}
	if _, err := c.c.Write(raw); err != nil {
		return 0, nil, false, err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return 0, nil, false, err
	}
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, body, !resp.Close, err
}

func (s *rawSender) close() {
	for i, c := range s.conns {
		if c != nil {
			c.c.Close()
			s.conns[i] = nil
		}
	}
}
