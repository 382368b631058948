package transport

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/presence"
)

// Payload lengths at each side of the header's length encodings: 7 bits up to 125,
// 16 more bits up to 65535, 64 more bits above.
var frameBoundaries = []int{0, 1, 125, 126, 127, 65535, 65536, 60 << 10}

// Headers use the shortest length encoding: browsers fail the connection on any other,
// though gorilla's client accepts it.
func TestServerFrameHeader(t *testing.T) {
	for _, n := range frameBoundaries {
		f := serverFrame(websocket.BinaryMessage, bytes.Repeat([]byte{7}, n))
		var want []byte
		switch {
		case n <= 125:
			want = []byte{0x82, byte(n)}
		case n <= 65535:
			want = binary.BigEndian.AppendUint16([]byte{0x82, 126}, uint16(n))
		default:
			want = binary.BigEndian.AppendUint64([]byte{0x82, 127}, uint64(n))
		}
		if !bytes.Equal(f[:len(want)], want) || len(f) != len(want)+n {
			t.Errorf("payload %d: header % x, frame %d bytes; want header % x, frame %d bytes",
				n, f[:min(len(f), 10)], len(f), want, len(want)+n)
		}
	}
}

// Frames written by the vectored writer, many to a batch, read back by a gorilla client
// in order: text and binary (a raw body that is not UTF-8), across the length encodings.
func TestWSVectoredFramesRaw(t *testing.T) {
	var msgs []*presence.Message
	for _, n := range frameBoundaries[1:] { // bodies of exactly n bytes
		text := append(bytes.Repeat([]byte("é"), n/2), bytes.Repeat([]byte("a"), n%2)...)
		bin := append(bytes.Repeat([]byte("a"), n-1), 0xff)
		msgs = append(msgs, &presence.Message{UserID: "u", Body: text}, &presence.Message{UserID: "u", Body: bin})
	}
	msgs = append(msgs, &presence.Message{UserID: "u", Body: []byte{}}) // empty: a text frame of no bytes
	hub := newTestHub()
	srv := wsServer(t, hub, WSOptions{})
	c := dialUser(t, srv, "u")
	onlyConn(t, hub)
	for _, m := range msgs {
		hub.Deliver(m)
	}
	for i, m := range msgs {
		want := websocket.TextMessage
		if bytes.HasSuffix(m.Body, []byte{0xff}) {
			want = websocket.BinaryMessage
		}
		typ, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("message %d (%d bytes): %v", i, len(m.Body), err)
		}
		if typ != want || !bytes.Equal(data, m.Body) {
			t.Fatalf("message %d: got type %d, %d bytes; want type %d, %d bytes", i, typ, len(data), want, len(m.Body))
		}
	}
}

// bridge.v1 frames whose JSON is exactly each boundary length, and our own text frames
// queued among them.
func TestWSVectoredFramesV1(t *testing.T) {
	overhead := len(V1JSON(&presence.Message{ID: "1-0", RoutingKey: "k"})) // the body is a JSON string, "" when empty
	hub := newTestHub()
	srv := wsServer(t, hub, WSOptions{V1: true})
	c := dialUser(t, srv, "u")
	ws := onlyConn(t, hub)
	var want [][]byte
	for _, n := range frameBoundaries {
		if n < overhead {
			continue
		}
		m := &presence.Message{ID: "1-0", UserID: "u", RoutingKey: "k", Body: bytes.Repeat([]byte("z"), n-overhead)}
		if got := len(V1JSON(m)); got != n {
			t.Fatalf("test setup: JSON of %d bytes, want %d", got, n)
		}
		hub.Deliver(m)
		want = append(want, V1JSON(m))
		ws.SendError(strconv.Itoa(n))
		want = append(want, []byte(`{"type":"error","error":"`+strconv.Itoa(n)+`"}`))
	}
	for i, w := range want {
		typ, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if typ != websocket.TextMessage || !bytes.Equal(data, w) || !json.Valid(data) {
			t.Fatalf("frame %d: got type %d, %d bytes; want a text frame of %d bytes of JSON", i, typ, len(data), len(w))
		}
	}
}

// A client pinging as fast as it can while messages and our own frames flow: every
// frame arrives whole and in order, and its latest ping is answered.
func TestWSFramesIntactWhilePinged(t *testing.T) {
	const total = 3000
	hub := newTestHub()
	srv := wsServer(t, hub, WSOptions{QueueLen: total}) // delivered faster than read: never cut as slow
	c := dialUser(t, srv, "u")
	ws := onlyConn(t, hub)
	var lastPong atomic.Value
	c.SetPongHandler(func(data string) error { lastPong.Store(data); return nil })
	got := make(chan []byte, total)
	go func() { // reading runs the pong handler, so it goes on after the messages
		defer close(got)
		for {
			_, data, err := c.ReadMessage()
			if err != nil {
				return
			}
			got <- data
		}
	}()
	stop := make(chan struct{})
	pinged := make(chan int)
	go func() {
		n := 0
		defer func() { pinged <- n }()
		for ; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := c.WriteControl(websocket.PingMessage, []byte(strconv.Itoa(n)), time.Now().Add(5*time.Second)); err != nil {
				t.Errorf("ping %d: %v", n, err)
				return
			}
		}
	}()
	body := func(i int) []byte { return fmt.Appendf(nil, "message %d %s", i, bytes.Repeat([]byte("x"), i%300)) }
	for i := range total {
		if i%10 == 0 { // one of our own frames: a JSON string
			ws.sendJSON(string(body(i)))
			continue
		}
		hub.Deliver(&presence.Message{UserID: "u", Body: body(i)})
	}
	for i := range total {
		var data []byte
		select {
		case data = <-got:
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d never came", i)
		}
		want := body(i)
		if i%10 == 0 {
			want, _ = json.Marshal(string(want))
		}
		if !bytes.Equal(data, want) {
			t.Fatalf("message %d: got %.40q…, want %.40q…", i, data, want)
		}
	}
	close(stop)
	n := <-pinged
	if n == 0 {
		t.Fatal("no ping was sent while the messages flowed")
	}
	if err := c.WriteControl(websocket.PingMessage, []byte("last"), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the last ping answered", func() bool { return lastPong.Load() == "last" })
	t.Logf("%d pings while %d frames flowed", n, total)
}

// A client whose socket is stalled is cut once our write has waited writeWait, and a
// ping from it does not cut it sooner: were the pong written by gorilla from the
// reader, its WriteControl would reset our blocked writev's deadline to its own second.
func TestWSStalledWriteCutAfterWriteWaitEvenWhenPinged(t *testing.T) {
	hub := newTestHub()
	srv := wsServer(t, hub, WSOptions{})
	c := dialUser(t, srv, "u") // never reads
	ws := onlyConn(t, hub)
	m := &presence.Message{UserID: "u", Body: bytes.Repeat([]byte("x"), 1<<20)}
	msgs := make([]*presence.Message, 64) // far more than the socket buffers hold: the writer blocks in writev
	for i := range msgs {
		msgs[i] = m
	}
	ws.Replay(&presence.Replay{Messages: msgs}) // queued at once, so the writer takes them in one batch; not held to the queue limits
	eventually(t, 5*time.Second, "the writer holding the whole queue", func() bool {
		ws.mu.Lock()
		defer ws.mu.Unlock()
		return ws.queue.len() == 0 && ws.writing
	})
	start := time.Now()
	if err := c.WriteControl(websocket.PingMessage, []byte("p"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	// Watched for twice gorilla's pong deadline (1s): a connection cut by anything
	// else (the read deadline, the queue limits) would take far longer.
	for time.Since(start) < 2*time.Second {
		if hub.Count() == 0 {
			t.Fatalf("cut %v after the client pinged, want writeWait (%v)", time.Since(start), writeWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
	eventually(t, writeWait, "the stalled client cut by the write deadline", func() bool { return hub.Count() == 0 })
}
