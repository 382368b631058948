package presence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

var _ Conn = (*SSE)(nil)

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

// SSEOptions are the limits of one SSE stream. Zero values mean the defaults named
// beside each field.
type SSEOptions struct {
	V1         bool          // data is the bridge.v1 message frame; false: the body verbatim
	QueueLen   int           // queued messages before the client counts as slow (256)
	QueueBytes int           // queued bytes before the client counts as slow (4 MiB)
	Heartbeat  time.Duration // comment period (25s)
	MaxAge     time.Duration // the stream ends itself, with a reconnect event, before this age; 0: never
	Stats      *Stats        // where overflows are counted; may be nil
}

func (o *SSEOptions) defaults() {
	if o.QueueLen <= 0 {
		o.QueueLen = 256
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = 4 << 20
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 25 * time.Second
	}
}

// SSE is a Server-Sent Events stream. The handler goroutine that runs Serve is its only
// writer, alive for the stream's whole life; Send only queues and wakes it.
type SSE struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	user  string
	since time.Time
	opts  SSEOptions
	wake  chan struct{} // buffered 1: "the queue has something, or the stream must end"
	done  chan struct{} // closed when Serve returns

	mu      sync.Mutex
	queue   []sseItem
	queued  int  // bytes in queue
	exempt  int  // replayed items at the front of queue, not counted against the limits
	closing bool // no more is accepted
	end     bool // Serve returns once what is queued is written
}

type sseItem struct {
	m     *Message // a message event, with
	at    Cursor   // its id on this stream, or:
	event []byte   // an event of our own, already encoded
}

// NewSSE makes a stream of user on w; the caller has sent the response headers' values
// (not yet written). Call Serve to run it.
func NewSSE(w http.ResponseWriter, user string, opts SSEOptions) *SSE {
	opts.defaults()
	return &SSE{
		w: w, rc: http.NewResponseController(w), user: user, since: time.Now(), opts: opts,
		wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
}

func (c *SSE) User() string      { return c.user }
func (c *SSE) Transport() string { return "sse" }
func (c *SSE) Since() time.Time  { return c.since }

// Send queues m, whose id here is at. A stream whose queue overflows ends; the client
// resumes from history.
func (c *SSE) Send(m *Message, at Cursor) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	if len(c.queue)-c.exempt >= c.opts.QueueLen || c.queued+m.Size() > c.opts.QueueBytes {
		c.closing, c.end = true, true
		c.queue, c.queued, c.exempt = nil, 0, 0
		if c.opts.Stats != nil {
			c.opts.Stats.SlowDisconnect.Add(1)
		}
		c.signal()
		return
	}
	c.queue = append(c.queue, sseItem{m: m, at: at})
	c.queued += m.Size()
	c.signal()
}

// Replay queues events of our own (welcome, reset) and what the client missed, ahead of
// anything sent later, outside the queue limits (see WS.Replay for why). After them
// comes an id-only event naming head, the newest id when the stream registered: it sets
// a plain EventSource's Last-Event-ID without firing an event, so a client that got no
// message yet still resumes from the right place.
func (c *SSE) Replay(events [][]byte, msgs []Delivery, head string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	for _, e := range events {
		c.queue = append(c.queue, sseItem{event: e})
	}
	for _, d := range msgs {
		c.queue = append(c.queue, sseItem{m: d.M, at: d.At})
	}
	n := len(events) + len(msgs)
	if head != "" {
		c.queue = append(c.queue, sseItem{event: []byte("id: " + head + "\n\n")})
		n++
	}
	c.exempt += n
	c.signal()
}

// Drain sends a reconnect event and ends the stream, then waits until Serve has
// returned (so http.Server.Shutdown, which waits for open responses, is not held up)
// or ctx ends.
func (c *SSE) Drain(ctx context.Context, after time.Duration) {
	c.mu.Lock()
	if !c.closing {
		c.queue = append(c.queue, sseItem{event: reconnectEvent("draining", after)})
		c.closing, c.end = true, true
		c.signal()
	}
	c.mu.Unlock()
	select {
	case <-c.done:
	case <-ctx.Done():
	}
}

// signal wakes Serve. c.mu must be held.
func (c *SSE) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Serve writes the stream until the client goes (ctx ends), the stream is drained or
// overflows, or it reaches its maximum age. It returns why it ended; nil when we ended it.
func (c *SSE) Serve(ctx context.Context) error {
	defer func() {
		c.mu.Lock()
		c.closing = true
		c.queue, c.queued, c.exempt = nil, 0, 0
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
	if err := c.write([]byte("retry: " + strconv.FormatInt(SSERetry.Milliseconds(), 10) + "\n\n")); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-hb.C:
			if err := c.write(heartbeat); err != nil {
				return err
			}
		case <-age:
			batch, _ := c.take()
			batch = append(batch, sseItem{event: reconnectEvent("max connection age", 0)})
			return c.writeBatch(batch)
		case <-c.wake:
			batch, end := c.take()
			if err := c.writeBatch(batch); err != nil || end {
				return err
			}
		}
	}
}

// take empties the queue.
func (c *SSE) take() (batch []sseItem, end bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	batch, end = c.queue, c.end
	c.queue, c.queued, c.exempt = nil, 0, 0
	return batch, end
}

// writeBatch writes every item and flushes once. Each write has its own deadline, so
// neither a stalled client nor the server's WriteTimeout (which would cut a long
// stream) decides how long a stream lives.
func (c *SSE) writeBatch(batch []sseItem) error {
	if len(batch) == 0 {
		return nil
	}
	var buf bytes.Buffer
	var id [maxCursorLen]byte
	for _, it := range batch {
		if it.m != nil {
			pre, post := it.m.SSEParts(c.opts.V1)
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
			buf.Write(it.event)
		}
	}
	return c.write(buf.Bytes())
}

func (c *SSE) write(b []byte) error {
	// A writer without deadlines (not net/http's) is written to without one.
	if err := c.rc.SetWriteDeadline(time.Now().Add(writeWait)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if _, err := c.w.Write(b); err != nil {
		return err
	}
	return c.rc.Flush()
}

// jitterDown returns d less a random part of up to maxAgeJitter of it.
func jitterDown(d time.Duration) time.Duration {
	cut := time.Duration(float64(d) * maxAgeJitter)
	if cut <= 0 {
		return d
	}
	return d - rand.N(cut)
}

type sseOnce struct {
	once      sync.Once
	pre, post []byte
}

// SSEParts are m as an SSE event without its id line, shared by every stream: the data
// is the body verbatim, or with v1 its bridge.v1 frame, whose id goes between pre and
// post (an id has no line break, so the data's lines split only inside post). Raw
// events have everything in pre. The whole event is "id: <id>\n", pre, [id], post.
func (m *Message) SSEParts(v1 bool) (pre, post []byte) {
	i := 0
	if v1 {
		i = 1
	}
	s := &m.sse[i]
	s.once.Do(func() {
		if !v1 {
			s.pre = EncodeEvent("", "", m.Body)
			return
		}
		jpre, jpost := m.V1Parts()
		s.pre = append([]byte("data: "), jpre...)
		s.post = EncodeEvent("", "", jpost)[len("data: "):]
	})
	return s.pre, s.post
}

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
func EncodeJSONEvent(event, id string, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own event types always marshal
	}
	return EncodeEvent(event, id, b)
}

func reconnectEvent(reason string, after time.Duration) []byte {
	// retry: spreads plain EventSource clients over the delay we chose, on top of the
	// usual retry so that none comes back in a tight loop.
	retry := "retry: " + strconv.FormatInt((SSERetry+after).Milliseconds(), 10) + "\n"
	ev := EncodeJSONEvent("reconnect", "", Reconnect{Type: "reconnect", Reason: reason, AfterMS: after.Milliseconds()})
	return append([]byte(retry), ev...)
}
