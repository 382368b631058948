package transport

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushbridge/pushbridge/presence"
)

var _ presence.Conn = (*SSE)(nil)

// Limits and hints of a Server-Sent Events stream.
const (
	// SSERetry is the reconnect delay a plain EventSource uses once a stream ends: short,
	// because the client resumes from its Last-Event-ID and a reconnect loses nothing.
	SSERetry = 2 * time.Second
	// maxAgeJitter is the share of the maximum age by which a stream may end early, so
	// streams opened together do not all end, and reconnect, in the same instant.
	maxAgeJitter = 0.1
)

// heartbeat is an SSE comment: it keeps proxies from cutting an idle stream and is
// invisible to EventSource.
var heartbeat = []byte(": heartbeat\n\n")

// retryHint opens every stream: the reconnect delay EventSource is to use.
var retryHint = []byte("retry: " + strconv.FormatInt(SSERetry.Milliseconds(), 10) + "\n\n")

// SSEOptions are the limits of one SSE stream. Zero values mean the defaults named
// beside each field.
type SSEOptions struct {
	V1         bool            // data is the bridge.v1 message frame; false: the body verbatim
	Instance   string          // this instance's id, for the welcome event
	QueueLen   int             // queued messages before the client counts as slow (defaultQueueLen)
	QueueBytes int             // queued bytes before the client counts as slow (defaultQueueBytes)
	Heartbeat  time.Duration   // heartbeat period: a comment, or with Echo a ping event (25s)
	MaxAge     time.Duration   // the stream ends itself, with a reconnect event, before this age; 0: never
	Stats      *presence.Stats // where overflows are counted; may be nil

	// Echo: the client answers every heartbeat (see sse_echo.go), and the stream ends
	// when an answer is pongWait late; false: comment heartbeats, no answer expected.
	Echo bool
	// Answered reports whether the answer to token reached another instance; nil:
	// only answers given to Pong count.
	Answered func(ctx context.Context, token string) (bool, error)
}

func (o *SSEOptions) defaults() {
	if o.Heartbeat <= 0 {
		o.Heartbeat = 25 * time.Second
	}
}

// writeWait is how long one write may take: writeWait, but no more than a heartbeat,
// so a client that stopped reading under load is cut within one, as an idle one that
// stopped answering pings is (sse_echo.go).
func (o *SSEOptions) writeWait() time.Duration { return min(writeWait, o.Heartbeat) }

// SSE is a Server-Sent Events stream, driven one of two ways. Over HTTP/1.1 the
// connection is taken from net/http once the response head is out (Hijack, sse_conn.go)
// and driven as a WebSocket is: one reader goroutine that notices the client leave, and
// a writer goroutine only while something is queued, every batch one vectored write.
// Where it cannot be taken (HTTP/2, HTTP/1.0) the handler goroutine runs Serve, the
// stream's only writer for its whole life; Send only queues and wakes it.
type SSE struct {
	w     http.ResponseWriter // nil once the connection is taken
	user  string
	since time.Time
	opts  SSEOptions
	done  chan struct{} // closed when Serve or ServeConn returns
	id    string        // the stream's id in its ping tokens; empty without Echo

	ponged atomic.Uint64 // the newest beat the client answered

	mu      sync.Mutex
	queue   sendQueue
	closing bool          // no more is accepted
	end     bool          // the stream ends once what is queued is written
	wake    chan struct{} // Serve's: buffered 1, "the queue has something, or the stream must end"
	hj      *hijacked     // the taken connection's state; nil while net/http has it
}

// NewSSE makes a stream of user on w; the caller has set the response headers' values
// (not yet written). Then Hijack and ServeConn run it, or else Serve does.
func NewSSE(w http.ResponseWriter, user string, opts SSEOptions) *SSE {
	opts.defaults()
	c := &SSE{
		w: w, user: user, since: time.Now(), opts: opts,
		done: make(chan struct{}), queue: newSendQueue(opts.QueueLen, opts.QueueBytes),
	}
	if opts.Echo {
		c.id = newStreamID()
	}
	return c
}

func (c *SSE) User() string      { return c.user }
func (c *SSE) Transport() string { return "sse" }
func (c *SSE) Since() time.Time  { return c.since }

// Send queues ds, written together. A stream whose queue overflows ends; the client
// resumes from history.
func (c *SSE) Send(ds []presence.Delivery) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	if !c.queue.pushAll(ds) {
		c.closing, c.end = true, true
		c.queue.drop()
		if c.opts.Stats != nil {
			c.opts.Stats.SlowDisconnect.Add(1)
		}
		if c.hj != nil {
			c.hj.nc.Close() // the reader fails and ends the stream; the client resumes from history
			return
		}
		c.signal()
		return
	}
	c.signal()
}

// Replay queues the greeting — a welcome event and, when the replay is incomplete, a
// reset event — and what the client missed, ahead of anything sent later, outside the
// queue limits (see WS.Replay for why). Neither greeting carries an id: the stream's
// position is set by the messages and, after them, by an id-only event naming
// rp.Head, the newest id when the stream registered: it sets a plain EventSource's
// Last-Event-ID without firing an event, so a client that got no message yet still
// resumes from the right place.
func (c *SSE) Replay(rp *presence.Replay) {
	events := [][]byte{EncodeJSONEvent("welcome", "", newWelcome(c.user, c.opts.Instance, rp))}
	if rp.Reset != "" {
		events = append(events, EncodeJSONEvent("reset", "", newReset(rp.Reset)))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	for _, e := range events {
		c.queue.pushExempt(item{frame: e})
	}
	for _, d := range rp.Messages {
		c.queue.pushExempt(item{m: d.M, at: d.At})
	}
	c.queue.pushExempt(item{frame: []byte("id: " + rp.Head.String() + "\n\n")})
	c.signal()
}

// Room is how many bytes of history the stream takes now (see sendQueue.room).
func (c *SSE) Room() (msgs, bytes int) { return queueRoom(&c.mu, &c.closing, &c.queue) }

// WhenRoom has Serve call fn, on a goroutine of its own, once it has drained the queue
// to a quarter of its limits (sendQueue.low); at once when the queue is that low now.
func (c *SSE) WhenRoom(fn func()) { queueWhenRoom(&c.mu, &c.closing, &c.queue, fn) }

// Drain sends a reconnect event and ends the stream, then waits until Serve or
// ServeConn has returned (so http.Server.Shutdown, which waits for open responses, is
// not held up) or ctx ends; a taken connection is then cut.
func (c *SSE) Drain(ctx context.Context, after time.Duration) {
	c.endAfterQueue(reconnectEvent("draining", after))
	select {
	case <-c.done:
	case <-ctx.Done():
		c.mu.Lock()
		if c.hj != nil {
			c.hj.nc.Close()
		}
		c.mu.Unlock()
	}
}

// endAfterQueue queues ev, our last event, behind what is queued and ends the stream
// once it is written.
func (c *SSE) endAfterQueue(ev []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	c.queue.pushExempt(item{frame: ev})
	c.closing, c.end = true, true
	c.signal()
}

// signal wakes the writer: Serve, or on a taken connection a writer goroutine, unless
// one runs. Before either exists it does nothing; they look at the queue first. c.mu
// must be held.
func (c *SSE) signal() {
	if c.hj != nil {
		c.kickLocked()
		return
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Serve writes the stream until the client goes (ctx ends), the stream is drained or
// overflows, or it reaches its maximum age. It returns why it ended; nil when we ended it.
func (c *SSE) Serve(ctx context.Context) error {
	rc := http.NewResponseController(c.w)
	c.mu.Lock()
	c.wake = make(chan struct{}, 1)
	if c.queue.len() > 0 || c.end {
		c.signal() // queued before Serve ran: the replay
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.closing = true
		c.queue.drop()
		c.mu.Unlock()
		close(c.done)
	}()
	hb := time.NewTicker(c.opts.Heartbeat)
	defer hb.Stop()
	var age <-chan time.Time
	if c.opts.MaxAge > 0 {
		t := time.NewTimer(jitterDown(c.opts.MaxAge))
		defer t.Stop()
		age = t.C
	}
	var (
		beat    uint64           // the latest ping's
		pongDue *time.Timer      // fires pongWait after each ping; nil until the first
		late    <-chan time.Time // its channel
	)
	defer func() {
		if pongDue != nil {
			pongDue.Stop()
		}
	}()
	if err := c.write(rc, retryHint); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-hb.C:
			if !c.opts.Echo {
				if err := c.write(rc, heartbeat); err != nil {
					return err
				}
				continue
			}
			beat++
			if err := c.write(rc, c.ping(beat)); err != nil {
				return err
			}
			if pongDue == nil {
				pongDue = time.NewTimer(pongWait(c.opts.Heartbeat))
				late = pongDue.C
			} else {
				pongDue.Reset(pongWait(c.opts.Heartbeat))
			}
		case <-late:
			if !c.answered(ctx, beat) {
				return errNoPong
			}
		case <-age:
			b, _ := c.take()
			b.items = append(b.items, item{frame: reconnectEvent("max connection age", 0)})
			return c.writeBatch(rc, b)
		case <-c.wake:
			b, end := c.take()
			if err := c.writeBatch(rc, b); err != nil || end {
				return err
			}
			c.mu.Lock()
			onRoom := c.queue.written()
			if c.queue.len() > 0 || c.end {
				c.signal() // more segments than the one written
			}
			c.mu.Unlock()
			if onRoom != nil {
				go onRoom() // it queues more, and needs this loop to write it
			}
		}
	}
}

// take takes the oldest segment of the queue; end when the stream ends with it.
func (c *SSE) take() (b batch, end bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b = c.queue.take()
	return b, c.end && c.queue.len() == 0
}

// writeBatch writes every item of b, flushes once and releases b. Each write has its
// own deadline, so neither a stalled client nor the server's WriteTimeout (which would
// cut a long stream) decides how long a stream lives.
func (c *SSE) writeBatch(rc *http.ResponseController, b batch) error {
	defer b.release()
	if len(b.items) == 0 {
		return nil
	}
	buf := sseBuffers.Get().(*bytes.Buffer)
	defer putSSEBuffer(buf)
	var id [presence.MaxCursorLen]byte
	for _, it := range b.items {
		if it.m != nil {
			pre, post := sseParts(it.m, c.opts.V1)
			at := it.at.Append(id[:0])
			buf.WriteString("id: ")
			buf.Write(at)
			buf.WriteByte('\n')
			buf.Write(pre)
			if c.opts.V1 {
				buf.Write(at)
			}
			buf.Write(post)
		} else {
			buf.Write(it.frame)
		}
	}
	return c.write(rc, buf.Bytes())
}

// maxPooledSSEBuffer bounds a buffer given back to sseBuffers, so one large batch does
// not keep its memory for good.
const maxPooledSSEBuffer = 1 << 20

// sseBuffers recycles the buffers streams write a batch through: a stream holds one
// only while it writes.
var sseBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func putSSEBuffer(b *bytes.Buffer) {
	if b.Cap() <= maxPooledSSEBuffer {
		b.Reset()
		sseBuffers.Put(b)
	}
}

func (c *SSE) write(rc *http.ResponseController, b []byte) error {
	// A writer without deadlines (not net/http's) is written to without one.
	if err := rc.SetWriteDeadline(time.Now().Add(c.opts.writeWait())); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if _, err := c.w.Write(b); err != nil {
		return err
	}
	return rc.Flush()
}

// jitterDown returns d less a random part of up to maxAgeJitter of it.
func jitterDown(d time.Duration) time.Duration {
	cut := time.Duration(float64(d) * maxAgeJitter)
	if cut <= 0 {
		return d
	}
	return d - rand.N(cut)
}

// sseParts are m as an SSE event without its id line, shared by every stream: the
// data is the body verbatim, or with v1 its bridge.v1 frame, whose id goes between pre
// and post (an id has no line break, so the data's lines split only inside post). Raw
// events have everything in pre. The whole event is "id: <id>\n", pre, [id], post.
func sseParts(m *presence.Message, v1 bool) (pre, post []byte) {
	if !v1 {
		return m.Encoded(encSSERaw, func(m *presence.Message) []byte { return EncodeEvent("", "", m.Body) }), nil
	}
	return sseV1Pre, m.Encoded(encSSEV1, func(m *presence.Message) []byte {
		return EncodeEvent("", "", v1Post(m))[len("data: "):]
	})
}

// sseV1Pre starts every bridge.v1 message event, up to its id.
var sseV1Pre = append([]byte("data: "), v1Pre...)

// EncodeEvent writes one SSE event. Data is split into one data: line per line, since
// SSE ends a field at CR, LF or CRLF; EventSource joins the lines with LF, so a body
// with CR line ends arrives with LF ones.
func EncodeEvent(event, id string, data []byte) []byte {
	b := make([]byte, 0, len(data)+len(id)+len(event)+32)
	if event != "" {
		b = append(append(append(b, "event: "...), event...), '\n')
	}
	if id != "" {
		b = append(append(append(b, "id: "...), id...), '\n')
	}
	for {
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			break
		}
		b = append(append(append(b, "data: "...), data[:i]...), '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	b = append(append(append(b, "data: "...), data...), '\n')
	return append(b, '\n')
}

// EncodeJSONEvent writes an event of our own whose data is v as JSON.
func EncodeJSONEvent(event, id string, v any) []byte { return EncodeEvent(event, id, mustJSON(v)) }

func reconnectEvent(reason string, after time.Duration) []byte {
	// retry: spreads plain EventSource clients over the delay we chose, on top of the
	// usual retry so that none comes back in a tight loop.
	retry := "retry: " + strconv.FormatInt((SSERetry+after).Milliseconds(), 10) + "\n"
	ev := EncodeJSONEvent("reconnect", "", Reconnect{Type: "reconnect", Reason: reason, AfterMS: after.Milliseconds()})
	return append([]byte(retry), ev...)
}
