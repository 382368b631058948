package transport

import (
	"context"
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
		ctx := context.Background()
		if err := hub.Attach(ctx, quiet{ws}, "", 0); err != nil {
			tb.Error(err)
			return
		}
		defer hub.Detach(ctx, quiet{ws})
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
	return hub.Conns()[0].(quiet).WS
}

// quiet is a WS registered without its greeting (welcome, reset), so that a test
// reads only what it sends.
type quiet struct{ *WS }

func (quiet) Replay(*presence.Replay) {}

// newTestHub is a hub with its parts in memory.
func newTestHub() *presence.Hub {
	return presence.NewHub(presence.HubConfig{
		Instance: "test", History: presence.NewMemoryHistory(100, time.Hour), Directory: presence.NewMemoryDirectory(),
	})
}

// userConns counts the connections of user that hub holds.
func userConns(hub *presence.Hub, user string) int {
	n := 0
	for _, c := range hub.Conns() {
		if c.User() == user {
			n++
		}
	}
	return n
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
