package presence

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
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

// CloseServiceRestart is the close code sent when the instance drains (RFC 6455 1012).
const CloseServiceRestart = 1012

// WSOptions are the limits of one WebSocket connection. Zero values mean the defaults
// named beside each field.
type WSOptions struct {
	V1            bool          // bridge.v1 JSON frames; false: raw mode (bodies verbatim)
	QueueLen      int           // queued messages before the client counts as slow (256)
	QueueBytes    int           // queued bytes before the client counts as slow (4 MiB)
	PingPeriod    time.Duration // how often we ping; the client must answer within two (25s)
	MaxFrameBytes int64         // largest frame the client may send; larger closes with 1009 (64 KiB)
	MaxAge        time.Duration // the connection ends itself, with a reconnect hint and close 1001, before this age; 0: never
	Stats         *Stats        // where overflows are counted; may be nil
}

func (o *WSOptions) defaults() {
	if o.QueueLen <= 0 {
		o.QueueLen = 256
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = 4 << 20
	}
	if o.PingPeriod <= 0 {
		o.PingPeriod = 25 * time.Second
	}
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = 64 << 10
	}
}

// WS is a WebSocket connection. It has one reader goroutine (Serve, run by the caller)
// and at most one writer goroutine, which exists only while the send queue is not
// empty: an idle connection costs one goroutine. gorilla/websocket allows one
// concurrent writer, and the writer goroutine is it.
type WS struct {
	conn  *websocket.Conn
	user  string
	since time.Time
	opts  WSOptions
	ping  *time.Timer
	age   *time.Timer   // ends the connection at its maximum age
	done  chan struct{} // closed when Serve returns

	refused atomic.Bool // CloseWith was called: what the client sends is discarded

	mu      sync.Mutex
	queue   []wsItem
	queued  int  // bytes in queue
	exempt  int  // replayed items at the front of queue, not counted against the limits
	writing bool // a writer goroutine is running
	pingDue bool
	closing bool // no more frames are accepted
}

type wsItem struct {
	m         *Message // a message frame, or:
	text      []byte   // a control text frame of our own (welcome, error, reconnect), or:
	closeCode int      // a close frame, after which the socket is shut
	reason    string   // the close frame's reason
}

// NewWS wraps an upgraded connection of user. Call Serve to run it.
func NewWS(conn *websocket.Conn, user string, opts WSOptions) *WS {
	opts.defaults()
	// Compression is never negotiated, but gorilla (v1.5.3) keys prepared frames by
	// the connection's compression level too: at the server default (1) every
	// WritePreparedMessage built a second copy of a frame NewPreparedMessage had
	// already built at level 0. Level 0 makes them the same frame.
	_ = conn.SetCompressionLevel(0)
	return &WS{conn: conn, user: user, since: time.Now(), opts: opts, done: make(chan struct{})}
}

func (c *WS) User() string      { return c.user }
func (c *WS) Transport() string { return "ws" }
func (c *WS) V1() bool          { return c.opts.V1 }
func (c *WS) Since() time.Time  { return c.since }

// Send queues m for the writer.
func (c *WS) Send(m *Message) { c.push(wsItem{m: m}, m.Size()) }

// SendJSON queues one of our own bridge.v1 frames (welcome, error, reconnect). In raw
// mode it is sent too: the client asked for nothing else, and errors must be visible.
func (c *WS) SendJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own frame types always marshal
	}
	c.push(wsItem{text: b}, len(b))
}

func (c *WS) push(it wsItem, size int) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	if len(c.queue)-c.exempt >= c.opts.QueueLen || c.queued+size > c.opts.QueueBytes {
		c.closing = true
		c.queue, c.queued, c.exempt = nil, 0, 0
		c.mu.Unlock()
		if c.opts.Stats != nil {
			c.opts.Stats.SlowDisconnect.Add(1)
		}
		c.conn.Close() // the reader fails and unregisters; the client resumes from history
		return
	}
	c.queue = append(c.queue, it)
	c.queued += size
	c.kickLocked()
	c.mu.Unlock()
}

// Replay queues frames of our own (welcome, reset) and then what the client missed,
// ahead of anything sent later. It is not held to the queue limits, which are for live
// traffic: it is bounded by the history window, and a client cut off during its replay
// would only come back for the same replay again.
func (c *WS) Replay(control [][]byte, msgs []*Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	for _, b := range control {
		c.queue = append(c.queue, wsItem{text: b})
	}
	for _, m := range msgs {
		c.queue = append(c.queue, wsItem{m: m})
	}
	c.exempt += len(control) + len(msgs)
	if len(c.queue) > 0 {
		c.kickLocked()
	}
}

// kickLocked starts the writer unless it runs. c.mu must be held.
func (c *WS) kickLocked() {
	if !c.writing {
		c.writing = true
		go c.writeLoop()
	}
}

// writeLoop writes everything queued, batch by batch, and exits when the queue is empty.
func (c *WS) writeLoop() {
	for {
		c.mu.Lock()
		batch, ping := c.queue, c.pingDue
		if len(batch) == 0 && !ping {
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.queue, c.queued, c.exempt, c.pingDue = nil, 0, 0, false
		c.mu.Unlock()

		if err := c.write(batch, ping); err != nil {
			c.mu.Lock()
			c.closing, c.writing = true, false
			c.queue, c.queued, c.exempt = nil, 0, 0
			c.mu.Unlock()
			c.conn.Close()
			return
		}
	}
}

var errClosed = errors.New("connection closed by us")

func (c *WS) write(batch []wsItem, ping bool) error {
	if err := c.conn.SetWriteDeadline(time.Now().Add(writeWait)); err != nil {
		return err
	}
	for _, it := range batch {
		var err error
		switch {
		case it.m != nil && c.opts.V1:
			err = c.conn.WritePreparedMessage(it.m.V1Frame())
		case it.m != nil:
			err = c.conn.WritePreparedMessage(it.m.RawFrame())
		case it.text != nil:
			err = c.conn.WriteMessage(websocket.TextMessage, it.text)
		default:
			_ = c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(it.closeCode, it.reason))
			return errClosedAfterGrace(c)
		}
		if err != nil {
			return err
		}
	}
	if ping {
		return c.conn.WriteMessage(websocket.PingMessage, nil)
	}
	return nil
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

// Serve reads frames until the connection ends, handing each data frame to onFrame
// (on this goroutine, so one client's frames are handled in order). It returns the
// read error that ended it.
func (c *WS) Serve(onFrame func(typ int, data []byte)) error {
	defer func() {
		c.mu.Lock()
		c.closing = true
		c.queue, c.queued, c.exempt = nil, 0, 0
		if c.ping != nil {
			c.ping.Stop()
		}
		if c.age != nil {
			c.age.Stop()
		}
		c.mu.Unlock()
		close(c.done)
		c.conn.Close()
	}()
	pongWait := 2 * c.opts.PingPeriod
	c.conn.SetReadLimit(c.opts.MaxFrameBytes)
	_ = c.conn.SetReadDeadline(time.Now().Add(pongWait))
	c.conn.SetPongHandler(func(string) error {
		return c.conn.SetReadDeadline(time.Now().Add(pongWait))
	})
	c.mu.Lock()
	c.ping = time.AfterFunc(c.opts.PingPeriod, c.onPingTimer)
	if c.opts.MaxAge > 0 {
		c.age = time.AfterFunc(jitterDown(c.opts.MaxAge), c.expire)
	}
	c.mu.Unlock()
	for {
		typ, data, err := c.conn.ReadMessage()
		if err != nil {
			return err
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(pongWait))
		if c.refused.Load() {
			continue // read on only to see the client's close frame
		}
		onFrame(typ, data)
	}
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
	c.push(wsItem{closeCode: code, reason: reason}, 0)
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
	if c.opts.V1 {
		c.SendJSON(Reconnect{Type: "reconnect", Reason: "max connection age"})
	}
	c.push(wsItem{closeCode: websocket.CloseGoingAway, reason: "max connection age"}, 0)
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
}

// Reconnect is the bridge.v1 frame sent before a drain closes the connection.
type Reconnect struct {
	Type    string `json:"type"`
	Reason  string `json:"reason"`
	AfterMS int64  `json:"after_ms"`
}

// Drain sends a reconnect hint (bridge.v1 only) and close 1012, then waits until the
// connection is closed or ctx ends.
func (c *WS) Drain(ctx context.Context, after time.Duration) {
	if c.opts.V1 {
		c.SendJSON(Reconnect{Type: "reconnect", Reason: "draining", AfterMS: after.Milliseconds()})
	}
	c.push(wsItem{closeCode: CloseServiceRestart, reason: "service restart"}, 0)
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	select {
	case <-c.done:
	case <-ctx.Done():
		c.conn.Close()
	}
}

// GuardPings makes the client's pings count against allow, as its messages do: a
// ping within the rate gets its pong, one beyond it does not (allow closes the
// connection). Without it a client could make us write a pong per ping it sends, at
// any rate. Call it before Serve.
func (c *WS) GuardPings(allow func() bool) {
	ponger := c.conn.PingHandler()
	c.conn.SetPingHandler(func(data string) error {
		if !allow() {
			return nil
		}
		return ponger(data)
	})
}
