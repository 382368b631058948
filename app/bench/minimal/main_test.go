package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// TestBroadcastReachesEveryConnection: a publish arrives once, verbatim, on every
// connection, whatever the size of its frame header.
func TestBroadcastReachesEveryConnection(t *testing.T) {
	s := &server{conns: map[*conn]struct{}{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/publish", s.publishJSON)
	mux.HandleFunc("GET /", s.ws)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	var clients []*websocket.Conn
	for range 3 {
		c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws/yxd/u1", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	// the server registers an upgrade after the client's dial returns
	apptest.Eventually(t, 10*time.Second, "every connection registered", func() bool {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return len(s.conns) == len(clients)
	})
	for _, size := range []int{1, 200, 70_000} {
		data := `"` + strings.Repeat("x", size) + `"`
		resp, err := http.Post(srv.URL+"/api/publish", "application/json", strings.NewReader(`{"routingKey":"k","data":`+data+`}`))
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("publish: %v %v", resp, err)
		}
		resp.Body.Close()
		for i, c := range clients {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, got, err := c.ReadMessage()
			if err != nil || string(got) != data {
				t.Fatalf("client %d, size %d: got %d bytes, %v", i, size, len(got), err)
			}
		}
	}
}
