package transport

import (
	"testing"

	"github.com/pushbridge/pushbridge/presence"
)

// TestQueueRoom: the history may fill half a queue, a replay's messages count toward
// its bytes though they pass its limits, bytes being written count until written, and
// a catch-up waiting for room is called back once the queue is down to a quarter.
func TestQueueRoom(t *testing.T) {
	m := &presence.Message{Body: make([]byte, 1000)}
	size := m.Size()
	q := newSendQueue(8, 8*size)
	wantRoom := func(msgs, bytes int) {
		t.Helper()
		if gm, gb := q.room(); gm != msgs || gb != bytes {
			t.Errorf("room: got %d messages, %d bytes; want %d, %d", gm, gb, msgs, bytes)
		}
	}
	wantRoom(4, 4*size)
	q.pushExempt(item{m: m}, item{m: m}, item{frame: []byte("welcome")})
	wantRoom(4, 2*size) // a replay passes the length limit, not the bytes
	if !q.push(item{m: m}, size) {
		t.Fatal("a live message refused with room")
	}
	wantRoom(3, size)

	called := 0
	if now := q.whenRoom(func() { called++ }); now != nil {
		t.Fatal("whenRoom: called at once on a queue over its low mark")
	}
	b := q.take()
	wantRoom(4, size) // three messages being written
	if fn := q.written(); fn == nil {
		t.Fatal("written: no callback once the queue is empty")
	} else {
		fn()
	}
	b.release()
	wantRoom(4, 4*size)
	if called != 1 {
		t.Errorf("callback called %d times, want 1", called)
	}
	if q.written() != nil {
		t.Error("written: the callback given twice")
	}

	for range 3 {
		q.push(item{m: m}, size)
	}
	q.whenRoom(func() { called++ })
	q.drop()
	if q.written() != nil {
		t.Error("written: a callback kept past drop (the connection closes)")
	}
}
