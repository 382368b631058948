package apptest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Frame is one WebSocket message a test client read.
type Frame struct {
	Type int
	Data []byte
	At   time.Time // when it was read off the socket, for latencies
}

// WSClient is a test WebSocket client whose frames are read in the background.
type WSClient struct {
	Conn   *websocket.Conn
	Frames chan Frame // closed when the connection ends
	Err    error      // the read error that ended it, valid after Frames is closed
}

// DialWS connects to url with the given subprotocol ("" for raw mode).
func DialWS(t testing.TB, url, subprotocol string, header http.Header) *WSClient {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	if subprotocol != "" {
		d.Subprotocols = []string{subprotocol}
	}
	conn, resp, err := d.Dial(url, header)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", url, err, status)
	}
	c := &WSClient{Conn: conn, Frames: make(chan Frame, 1<<16)}
	go func() {
		defer close(c.Frames)
		for {
			typ, data, err := conn.ReadMessage()
			if err != nil {
				c.Err = err
				return
			}
			c.Frames <- Frame{typ, data, time.Now()}
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return c
}

// Next returns the next frame, failing the test if none comes within timeout.
func (c *WSClient) Next(t testing.TB, timeout time.Duration) Frame {
	t.Helper()
	select {
	case f, ok := <-c.Frames:
		if !ok {
			t.Fatalf("connection ended before a frame came: %v", c.Err)
		}
		return f
	case <-time.After(timeout):
		t.Fatalf("no frame within %s", timeout)
	}
	return Frame{}
}

// stalledReadBuffer is the kernel receive buffer of a client that never reads: small,
// so the server's writes back up after a few hundred KiB rather than several MiB.
const stalledReadBuffer = 4 << 10

// DialStalled opens a WebSocket on url (raw mode unless subprotocol is set) and never
// reads from it: a client whose TCP window closes once its small receive buffer fills.
// It returns the socket so the test can read it once the server should have cut it.
func DialStalled(t testing.TB, url, subprotocol string) net.Conn {
	t.Helper()
	var raw net.Conn
	d := websocket.Dialer{
		HandshakeTimeout: 10 * time.Second,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			// Set before connecting, so the window advertised in the handshake is small.
			nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				err := rc.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, stalledReadBuffer)
				})
				return errors.Join(err, serr)
			}}
			c, err := nd.DialContext(ctx, network, addr)
			raw = c
			return c, err
		},
	}
	if subprotocol != "" {
		d.Subprotocols = []string{subprotocol}
	}
	conn, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close() })
	return raw
}
