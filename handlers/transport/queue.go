package transport

import (
	"sync"

	"github.com/pushbridge/pushbridge/presence"
)

// Limits of a connection's send queue, the same for WebSocket and SSE.
const (
	// defaultQueueLen is how many messages may wait for a client before it counts as
	// slow and is cut (BRIDGE_SEND_QUEUE): enough for a burst, few enough that a stalled
	// client is noticed while the history still holds what it missed.
	defaultQueueLen = 256
	// defaultQueueBytes bounds the bytes waiting for one client, so a few large
	// messages cannot pin much memory on a connection that does not read.
	defaultQueueBytes = 4 << 20
	// maxPooledBatch bounds the capacity of a queue slice given back to the pool: the
	// queue of a burst to a slow client must not stay that large for everyone.
	maxPooledBatch = 1024
)

// batches recycles the slices queues hold their items in, across every connection. A
// connection holds one only while something waits for it, so an idle connection
// holds none, and once the pool is warm a delivery to a connection allocates nothing.
var batches = sync.Pool{New: func() any { return new([]item) }}

// item is one thing waiting to be written to a connection.
type item struct {
	m         *presence.Message // a message, whose bytes are built once for every recipient, and
	at        presence.Cursor   // the connection's cursor after it: the message's id here, or:
	frame     []byte            // bytes of our own (WebSocket: a frame; SSE: an event), or:
	closeCode int               // a WebSocket close frame, after which the socket is shut
	reason    string            // the close frame's reason
}

// sendQueue is the bounded queue between the senders of a connection and its one
// writer. Live traffic is held to the limits; a replay is not (see WS.Replay), but it
// counts toward the bytes, and what is read from the history for the connection — the
// replay, a catch-up — fills at most half the byte budget (room), so live traffic
// keeps the other half. The connection's mutex guards it.
//
// What waits is held in segments of at most maxPooledBatch items, each a slice from
// batches, and the writer takes one segment at a time: a connection far behind (a
// queue limit above maxPooledBatch, a long replay) grows no slice past what the pools
// keep, so a delivery allocates nothing however deep its queue, and neither does the
// writer's scratch, which is sized by the batch.
type sendQueue struct {
	maxLen, maxBytes int

	head   batch   // the oldest segment (the one being filled while there is one)
	more   []batch // the segments after it, oldest first; nil until a queue first outgrows one
	n      int     // items held
	bytes  int     // bytes of the messages held, the replay's too
	exempt int     // items at the front not held to the limits (a replay, our greeting)
	flight int     // bytes of the messages the writer took and is still writing
	onRoom func()  // called once the writer has drained the queue to its low mark (see presence.Conn.WhenRoom)
}

// batch is a segment of a queue, and what a writer took from one; release gives its
// slice back once written.
type batch struct {
	items  []item
	pooled *[]item // where items came from (batches); nil while empty
	bytes  int     // bytes of its messages
}

func newSendQueue(maxLen, maxBytes int) sendQueue {
	if maxLen <= 0 {
		maxLen = defaultQueueLen
	}
	if maxBytes <= 0 {
		maxBytes = defaultQueueBytes
	}
	return sendQueue{maxLen: maxLen, maxBytes: maxBytes}
}

// push queues it, of size bytes, unless that passes a limit: then it reports false and
// the client is too slow to keep.
func (q *sendQueue) push(it item, size int) bool {
	if q.n-q.exempt >= q.maxLen || q.bytes+size > q.maxBytes {
		return false
	}
	q.add(it, size)
	return true
}

// pushAll queues the messages of ds, in order, within the limits, and reports false
// at the first that does not fit (those before it stay queued).
func (q *sendQueue) pushAll(ds []presence.Delivery) bool {
	for _, d := range ds {
		if !q.push(item{m: d.M, at: d.At}, d.M.Size()) {
			return false
		}
	}
	return true
}

// pushExempt queues its outside the limits; their messages count toward the bytes.
func (q *sendQueue) pushExempt(its ...item) {
	for _, it := range its {
		size := 0
		if it.m != nil {
			size = it.m.Size()
		}
		q.add(it, size)
	}
	q.exempt += len(its)
}

// add appends it, of size bytes, to the last segment, or to a new one when that is full.
func (q *sendQueue) add(it item, size int) {
	last := &q.head
	if len(q.more) > 0 {
		last = &q.more[len(q.more)-1]
	}
	if len(last.items) >= maxPooledBatch {
		q.more = append(q.more, batch{})
		last = &q.more[len(q.more)-1]
	}
	if last.pooled == nil {
		last.pooled = batches.Get().(*[]item)
		last.items = (*last.pooled)[:0]
	}
	last.items = append(last.items, it)
	last.bytes += size
	q.n++
	q.bytes += size
}

// room is how many messages and bytes of history the connection takes now: half
// the budget of each, less what is queued and (bytes) what is being written. The
// other half is for live traffic meanwhile.
func (q *sendQueue) room() (msgs, bytes int) {
	return max(0, max(q.maxLen/2, 1)-(q.n-q.exempt)), max(0, q.maxBytes/2-q.bytes-q.flight)
}

// take removes the oldest segment and returns it; its bytes are in flight until written
// (the one writer takes a batch once the last is written). What is left, if anything,
// is for the writer's next round.
func (q *sendQueue) take() batch {
	b := q.head
	q.head = batch{}
	if len(q.more) > 0 {
		q.head = q.more[0]
		copy(q.more, q.more[1:])
		q.more[len(q.more)-1] = batch{}
		q.more = q.more[:len(q.more)-1]
	}
	q.n -= len(b.items)
	q.bytes -= b.bytes
	q.exempt = max(0, q.exempt-len(b.items))
	q.flight = b.bytes
	return b
}

// written marks what the writer took written. When what waits is under the low
// mark, it returns the onRoom callback due, if any, for the caller to run without
// the connection's mutex.
func (q *sendQueue) written() (onRoom func()) {
	q.flight = 0
	if !q.low() {
		return nil
	}
	onRoom, q.onRoom = q.onRoom, nil
	return onRoom
}

// low reports whether the queue, what is being written included, holds under a
// quarter of each limit: room for a good part of the next read from the history, so
// a busy connection need not empty its queue for a catch-up to go on.
func (q *sendQueue) low() bool {
	return q.bytes+q.flight <= q.maxBytes/4 && q.n-q.exempt <= q.maxLen/4
}

// whenRoom keeps fn for written, or returns it to be run now when the queue is low.
func (q *sendQueue) whenRoom(fn func()) (now func()) {
	if q.low() {
		q.onRoom = nil
		return fn
	}
	q.onRoom = fn
	return nil
}

// queueRoom is a connection's Room: q.room, or nothing once closing; mu guards both.
func queueRoom(mu *sync.Mutex, closing *bool, q *sendQueue) (msgs, bytes int) {
	mu.Lock()
	defer mu.Unlock()
	if *closing {
		return 0, 0
	}
	return q.room()
}

// queueWhenRoom is a connection's WhenRoom: fn is kept for the writer (q.whenRoom),
// run on a goroutine of its own when the queue is low now, dropped once closing; mu
// guards both.
func queueWhenRoom(mu *sync.Mutex, closing *bool, q *sendQueue, fn func()) {
	mu.Lock()
	defer mu.Unlock()
	if *closing {
		return
	}
	if now := q.whenRoom(fn); now != nil {
		go now()
	}
}

// drop empties the queue, throwing away what it held; a callback waiting for room is
// forgotten (the connection is closing).
func (q *sendQueue) drop() {
	for q.n > 0 || q.head.pooled != nil {
		q.take().release()
	}
	q.flight, q.onRoom = 0, nil
}

// release gives b's slice back to the pool, emptied so that it holds on to no message.
func (b batch) release() {
	if b.pooled == nil {
		return
	}
	clear(b.items)
	if cap(b.items) <= maxPooledBatch {
		*b.pooled = b.items[:0]
		batches.Put(b.pooled)
	}
}

func (q *sendQueue) len() int { return q.n }
