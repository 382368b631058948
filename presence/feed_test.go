package presence

import (
	"context"
	"testing"
	"time"
)

// TestHubRepairsGapsAndSkipsCopies: a message whose Prev is above what a connection
// was given reveals a drop; the connection gets the missing ones from the history, in
// order, then that message; a copy of something it has is not sent again; what
// arrived while it was held waits for its replay.
func TestHubRepairsGapsAndSkipsCopies(t *testing.T) {
	ctx := context.Background()
	h := NewMemoryHistory(100, time.Hour)
	hub := NewHub(HubConfig{Instance: "test", History: h, Directory: NewMemoryDirectory()})
	start, _ := h.Head(ctx)
	var ms []*Message
	add := func() {
		m := &Message{UserID: []string{"u", ""}[len(ms)%2], RoutingKey: "k", Body: []byte{byte('a' + len(ms))}}
		if err := h.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	for range 5 {
		add()
	}
	c := &recConn{user: "u"}
	hub.Hold(c)
	hub.Deliver(ms[0]) // waits: the connection is held
	if c.count() != 0 {
		t.Fatalf("a held connection was sent %d messages", c.count())
	}
	startN, _ := ParseCursor(start)
	if err := hub.Release(ctx, c, startN); err != nil {
		t.Fatal(err)
	}
	hub.Deliver(ms[3]) // ms[1] (Prev of ms[3]) and ms[2] were dropped: caught up to the newest
	hub.Deliver(ms[2]) // late copies
	hub.Deliver(ms[4])
	want := ids(ms[:5])
	if got := ids(c.got); len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] || got[4] != want[4] {
		t.Fatalf("got %v, want %v once each, in order", got, want)
	}
	if n := hub.Stats.CaughtUp.Load(); n != 4 {
		t.Errorf("CaughtUp = %d, want 4", n)
	}
	// A resubscribe catches up what the relay never brought.
	add()
	if err := hub.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ids(c.got); len(got) != 6 || got[5] != ms[5].ID {
		t.Fatalf("after Resync got %v, want the last message too", got)
	}
}
