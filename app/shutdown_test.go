package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/app/apptest"
	"github.com/pushbridge/pushbridge/presence"
)

// Shape of the shutdown test.
const (
	shutdownTimeout = 3 * time.Second
	// shutdownSlack covers what follows the bounded drain: closing the broker
	// connection and returning from Run.
	shutdownSlack = 2 * time.Second
	// inFlight messages are published just before the stop, so some are being
	// consumed while the drain starts.
	inFlight = 400
)

type seqBody struct {
	ReceiveUserID string `json:"receiveUserId"`
	N             int    `json:"n"`
}

func TestGracefulShutdown(t *testing.T) {
	forEachMode(t, func(t *testing.T, m *brokerMode) {
		s := apptest.Start(t, m.with(map[string]string{
			"BRIDGE_SHUTDOWN_TIMEOUT": shutdownTimeout.String(), "BRIDGE_SEND_QUEUE": "4096",
		}))
		v1 := apptest.DialWS(t, s.WSURL("/ws?user=v"), "bridge.v1", nil)
		nextV1(t, v1) // welcome
		raw := apptest.DialWS(t, s.WSURL("/ws/yxd/r"), "", nil)
		stalled := apptest.DialStalled(t, s.WSURL("/ws/yxd/stalled"), "") // will not answer the close
		idle, err := net.Dial("tcp", s.Addr)                              // a connection that never sends a request
		if err != nil {
			t.Fatal(err)
		}
		defer idle.Close()
		apptest.Eventually(t, 5*time.Second, "clients registered", func() bool { return connCount(t, s) == 3 })

		published := make(map[int]bool)
		if m.tp != nil {
			bodies := make([][]byte, inFlight)
			for n := range bodies {
				bodies[n], _ = json.Marshal(seqBody{ReceiveUserID: []string{"v", "r"}[n%2], N: n})
				published[n] = true
			}
			m.tp.PublishMany(t, "contract", bodies, nil)
		} else {
			for n := range 20 {
				b, _ := json.Marshal(seqBody{ReceiveUserID: []string{"v", "r"}[n%2], N: n})
				m.publish(t, "contract", b, "")
				published[n] = true
			}
		}

		start := time.Now()
		s.Stop(t)
		if took := time.Since(start); took > shutdownTimeout+shutdownSlack {
			t.Errorf("Run returned %v after the stop, want within BRIDGE_SHUTDOWN_TIMEOUT (%v)", took, shutdownTimeout)
		}
		for _, bad := range []string{"http shutdown", "still in flight"} {
			if strings.Contains(s.Stderr.String(), bad) {
				t.Errorf("the drain ran out of time (%q in the log):\n%s", bad, s.Stderr.String())
			}
		}

		received := make(map[int]bool)
		v1Got := readUntilClose(t, v1, true)
		rawGot := readUntilClose(t, raw, false)
		for user, frames := range map[string][][]byte{"v": v1Got, "r": rawGot} {
			last := -1
			for _, data := range frames {
				var b seqBody
				if err := json.Unmarshal(data, &b); err != nil || b.ReceiveUserID != user || b.N <= last || received[b.N] {
					t.Fatalf("user %s got %q after n=%d: want its own messages, in order, once", user, data, last)
				}
				last, received[b.N] = b.N, true
			}
		}
		assertSocketEnds(t, stalled)

		if m.tp == nil {
			return // the in-process queue dies with the process, with what it still held
		}
		left := drainQueue(t, m.tp.Queues[0])
		// With Redis, a message is handed off (and acked) once it is in the shared
		// history and published to the instances; one still on its way through pub/sub
		// when the clients were sent away is not delivered live, and the clients get it
		// when they resume with their cursor. So: acked means recorded.
		recorded := recordedIn(t, m, "v", "r")
		for n := range published {
			handedOff := received[n] || recorded[n]
			switch {
			case handedOff && left[n]:
				t.Errorf("message %d was handed off and is still in the queue: handed off but not acked", n)
			case !handedOff && !left[n]:
				t.Errorf("message %d is lost: neither delivered, nor recorded for resume, nor left in the queue", n)
			case received[n] && m.rds != nil && !recorded[n]:
				t.Errorf("message %d reached its client but is not in the history: a resume would miss it", n)
			}
		}
		t.Logf("%d delivered before the stop, %d recorded for resume, %d left in the queue for another instance", len(received), len(recorded), len(left))
	})
}

// readUntilClose reads c to its end and returns the message bodies (for bridge.v1, the
// data of message frames). It checks the end: a bridge.v1 client gets a reconnect
// frame last, then every client gets close code 1012.
func readUntilClose(t *testing.T, c *apptest.WSClient, v1 bool) [][]byte {
	t.Helper()
	var out [][]byte
	var reconnect *serverFrame
	for f := range c.Frames {
		if !v1 {
			out = append(out, f.Data)
			continue
		}
		var sf serverFrame
		if err := json.Unmarshal(f.Data, &sf); err != nil {
			t.Fatalf("frame %q is not JSON", f.Data)
		}
		switch {
		case reconnect != nil:
			t.Fatalf("frame %q after the reconnect frame", f.Data)
		case sf.Type == "message":
			out = append(out, sf.Data)
		case sf.Type == "reconnect":
			reconnect = &sf
		default:
			t.Fatalf("unexpected frame %q", f.Data)
		}
	}
	if v1 && (reconnect == nil || reconnect.Reason == "" || reconnect.AfterMS == nil ||
		*reconnect.AfterMS < 0 || time.Duration(*reconnect.AfterMS)*time.Millisecond > shutdownTimeout) {
		t.Errorf("bridge.v1 client: last frame %+v, want a reconnect frame with a reason and 0 <= after_ms <= the drain", reconnect)
	}
	var ce *websocket.CloseError
	if !errors.As(c.Err, &ce) || ce.Code != 1012 {
		t.Errorf("connection ended with %v, want close code 1012 (service restart)", c.Err)
	}
	return out
}

// drainQueue takes every message left in q and returns their sequence numbers.
func drainQueue(t *testing.T, q string) map[int]bool {
	t.Helper()
	ch, err := apptest.RequireRabbit(t).Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	left := make(map[int]bool)
	for {
		d, ok, err := ch.Get(q, true)
		if err != nil {
			t.Fatalf("get from %s: %v", q, err)
		}
		if !ok {
			return left
		}
		var b seqBody
		if err := json.Unmarshal(d.Body, &b); err != nil {
			t.Fatalf("queue %s holds %q: %v", q, d.Body, err)
		}
		if left[b.N] {
			t.Errorf("message %d is in the queue twice", b.N)
		}
		left[b.N] = true
	}
}

// A client told to reconnect may come straight back; a draining instance must not
// take it in, or must close it too: nothing connected survives the drain.
func TestDrainLeavesNoConnectionBehind(t *testing.T) {
	s := apptest.Start(t, map[string]string{"BRIDGE_DEV": "1", "BRIDGE_SHUTDOWN_TIMEOUT": "5s"})
	apptest.DialStalled(t, s.WSURL("/ws/yxd/stalled"), "") // holds the drain open for the close grace
	apptest.Eventually(t, 5*time.Second, "registered", func() bool { return connCount(t, s) == 1 })

	stopped := make(chan struct{})
	go func() { s.Stop(t); close(stopped) }()
	apptest.Eventually(t, 5*time.Second, "draining", func() bool {
		resp, err := http.Get(s.URL + "/readyz")
		if err != nil {
			return true // already refusing connections
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	var late []*websocket.Conn
	for attempts := 0; ; attempts++ {
		select {
		case <-stopped:
		default:
			d := websocket.Dialer{HandshakeTimeout: 2 * time.Second}
			if c, _, err := d.Dial(s.WSURL("/ws/yxd/late"), nil); err == nil {
				late = append(late, c)
				t.Cleanup(func() { c.Close() })
			}
			continue
		}
		break
	}
	for i, c := range late {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			_, _, err := c.ReadMessage()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection %d of %d, opened during the drain, is still open after Run returned", i+1, len(late))
			}
			if err != nil {
				break
			}
		}
	}
}

// recordedIn reads the message numbers of users' messages from the shared history
// (rabbitmq+redis mode; empty otherwise): what a client resuming from the start of the
// window would be given.
func recordedIn(t *testing.T, m *brokerMode, users ...string) map[int]bool {
	t.Helper()
	out := make(map[int]bool)
	if m.rds == nil {
		return out
	}
	h := presence.NewRedisHistory(m.rds.Client, presence.RedisOptions{Prefix: m.rds.Prefix})
	for _, u := range users {
		w, err := h.Read(context.Background(), u, presence.Pos{}, 100_000, 0)
		if err != nil {
			t.Fatalf("read %s's history: %v", u, err)
		}
		for _, msg := range w.Msgs {
			var b seqBody
			if json.Unmarshal(msg.Body, &b) == nil && b.ReceiveUserID == u {
				out[b.N] = true
			}
		}
	}
	return out
}
