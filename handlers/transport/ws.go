package transport

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/presence"
)

// Timeouts of a WebSocket connection.
const (
	// writeWait bounds one batch of writes: a client whose TCP window stays shut that
	// long is gone or hopelessly slow, and holding its writer open helps nobody.
	writeWait = 10 * time.Second
	// closeGrace is how long a drained client gets to answer our close frame before the
	// socket is cut anyway.
	closeGrace = 2 * time.Second
)

// readIdle is how long the reader waits for the client's next frame: one ping period,
// within which our next ping goes out, and pongWait more for its answer. A client
// that froze (SIGSTOP, a suspended laptop: its kernel still ACKs our bytes and answers
// TCP keepalives) is cut at most 1.5 periods after the last frame it sent, so it is
// gone from the hub and the presence map within two heartbeats, idle or under load.
func readIdle(pingPeriod time.Duration) time.Duration { return pingPeriod + pongWait(pingPeriod) }

// pongWait is the least time a client has to answer a ping: half a period, plenty for a
// browser (it answers within a round trip) while leaving half a period of the two for
// the close, the detach and the directory's delete.
func pongWait(pingPeriod time.Duration) time.Duration { return pingPeriod / 2 }

// CloseServiceRestart is the close code sent when the instance drains (RFC 6455 1012).
const CloseServiceRestart = 1012

// WSOptions are the limits of one WebSocket connection. Zero values mean the defaults
// named beside each field.
type WSOptions struct {
	V1             bool            // bridge.v1 JSON frames; false: raw mode (bodies verbatim)
	Instance       string          // this instance's id, for the welcome frame
	QueueLen       int             // queued messages before the client counts as slow (defaultQueueLen)
	QueueBytes     int             // queued bytes before the client counts as slow (defaultQueueBytes)
	PingPeriod     time.Duration   // how often we ping; the client must answer within half of one (25s, see readIdle)
	MaxFrameBytes  int64           // largest message the client may send; larger closes with 1009 (64 KiB)
	MessageTimeout time.Duration   // a message must be whole this long after its first frame, else close 1008 (PingPeriod)
	MaxAge         time.Duration   // the connection ends itself, with a reconnect hint and close 1001, before this age; 0: never
	Stats          *presence.Stats // where overflows are counted; may be nil
}

func (o *WSOptions) defaults() {
	if o.PingPeriod <= 0 {
		o.PingPeriod = 25 * time.Second
	}
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = 64 << 10
	}
	if o.MessageTimeout <= 0 {
		o.MessageTimeout = o.PingPeriod
	}
}

// WS is a WebSocket connection. It has one reader goroutine (Serve, run by the caller)
// and at most one writer, which runs only while the send queue is not empty, on a
// goroutine of the shared writers (writers.go): an idle connection costs one
// goroutine. gorilla/websocket allows one concurrent writer, and the writer is it:
// it sends each batch of queued
// frames in one vectored write straight to the net.Conn (see write), and only close
// frames through gorilla.
type WS struct {
	conn  *websocket.Conn
	user  string
	since time.Time
	opts  WSOptions
	ping  *time.Timer
	age   *time.Timer // ends the connection at its maximum age

	writer func()                 // c.writeLoop, made once: a method value made per wake-up would allocate each time
	guard  func(payload int) bool // see Guard; nil: every frame is taken
	done   chan struct{}          // closed when Serve returns

	refused atomic.Bool // CloseWith was called: what the client sends is discarded

	mu      sync.Mutex
	queue   sendQueue
	writing bool   // the writer runs (on one of writers)
	pingDue bool   // our ping is due
	pong    []byte // the frame answering the client's latest ping, nil when none is due
	closing bool   // no more frames are accepted
}

// NewWS wraps an upgraded connection of user. Call Serve to run it.
func NewWS(conn *websocket.Conn, user string, opts WSOptions) *WS {
	opts.defaults()
	c := &WS{conn: conn, user: user, since: time.Now(), opts: opts, done: make(chan struct{}), queue: newSendQueue(opts.QueueLen, opts.QueueBytes)}
	c.writer = c.writeLoop
	return c
}

func (c *WS) User() string      { return c.user }
func (c *WS) Transport() string { return "ws" }
func (c *WS) V1() bool          { return c.opts.V1 }
func (c *WS) Since() time.Time  { return c.since }

// Send queues ds for the writer, which writes them together; each one's At is its id
// on this connection.
func (c *WS) Send(ds []presence.Delivery) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.pushedLocked(c.queue.pushAll(ds))
}

// SendError queues an error frame saying what was wrong with what the client sent.
// In raw mode it is sent too: errors must be visible.
func (c *WS) SendError(msg string) { c.sendJSON(errorFrame{Type: "error", Error: msg}) }

// SendSubscribed queues the answer to a subscribe frame: the subscription now in force
// (empty: everything).
func (c *WS) SendSubscribed(t *presence.Topics) {
	c.sendJSON(subscribedFrame{Type: "subscribed", Topics: append([]string{}, t.Keys()...)})
}

// sendJSON queues one of our own bridge.v1 frames (error, subscribed, reconnect).
func (c *WS) sendJSON(v any) {
	b := mustJSON(v)
	c.push(item{frame: serverFrame(websocket.TextMessage, b)}, len(b))
}

// Refuse answers a client whose connection could not be attached (see
// presence.Hub.Attach) with an error frame and close 1011, and closes it. Nothing was
// queued, so no writer runs and the caller's goroutine may write.
func (c *WS) Refuse(msg string) {
	_ = c.conn.SetWriteDeadline(time.Now().Add(writeWait))
	_ = c.conn.WriteMessage(websocket.TextMessage, mustJSON(errorFrame{Type: "error", Error: msg}))
	_ = c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseInternalServerErr, "try again"))
	c.conn.Close()
}

func (c *WS) push(it item, size int) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.pushedLocked(c.queue.push(it, size))
}

// pushedLocked starts the writer after a push that fitted, or closes the connection
// after one that overflowed its queue. c.mu is held, and unlocked on return.
func (c *WS) pushedLocked(fitted bool) {
	if !fitted {
		c.closing = true
		c.queue.drop()
		c.mu.Unlock()
		if c.opts.Stats != nil {
			c.opts.Stats.SlowDisconnect.Add(1)
		}
		c.conn.Close() // the reader fails and unregisters; the client resumes from history
		return
	}
	c.kickLocked()
	c.mu.Unlock()
}

// Replay queues the greeting — the welcome (bridge.v1), and a reset when the replay
// is incomplete — then what the client missed, ahead of anything sent later. A raw
// socket that asked to resume gets the reset frame too, as it gets error frames: it
// must not miss messages silently. None of it is held to the queue limits, which are
// for live traffic — a client cut off during its replay would only come back for the
// same replay again — but it is bounded by them: the hub read only what Room gave, half
// the byte budget, and its messages count toward the bytes queued.
func (c *WS) Replay(rp *presence.Replay) {
	var control [][]byte
	if c.opts.V1 {
		control = append(control, mustJSON(newWelcome(c.user, c.opts.Instance, rp)))
	}
	if rp.Reset != "" {
		control = append(control, mustJSON(newReset(rp.Reset)))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	for _, b := range control {
		c.queue.pushExempt(item{frame: serverFrame(websocket.TextMessage, b)})
	}
	for _, d := range rp.Messages {
		c.queue.pushExempt(item{m: d.M, at: d.At})
	}
	if c.queue.len() > 0 {
		c.kickLocked()
	}
}

// kickLocked starts the writer unless it runs. c.mu must be held.
func (c *WS) kickLocked() {
	if !c.writing {
		c.writing = true
		writers.run(c.writer)
	}
}

// writeLoop writes everything queued, batch by batch, and exits when the queue is
// empty. Once a batch is written and the queue is low, a catch-up waiting for room
// (WhenRoom) is called back: on its own goroutine while the writer goes on, or on the
// writer's on its way out.
func (c *WS) writeLoop() {
	for {
		c.mu.Lock()
		onRoom := c.queue.written() // the batch before, if any, is written
		ping, pong := c.pingDue, c.pong
		if c.queue.len() == 0 && !ping && pong == nil {
			c.writing = false
			c.mu.Unlock()
			if onRoom != nil {
				onRoom()
			}
			return
		}
		b := c.queue.take()
		c.pingDue, c.pong = false, nil
		c.mu.Unlock()
		if onRoom != nil {
			go onRoom()
		}

		err := c.write(b.items, ping, pong)
		b.release()
		if err != nil {
			c.mu.Lock()
			c.closing, c.writing = true, false
			c.queue.drop()
			c.mu.Unlock()
			c.conn.Close()
			return
		}
	}
}

// Room is how many bytes of history the connection takes now (see sendQueue.room).
func (c *WS) Room() (msgs, bytes int) { return queueRoom(&c.mu, &c.closing, &c.queue) }

// WhenRoom has the writer call fn once it has drained the queue to a quarter of its
// limits (sendQueue.low); fn runs on a goroutine of its own when the queue is that low
// now.
func (c *WS) WhenRoom(fn func()) { queueWhenRoom(&c.mu, &c.closing, &c.queue, fn) }

var errClosed = errors.New("connection closed by us")

// write sends a batch, with the pong and ping due, in one vectored write: one syscall
// for all of it where the kernel takes it at once, which is what lets a connection keep
// up with hundreds of thousands of deliveries a second (BENCHMARKS.md, "Hub to sockets").
//
// Writing past gorilla is safe because:
//   - This goroutine is the only writer of frames: even pongs are queued here (see
//     onPing). Besides it only the reader writes, and only as the connection ends: it
//     answers a client's close frame with ours, through gorilla's WriteControl.
//   - Such a frame never lands inside one of ours. net.Buffers.WriteTo on a
//     *net.TCPConn is one (*poll.FD).Writev (net/writev_unix.go), which holds the fd's
//     write lock across all its writev calls, IOV_MAX (1024) chunking and EAGAIN waits
//     included (internal/poll/writev.go), as (*poll.FD).Write does for gorilla's frame
//     (internal/poll/fd_unix.go). A net.Conn without writev (a *tls.Conn, or a wrapper
//     around a *net.TCPConn, which hides its writev: keep the listener's conns bare) gets
//     one Write per buffer, and each buffer is one whole frame, so frames still only meet
//     at their boundaries, where RFC 6455 lets control frames go.
//   - gorilla holds no bytes of its own when we write: WriteMessage builds and flushes a
//     whole frame in one call (flushFrame, final, to Conn.write, to net.Conn.Write),
//     and no NextWriter is ever left open.
//   - Deadlines: gorilla's SetWriteDeadline only records the time, which Conn.write sets
//     on the net.Conn before each of gorilla's writes; ours is set on the net.Conn. A
//     WriteControl sets the net.Conn's deadline to its own (now + 1s), and a pending
//     writev is held to it: another reason pongs do not go through gorilla, or a client
//     pinging while its socket is stalled would cut our write short.
//   - Any error, a partial write included, may leave a frame cut off: writeLoop closes
//     the socket, as it did when gorilla wrote.
//
// Stack depth: a new writer goroutine starts with the runtime's smallest stack, and
// growing it (runtime.newstack, a copy) costs more than a write. Writers outlive their
// batch (writers.go), so few grow one; and the vector is built by a function that has
// returned (vector) before the deep calls — deadline, writev — which sit right under
// write, itself with a small frame, so the deepest point is not deeper than needed.
func (c *WS) write(batch []item, ping bool, pong []byte) error {
	sc := scratches.Get().(*writeScratch)
	defer sc.release()
	closing := c.vector(sc, batch, ping, pong)
	_ = c.conn.SetWriteDeadline(time.Now().Add(writeWait)) // for the close frame, written by gorilla
	nc := c.conn.NetConn()
	if err := setWriteDeadline(nc, writeWait); err != nil {
		return err
	}
	if err := sc.flush(nc); err != nil {
		return err
	}
	if closing == nil {
		return nil
	}
	return c.writeClose(closing.closeCode, closing.reason)
}

// writeClose writes our close frame through gorilla, which then refuses to write
// anything more (ErrCloseSent), its close handler's answer to the client's close
// included; then it waits for the client's answer (errClosedAfterGrace).
//
//go:noinline
func (c *WS) writeClose(code int, reason string) error {
	_ = c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason))
	return errClosedAfterGrace(c)
}

// setWriteDeadline sets nc's write deadline d from now, in a frame of its own: the
// writers' deep calls stay off their callers' frames (see WS.write).
//
//go:noinline
func setWriteDeadline(nc net.Conn, d time.Duration) error {
	return nc.SetWriteDeadline(time.Now().Add(d))
}

// vector puts into sc.vec the pong, the batch up to its close item, if any, and the
// ping, and returns that close item (nil: none).
//
//go:noinline
func (c *WS) vector(sc *writeScratch, batch []item, ping bool, pong []byte) (closing *item) {
	// First every id and header into the scratch buffer (it may move as it grows),
	// then the buffers that point into it.
	sc.grow(len(batch), maxFrameHeader)
	ids, heads := sc.ids[:0], sc.heads[:0]
	if c.opts.V1 {
		for _, it := range batch {
			if it.m != nil {
				var h [3]int
				ids, h[0], h[1], h[2] = appendV1Head(ids, it.m, it.at)
				heads = append(heads, h)
			}
		}
	}
	bufs := sc.vec[:0]
	if pong != nil {
		bufs = append(bufs, pong)
	}
	next := 0 // heads[next] is the next bridge.v1 message's
	for i, it := range batch {
		switch {
		case it.m != nil && c.opts.V1:
			h := heads[next]
			next++
			bufs = append(bufs, ids[h[0]:h[1]], v1Pre, ids[h[1]:h[2]], v1Post(it.m))
		case it.m != nil:
			bufs = append(bufs, rawFrame(it.m))
		case it.frame != nil:
			bufs = append(bufs, it.frame)
		default:
			closing = &batch[i]
		}
		if closing != nil {
			break
		}
	}
	if ping && closing == nil {
		bufs = append(bufs, pingFrame)
	}
	sc.ids, sc.heads, sc.vec = ids, heads, bufs
	return closing
}

// Bounds of what a writer gives back to scratches, so that one burst to a slow client
// does not keep its memory for everyone: a bridge.v1 message is four buffers of the
// vectored write (WebSocket: header, shared prefix, id, shared suffix; SSE: id line,
// shared prefix, id, shared suffix) and one header and id, or id line, in ids; the pong
// and the ping, or an SSE stream's chunk head, heartbeat, chunk end and last chunk, are
// up to four more buffers.
const (
	maxPooledVector = 4*maxPooledBatch + 4
	maxPooledIDs    = maxPooledBatch*(maxFrameHeader+presence.MaxCursorLen) + maxChunkHead
)

// writeScratch is what a writer, WebSocket or SSE (writeConn), needs for one batch
// besides the bytes shared by every recipient: the per-connection part of each
// bridge.v1 frame (header and id, in ids), where each frame's parts sit in ids (heads),
// and the vectored write (vec).
type writeScratch struct {
	ids   []byte
	heads [][3]int
	vec   net.Buffers
	out   net.Buffers // what flush consumes of vec
}

// scratches recycles the writers' scratch, as batches does the queues' slices: a
// writer holds one only while it writes, so an idle connection holds none, and once
// the pool is warm a batch costs no allocation whatever its ids.
var scratches = sync.Pool{New: func() any { return new(writeScratch) }}

// grow makes sc's slices large enough for a batch of n items, each with up to perItem
// bytes of its own besides its id, in one allocation each where they are not: grown by
// append they would take a dozen to reach a deep batch's size.
func (sc *writeScratch) grow(n, perItem int) {
	if need := n * (perItem + presence.MaxCursorLen); cap(sc.ids) < need {
		sc.ids = make([]byte, 0, need)
	}
	if cap(sc.heads) < n {
		sc.heads = make([][3]int, 0, n)
	}
	if need := 4*n + 4; cap(sc.vec) < need {
		sc.vec = make(net.Buffers, 0, need)
	}
}

// release gives sc back to the pool, emptied so that it holds on to no frame; slices
// grown past the bounds are left to the GC.
func (sc *writeScratch) release() {
	clear(sc.vec)
	sc.out = nil
	if cap(sc.vec) > maxPooledVector || cap(sc.ids) > maxPooledIDs || cap(sc.heads) > maxPooledBatch {
		return
	}
	sc.ids, sc.heads, sc.vec = sc.ids[:0], sc.heads[:0], sc.vec[:0]
	scratches.Put(sc)
}

// flush writes sc.vec in one vectored write. WriteTo consumes the slice it is called
// on (it reslices it and its elements as it goes, never the shared frames' bytes), so
// it is called on sc.out, a copy of vec's header inside the pooled scratch, already on
// the heap where WriteTo needs it; vec keeps its elements for release to clear.
//
//go:noinline
func (sc *writeScratch) flush(nc net.Conn) error {
	sc.out = sc.vec
	_, err := sc.out.WriteTo(nc)
	return err
}

// errClosedAfterGrace waits for the client to answer our close frame (Serve ends when it
// does) or for closeGrace, then reports the connection closed.
func errClosedAfterGrace(c *WS) error {
	select {
	case <-c.done:
	case <-time.After(closeGrace):
	}
	return errClosed
}

func (c *WS) onPingTimer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	c.pingDue = true
	c.kickLocked()
	c.ping.Reset(c.opts.PingPeriod)
}

// Close cuts the connection at once.
func (c *WS) Close() { c.conn.Close() }

// CloseWith ends the connection because of what the client did (1008 for a flood):
// from now on its frames are discarded, our close frame goes out after what is already
// queued, and the socket is cut when the client answers or after closeGrace.
func (c *WS) CloseWith(code int, reason string) {
	if c.refused.Swap(true) {
		return
	}
	c.closeAfterQueue(nil, code, reason)
}

// closeAfterQueue queues, behind what is already queued, the reconnect hint (bridge.v1
// only; none when nil) and a close frame with code, and accepts nothing after them.
func (c *WS) closeAfterQueue(hint *Reconnect, code int, reason string) {
	if hint != nil && c.opts.V1 {
		c.sendJSON(*hint)
	}
	c.push(item{closeCode: code, reason: reason}, 0)
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
}

// expire ends the connection at its maximum age, as SSE streams end, so that platforms
// that cut long requests (Cloud Run at 3600 s) never do it mid-frame: what is queued
// goes out, then a reconnect hint (bridge.v1) and close 1001; the client resumes from
// its last id.
func (c *WS) expire() {
	if c.refused.Swap(true) {
		return // already closing for another reason
	}
	c.closeAfterQueue(&Reconnect{Type: "reconnect", Reason: "max connection age"}, websocket.CloseGoingAway, "max connection age")
}

// Drain sends a reconnect hint (bridge.v1 only) and close 1012, then waits until the
// connection is closed or ctx ends.
func (c *WS) Drain(ctx context.Context, after time.Duration) {
	c.closeAfterQueue(&Reconnect{Type: "reconnect", Reason: "draining", AfterMS: after.Milliseconds()}, CloseServiceRestart, "service restart")
	select {
	case <-c.done:
	case <-ctx.Done():
		c.conn.Close()
	}
}
