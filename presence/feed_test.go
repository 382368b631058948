package presence

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestHubRepairsGapsPerStream: positions are kept per stream. A message past the next
// one of its stream reveals a drop: the connection gets the missing ones from the
// history, in order; a copy of something it has is not sent again; a broadcast never
// moves the connection past a targeted message it missed; what arrived while it was
// held waits for its replay. Each message's id is the connection's whole position.
func TestHubRepairsGapsPerStream(t *testing.T) {
	ctx := context.Background()
	h := NewMemoryHistory(100, time.Hour)
	hub := NewHub(HubConfig{History: h, Directory: NewMemoryDirectory()})
	var ms []*Message
	add := func(user string) *Message {
		m := &Message{UserID: user, RoutingKey: "k", Body: []byte{byte('a' + len(ms))}}
		if err := h.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
		return m
	}
	u1, b1, u2, b2, u3 := add("u"), add(""), add("u"), add(""), add("u")
	c := &recConn{user: "u"}
	hub.Hold(c)
	hub.Deliver(u1) // waits: the connection is held
	if c.count() != 0 {
		t.Fatalf("a held connection was sent %d messages", c.count())
	}
	if err := hub.Release(ctx, c, Cursor{}, false); err != nil {
		t.Fatal(err)
	}
	hub.Deliver(b2) // b1 dropped: caught up, broadcasts only
	hub.Deliver(u3) // u2 dropped: caught up from the user's stream, though broadcasts moved on
	hub.Deliver(u2) // a late copy
	hub.Deliver(b1) // a late copy
	want := []*Message{u1, b1, b2, u2, u3}
	if !slices.Equal(c.got, want) {
		t.Fatalf("got %v, want %v once each, each stream in order", bodies(c.got), bodies(want))
	}
	last := c.at[len(c.at)-1]
	if last != (Cursor{User: u3.Pos(), Bcast: b2.Pos()}) {
		t.Errorf("last id %v, want the position of both streams", last)
	}
	if n := hub.Stats.CaughtUp.Load(); n != 4 {
		t.Errorf("CaughtUp = %d, want 4 (b1, b2, u2 and u3)", n)
	}
	// A resubscribe catches up what the relay never brought.
	add("")
	if err := hub.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	if len(c.got) != 6 || c.got[5] != ms[5] {
		t.Fatalf("after Resync got %v, want the last message too", bodies(c.got))
	}
	// Another epoch: the stream was lost; the connection is sent away to get a reset.
	hub.Deliver(&Message{UserID: "u", Epoch: NewEpoch(), Seq: 1})
	eventually(t, 5*time.Second, "the connection is told to reconnect", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.lost
	})
	if len(c.got) != 6 {
		t.Errorf("a message of another epoch was sent")
	}
}

func bodies(ms []*Message) string {
	var b []byte
	for _, m := range ms {
		b = append(b, m.Body...)
	}
	return string(b)
}

// TestHubHeal: a beat's tops show which connections missed something the relay never
// brought (anti-entropy): those are caught up from the history, exactly the window
// they missed; one whose stream began a new epoch is sent away to get a reset; those
// at the tops, held, or newer than the tops are left alone.
func TestHubHeal(t *testing.T) {
	ctx := context.Background()
	h := NewMemoryHistory(100, time.Hour)
	hub := NewHub(HubConfig{History: h, Directory: NewMemoryDirectory()})
	appendTo := func(user string) *Message {
		m := &Message{UserID: user, Body: []byte(user + "!")}
		if err := h.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	u1, b1 := appendTo("u"), appendTo("")
	behind, atTop, lost := &recConn{user: "u"}, &recConn{user: "w"}, &recConn{user: "x"}
	for _, c := range []*recConn{behind, atTop, lost} {
		hub.Hold(c)
		at := Cursor{Bcast: b1.Pos()}
		if c == lost {
			at.User = Pos{Epoch: NewEpoch(), Seq: 1}
		}
		if err := hub.Release(ctx, c, at, false); err != nil {
			t.Fatal(err)
		}
	}
	w1 := appendTo("w")
	hub.Deliver(w1) // atTop got its own; the two below were never published
	u2, b2 := appendTo("u"), appendTo("")
	tops := Tops{At: time.Now(), Bcast: b2.Pos(), Users: map[string]Pos{
		"u": u2.Pos(), "w": w1.Pos(), "x": {Epoch: NewEpoch(), Seq: 3},
	}}
	n, err := hub.Heal(ctx, tops)
	if n != 3 || err == nil {
		t.Fatalf("Heal: %d connections, %v; want 3 and the lost stream's error", n, err)
	}
	if want := []*Message{u1, u2, b2}; !sameSet(behind.got, want) {
		t.Errorf("behind got %v, want %v", bodies(behind.got), bodies(want))
	}
	if want := []*Message{w1, b2}; !sameSet(atTop.got, want) {
		t.Errorf("at its top got %v, want %v (only the broadcast it missed)", bodies(atTop.got), bodies(want))
	}
	eventually(t, 5*time.Second, "the connection of a lost stream is told to reconnect", func() bool {
		lost.mu.Lock()
		defer lost.mu.Unlock()
		return lost.lost
	})
	// Healed: nothing more to do. A stream that did not exist when the tops were read
	// says nothing about a connection that has one now.
	tops.Users["x"] = Pos{}
	tops.Users["u"] = Pos{}
	if n, err := hub.Heal(ctx, tops); n != 0 || err != nil {
		t.Errorf("second Heal: %d connections, %v; want none", n, err)
	}
	late := &recConn{user: "u", since: time.Now().Add(time.Hour)}
	hub.Hold(late)
	if err := hub.Release(ctx, late, Cursor{}, false); err != nil {
		t.Fatal(err)
	}
	if n, _ := hub.Heal(ctx, tops); n != 0 || len(late.got) != 0 {
		t.Errorf("a connection newer than the tops was healed (%d, got %d messages)", n, len(late.got))
	}
}

// sameSet: got and want hold the same messages, each once.
func sameSet(got, want []*Message) bool {
	if len(got) != len(want) {
		return false
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}
