package presence

import (
	"context"
	"strings"
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
	sends int           // Send calls
}

func (c *recConn) User() string                         { return c.user }
func (c *recConn) Transport() string                    { return "test" }
func (c *recConn) Since() time.Time                     { return c.since }
func (c *recConn) Drain(context.Context, time.Duration) { c.mu.Lock(); c.lost = true; c.mu.Unlock() }
func (c *recConn) Room() (int, int)                     { return 1 << 30, 1 << 30 } // records everything at once
func (c *recConn) WhenRoom(fn func())                   { go fn() }
func (c *recConn) count() int                           { c.mu.Lock(); defer c.mu.Unlock(); return len(c.got) }

func (c *recConn) Send(ds []Delivery) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sends++
	for _, d := range ds {
		c.got, c.at = append(c.got, d.M), append(c.at, d.At)
	}
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

// TestDeliverAllGivesEachConnectionItsShareInOneSend: a batch of broadcasts and two
// users' messages reaches each connection as what it should get of the batch, in
// batch order, in one Send; a batch of targeted messages alone reaches only their
// users.
func TestDeliverAllGivesEachConnectionItsShareInOneSend(t *testing.T) {
	h, _, _ := newTestHub(t, 100)
	a, b, c := &recConn{user: "a"}, &recConn{user: "b"}, &recConn{user: "c"}
	for _, x := range []Conn{a, b, c} {
		if err := h.Attach(context.Background(), x, "", 0); err != nil {
			t.Fatal(err)
		}
	}
	m := func(user, body string) *Message { return &Message{UserID: user, Body: []byte(body)} }
	batch := []*Message{m("a", "a1"), m("", "B1"), m("b", "b1"), m("a", "a2"), m("", "B2"), m("nobody", "n1")}
	if n := h.DeliverAll(batch); n != 4+3+2 {
		t.Errorf("delivered %d, want 9", n)
	}
	if n := h.DeliverAll([]*Message{m("b", "b2"), m("c", "c1"), m("b", "b3")}); n != 3 {
		t.Errorf("targeted batch: delivered %d, want 3", n)
	}
	for _, x := range []struct {
		c     *recConn
		want  string
		sends int
	}{{a, "a1 B1 a2 B2", 1}, {b, "B1 b1 B2 b2 b3", 2}, {c, "B1 B2 c1", 2}} {
		x.c.mu.Lock()
		var got []string
		for _, m := range x.c.got {
			got = append(got, string(m.Body))
		}
		sends := x.c.sends
		x.c.mu.Unlock()
		if g := strings.Join(got, " "); g != x.want || sends != x.sends {
			t.Errorf("%s got %q in %d sends, want %q in %d", x.c.user, g, sends, x.want, x.sends)
		}
	}
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
