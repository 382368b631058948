package app

import (
	"net"
	"net/http"
	"sync"
)

// freshConns tracks HTTP connections that have not yet sent a request, so a drain can
// close them. http.Server.Shutdown treats such a connection as busy for its first 5
// seconds, and clients open them ahead of need (Go's transport when requests race for
// a connection, browsers speculatively): without this, every drain would wait 5 s.
type freshConns struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newFreshConns() *freshConns { return &freshConns{conns: make(map[net.Conn]struct{})} }

// track is the http.Server's ConnState hook.
func (f *freshConns) track(c net.Conn, s http.ConnState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s == http.StateNew {
		f.conns[c] = struct{}{}
	} else {
		delete(f.conns, c)
	}
}

// closeAll closes every connection still waiting for its first request. Run it once the
// listener is closed (http.Server.RegisterOnShutdown).
func (f *freshConns) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		c.Close()
	}
	clear(f.conns)
}
