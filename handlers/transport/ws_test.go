package transport

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/presence"
)

// A client that reads nothing is cut once the bytes queued for it pass QueueBytes,
// even while the number of queued messages is far below QueueLen.
func TestWSCutsAClientByQueuedBytes(t *testing.T) {
	hub := newTestHub()
	srv := wsServer(t, hub, WSOptions{QueueLen: 1 << 20, QueueBytes: 2 << 20, Stats: &hub.Stats})
	dialUser(t, srv, "u") // never read
	ws := onlyConn(t, hub)

	m := &presence.Message{UserID: "u", Body: bytes.Repeat([]byte("x"), 1<<20)} // one encoding, queued many times
	const maxPushes = 64                                                        // 64 MiB: far more than the kernel buffers and the queue hold together
	for i := 0; hub.Stats.SlowDisconnect.Load() == 0; i++ {
		if i == maxPushes {
			t.Fatalf("not cut after %d MiB queued to a client that reads nothing", maxPushes)
		}
		ws.Send([]presence.Delivery{{M: m, At: presence.Cursor{}}})
	}
	eventually(t, 5*time.Second, "the cut client unregistered", func() bool { return hub.Count() == 0 })
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.queue.len() != 0 || ws.queue.bytes != 0 {
		t.Errorf("queue still holds %d messages, %d bytes after the cut", ws.queue.len(), ws.queue.bytes)
	}
}

// Pings go out every PingPeriod; a client that answers them stays, one that does not
// is closed readIdle (1.5 periods) after its last frame.
func TestWSPingPong(t *testing.T) {
	const period = 200 * time.Millisecond // a pongWait of 100 ms: room for -race on a loaded machine
	hub := newTestHub()
	srv := wsServer(t, hub, WSOptions{PingPeriod: period})

	dialUser(t, srv, "silent") // reads nothing, so never answers a ping
	eventually(t, 5*time.Second, "silent registered", func() bool { return userConns(hub, "silent") == 1 })
	eventually(t, 5*time.Second, "the silent client closed by its read deadline", func() bool { return userConns(hub, "silent") == 0 })

	live := dialUser(t, srv, "live")
	var pings atomic.Int32
	live.SetPingHandler(func(data string) error {
		pings.Add(1)
		return live.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	go func() { // reading runs the ping handler
		for {
			if _, _, err := live.ReadMessage(); err != nil {
				return
			}
		}
	}()
	// Ten pings answered span more than six times the read deadline.
	eventually(t, 10*time.Second, "ten pings", func() bool { return pings.Load() >= 10 })
	if userConns(hub, "live") != 1 {
		t.Fatal("a client answering every ping was closed")
	}
}

// The writer goroutine exists only while there is something to write.
func TestWSWriterStopsWhenIdle(t *testing.T) {
	hub := newTestHub()
	srv := wsServer(t, hub, WSOptions{})
	c := dialUser(t, srv, "u")
	ws := onlyConn(t, hub)
	writing := func() bool {
		ws.mu.Lock()
		defer ws.mu.Unlock()
		return ws.writing
	}
	for round := range 3 {
		for i := range 100 {
			hub.Deliver(&presence.Message{UserID: "u", Body: []byte{byte('a' + i%26)}})
		}
		for range 100 {
			if _, _, err := c.ReadMessage(); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		eventually(t, 5*time.Second, "the writer goroutine gone once the queue is empty", func() bool { return !writing() })
	}
}
