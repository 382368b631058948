package e2e_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// TestConnsPerUserAcrossInstances: BRIDGE_MAX_CONNS_PER_USER holds across instances
// through the presence map: a user with 3 connections spread over two instances gets
// 503 for a 4th on either, while another user still connects; a closed one frees a
// place.
func TestConnsPerUserAcrossInstances(t *testing.T) {
	env, _ := clusterEnv(t, map[string]string{"BRIDGE_MAX_CONNS_PER_USER": "3"})
	ps := startCluster(t, 2, env)
	dial := func(p *proc, user string) (*websocket.Conn, int) {
		c, resp, err := websocket.DefaultDialer.Dial(p.wsURL("/ws?user="+user), nil)
		if err != nil {
			if resp == nil {
				t.Fatalf("dial %s: %v", p.Name, err)
			}
			return nil, resp.StatusCode
		}
		t.Cleanup(func() { c.Close() })
		return c, http.StatusSwitchingProtocols
	}
	var held []*websocket.Conn
	for _, p := range []*proc{ps[0], ps[0], ps[1]} {
		c, code := dial(p, "many")
		if c == nil {
			t.Fatalf("connection %d of 3 refused with %d", len(held)+1, code)
		}
		held = append(held, c)
	}
	waitUserConns(t, ps[1], "many", 3)
	for _, p := range ps {
		if _, code := dial(p, "many"); code != http.StatusServiceUnavailable {
			t.Errorf("4th connection on %s: %d, want 503", p.Name, code)
		}
	}
	if c, code := dial(ps[1], "other"); c == nil {
		t.Errorf("another user refused with %d", code)
	}
	held[0].Close()
	waitUserConns(t, ps[1], "many", 2)
	if c, code := dial(ps[1], "many"); c == nil {
		t.Errorf("after one closed, a new connection was refused with %d", code)
	}
}

// waitUserConns waits until p's presence route lists n connections of user.
func waitUserConns(t *testing.T, p *proc, user string, n int) {
	t.Helper()
	apptest.Eventually(t, 10*time.Second, "the user's connections in presence", func() bool {
		var up struct{ Connections []struct{ Instance string } }
		if err := apptest.GetJSON(p.URL+"/api/presence/"+user, apiKey, &up); err != nil {
			t.Fatal(err)
		}
		return len(up.Connections) == n
	})
}
