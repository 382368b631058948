package app_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// rawAnswer writes req on a new connection and reads until the server closes it:
// the status line of its answer ("" if none) and how long after the write it closed.
// It fails the test if the connection is still open after limit.
func rawAnswer(t *testing.T, addr, req string, limit time.Duration) (status string, took time.Duration) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(start.Add(limit))
	br := bufio.NewReader(conn)
	status, _ = br.ReadString('\n')
	_, err = io.Copy(io.Discard, br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%q: still open after %s (answer %q)", firstLine(req), limit, status)
	}
	return strings.TrimSpace(status), time.Since(start)
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\r\n"); return l }

// TestBodyOnGetRefused: a GET or HEAD that announces a body is answered 400 and its
// connection closed at once, without waiting for (or reading) the body, on any route.
func TestBodyOnGetRefused(t *testing.T) {
	ls := newLimitServer(t, nil) // bodies get the default 10 s
	for _, req := range []string{
		"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
		"GET /ws?user=a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 5\r\n\r\n",
		"GET /sse?user=a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HEAD /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n",
	} {
		status, took := rawAnswer(t, ls.Addr, req, 5*time.Second)
		if !strings.HasPrefix(status, "HTTP/1.1 400") {
			t.Errorf("%q: got %q, want 400", firstLine(req), status)
		}
		t.Logf("%q: %s, closed after %s", firstLine(req), status, took.Round(time.Millisecond))
	}
	ls.bystanderReceives(t)
}

// TestBodyDeadline: a request whose body does not arrive within BRIDGE_BODY_TIMEOUT is
// answered 408 when the handler was reading it, and its connection is closed either
// way; a body that arrives in time, even in pieces, is served.
func TestBodyDeadline(t *testing.T) {
	const timeout = 300 * time.Millisecond
	ls := newLimitServer(t, map[string]string{"BRIDGE_BODY_TIMEOUT": "300ms", "BRIDGE_API_KEY": strings.Repeat("k", 32)})
	for _, tc := range []struct {
		name, req, want string
	}{
		{"send, half a body", "POST /api/send?user=a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"data\":", "HTTP/1.1 408"},
		{"send, chunked, no end", "POST /api/send?user=a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{\"\r\n", "HTTP/1.1 408"},
		// Refused before the body is read: net/http reads what is left, within the
		// same deadline, before it answers.
		{"publish without the key, no body", "POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", "HTTP/1.1 401"},
		{"no route, no body", "POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", "HTTP/1.1 40"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, took := rawAnswer(t, ls.Addr, tc.req, 10*time.Second)
			if !strings.HasPrefix(status, tc.want) {
				t.Errorf("got %q, want %s…", status, tc.want)
			}
			if took < timeout {
				t.Errorf("closed after %s, before the %s deadline: the body was not waited for", took, timeout)
			}
			t.Logf("%s, closed after %s", status, took.Round(time.Millisecond))
		})
	}

	// In time, in two pieces: served, and the connection stays usable.
	conn, err := net.Dial("tcp", ls.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"routingKey":"contract","data":"x"}`
	req := "POST /api/send?user=a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	br := bufio.NewReader(conn)
	for i := 0; i < 2; i++ {
		if _, err := io.WriteString(conn, req+body[:10]); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(conn, body[10:]); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// BRIDGE_INBOUND=off in newLimitServer: a 403 is the handler's own answer.
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "turned off") {
			t.Fatalf("request %d: got %d %s, want the handler's 403", i, resp.StatusCode, b)
		}
	}
	ls.bystanderReceives(t)
}

// TestSilentConnsGiveWay: connections count against BRIDGE_MAX_CONNS from accept, and at
// the limit a new one takes the place of the one that has waited longest for its
// client: twice the limit in silent connections never lock out a client that talks,
// nor a WebSocket; live streams are never the ones closed.
func TestSilentConnsGiveWay(t *testing.T) {
	const limit = 20
	ls := newLimitServer(t, map[string]string{"BRIDGE_MAX_CONNS": strconv.Itoa(limit)})
	live := apptest.DialWS(t, ls.WSURL("/ws/yxd/live"), "", nil)
	var silent []net.Conn
	defer func() {
		for _, c := range silent {
			c.Close()
		}
	}()
	for i := 0; i < 2*limit; i++ {
		c, err := net.Dial("tcp", ls.Addr)
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	for i := 0; i < 5; i++ {
		resp, err := http.Get(ls.URL + "/healthz")
		if err != nil {
			t.Fatalf("healthz %d among silent connections: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("healthz %d: got %d", i, resp.StatusCode)
		}
	}
	ws, _, err := websocket.DefaultDialer.Dial(ls.WSURL("/ws/yxd/new"), nil)
	if err != nil {
		t.Fatalf("a WebSocket among silent connections: %v", err)
	}
	ws.Close()
	// The oldest silent connections were closed to make room (read EOF at once).
	_ = silent[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent[0].Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Errorf("oldest silent connection: read %v, want it closed", err)
	}
	if got := metric(t, ls.Server, "pushbridge_tcp_connections_evicted_total"); got < limit {
		t.Errorf("evicted: got %v, want at least %d", got, limit)
	}
	if got := metric(t, ls.Server, "pushbridge_tcp_connections_refused_total"); got != 0 {
		t.Errorf("refused: got %v, want 0 (there was always a silent connection to close)", got)
	}
	ls.bystanderReceives(t)
	body := []byte(`{"receiveUserId":"live"}`)
	ls.tp.Publish(t, "contract", body, nil)
	if f := live.Next(t, 10*time.Second); string(f.Data) != string(body) {
		t.Errorf("the live WebSocket got %q, want %q", f.Data, body)
	}
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && strings.Contains(oe.Err.Error(), "reset")
}

// TestTakenStreamsCounted: an SSE stream's connection, which its handler takes from
// net/http, counts against BRIDGE_MAX_CONNS until it closes, as a WebSocket's does.
func TestTakenStreamsCounted(t *testing.T) {
	ls := newLimitServer(t, map[string]string{"BRIDGE_MAX_CONNS": "100"})
	count := func() int { return int(metric(t, ls.Server, "pushbridge_tcp_connections")) }
	before := count()
	var streams []*apptest.SSEClient
	for i := range 3 {
		s := apptest.OpenSSE(t, ls.URL+"/sse?user=taken"+strconv.Itoa(i), nil)
		if ev := s.Next(t, 5*time.Second); ev.Retry == "" {
			t.Fatalf("stream %d opened with %+v, want the retry hint", i, ev)
		}
		streams = append(streams, s)
	}
	apptest.Eventually(t, 5*time.Second, "the streams' connections counted", func() bool { return count() == before+3 })
	for _, s := range streams {
		s.Close()
	}
	apptest.Eventually(t, 5*time.Second, "the closed streams' connections no longer counted", func() bool { return count() == before })
}
