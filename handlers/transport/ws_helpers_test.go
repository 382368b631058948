package transport

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/presence"
)

// wsServer serves WebSockets whose server side is a WS of user ?user= registered in hub.
func wsServer(tb testing.TB, hub *presence.Hub, opts WSOptions) *httptest.Server {
	tb.Helper()
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		ws := NewWS(conn, r.URL.Query().Get("user"), opts)
		hub.Add(ws)
		defer hub.Remove(ws)
		_ = ws.Serve(func(int, []byte) {})
	}))
	tb.Cleanup(srv.Close)
	return srv
}

func dialUser(tb testing.TB, srv *httptest.Server, user string) *websocket.Conn {
	tb.Helper()
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/?user="+user, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// onlyConn is the single connection hub holds, as a *WS.
func onlyConn(t *testing.T, hub *presence.Hub) *WS {
	t.Helper()
	eventually(t, 5*time.Second, "one connection registered", func() bool { return hub.Count() == 1 })
	return hub.Conns()[0].(*WS)
}

// eventually polls cond until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 20*time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", timeout, what)
		}
		time.Sleep(wait)
	}
}
