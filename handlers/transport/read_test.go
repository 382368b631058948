package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// clientFrame is a masked frame as a client sends it.
func clientFrame(op byte, fin bool, payload []byte) []byte {
	return rawClientFrame(op, fin, payload, 0, true)
}

// rawClientFrame is clientFrame with reserved bits rsv set, and without its mask
// unless masked (a server must refuse both).
func rawClientFrame(op byte, fin bool, payload []byte, rsv byte, masked bool) []byte {
	b0 := op | rsv
	if fin {
		b0 |= 0x80
	}
	var mbit byte
	if masked {
		mbit = 0x80
	}
	f := []byte{b0}
	switch n := len(payload); {
	case n <= 125:
		f = append(f, mbit|byte(n))
	case n <= 0xffff:
		f = binary.BigEndian.AppendUint16(append(f, mbit|126), uint16(n))
	default:
		f = binary.BigEndian.AppendUint64(append(f, mbit|127), uint64(n))
	}
	if !masked {
		return append(f, payload...)
	}
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	f = append(f, key[:]...)
	for i, c := range payload {
		f = append(f, c^key[i&3])
	}
	return f
}

// readServer runs a WS per connection with opts and charge as its guard, and sends
// every message it is handed on got.
func readServer(t *testing.T, opts WSOptions, charge func(*WS) func(int) bool) (url string, got chan []byte) {
	t.Helper()
	got = make(chan []byte, 1024)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		ws := NewWS(conn, "u", opts)
		if charge != nil {
			ws.Guard(charge(ws))
		}
		_ = ws.Serve(func(op int, data []byte) { got <- append([]byte{byte(op)}, data...) })
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http"), got
}

// dialRaw opens a WebSocket whose frames the test writes itself (on NetConn) and whose
// server frames it reads with gorilla.
func dialRaw(t *testing.T, url string) (*websocket.Conn, net.Conn) {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, c.NetConn()
}

// closeOf reads until the server's close frame and returns its code and reason.
func closeOf(t *testing.T, c *websocket.Conn, within time.Duration) (int, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	for {
		_, _, err := c.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Text
		}
		if err != nil {
			t.Fatalf("no close frame within %s: %v", within, err)
		}
	}
}

// TestReadRefusesBadFrames: each frame RFC 6455 forbids closes the connection with the
// code it calls for, and a text message that is not UTF-8 with 1007.
func TestReadRefusesBadFrames(t *testing.T) {
	url, _ := readServer(t, WSOptions{MaxFrameBytes: 1024}, nil)
	text := byte(websocket.TextMessage)
	for _, tc := range []struct {
		name   string
		frames [][]byte
		code   int
	}{
		{"unmasked", [][]byte{rawClientFrame(text, true, []byte("hi"), 0, false)}, websocket.CloseProtocolError},
		{"reserved bit", [][]byte{rawClientFrame(text, true, []byte("hi"), 0x40, true)}, websocket.CloseProtocolError},
		{"unknown opcode", [][]byte{clientFrame(3, true, nil)}, websocket.CloseProtocolError},
		{"fragmented ping", [][]byte{clientFrame(websocket.PingMessage, false, nil)}, websocket.CloseProtocolError},
		{"long ping", [][]byte{clientFrame(websocket.PingMessage, true, make([]byte, 126))}, websocket.CloseProtocolError},
		{"continuation first", [][]byte{clientFrame(0, true, []byte("x"))}, websocket.CloseProtocolError},
		{"message inside a message", [][]byte{clientFrame(text, false, []byte("x")), clientFrame(text, true, []byte("y"))}, websocket.CloseProtocolError},
		{"close with 1 byte", [][]byte{clientFrame(websocket.CloseMessage, true, []byte{3})}, websocket.CloseProtocolError},
		{"close code 1005", [][]byte{clientFrame(websocket.CloseMessage, true, []byte{0x03, 0xed})}, websocket.CloseProtocolError},
		{"close reason not UTF-8", [][]byte{clientFrame(websocket.CloseMessage, true, []byte{0x03, 0xe8, 0xff})}, websocket.CloseInvalidFramePayloadData},
		{"text not UTF-8", [][]byte{clientFrame(text, true, []byte{'a', 0xff, 0xfe})}, websocket.CloseInvalidFramePayloadData},
		{"text not UTF-8 in its last fragment", [][]byte{clientFrame(text, false, []byte("ok")), clientFrame(0, true, []byte{0xc3})}, websocket.CloseInvalidFramePayloadData},
		{"frame too big", [][]byte{clientFrame(websocket.BinaryMessage, true, make([]byte, 1025))}, websocket.CloseMessageTooBig},
		{"message too big in fragments", [][]byte{clientFrame(websocket.BinaryMessage, false, make([]byte, 600)), clientFrame(0, true, make([]byte, 600))}, websocket.CloseMessageTooBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, nc := dialRaw(t, url)
			for _, f := range tc.frames {
				if _, err := nc.Write(f); err != nil {
					t.Fatal(err)
				}
			}
			if code, reason := closeOf(t, c, 5*time.Second); code != tc.code {
				t.Errorf("got close %d %q, want %d", code, reason, tc.code)
			}
		})
	}
	t.Run("too many fragments", func(t *testing.T) {
		c, nc := dialRaw(t, url)
		frames := [][]byte{clientFrame(text, false, nil)}
		for range maxFragments {
			frames = append(frames, clientFrame(0, false, nil))
		}
		if _, err := nc.Write(bytes.Join(frames, nil)); err != nil {
			t.Fatal(err)
		}
		if code, reason := closeOf(t, c, 5*time.Second); code != websocket.CloseMessageTooBig || !strings.Contains(reason, "fragments") {
			t.Errorf("got close %d %q, want 1009 for too many fragments", code, reason)
		}
	})
}

// TestReadAssemblesMessages: fragments (a rune split between two of them included) make
// one message, control frames may come between them, a ping is answered with its
// payload, and the client's close is answered with its code.
func TestReadAssemblesMessages(t *testing.T) {
	url, got := readServer(t, WSOptions{}, nil)
	c, nc := dialRaw(t, url)
	pong := make(chan string, 1)
	c.SetPongHandler(func(s string) error { pong <- s; return nil })
	é := []byte("é")
	frames := [][]byte{
		clientFrame(websocket.TextMessage, false, append([]byte("caf"), é[0])),
		clientFrame(websocket.PingMessage, true, []byte("between")),
		clientFrame(0, false, é[1:]),
		clientFrame(websocket.PongMessage, true, nil), // unsolicited: allowed, and ignored
		clientFrame(0, true, []byte("!")),
		clientFrame(websocket.BinaryMessage, true, make([]byte, 65536)), // a 64-bit length
	}
	if _, err := nc.Write(bytes.Join(frames, nil)); err != nil {
		t.Fatal(err)
	}
	for _, want := range [][]byte{append([]byte{websocket.TextMessage}, "café!"...), append([]byte{websocket.BinaryMessage}, make([]byte, 65536)...)} {
		select {
		case m := <-got:
			if !bytes.Equal(m, want) {
				t.Errorf("got %.20q (%d bytes), want %.20q (%d bytes)", m, len(m), want, len(want))
			}
		case <-time.After(5 * time.Second):
			t.Fatal("message not handed on")
		}
	}
	go func() { _, _, _ = c.ReadMessage() }() // runs the pong handler
	select {
	case p := <-pong:
		if p != "between" {
			t.Errorf("pong %q, want the ping's payload", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ping not answered")
	}
}

// TestReadClientClose: the client's close is answered with its own code.
func TestReadClientClose(t *testing.T) {
	url, _ := readServer(t, WSOptions{}, nil)
	c, nc := dialRaw(t, url)
	if _, err := nc.Write(clientFrame(websocket.CloseMessage, true, websocket.FormatCloseMessage(4001, "bye"))); err != nil {
		t.Fatal(err)
	}
	if code, _ := closeOf(t, c, 5*time.Second); code != 4001 {
		t.Errorf("answered close %d, want the client's 4001", code)
	}
}

// TestReadUnfinishedMessage: a message must be whole MessageTimeout after its first
// frame, however the client keeps the connection busy meanwhile (pongs, continuations).
func TestReadUnfinishedMessage(t *testing.T) {
	const timeout = 300 * time.Millisecond
	url, _ := readServer(t, WSOptions{MessageTimeout: timeout, PingPeriod: time.Hour}, nil)
	c, nc := dialRaw(t, url)
	start := time.Now()
	if _, err := nc.Write(clientFrame(websocket.TextMessage, false, []byte("{"))); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := nc.Write(append(clientFrame(websocket.PongMessage, true, nil), clientFrame(0, false, nil)...)); err != nil {
				return
			}
		}
	}()
	code, reason := closeOf(t, c, 10*time.Second)
	if code != websocket.ClosePolicyViolation || !strings.Contains(reason, "not finished") {
		t.Errorf("got close %d %q, want 1008 for a message not finished in time", code, reason)
	}
	if took := time.Since(start); took < timeout {
		t.Errorf("closed after %s, before the %s deadline", took, timeout)
	}
}

// TestReadChargesEveryFrame: the guard is asked for every frame, pongs and empty
// continuations included, with the payload each announces, before it is handled.
func TestReadChargesEveryFrame(t *testing.T) {
	var frames, bytesIn atomic.Int64
	url, got := readServer(t, WSOptions{}, func(*WS) func(int) bool {
		return func(n int) bool { frames.Add(1); bytesIn.Add(int64(n)); return true }
	})
	_, nc := dialRaw(t, url)
	seq := [][]byte{
		clientFrame(websocket.PongMessage, true, []byte("p")),
		clientFrame(websocket.TextMessage, false, []byte("ab")),
		clientFrame(0, false, nil),
		clientFrame(0, false, nil),
		clientFrame(websocket.PingMessage, true, nil),
		clientFrame(0, true, []byte("c")),
	}
	if _, err := nc.Write(bytes.Join(seq, nil)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("message not handed on")
	}
	if frames.Load() != 6 || bytesIn.Load() != 4 {
		t.Errorf("charged %d frames, %d bytes; want 6 frames, 4 bytes", frames.Load(), bytesIn.Load())
	}
}

// TestReadGuardRefusal: a frame the guard refuses is not handled, and what the client
// sends after it is only read away until the socket closes.
func TestReadGuardRefusal(t *testing.T) {
	url, got := readServer(t, WSOptions{}, func(ws *WS) func(int) bool {
		var n atomic.Int64
		return func(int) bool {
			if n.Add(1) > 2 {
				ws.CloseWith(websocket.ClosePolicyViolation, "rate")
				return false
			}
			return true
		}
	})
	c, nc := dialRaw(t, url)
	go func() {
		for {
			if _, err := nc.Write(clientFrame(websocket.TextMessage, true, []byte("m"))); err != nil {
				return
			}
		}
	}()
	if code, _ := closeOf(t, c, 5*time.Second); code != websocket.ClosePolicyViolation {
		t.Errorf("got close %d, want 1008", code)
	}
	if n := len(got); n != 2 {
		t.Errorf("%d messages handed on, want the 2 the guard let through", n)
	}
}
