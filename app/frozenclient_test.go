package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// frozenClientEnv makes the test binary a client of one transport instead of running
// the tests (see TestMain): the process TestFrozenClientsLeave stops with SIGSTOP.
// Its value is "<transport> <server URL> <user>".
const frozenClientEnv = "PUSHBRIDGE_FROZEN_CLIENT"

func TestMain(m *testing.M) {
	if v := os.Getenv(frozenClientEnv); v != "" {
		var transport, base, user string
		if _, err := fmt.Sscan(v, &transport, &base, &user); err != nil {
			fmt.Fprintf(os.Stderr, "%s=%q: %v\n", frozenClientEnv, v, err)
			os.Exit(2)
		}
		err := runFrozenClient(transport, base, user)
		fmt.Fprintf(os.Stderr, "frozen client (%s) ended: %v\n", transport, err)
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// runFrozenClient is a well-behaved client until it is stopped: it reads everything,
// answers every ping (WebSocket: gorilla's default ping handler, while reading; SSE:
// POST /api/pong, as bridge.js does) and polls again at once. It returns when its
// connection ends, which a test that froze it never lets it see.
func runFrozenClient(transport, base, user string) error {
	q := url.Values{"user": {user}}
	switch transport {
	case "ws":
		d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Subprotocols: []string{"bridge.v1"}}
		c, _, err := d.Dial("ws"+base[len("http"):]+"/ws?"+q.Encode(), nil)
		if err != nil {
			return err
		}
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return err
			}
		}
	case "sse":
		sq := url.Values{"user": {user}, "protocol": {"bridge.v1"}, "pong": {"1"}}
		c, err := apptest.ConnectSSE(context.Background(), base+"/sse?"+sq.Encode(), nil)
		if err != nil {
			return err
		}
		for ev := range c.Events {
			if ev.Event != "ping" {
				continue
			}
			body, _ := json.Marshal(map[string]string{"token": ev.Data})
			resp, err := http.Post(base+"/api/pong?"+q.Encode(), "application/json", bytes.NewReader(body))
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				return fmt.Errorf("POST /api/pong: %s", resp.Status)
			}
		}
		return fmt.Errorf("stream ended: %v", c.Err)
	case "poll":
		cursor := ""
		for {
			pq := url.Values{"user": {user}, "cursor": {cursor}} // the server's wait: at most a heartbeat
			resp, err := http.Get(base + "/poll?" + pq.Encode())
			if err != nil {
				return err
			}
			var ans struct {
				Cursor string `json:"cursor"`
			}
			err = json.NewDecoder(resp.Body).Decode(&ans)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				return fmt.Errorf("poll: %s, %v", resp.Status, err)
			}
			cursor = ans.Cursor
		}
	}
	return fmt.Errorf("unknown transport %q", transport)
}
