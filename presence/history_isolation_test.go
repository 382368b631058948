package presence

import (
	"context"
	"errors"
	"testing"
	"time"
)

// historyIsolation checks, on any History, that a cursor carries no right to read: a
// cursor taken from user A's stream and presented by user B yields B's messages and the
// broadcasts after it, and none of A's; a forged cursor past the head is refused.
func historyIsolation(t *testing.T, h History) {
	t.Helper()
	ctx := context.Background()
	appendMsg := func(user, body string) *Message {
		m := &Message{UserID: user, RoutingKey: "contract", Body: []byte(body)}
		if err := h.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	first := appendMsg("A", "a1")
	appendMsg("A", "a2")
	appendMsg("B", "b1")
	appendMsg("", "all")
	appendMsg("A", "a3")

	for _, cursor := range []string{first.ID, "0"} {
		msgs, _, err := h.After(ctx, "B", cursor, 100)
		if err != nil {
			t.Fatalf("B after %s: %v", cursor, err)
		}
		var got []string
		for _, m := range msgs {
			if m.UserID == "A" {
				t.Errorf("B, with cursor %s, read A's message %q", cursor, m.Body)
			}
			got = append(got, string(m.Body))
		}
		if len(got) != 2 || got[0] != "b1" || got[1] != "all" {
			t.Errorf("B after %s: got %q, want [b1 all]", cursor, got)
		}
	}
	head, err := h.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := ParseCursor(head)
	if _, _, err := h.After(ctx, "B", FormatCursor(n+1000), 100); !errors.Is(err, ErrBadCursor) {
		t.Errorf("a cursor past the head: got %v, want ErrBadCursor", err)
	}
}

// TestHistoryIsolation runs historyIsolation on every History, the Redis Streams one
// included.
func TestHistoryIsolation(t *testing.T) {
	for name, mk := range historyImpls {
		t.Run(name, func(t *testing.T) { historyIsolation(t, mk(t, 100, time.Hour)) })
	}
}
