package app

import (
	"container/list"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Refusals of a connection over BRIDGE_MAX_CONNS.
const (
	// maxRefusing bounds the refusals being written at once: each holds a file
	// descriptor and a goroutine for up to refuseLinger, outside the count. Beyond it a
	// connection is closed with no answer.
	maxRefusing = 64
	// refuseLinger is how long a refusal waits for the client to take the answer and
	// close: a close with unread request bytes is a reset, which can destroy the answer
	// on its way.
	refuseLinger = time.Second
	// refuseReadBytes is as much of the client's request as a refusal reads away.
	refuseReadBytes = 64 << 10
	// connRetryAfter is the refusal's Retry-After, the one handlers gives for a full
	// instance: a reconnect loop does not hammer us, and is soon back.
	connRetryAfter = 5 * time.Second
)

// refusal is the whole answer to a connection over BRIDGE_MAX_CONNS that no waiting
// connection could make room for: written before its request is read, as the request
// does not matter.
var refusal = func() []byte {
	body := `{"error":"too many connections: this instance is at BRIDGE_MAX_CONNS"}` + "\n"
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"+
		"Retry-After: %d\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		int(connRetryAfter/time.Second), len(body), body)
}()

// connGate counts every TCP connection against BRIDGE_MAX_CONNS from accept until it
// closes: before its request, between requests, while a request runs, and as a stream
// (a long poll, and an SSE stream over HTTP/2, stays net/http's; a WebSocket or an
// HTTP/1.1 SSE stream is followed past the hijack until its handler ends it, see
// hijacking).
//
// At the limit, a new connection takes the place of the one that has waited longest
// for its client — no request yet, idle between requests, or a request whose body has
// not all arrived. Such a connection costs us a descriptor and a goroutine and gives
// nothing back; its deadline would close it anyway, and closing it now is what keeps a
// flood of silent connections from locking out clients that talk. Only when every
// connection is busy or a live stream is the new one refused, with 503.
//
// It never wraps a connection: net/http and gorilla get the bare *net.TCPConn, whose
// vectored writes presence.WS relies on.
type connGate struct {
	max int

	mu      sync.Mutex
	conns   map[net.Conn]*connRec
	waiting list.List // of *connRec waiting for their client, the longest-waiting first

	refusing chan struct{} // a slot per refusal being written
	evicted  atomic.Int64
	refused  atomic.Int64
}

// connRec is what the gate knows of one connection.
type connRec struct {
	c     net.Conn
	state http.ConnState
	body  bool          // the running request's body is still awaited
	owned bool          // a WebSocket or SSE handler is taking the connection over
	wait  *list.Element // in connGate.waiting, nil when not waiting
}

func newConnGate(max int) *connGate {
	return &connGate{max: max, conns: make(map[net.Conn]*connRec), refusing: make(chan struct{}, maxRefusing)}
}

// listener admits every accepted connection through the gate before net/http sees it.
func (g *connGate) listener(ln net.Listener) net.Listener { return gateListener{ln, g} }

type gateListener struct {
	net.Listener
	g *connGate
}

func (l gateListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.g.admit(c) {
			return c, nil
		}
	}
}

// admit counts c, making room at the limit by closing the longest-waiting connection;
// false when there was none, and c is being refused.
func (g *connGate) admit(c net.Conn) bool {
	g.mu.Lock()
	var victim *connRec
	if len(g.conns) >= g.max {
		if e := g.waiting.Front(); e != nil {
			victim = e.Value.(*connRec)
			g.dropLocked(victim)
		}
	}
	ok := len(g.conns) < g.max
	if ok {
		rec := &connRec{c: c, state: http.StateNew}
		g.conns[c] = rec
		g.settleLocked(rec)
	}
	g.mu.Unlock()
	if victim != nil {
		g.evicted.Add(1)
		victim.c.Close()
	}
	if !ok {
		g.refused.Add(1)
		g.refuse(c)
	}
	return ok
}

// refuse answers c with 503 and closes it, off the accept loop.
func (g *connGate) refuse(c net.Conn) {
	select {
	case g.refusing <- struct{}{}:
	default:
		c.Close()
		return
	}
	go func() {
		defer func() { <-g.refusing }()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(refuseLinger))
		if _, err := c.Write(refusal); err != nil {
			return
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(c, refuseReadBytes))
	}()
}

// track is the http.Server's ConnState hook.
func (g *connGate) track(c net.Conn, s http.ConnState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	rec := g.conns[c]
	if rec == nil {
		return // made room for another, or never admitted
	}
	rec.state, rec.body = s, false
	switch {
	case s == http.StateClosed, s == http.StateHijacked && !rec.owned:
		g.dropLocked(rec)
	default:
		g.settleLocked(rec)
	}
}

// settleLocked puts rec in the waiting list, or takes it out, as its state says.
func (g *connGate) settleLocked(rec *connRec) {
	waits := rec.state == http.StateNew || rec.state == http.StateIdle || rec.state == http.StateActive && rec.body
	switch {
	case waits && rec.wait == nil:
		rec.wait = g.waiting.PushBack(rec)
	case !waits && rec.wait != nil:
		g.waiting.Remove(rec.wait)
		rec.wait = nil
	}
}

func (g *connGate) dropLocked(rec *connRec) {
	if rec.wait != nil {
		g.waiting.Remove(rec.wait)
		rec.wait = nil
	}
	delete(g.conns, rec.c)
}

type connRecKey struct{}

// connContext is the http.Server's ConnContext hook: it lets a request find its
// connection's record.
func (g *connGate) connContext(ctx context.Context, c net.Conn) context.Context {
	g.mu.Lock()
	rec := g.conns[c]
	g.mu.Unlock()
	return context.WithValue(ctx, connRecKey{}, rec)
}

func recOf(ctx context.Context) *connRec {
	rec, _ := ctx.Value(connRecKey{}).(*connRec)
	return rec
}

// awaitBody marks the connection of a running request as waiting for (true) or done
// with (false) its request's body.
func (g *connGate) awaitBody(ctx context.Context, waiting bool) {
	rec := recOf(ctx)
	if rec == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conns[rec.c] == rec && rec.state == http.StateActive {
		rec.body = waiting
		g.settleLocked(rec)
	}
}

// hijacking is handlers.Deps.Hijacking: the request's connection is about to become a
// WebSocket or an SSE stream of our own, which net/http no longer reports on, so it
// stays counted until ended is called (the stream ended, or the take-over failed
// before or after the hijack).
func (g *connGate) hijacking(r *http.Request) (ended func()) {
	rec := recOf(r.Context())
	if rec == nil {
		return func() {}
	}
	g.mu.Lock()
	rec.owned = true
	g.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			rec.owned = false
			if rec.state == http.StateHijacked && g.conns[rec.c] == rec {
				g.dropLocked(rec)
			}
		})
	}
}

// count is the connections held now.
func (g *connGate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

// closeFresh closes every connection still waiting for its first request, so a drain
// does not wait for them. http.Server.Shutdown treats such a connection as busy for
// its first 5 seconds, and clients open them ahead of need (Go's transport when
// requests race for a connection, browsers speculatively). Run it once the listener is
// closed (http.Server.RegisterOnShutdown).
func (g *connGate) closeFresh() {
	g.mu.Lock()
	var fresh []*connRec
	for _, rec := range g.conns {
		if rec.state == http.StateNew {
			fresh = append(fresh, rec)
			g.dropLocked(rec)
		}
	}
	g.mu.Unlock()
	for _, rec := range fresh {
		rec.c.Close()
	}
}
