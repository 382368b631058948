package presence

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// historyImpls build each History implementation with the given bounds.
var historyImpls = map[string]func(t *testing.T, size int, ttl time.Duration) History{
	"memory": func(_ *testing.T, size int, ttl time.Duration) History { return NewMemoryHistory(size, ttl) },
	"redis": func(t *testing.T, size int, ttl time.Duration) History {
		rdb, opts := newTestRedis(t)
		opts.HistorySize, opts.HistoryTTL = size, ttl
		return NewRedisHistory(rdb, opts)
	},
}

func appendAll(t *testing.T, h History, ms ...*Message) {
	t.Helper()
	for _, m := range ms {
		if err := h.Append(context.Background(), m); err != nil {
			t.Fatalf("append: %v", err)
		}
	}
}

// wantAfter checks After's messages (by ID, user and content) and completeness.
func wantAfter(t *testing.T, h History, user, cursor string, limit int, complete bool, want ...*Message) {
	t.Helper()
	got, gotComplete, err := h.After(context.Background(), user, cursor, limit)
	if err != nil {
		t.Fatalf("after(%q, %s): %v", user, cursor, err)
	}
	if gotComplete != complete {
		t.Errorf("after(%q, %s): complete = %v, want %v", user, cursor, gotComplete, complete)
	}
	if len(got) != len(want) {
		t.Fatalf("after(%q, %s): got %d messages %v, want %d", user, cursor, len(got), ids(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.UserID != w.UserID || g.RoutingKey != w.RoutingKey || !bytes.Equal(g.Body, w.Body) {
			t.Errorf("after(%q, %s)[%d]: got {%s %q %q %q}, want {%s %q %q %q}", user, cursor, i,
				g.ID, g.UserID, g.RoutingKey, g.Body, w.ID, w.UserID, w.RoutingKey, w.Body)
		}
	}
}

func ids(ms []*Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func TestHistoryContract(t *testing.T) {
	for name, mk := range historyImpls {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			h := mk(t, 100, time.Hour)
			start, err := h.Head(ctx)
			if err != nil {
				t.Fatal(err)
			}
			m1 := &Message{UserID: "u", RoutingKey: "contract", Body: []byte(`{"receiveUserId":"u"}`)}
			b1 := &Message{RoutingKey: "news", Body: []byte("to everyone")}
			m2 := &Message{UserID: "u", RoutingKey: "bin", Body: []byte{0, 0xff, '\n', 0xc3}}
			v1 := &Message{UserID: "v", RoutingKey: "contract", Body: []byte("for v only")}
			b2 := &Message{RoutingKey: "news", Body: []byte{}}
			appendAll(t, h, m1, b1, m2, v1, b2)

			prev := start
			for _, m := range []*Message{m1, b1, m2, v1, b2} {
				if mustCursor(t, m.ID) <= mustCursor(t, prev) {
					t.Errorf("ids not increasing: %s after %s", m.ID, prev)
				}
				prev = m.ID
			}
			for _, c := range []struct{ m, prev *Message }{{m1, nil}, {b1, nil}, {m2, m1}, {v1, nil}, {b2, b1}} {
				want := ""
				if c.prev != nil {
					want = c.prev.ID
				}
				if c.m.Prev != want {
					t.Errorf("message %s: prev = %q, want %q", c.m.ID, c.m.Prev, want)
				}
			}
			if head, _ := h.Head(ctx); head != b2.ID {
				t.Errorf("head = %s, want %s", head, b2.ID)
			}

			wantAfter(t, h, "u", start, 100, true, m1, b1, m2, b2)
			wantAfter(t, h, "v", start, 100, true, b1, v1, b2)
			wantAfter(t, h, "", start, 100, true, b1, b2)
			wantAfter(t, h, "w", start, 100, true, b1, b2)
			wantAfter(t, h, "u", m1.ID, 100, true, b1, m2, b2)
			wantAfter(t, h, "u", start, 2, true, m1, b1)
			wantAfter(t, h, "u", b2.ID, 100, true)
			// A cursor names a position, not an owner: u's cursor read by v gives v's own.
			wantAfter(t, h, "v", m2.ID, 100, true, v1, b2)

			next := FormatCursor(mustCursor(t, b2.ID) + 1)
			for _, bad := range []string{"", "abc", "-1", "1.5", next, "99999999999999999999999"} {
				if _, _, err := h.After(ctx, "u", bad, 10); !errors.Is(err, ErrBadCursor) {
					t.Errorf("after(%q): err = %v, want ErrBadCursor", bad, err)
				}
			}
		})
	}
}

// TestHistoryTrim: a cursor older than what a stream still holds is reported as
// incomplete; a cursor inside the window is complete.
func TestHistoryTrim(t *testing.T) {
	for name, mk := range historyImpls {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			h := mk(t, 3, time.Hour)
			start, _ := h.Head(ctx)
			var ms []*Message
			for i := range 5 {
				ms = append(ms, &Message{UserID: "u", RoutingKey: "k", Body: []byte{byte('a' + i)}})
			}
			b := &Message{RoutingKey: "k", Body: []byte("b")}
			appendAll(t, h, ms[0], ms[1], b, ms[2], ms[3], ms[4])
			wantAfter(t, h, "u", start, 10, false, b, ms[2], ms[3], ms[4])
			wantAfter(t, h, "u", ms[0].ID, 10, false, b, ms[2], ms[3], ms[4])
			wantAfter(t, h, "u", ms[1].ID, 10, true, b, ms[2], ms[3], ms[4])
			wantAfter(t, h, "v", start, 10, true, b)

			for i := range 3 {
				appendAll(t, h, &Message{RoutingKey: "k", Body: []byte{byte('x' + i)}})
			}
			// b left the broadcast stream: even a user with no messages missed it.
			if _, complete, _ := h.After(ctx, "v", start, 10); complete {
				t.Error("after a broadcast was trimmed, an older cursor is still complete")
			}
			if _, complete, _ := h.After(ctx, "v", b.ID, 10); !complete {
				t.Error("a cursor at the trimmed broadcast itself is incomplete")
			}
		})
	}
}

// TestHistoryTTL: a stream that receives nothing for the TTL is dropped; a cursor from
// before it is then incomplete, one after it is still complete.
func TestHistoryTTL(t *testing.T) {
	const ttl = 500 * time.Millisecond
	for name, mk := range historyImpls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			h := mk(t, 100, ttl)
			start, _ := h.Head(ctx)
			m := &Message{UserID: "u", RoutingKey: "k", Body: []byte("old")}
			appendAll(t, h, m)
			wantAfter(t, h, "u", start, 10, true, m)
			eventually(t, ttl+2*time.Second, "the message to expire", func() bool {
				got, complete, err := h.After(ctx, "u", start, 10)
				if err != nil {
					t.Fatal(err)
				}
				return !complete && len(got) == 0
			})
			wantAfter(t, h, "u", m.ID, 10, true)

			// The user's stream comes back; it must still know it lost m.
			bb := &Message{RoutingKey: "k", Body: []byte("broadcast")}
			m2 := &Message{UserID: "u", RoutingKey: "k", Body: []byte("new")}
			appendAll(t, h, bb, m2)
			wantAfter(t, h, "u", start, 10, false, bb, m2)
			wantAfter(t, h, "u", m.ID, 10, true, bb, m2)
		})
	}
}

func mustCursor(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := ParseCursor(s)
	if err != nil {
		t.Fatalf("cursor %q: %v", s, err)
	}
	return n
}
