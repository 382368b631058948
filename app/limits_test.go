package app_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// limitServer runs a dev-mode server with small limits, and a bystander: user "b",
// connected in raw mode, who must keep receiving whatever another client does.
type limitServer struct {
	*apptest.Server
	tp *apptest.Topology
	b  *apptest.WSClient
	n  int // messages sent to b so far
}

func newLimitServer(t *testing.T, extra map[string]string) *limitServer {
	t.Helper()
	tp := apptest.NewTopology(t, "contract")
	env := map[string]string{
		"AMQP_URL": apptest.AMQPURL(), "BRIDGE_DEV": "1", "BRIDGE_INBOUND": "off",
		"BRIDGE_MAX_MESSAGE_BYTES": "1024", "BRIDGE_MESSAGE_RATE": "5", "BRIDGE_MESSAGE_BURST": "10",
		"BRIDGE_MAX_CONNS_PER_USER": "5",
	}
	for _, m := range []map[string]string{tp.Env, extra} {
		for k, v := range m {
			env[k] = v
		}
	}
	s := apptest.Start(t, env)
	ls := &limitServer{Server: s, tp: tp, b: apptest.DialWS(t, s.WSURL("/ws/yxd/b"), "", nil)}
	apptest.Eventually(t, 5*time.Second, "bystander registered", func() bool { return connCount(t, s) >= 1 })
	return ls
}

// bystanderReceives publishes a message to b and checks that b gets exactly it next.
func (ls *limitServer) bystanderReceives(t *testing.T) {
	t.Helper()
	ls.n++
	body := fmt.Appendf(nil, `{"receiveUserId":"b","n":%d}`, ls.n)
	ls.tp.Publish(t, "contract", body, nil)
	if f := ls.b.Next(t, 10*time.Second); !bytes.Equal(f.Data, body) {
		t.Fatalf("bystander got %q, want %q", f.Data, body)
	}
}

// TestOversizedFrameCloses1009: a frame over BRIDGE_MAX_MESSAGE_BYTES closes that
// connection with 1009 (message too big) and nobody else notices.
func TestOversizedFrameCloses1009(t *testing.T) {
	ls := newLimitServer(t, nil)
	for _, sub := range []string{"", "bridge.v1"} {
		a := apptest.DialWS(t, ls.WSURL("/ws?user=a"), sub, nil)
		if err := a.Conn.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("x"), 4096)); err != nil {
			t.Fatalf("write: %v", err)
		}
		if got := closeCode(t, a, 10*time.Second); got != websocket.CloseMessageTooBig {
			t.Errorf("subprotocol %q: got close %d, want 1009", sub, got)
		}
		ls.bystanderReceives(t)
	}
}

// TestFloodCloses1008: a client sending faster than BRIDGE_MESSAGE_RATE (beyond its
// burst) is closed with 1008 (policy violation) while others keep receiving — a flood
// of messages and a flood of pings (each of which would cost us a pong) alike.
func TestFloodCloses1008(t *testing.T) {
	floods := map[string]func(c *websocket.Conn) error{
		"messages": func(c *websocket.Conn) error {
			return c.WriteMessage(websocket.TextMessage, []byte(`{"type":"send","data":"spam"}`))
		},
		"pings": func(c *websocket.Conn) error {
			return c.WriteControl(websocket.PingMessage, []byte("spam"), time.Now().Add(time.Second))
		},
	}
	for name, send := range floods {
		t.Run(name, func(t *testing.T) {
			ls := newLimitServer(t, nil)
			a := apptest.DialWS(t, ls.WSURL("/ws?user=a"), "bridge.v1", nil)
			flooding := make(chan struct{})
			go func() {
				defer close(flooding)
				for i := 0; i < 10_000; i++ {
					if send(a.Conn) != nil {
						return // the server has closed: the flood is over
					}
				}
			}()
			ls.bystanderReceives(t)
			if got := closeCode(t, a, 10*time.Second); got != websocket.ClosePolicyViolation {
				t.Errorf("got close %d, want 1008", got)
			}
			<-flooding
			ls.bystanderReceives(t)
		})
	}
}

// TestPingsWithinTheRateArePonged: a client's keepalive pings get their pongs.
func TestPingsWithinTheRateArePonged(t *testing.T) {
	ls := newLimitServer(t, nil)
	a := apptest.DialWS(t, ls.WSURL("/ws?user=a"), "bridge.v1", nil)
	pongs := make(chan string, 10)
	a.Conn.SetPongHandler(func(data string) error { pongs <- data; return nil })
	for i := range 5 {
		want := fmt.Sprint("keepalive ", i)
		if err := a.Conn.WriteControl(websocket.PingMessage, []byte(want), time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-pongs:
			if got != want {
				t.Fatalf("pong %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no pong for ping %d", i)
		}
	}
}

// TestSlowSenderIsNotAFlood: within the burst, frames are handled, not refused.
func TestSlowSenderIsNotAFlood(t *testing.T) {
	ls := newLimitServer(t, nil)
	a := apptest.DialWS(t, ls.WSURL("/ws?user=a"), "bridge.v1", nil)
	a.Next(t, 5*time.Second) // welcome
	for i := 0; i < 5; i++ {
		if err := a.Conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"send","data":"hi"}`)); err != nil {
			t.Fatal(err)
		}
		// BRIDGE_INBOUND=off answers each one: the frame was read and handled.
		if f := a.Next(t, 5*time.Second); !strings.Contains(string(f.Data), "turned off") {
			t.Fatalf("frame %d answered %s, want the inbound-off error", i, f.Data)
		}
	}
}

// TestConnectionsPerUser: with BRIDGE_MAX_CONNS_PER_USER=5, a user's 1,000 further
// connection attempts are all refused with 503 and Retry-After before any upgrade,
// while another user keeps receiving; a slot freed is a slot usable again.
func TestConnectionsPerUser(t *testing.T) {
	ls := newLimitServer(t, nil)
	held := make([]*apptest.WSClient, 5)
	for i := range held {
		held[i] = apptest.DialWS(t, ls.WSURL("/ws/yxd/a"), "", nil)
	}
	const attempts, parallel = 1000, 25
	answers := make(chan string, attempts) // "status Retry-After", or the dial error
	var wg sync.WaitGroup
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
			for i := 0; i < attempts/parallel; i++ {
				conn, resp, err := d.Dial(ls.WSURL("/ws/yxd/a"), nil)
				switch {
				case err == nil:
					conn.Close()
					answers <- "upgraded"
				case resp == nil:
					answers <- err.Error()
				default:
					resp.Body.Close()
					answers <- fmt.Sprintf("%d %s", resp.StatusCode, resp.Header.Get("Retry-After"))
				}
			}
		}()
	}
	ls.bystanderReceives(t)
	ls.bystanderReceives(t)
	wg.Wait()
	close(answers)
	refused := 0
	for got := range answers {
		if got != "503 5" {
			t.Fatalf("attempt over the limit: got %q, want 503 with Retry-After 5", got)
		}
		refused++
	}
	if refused != attempts {
		t.Fatalf("got %d answers, want %d", refused, attempts)
	}
	ls.bystanderReceives(t)
	if got := connCount(t, ls.Server); got != 6 {
		t.Errorf("connections held: got %d, want 6 (5 of a, 1 of b)", got)
	}
	held[0].Conn.Close()
	apptest.Eventually(t, 5*time.Second, "a freed slot accepts a connection", func() bool {
		return dialStatus(t, ls.WSURL("/ws/yxd/a"), nil) == http.StatusSwitchingProtocols
	})
}

// TestConnectionsPerInstance: BRIDGE_MAX_CONNS counts every user together.
func TestConnectionsPerInstance(t *testing.T) {
	ls := newLimitServer(t, map[string]string{"BRIDGE_MAX_CONNS": "3"})
	// The test's own HTTP requests count too while the server still runs them: a
	// WebSocket may have to wait for the last one to be over.
	for _, u := range []string{"c", "d"} {
		apptest.Eventually(t, 5*time.Second, "upgraded as "+u, func() bool {
			c, _, err := websocket.DefaultDialer.Dial(ls.WSURL("/ws/yxd/"+u), nil)
			if err == nil {
				t.Cleanup(func() { c.Close() })
			}
			return err == nil
		})
	}
	resp := dialResponse(t, ls.WSURL("/ws/yxd/e"), nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "5" {
		t.Errorf("fourth connection: got %d Retry-After %q, want 503 with Retry-After 5", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	ls.bystanderReceives(t)
}

// TestRequestSizeLimits: an oversized query, header block or body gets its own status.
func TestRequestSizeLimits(t *testing.T) {
	ls := newLimitServer(t, map[string]string{"BRIDGE_MAX_QUERY_BYTES": "1024", "BRIDGE_MAX_HEADER_BYTES": "8192"})
	get := func(path string, h http.Header) int {
		req, _ := http.NewRequest(http.MethodGet, ls.URL+path, nil)
		req.Header = h
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get("/ws?user=a&pad="+strings.Repeat("x", 2000), nil); got != http.StatusRequestURITooLong {
		t.Errorf("long query: got %d, want 414", got)
	}
	// net/http allows 4 KiB of slack over MaxHeaderBytes.
	if got := get("/healthz", http.Header{"X-Pad": {strings.Repeat("x", 16<<10)}}); got != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("large headers: got %d, want 431", got)
	}
	body := fmt.Sprintf(`{"routingKey":"contract","data":%q}`, strings.Repeat("x", 8<<10))
	resp, err := http.Post(ls.URL+"/api/publish", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("large publish body: got %d, want 413", resp.StatusCode)
	}
	ls.bystanderReceives(t)
}

// TestHandshakeTimeout: a client that connects and never sends its request is cut off
// after BRIDGE_HANDSHAKE_TIMEOUT instead of holding the connection.
func TestHandshakeTimeout(t *testing.T) {
	ls := newLimitServer(t, map[string]string{"BRIDGE_HANDSHAKE_TIMEOUT": "200ms"})
	conn, err := net.Dial("tcp", ls.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /ws?user=a HTTP/1.1\r\nHost: x\r\n")); err != nil { // and stall
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	for {
		_, err := conn.Read(buf)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("the server still holds a stalled handshake after 10s")
		}
		if err != nil {
			break // closed by the server
		}
	}
	ls.bystanderReceives(t)
}
