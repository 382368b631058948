package presence

import (
	"context"
	"sync"
	"testing"
	"time"
)

// recConn is a Conn that records what it is sent: its replay's messages, then live.
type recConn struct {
	user  string
	since time.Time
	mu    sync.Mutex
	got   []*Message
	at    []Cursor      // the id each message was sent with
	rp    *Replay       // what Replay was given
	lost  bool          // told to reconnect
	wake  chan struct{} // signalled after each Send when not nil (see newRecConn)
}

func (c *recConn) User() string                         { return c.user }
func (c *recConn) Transport() string                    { return "test" }
func (c *recConn) Since() time.Time                     { return c.since }
func (c *recConn) Drain(context.Context, time.Duration) { c.mu.Lock(); c.lost = true; c.mu.Unlock() }
func (c *recConn) Room() (int, int)                     { return 1 << 30, 1 << 30 } // records everything at once
func (c *recConn) WhenRoom(fn func())                   { go fn() }
func (c *recConn) count() int                           { c.mu.Lock(); defer c.mu.Unlock(); return len(c.got) }

func (c *recConn) Send(m *Message, at Cursor) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got, c.at = append(c.got, m), append(c.at, at)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *recConn) Replay(rp *Replay) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rp = rp
	for _, d := range rp.Messages {
		c.got, c.at = append(c.got, d.M), append(c.at, d.At)
	}
}

func newRecConn(user string) *recConn { return &recConn{user: user, wake: make(chan struct{}, 1)} }

// newTestHub is one instance with every part in memory, listening on its relay until
// the test ends.
func newTestHub(t *testing.T, historySize int) (*Hub, *MemoryHistory, *MemoryDispatcher) {
	t.Helper()
	h, dir, bus := NewMemoryHistory(historySize, time.Hour), NewMemoryDirectory(), NewMemoryBus()
	hub := NewHub(HubConfig{Instance: "test", History: h, Directory: dir})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = hub.Listen(ctx, bus.Relay("test")) }()
	<-hub.Listening()
	return hub, h, NewMemoryDispatcher(h, dir, bus)
}

// userConns counts the connections of user that h holds.
func userConns(h *Hub, user string) int {
	n := 0
	for _, c := range h.Conns() {
		if c.User() == user {
			n++
		}
	}
	return n
}

func TestHubDeliversToTheUsersConnectionsOrToAll(t *testing.T) {
	h, _, _ := newTestHub(t, 100)
	a1, a2, b := &recConn{user: "a"}, &recConn{user: "a"}, &recConn{user: "b"}
	for _, c := range []Conn{a1, a2, b, a1} { // a1 twice: registered once
		if err := h.Attach(context.Background(), c, "", 0); err != nil {
			t.Fatal(err)
		}
	}
	if h.Count() != 3 || userConns(h, "a") != 2 {
		t.Fatalf("Count %d connections of a %d, want 3 and 2", h.Count(), userConns(h, "a"))
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
	if h.Count() != 1 || userConns(h, "a") != 0 {
		t.Errorf("after removals: Count %d connections of a %d, want 1 and 0", h.Count(), userConns(h, "a"))
	}
}
