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
	wake chan struct{} // signalled after each Send; made by waitFor's caller or lazily
}

func (c *recConn) User() string                         { return c.user }
func (c *recConn) Transport() string                    { return "test" }
func (c *recConn) Since() time.Time                     { return time.Time{} }
func (c *recConn) Drain(context.Context, time.Duration) {}
func (c *recConn) Send(m *presence.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, m)
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
// cursor, in order, once each — across several history pages.
func TestAttachReplayAndLiveMeetExactly(t *testing.T) {
	r, _, h := newTestRouter(t, 100_000)
	cursor, _ := h.Head(context.Background())
	want := route(t, r, 3*replayPage+7) // more than one page before the attach

	done := make(chan []*presence.Message)
	go func() { done <- route(t, r, 3000) }()
	c := newRecConn("u")
	var rp *presence.Replay
	err := r.Attach(context.Background(), c, cursor, 0, func(x *presence.Replay) {
		rp = x
		c.got = append(c.got, x.Messages...)
	})
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	want = append(want, <-done...)
	if rp.Reset != "" || rp.More {
		t.Fatalf("replay reset %q more %v, want a whole replay", rp.Reset, rp.More)
	}
	c.waitFor(t, len(want))
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(c.got), len(want))
	}
	for i := range want {
		if c.got[i] != want[i] {
			t.Fatalf("message %d: got id %s, want %s", i, c.got[i].ID, want[i].ID)
		}
	}
}

func TestAttachCursors(t *testing.T) {
	r, _, h := newTestRouter(t, 5)
	start, _ := h.Head(context.Background())
	forU := route(t, r, 30) // 20 for u and broadcast, of which the window keeps 5 of each
	head, _ := h.Head(context.Background())
	last := forU[len(forU)-1]
	unknown := strconv.FormatUint(mustCursor(t, head)+1000, 10)

	tests := []struct {
		name, cursor string
		limit        int
		reset        string
		n            int
		more         bool
	}{
		{"none: from now", "", 0, "", 0, false},
		{"newest", last.ID, 0, "", 0, false},
		{"inside the window", forU[len(forU)-3].ID, 0, "", 2, false},
		{"limit", forU[len(forU)-9].ID, 3, "", 3, true},
		{"expired", start, 0, presence.ResetExpired, 10, false},
		{"malformed", "x1", 0, presence.ResetMalformed, 10, false},
		{"unknown", unknown, 0, presence.ResetUnknown, 10, false},
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
			if rp.Head != head {
				t.Fatalf("head %s, want %s", rp.Head, head)
			}
			if tc.n > 0 && tc.limit == 0 && rp.Messages[tc.n-1] != last {
				t.Fatalf("replay ends with %s, want the newest, %s", rp.Messages[tc.n-1].ID, last.ID)
			}
		})
	}
}

func mustCursor(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := presence.ParseCursor(s)
	if err != nil {
		t.Fatalf("cursor %q: %v", s, err)
	}
	return n
}
