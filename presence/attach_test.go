package presence

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

// waitFor waits until c holds n messages: live ones arrive through the relay's
// goroutine, after Dispatch has returned.
func (c *recConn) waitFor(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		got := len(c.got)
		c.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-c.wake:
		case <-deadline:
			t.Fatalf("connection holds %d messages after 10s, want %d", got, n)
		}
	}
}

// route sends n messages, cycling through user "u", another user and broadcast, and
// returns those that "u" should read.
func route(t *testing.T, d Dispatcher, n int) []*Message {
	t.Helper()
	var forU []*Message
	for i := range n {
		m := &Message{UserID: []string{"u", "other", ""}[i%3], RoutingKey: "k", Body: []byte(strconv.Itoa(i))}
		if _, err := d.Dispatch(context.Background(), m, ""); err != nil {
			t.Errorf("dispatch: %v", err) // not Fatal: this may run on another goroutine
			return forU
		}
		if m.UserID != "other" {
			forU = append(forU, m)
		}
	}
	return forU
}

// TestAttachReplayAndLiveMeetExactly attaches while messages are being routed: what
// the replay holds and what arrives live must together be every message after the
// cursor, each stream in its order, once each — across several history pages.
func TestAttachReplayAndLiveMeetExactly(t *testing.T) {
	r, _, d := newTestHub(t, 100_000)
	cursor := attachHead(t, r)
	want := route(t, d, 3*replayPage+7) // more than one page before the attach

	done := make(chan []*Message)
	go func() { done <- route(t, d, 3000) }()
	c := newRecConn("u")
	if err := r.Attach(context.Background(), c, cursor, 0); err != nil {
		t.Fatalf("attach: %v", err)
	}
	rp := c.rp
	want = append(want, <-done...)
	if rp.Reset != "" {
		t.Fatalf("replay reset %q, want a whole replay", rp.Reset)
	}
	c.waitFor(t, len(want))
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(c.got), len(want))
	}
	for _, user := range []string{"u", ""} {
		var g, w []*Message
		for _, m := range c.got {
			if m.UserID == user {
				g = append(g, m)
			}
		}
		for _, m := range want {
			if m.UserID == user {
				w = append(w, m)
			}
		}
		for i := range w {
			if i >= len(g) || g[i] != w[i] {
				t.Fatalf("stream %q, message %d: not the one routed (got %d of %d)", user, i, len(g), len(w))
			}
		}
	}
	// Each id is the connection's whole position: resuming from it gives the rest.
	mid := c.at[len(c.at)/2]
	if mid.User.Seq == 0 || mid.Bcast.Seq == 0 {
		t.Errorf("id %v: not a position in both streams", mid)
	}
}

// attachHead is the cursor a fresh client starts from.
func attachHead(t *testing.T, r *Hub) string {
	t.Helper()
	rp, err := r.Replay(context.Background(), "u", "", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return rp.Head.String()
}

func TestAttachCursors(t *testing.T) {
	r, _, d := newTestHub(t, 5)
	start := attachHead(t, r)
	forU := route(t, d, 30) // 10 for u and 10 broadcasts, of which the window keeps 5 of each
	head := attachHead(t, r)
	hc, _ := ParseCursor(head)
	unknown := hc
	unknown.User.Seq += 1000
	lost := hc
	lost.Bcast.Epoch = NewEpoch()
	// After the 8th of u's messages and the 8th broadcast: two of each to come.
	var inside Cursor
	for _, m := range forU {
		if m.Broadcast() {
			inside.Bcast = m.Pos()
		} else {
			inside.User = m.Pos()
		}
		if inside.User.Seq == 8 && inside.Bcast.Seq == 8 {
			break
		}
	}
	tests := []struct {
		name, cursor string
		limit        int
		reset        string
		n            int
		more         bool
	}{
		{"none: from now", "", 0, "", 0, false},
		{"newest", head, 0, "", 0, false},
		{"inside the window", inside.String(), 0, "", 4, false},
		{"limit", inside.String(), 3, "", 3, true},
		{"expired", start, 0, ResetExpired, 10, false},
		{"malformed", "x1", 0, ResetMalformed, 10, false},
		{"first design's cursor", "1041", 0, ResetMalformed, 10, false},
		{"unknown", unknown.String(), 0, ResetUnknown, 5, false}, // the user's window; broadcasts resume
		{"lost", lost.String(), 0, ResetLost, 5, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &recConn{user: "u"}
			if err := r.Attach(context.Background(), c, tc.cursor, tc.limit); err != nil {
				t.Fatalf("attach: %v", err)
			}
			rp := c.rp
			if rp.Reset != tc.reset || len(rp.Messages) != tc.n || rp.More != tc.more {
				t.Fatalf("got reset %q, %d messages, more %v; want %q, %d, %v", rp.Reset, len(rp.Messages), rp.More, tc.reset, tc.n, tc.more)
			}
			if tc.more {
				return
			}
			if rp.Head.String() != head {
				t.Fatalf("head %s, want %s", rp.Head, head)
			}
			if tc.n > 0 && rp.Messages[tc.n-1].At.String() != head {
				t.Fatalf("replay ends at %v, want the newest, %s", rp.Messages[tc.n-1].At, head)
			}
		})
	}
}

// pacedConn is a connection with a queue of budget bytes that empties only when the
// test drains it, as a client reads.
type pacedConn struct {
	recConn
	budget int
	queued int      // bytes queued, the replay's too
	peak   int      // the most queued at once
	onRoom func()   // WhenRoom's callback, due at the next drain
	all    []string // every message given, in order, as stream/seq
}

func (c *pacedConn) Room() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return 1 << 30, max(0, c.budget-c.queued)
}

func (c *pacedConn) WhenRoom(fn func()) { c.mu.Lock(); c.onRoom = fn; c.mu.Unlock() }

func (c *pacedConn) take(m *Message) {
	c.queued += m.Size()
	c.peak = max(c.peak, c.queued)
	c.all = append(c.all, strconv.Itoa(streamOf(m))+"/"+strconv.FormatUint(m.Seq, 10))
}

func (c *pacedConn) Send(ds []Delivery) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range ds {
		c.take(d.M)
	}
}

func (c *pacedConn) Replay(rp *Replay) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rp = rp
	for _, d := range rp.Messages {
		c.take(d.M)
	}
}

// drain empties the queue and calls back a catch-up waiting for room; it reports
// whether one was waiting.
func (c *pacedConn) drain() bool {
	c.mu.Lock()
	c.queued = 0
	fn := c.onRoom
	c.onRoom = nil
	c.mu.Unlock()
	if fn != nil {
		fn()
	}
	return fn != nil
}

// TestReplayIsPacedByTheQueue: a connection far behind gets a replay no larger than
// its queue's room, then the rest chunk by chunk, each only once it drained what it
// had — every message of its streams once, in order, and never more queued at once
// than its budget and one message (the first of a read is given however large).
func TestReplayIsPacedByTheQueue(t *testing.T) {
	r, h, _ := newTestHub(t, 100_000)
	cursor := attachHead(t, r)
	// Straight into the history, so nothing arrives live through the relay: what
	// reaches the connection is its replay and catch-ups alone.
	var forU []*Message
	for i := range 2 * replayPage {
		m := &Message{UserID: []string{"u", ""}[i%2], RoutingKey: "k", Body: []byte(strconv.Itoa(i))}
		appendAll(t, h, m)
		forU = append(forU, m)
	}
	var want []string
	largest := 0
	for _, m := range forU {
		want = append(want, strconv.Itoa(streamOf(m))+"/"+strconv.FormatUint(m.Seq, 10))
		largest = max(largest, m.Size())
	}
	c := &pacedConn{recConn: recConn{user: "u"}, budget: 20 * forU[0].Size()}
	if err := r.Attach(context.Background(), c, cursor, 0); err != nil {
		t.Fatalf("attach: %v", err)
	}
	if !c.rp.More || len(c.rp.Messages) == 0 {
		t.Fatalf("replay of %d messages, more %v; want some, and more", len(c.rp.Messages), c.rp.More)
	}
	drains := 0
	for c.drain() {
		drains++
		if drains > len(want) {
			t.Fatalf("still catching up after %d drains", drains)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.all) != len(want) {
		t.Fatalf("got %d messages, want %d", len(c.all), len(want))
	}
	if !sameStreamsOrder(c.all, want) {
		t.Fatalf("got %v, want %v (each stream in order, once)", c.all, want)
	}
	if c.peak > c.budget+largest {
		t.Errorf("%d bytes queued at once, want at most %d (the budget and one message)", c.peak, c.budget+largest)
	}
	if drains < len(want)*forU[0].Size()/c.budget/2 {
		t.Errorf("caught up in %d drains: not paced by the queue", drains)
	}
}

// sameStreamsOrder reports whether got and want hold the same messages with each
// stream in the same order (streams may interleave differently).
func sameStreamsOrder(got, want []string) bool {
	split := func(all []string) map[byte][]string {
		m := map[byte][]string{}
		for _, s := range all {
			m[s[0]] = append(m[s[0]], s)
		}
		return m
	}
	g, w := split(got), split(want)
	if len(g) != len(w) {
		return false
	}
	for k, ws := range w {
		if strings.Join(g[k], ",") != strings.Join(ws, ",") {
			return false
		}
	}
	return true
}
