package app

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/presence"
)

// recConn is a Conn that records what it is sent.
type recConn struct {
	user string
	mu   sync.Mutex
	got  []*presence.Message
	at   []presence.Cursor
	wake chan struct{} // signalled after each Send; made by waitFor's caller or lazily
}

func (c *recConn) User() string                         { return c.user }
func (c *recConn) Transport() string                    { return "test" }
func (c *recConn) Since() time.Time                     { return time.Time{} }
func (c *recConn) Drain(context.Context, time.Duration) {}
func (c *recConn) Send(m *presence.Message, at presence.Cursor) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got, c.at = append(c.got, m), append(c.at, at)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func newRecConn(user string) *recConn { return &recConn{user: user, wake: make(chan struct{}, 1)} }

// waitFor waits until c holds n messages: live ones arrive through the relay's
// goroutine, after Route has returned.
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

func newTestRouter(t *testing.T, size int) (*Router, *presence.Hub, *presence.MemoryHistory) {
	hub := presence.NewHub()
	h := presence.NewMemoryHistory(size, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r, _ := StartLocal(ctx, "test", hub, h, 1<<20, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return r, hub, h
}

// route sends n messages, cycling through user "u", another user and broadcast, and
// returns those that "u" should read.
func route(t *testing.T, r *Router, n int) []*presence.Message {
	t.Helper()
	var forU []*presence.Message
	for i := range n {
		m := &presence.Message{UserID: []string{"u", "other", ""}[i%3], RoutingKey: "k", Body: []byte(strconv.Itoa(i))}
		if err := r.Route(context.Background(), m); err != nil {
			t.Errorf("route: %v", err) // not Fatal: this may run on another goroutine
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
	r, _, _ := newTestRouter(t, 100_000)
	cursor := attachHead(t, r)
	want := route(t, r, 3*replayPage+7) // more than one page before the attach

	done := make(chan []*presence.Message)
	go func() { done <- route(t, r, 3000) }()
	c := newRecConn("u")
	var rp *presence.Replay
	err := r.Attach(context.Background(), c, cursor, 0, func(x *presence.Replay) {
		rp = x
		for _, d := range x.Messages {
			c.got, c.at = append(c.got, d.M), append(c.at, d.At)
		}
	})
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
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
		var g, w []*presence.Message
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
func attachHead(t *testing.T, r *Router) string {
	t.Helper()
	rp, err := r.Replay(context.Background(), "u", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return rp.Head.String()
}

func TestAttachCursors(t *testing.T) {
	r, _, _ := newTestRouter(t, 5)
	start := attachHead(t, r)
	forU := route(t, r, 30) // 10 for u and 10 broadcasts, of which the window keeps 5 of each
	head := attachHead(t, r)
	hc, _ := presence.ParseCursor(head)
	unknown := hc
	unknown.User.Seq += 1000
	lost := hc
	lost.Bcast.Epoch = presence.NewEpoch()
	// After the 8th of u's messages and the 8th broadcast: two of each to come.
	var inside presence.Cursor
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
		{"expired", start, 0, presence.ResetExpired, 10, false},
		{"malformed", "x1", 0, presence.ResetMalformed, 10, false},
		{"first design's cursor", "1041", 0, presence.ResetMalformed, 10, false},
		{"unknown", unknown.String(), 0, presence.ResetUnknown, 5, false}, // the user's window; broadcasts resume
		{"lost", lost.String(), 0, presence.ResetLost, 5, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &recConn{user: "u"}
			var rp *presence.Replay
			if err := r.Attach(context.Background(), c, tc.cursor, tc.limit, func(x *presence.Replay) { rp = x }); err != nil {
				t.Fatalf("attach: %v", err)
			}
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
