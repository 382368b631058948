package app_test

import (
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// brokerModes runs a delivery test against the real RabbitMQ and the in-process queue.
// publish sends a body with a routing key as a backend would (see brokerMode.publish).
func brokerModes(t *testing.T, run func(t *testing.T, env map[string]string, publish func(t *testing.T, key string, body []byte))) {
	forEachMode(t, func(t *testing.T, m *brokerMode) {
		run(t, m.env, func(t *testing.T, key string, body []byte) { m.publish(t, key, body, "") })
	})
}

func TestTargetedAndBroadcastRaw(t *testing.T) {
	brokerModes(t, func(t *testing.T, env map[string]string, publish func(*testing.T, string, []byte)) {
		s := apptest.Start(t, env)
		u1 := apptest.DialWS(t, s.WSURL("/ws/yxd/1"), "", nil)
		u2 := apptest.DialWS(t, s.WSURL("/ws/yxd/2"), "", nil)
		apptest.Eventually(t, 5*time.Second, "both registered", func() bool { return connCount(t, s) == 2 })

		targeted := []byte(`{"receiveUserId":"1","routingKey":"contract"}`)
		publish(t, "contract", targeted)
		broadcast := []byte(`{"routingKey":"contract","text":"to all"}`)
		publish(t, "contract", broadcast)

		f := u1.Next(t, 10*time.Second)
		if f.Type != websocket.TextMessage || string(f.Data) != string(targeted) {
			t.Fatalf("user 1 got %d %q, want the targeted body byte for byte", f.Type, f.Data)
		}
		if f = u1.Next(t, 10*time.Second); string(f.Data) != string(broadcast) {
			t.Fatalf("user 1 second frame %q, want the broadcast", f.Data)
		}
		// User 2's first frame is the broadcast: the targeted message, published
		// before it on the same queue, never reached user 2.
		if f = u2.Next(t, 10*time.Second); string(f.Data) != string(broadcast) {
			t.Fatalf("user 2 got %q, want only the broadcast", f.Data)
		}
	})
}
