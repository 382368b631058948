package presence

import (
	"context"
	"sync"
	"testing"
	"time"
)

// recConn records what it is sent.
type recConn struct {
	user  string
	since time.Time
	mu    sync.Mutex
	got   []*Message
	at    []Cursor // the id each message was sent with
	lost  bool     // told to reconnect
}

func (c *recConn) User() string                         { return c.user }
func (c *recConn) Transport() string                    { return "test" }
func (c *recConn) Since() time.Time                     { return c.since }
func (c *recConn) Drain(context.Context, time.Duration) { c.mu.Lock(); c.lost = true; c.mu.Unlock() }
func (c *recConn) Send(m *Message, at Cursor) {
	c.mu.Lock()
	c.got, c.at = append(c.got, m), append(c.at, at)
	c.mu.Unlock()
}
func (c *recConn) count() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.got) }

func TestHubDeliversToTheUsersConnectionsOrToAll(t *testing.T) {
	h := NewHub()
	a1, a2, b := &recConn{user: "a"}, &recConn{user: "a"}, &recConn{user: "b"}
	for _, c := range []Conn{a1, a2, b, a1} { // a1 twice: registered once
		h.Add(c)
	}
	if h.Count() != 3 || h.UserConns("a") != 2 {
		t.Fatalf("Count %d UserConns(a) %d, want 3 and 2", h.Count(), h.UserConns("a"))
	}
	if n := h.Deliver(&Message{UserID: "a"}); n != 2 || a1.count() != 1 || a2.count() != 1 || b.count() != 0 {
		t.Fatalf("targeted: delivered %d (a1 %d a2 %d b %d), want a's two connections only", n, a1.count(), a2.count(), b.count())
	}
	if n := h.Deliver(&Message{UserID: "nobody"}); n != 0 {
		t.Fatalf("to an absent user: delivered %d", n)
	}
	if n := h.Deliver(&Message{}); n != 3 || b.count() != 1 {
		t.Fatalf("broadcast: delivered %d, want 3", n)
	}
	if got := h.Stats.Delivered.Load(); got != 5 {
		t.Errorf("Stats.Delivered = %d, want 5", got)
	}
	if h.Remove(a1) || !h.Remove(a2) || h.Remove(a2) {
		t.Error("Remove must report true only for the user's last connection, and only once")
	}
	if h.Count() != 1 || h.UserConns("a") != 0 {
		t.Errorf("after removals: Count %d UserConns(a) %d, want 1 and 0", h.Count(), h.UserConns("a"))
	}
}
