package transport

import (
	"errors"
	"io"
	"net"
	"os"
	"time"

	"github.com/gorilla/websocket"
)

// Guard makes every frame the client sends — data, continuation, ping, pong — pass
// charge(payload bytes) before anything is done with it, the announced payload
// charged before it is read. When charge says no, it has closed the connection
// (CloseWith) and the frame goes no further. Without it a client could flood us with
// pongs or empty continuations at no cost. Call it before Serve.
func (c *WS) Guard(charge func(payload int) bool) { c.guard = charge }

// Serve reads the client's frames until the connection ends, handing each whole data
// message to onFrame (on this goroutine, so one client's messages are handled in
// order). It returns what ended it.
//
// Deadlines: the client must send something (a pong at least) within readIdle of its
// last frame, so it has at least pongWait to answer each ping; and a message must be
// whole MessageTimeout after its first frame. A frame the protocol forbids, a message
// too big or in too many fragments, a text message that is not UTF-8 or a message not
// finished in time closes the connection with its code (1002, 1009, 1007, 1008).
func (c *WS) Serve(onFrame func(typ int, data []byte)) error {
	defer c.endServe()
	c.mu.Lock()
	c.ping = time.AfterFunc(c.opts.PingPeriod, c.onPingTimer)
	if c.opts.MaxAge > 0 {
		c.age = time.AfterFunc(jitterDown(c.opts.MaxAge), c.expire)
	}
	c.mu.Unlock()
	nc := c.conn.NetConn()
	var (
		hdr     [maxClientHeader]byte
		msg     message
		msgDue  time.Time // when msg must be whole
		pongDue = time.Now().Add(readIdle(c.opts.PingPeriod))
	)
	for {
		due := pongDue
		if msg.op != 0 && msgDue.Before(due) {
			due = msgDue
		}
		_ = nc.SetReadDeadline(due)
		h, err := readHeader(nc, &hdr, c.opts.MaxFrameBytes)
		if err == nil && c.guard != nil && !c.refused.Load() && !c.guard(int(h.length)) {
			return c.discard(nc) // the guard has closed it
		}
		if err == nil {
			err = c.frame(nc, h, &msg, &msgDue, onFrame)
		}
		switch {
		case err == nil:
			pongDue = time.Now().Add(readIdle(c.opts.PingPeriod))
		case msg.op != 0 && isTimeout(err) && !time.Now().Before(msgDue):
			c.CloseWith(websocket.ClosePolicyViolation, "message not finished in time")
			return c.discard(nc)
		default:
			var ce *closeError
			if errors.As(err, &ce) {
				c.CloseWith(ce.code, ce.reason)
				return c.discard(nc)
			}
			return err
		}
	}
}

// frame handles one frame whose header h was read: its payload read from nc, a data
// message handed to onFrame once whole, a control frame answered.
func (c *WS) frame(nc net.Conn, h frameHeader, msg *message, msgDue *time.Time, onFrame func(int, []byte)) error {
	if h.op >= opClose {
		p, err := readPayload(nc, h, nil)
		if err != nil {
			return err
		}
		return c.control(h.op, p)
	}
	if msg.op == 0 {
		*msgDue = time.Now().Add(c.opts.MessageTimeout)
		_ = nc.SetReadDeadline(*msgDue) // the payload too comes within it
	}
	if err := msg.begin(h, c.opts.MaxFrameBytes); err != nil {
		return err
	}
	var err error
	if msg.data, err = readPayload(nc, h, msg.data); err != nil {
		return err
	}
	done, err := msg.end(h)
	if err != nil || !done {
		return err
	}
	op, data := msg.take()
	if !c.refused.Load() { // once refused, read on only to see the client's close frame
		onFrame(op, data)
	}
	return nil
}

// control handles a ping, a pong or the client's close.
func (c *WS) control(op int, p []byte) error {
	switch op {
	case opPing:
		c.onPing(p)
	case opClose:
		if err := closeCodeOf(p); err != nil {
			return err
		}
		// Our answer echoes the client's code, as gorilla's would; after a close of our
		// own gorilla writes nothing more (ErrCloseSent), and nothing more is needed.
		code := websocket.CloseNormalClosure
		if len(p) >= 2 {
			code = int(p[0])<<8 | int(p[1])
		}
		_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(closeGrace))
		return errClientClosed
	}
	return nil // a pong: that it came is what counts
}

// onPing answers the client's ping through the writer (see write): only the latest
// ping is answered when several arrive before the writer runs, as RFC 6455 §5.5.3
// allows, so pings never pile up in the queue.
func (c *WS) onPing(data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closing {
		c.pong = serverFrame(websocket.PongMessage, data)
		c.kickLocked()
	}
}

// discard reads and drops what the client still sends after we closed the connection
// for what it sent, for at most closeGrace: the close frame goes out meanwhile, and
// a socket closed with unread bytes would be reset, which can destroy that frame on its
// way. Frames are not parsed any more: after a violation the stream cannot be trusted,
// and a flood costs us no more than a copy.
func (c *WS) discard(nc net.Conn) error {
	_ = nc.SetReadDeadline(time.Now().Add(closeGrace))
	_, err := io.Copy(io.Discard, nc)
	return cmpErr(err, errClientClosed)
}

// endServe stops the timers and the writer's intake, and closes the socket.
func (c *WS) endServe() {
	c.mu.Lock()
	c.closing = true
	c.queue.drop()
	if c.ping != nil {
		c.ping.Stop()
	}
	if c.age != nil {
		c.age.Stop()
	}
	c.mu.Unlock()
	close(c.done)
	c.conn.Close()
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}
