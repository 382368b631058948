package transport

import (
	"slices"
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

var welcome = []byte("welcome")

// TestQueueSegments: a queue holds what waits in segments of maxPooledBatch items, the
// writer takes them oldest first, the counts follow, and once the pools are warm a
// deep queue allocates nothing.
func TestQueueSegments(t *testing.T) {
	m := &presence.Message{Body: make([]byte, 10)}
	size := m.Size()
	const n = 2*maxPooledBatch + 100
	q := newSendQueue(n, n*size)
	fill := func() {
		q.pushExempt(item{frame: welcome})
		for range n - 1 {
			if !q.push(item{m: m}, size) {
				t.Fatal("a message refused within the limits")
			}
		}
	}
	fill()
	if q.len() != n || q.bytes != (n-1)*size {
		t.Fatalf("len %d, bytes %d; want %d, %d", q.len(), q.bytes, n, (n-1)*size)
	}
	var got []int
	for i := 0; q.len() > 0; i++ {
		b := q.take()
		if cap(b.items) > maxPooledBatch {
			t.Errorf("segment %d: capacity %d, over what the pool keeps (%d)", i, cap(b.items), maxPooledBatch)
		}
		if b.items[0].frame != nil != (i == 0) {
			t.Errorf("segment %d starts with %+v", i, b.items[0])
		}
		got = append(got, len(b.items))
		if q.flight != b.bytes {
			t.Errorf("segment %d: flight %d, want its bytes %d", i, q.flight, b.bytes)
		}
		q.written()
		b.release()
	}
	if want := []int{maxPooledBatch, maxPooledBatch, 100}; !slices.Equal(got, want) {
		t.Errorf("segments %v, want %v", got, want)
	}
	if q.bytes != 0 || q.exempt != 0 {
		t.Errorf("emptied: bytes %d, exempt %d; want 0, 0", q.bytes, q.exempt)
	}
	if raceOn {
		return // allocation counts of pooled paths mean nothing under -race (raceOn)
	}
	allocs := testing.AllocsPerRun(20, func() {
		fill()
		for q.len() > 0 {
			q.take().release()
		}
	})
	if allocs != 0 {
		t.Errorf("a queue %d deep allocates %.1f times, want 0", n, allocs)
	}
}
