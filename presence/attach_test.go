package presence

import (
	"context"
	"strconv"
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
// cursor, in order, once each — across several history pages.
func TestAttachReplayAndLiveMeetExactly(t *testing.T) {
	hub, h, d := newTestHub(t, 100_000)
	cursor, _ := h.Head(context.Background())
	want := route(t, d, 3*replayPage+7) // more than one page before the attach

	done := make(chan []*Message)
	go func() { done <- route(t, d, 3000) }()
	c := newRecConn("u")
	if err := hub.Attach(context.Background(), c, cursor, 0); err != nil {
		t.Fatalf("attach: %v", err)
	}
	rp := c.rp
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
	hub, h, d := newTestHub(t, 5)
	start, _ := h.Head(context.Background())
	forU := route(t, d, 30) // 20 for u and broadcast, of which the window keeps 5 of each
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
		{"expired", start, 0, ResetExpired, 10, false},
		{"malformed", "x1", 0, ResetMalformed, 10, false},
		{"unknown", unknown, 0, ResetUnknown, 10, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &recConn{user: "u"}
			if err := hub.Attach(context.Background(), c, tc.cursor, tc.limit); err != nil {
				t.Fatalf("attach: %v", err)
			}
			rp := c.rp
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
