package apptest

import (
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Frame is one WebSocket message a test client read.
type Frame struct {
	Type int
	Data []byte
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
			c.Frames <- Frame{typ, data}
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
