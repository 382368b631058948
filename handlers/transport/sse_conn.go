package transport

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// An SSE stream on an HTTP/1.1 connection taken from net/http. Served by net/http, an
// idle stream keeps its handler goroutine, grown deep through the middleware, the
// attach and the replay, and net/http's buffers of the connection; taken over, it costs
// what an idle WebSocket does: one reader goroutine with a shallow stack, blocked in
// Read so that it notices the client leave, two timers, and no buffer. The body is
// chunked, one chunk per batch, and the response says Connection: close, so the
// connection carries this one response and the client sees a clean end (the last
// chunk) when we end the stream.

const (
	// maxChunkHead is the longest chunk-size line: 16 hex digits and CRLF.
	maxChunkHead = 18
	// maxClientBytes bounds what a client may send on its stream's connection after the
	// request: EventSource sends nothing, a pipelined request or two fit (Connection:
	// close tells the client to send them again elsewhere), and a client that streams
	// bytes at us is cut.
	maxClientBytes = 8 << 10
	// clientReadBuf is the reader's buffer, small: it normally reads only the client's EOF.
	clientReadBuf = 256
)

var (
	chunkEnd  = []byte("\r\n")
	lastChunk = []byte("0\r\n\r\n")
	// noChunkHead is the room writeConn reserves for the chunk-size line before it
	// knows the size.
	noChunkHead [maxChunkHead]byte
)

// errClientSent ends a stream whose client sent more than maxClientBytes.
var errClientSent = errors.New("the client sent too much on its event stream")

// hijacked is the state of a stream on a taken connection; SSE.mu guards it, but for
// nc and writer, set before anything else runs.
type hijacked struct {
	nc     net.Conn
	writer func() // c.writeLoop, made once: a method value made per wake-up would allocate each time

	beats *time.Timer // the next heartbeat
	age   *time.Timer // the maximum age; nil: none
	late  *time.Timer // fires pongWait after a ping is written (Echo); nil until the first

	writing bool   // the writer runs (on one of writers)
	beatDue bool   // a heartbeat is due
	beat    uint64 // the latest ping's (Echo)
	pinged  uint64 // the latest written ping's
	why     error  // why we cut the stream for the client's fault (errNoPong); nil otherwise
}

// Hijack takes the stream's connection from net/http where it is HTTP/1.1, and writes
// the response head, with w's header, and the stream's opening itself. From then on
// ServeConn reads and a writer goroutine writes only while something is queued (see
// writeLoop). It reports false, with nothing done, where the connection stays
// net/http's (HTTP/2, HTTP/1.0, a ResponseWriter that cannot hijack): Serve runs the
// stream then. After an error of the write the connection is closed and the stream over.
func (c *SSE) Hijack(r *http.Request) (taken bool, err error) {
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 { // chunked encoding needs HTTP/1.1
		return false, nil
	}
	head := responseHead(c.w.Header())
	nc, _, err := http.NewResponseController(c.w).Hijack()
	if errors.Is(err, http.ErrNotSupported) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// What net/http read past the request (a pipelined request) is dropped with the
	// reader it returned: nothing the client sends matters now.
	if err := c.writeHead(nc, head); err != nil {
		c.mu.Lock()
		c.closing = true
		c.queue.drop()
		c.mu.Unlock()
		close(c.done)
		nc.Close()
		return true, err
	}
	hj := &hijacked{nc: nc, writer: c.writeLoop}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.w, c.hj = nil, hj // the ResponseWriter holds net/http's buffers of the connection
	hj.beats = time.AfterFunc(c.opts.Heartbeat, c.onBeat)
	if c.opts.MaxAge > 0 {
		hj.age = time.AfterFunc(jitterDown(c.opts.MaxAge), c.expire)
	}
	if c.queue.len() > 0 || c.end {
		c.kickLocked() // the replay, queued while net/http had the connection
	}
	return true, nil
}

// responseHead is the head of a taken stream's response: status, h but for the fields
// we set ourselves, the date, chunked encoding and Connection: close.
func responseHead(h http.Header) []byte {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\n")
	_ = h.WriteSubset(&b, map[string]bool{"Content-Length": true, "Transfer-Encoding": true, "Connection": true, "Date": true})
	b.WriteString("Date: " + time.Now().UTC().Format(http.TimeFormat) + "\r\n")
	b.WriteString("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
	return b.Bytes()
}

// writeHead writes head and the stream's first chunk, the retry hint, in one write.
func (c *SSE) writeHead(nc net.Conn, head []byte) error {
	if err := nc.SetWriteDeadline(time.Now().Add(c.opts.writeWait())); err != nil {
		return err
	}
	b := append(head, putChunkHead(make([]byte, maxChunkHead), len(retryHint))...)
	b = append(append(b, retryHint...), chunkEnd...)
	_, err := nc.Write(b)
	return err
}

// ServeConn reads the taken connection until the client leaves or the stream ends, and
// returns why; nil when we ended it. Call it, once Hijack took the connection, on a
// goroutine whose stack is shallow: it is the one an idle stream keeps.
func (c *SSE) ServeConn() error {
	defer c.endConn()
	nc := c.hj.nc
	buf := make([]byte, clientReadBuf)
	for n := 0; n <= maxClientBytes; {
		k, err := nc.Read(buf)
		n += k
		if err != nil {
			return c.endedBy(err)
		}
	}
	return errClientSent
}

// endedBy is why the stream ended when its reader failed with err.
func (c *SSE) endedBy(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.hj.why != nil:
		return c.hj.why
	case c.end:
		return nil // drained, at its age, or overflowed: we closed it
	}
	return err
}

// endConn stops the timers and the writer's intake, and closes the connection.
func (c *SSE) endConn() {
	c.mu.Lock()
	c.closing = true
	c.queue.drop()
	hj := c.hj
	for _, t := range []*time.Timer{hj.beats, hj.age, hj.late} {
		if t != nil {
			t.Stop()
		}
	}
	c.mu.Unlock()
	close(c.done)
	hj.nc.Close()
}

// kickLocked starts the writer unless it runs. c.mu must be held, c.hj set.
func (c *SSE) kickLocked() {
	if !c.hj.writing {
		c.hj.writing = true
		writers.run(c.hj.writer)
	}
}

// onBeat is the heartbeat timer's: the writer sends a heartbeat (or with Echo a ping).
func (c *SSE) onBeat() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	c.hj.beatDue = true
	c.kickLocked()
	c.hj.beats.Reset(c.opts.Heartbeat)
}

// expire ends the stream at its maximum age with a reconnect event, after what is queued.
func (c *SSE) expire() { c.endAfterQueue(reconnectEvent("max connection age", 0)) }

// onLate runs pongWait after a ping was written: a client that did not answer it is
// cut, as Serve cuts it.
func (c *SSE) onLate() {
	c.mu.Lock()
	beat := c.hj.pinged
	c.mu.Unlock()
	// A timer's callback has no request context; sharedPongWait bounds the question.
	if c.answered(context.Background(), beat) {
		return
	}
	c.mu.Lock()
	if c.hj.why == nil {
		c.hj.why = errNoPong
	}
	c.closing = true
	c.mu.Unlock()
	c.hj.nc.Close() // the reader fails and ends the stream
}

// writeLoop writes everything queued, with a heartbeat when one is due, batch by batch,
// and exits when there is nothing more; once the stream is to end, it writes the last
// chunk and half-closes the connection. A catch-up waiting for room (WhenRoom) is
// called back as WS.writeLoop does.
func (c *SSE) writeLoop() {
	hj := c.hj
	for {
		c.mu.Lock()
		onRoom := c.queue.written() // the batch before, if any, is written
		if c.queue.len() == 0 && !hj.beatDue && !c.end {
			hj.writing = false
			c.mu.Unlock()
			if onRoom != nil {
				onRoom()
			}
			return
		}
		b, beat := c.queue.take(), hj.beatDue
		end := c.end && c.queue.len() == 0 // the last segment
		hj.beatDue = false
		var n uint64 // the ping's beat; 0: none
		if beat && c.opts.Echo {
			hj.beat++
			n = hj.beat
		}
		c.mu.Unlock()
		if onRoom != nil {
			go onRoom()
		}

		var ev []byte // the heartbeat
		switch {
		case n > 0:
			ev = c.ping(n)
		case beat:
			ev = heartbeat
		}
		err := c.writeConn(b.items, ev, end)
		b.release()
		if err != nil {
			c.mu.Lock()
			c.closing, hj.writing = true, false
			c.queue.drop()
			c.mu.Unlock()
			hj.nc.Close() // the reader fails and ends the stream
			return
		}
		if n > 0 {
			c.notePing(n)
		}
		if end {
			c.finish()
			return // writing stays set: nothing more is written
		}
	}
}

// notePing notes that the ping of beat n is written, and has onLate look for its
// answer pongWait from now.
func (c *SSE) notePing(n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	hj := c.hj
	hj.pinged = n
	if c.closing {
		return // ending: no answer is needed any more
	}
	if hj.late == nil {
		hj.late = time.AfterFunc(pongWait(c.opts.Heartbeat), c.onLate)
	} else {
		hj.late.Reset(pongWait(c.opts.Heartbeat))
	}
}

// finish half-closes the connection once the last chunk is out: the client sees the
// end and closes its side, which the reader sees; closeGrace bounds the wait. A close
// with the client's bytes unread would be a reset, which can destroy the end in flight.
func (c *SSE) finish() {
	nc := c.hj.nc
	if cw, ok := nc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		_ = nc.SetReadDeadline(time.Now().Add(closeGrace))
		return
	}
	nc.Close()
}

// writeConn writes items, then ev (a heartbeat or ping, when not nil), as one chunk in
// one vectored write, and the last chunk when end. Its frame is small and the vector is
// built by a function that has returned, for the reason WS.write gives.
func (c *SSE) writeConn(items []item, ev []byte, end bool) error {
	sc := scratches.Get().(*writeScratch)
	defer sc.release()
	c.vector(sc, items, ev, end)
	nc := c.hj.nc
	if err := setWriteDeadline(nc, c.opts.writeWait()); err != nil {
		return err
	}
	return sc.flush(nc)
}

// vector puts into sc.vec what writeConn writes. A message is its id line from the
// scratch buffer and the event's bytes shared by every recipient (sseParts), with the
// id again inside a bridge.v1 frame, so a recipient costs no copy of a message and,
// once the pools are warm, no allocation.
//
//go:noinline
func (c *SSE) vector(sc *writeScratch, items []item, ev []byte, end bool) {
	// First the chunk head's room and every id line into the scratch buffer (it may
	// move as it grows), then the buffers that point into it.
	sc.grow(len(items), maxChunkHead+len("id: \n"))
	ids, heads := append(sc.ids[:0], noChunkHead[:]...), sc.heads[:0]
	for _, it := range items {
		if it.m != nil {
			var h [3]int // the id line is ids[h[0]:h[2]+1], the id ids[h[1]:h[2]]
			h[0] = len(ids)
			ids = append(ids, "id: "...)
			h[1] = len(ids)
			ids = it.at.Append(ids)
			h[2] = len(ids)
			ids = append(ids, '\n')
			heads = append(heads, h)
		}
	}
	bufs := append(sc.vec[:0], nil) // the chunk head, once its size is known
	size, next := 0, 0
	for _, it := range items {
		if it.m == nil {
			bufs = append(bufs, it.frame)
			size += len(it.frame)
			continue
		}
		h := heads[next]
		next++
		pre, post := sseParts(it.m, c.opts.V1)
		bufs = append(bufs, ids[h[0]:h[2]+1], pre)
		size += h[2] + 1 - h[0] + len(pre)
		if c.opts.V1 {
			bufs = append(bufs, ids[h[1]:h[2]], post)
			size += h[2] - h[1] + len(post)
		}
	}
	if ev != nil {
		bufs = append(bufs, ev)
		size += len(ev)
	}
	if size > 0 { // an empty chunk would be the last
		bufs[0] = putChunkHead(ids[:maxChunkHead], size)
		bufs = append(bufs, chunkEnd)
	}
	if end {
		bufs = append(bufs, lastChunk)
	}
	sc.ids, sc.heads, sc.vec = ids, heads, bufs
}

// putChunkHead writes the chunk-size line of n bytes at the end of room, of length
// maxChunkHead, and returns it.
func putChunkHead(room []byte, n int) []byte {
	const hex = "0123456789abcdef"
	i := len(room) - len(chunkEnd)
	copy(room[i:], chunkEnd)
	for {
		i--
		room[i] = hex[n&0xf]
		n >>= 4
		if n == 0 {
			return room[i:]
		}
	}
}
