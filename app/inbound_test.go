package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// serverFrame is any bridge.v1 frame the server sends.
type serverFrame struct {
	Type       string          `json:"type"`
	ID         string          `json:"id"`
	RoutingKey string          `json:"routingKey"`
	Data       json.RawMessage `json:"data"`
	User       string          `json:"user"`
	Instance   string          `json:"instance"`
	Resumed    *bool           `json:"resumed"`
	Error      string          `json:"error"`
	Reason     string          `json:"reason"`
	AfterMS    *int64          `json:"after_ms"`
}

func nextV1(t *testing.T, c *apptest.WSClient) serverFrame {
	t.Helper()
	f := c.Next(t, 10*time.Second)
	var sf serverFrame
	if f.Type != websocket.TextMessage || json.Unmarshal(f.Data, &sf) != nil {
		t.Fatalf("frame %d %q is not a bridge.v1 JSON text frame", f.Type, f.Data)
	}
	return sf
}

func send(t *testing.T, c *apptest.WSClient, frame string) {
	t.Helper()
	if err := c.Conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		t.Fatalf("client send: %v", err)
	}
}

// consumeKeys binds a queue of the test's own to the exchange with keys and returns its
// deliveries, as a backend service consuming what clients send would.
func consumeKeys(t *testing.T, tp *apptest.Topology, keys ...string) <-chan amqp.Delivery {
	t.Helper()
	ch, err := apptest.RequireRabbit(t).Channel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("declare the backend's queue: %v", err)
	}
	for _, k := range keys {
		if err := ch.QueueBind(q.Name, k, tp.Exchange, false, nil); err != nil {
			t.Fatalf("bind %s: %v", k, err)
		}
	}
	ds, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func nextDelivery(t *testing.T, ds <-chan amqp.Delivery) amqp.Delivery {
	t.Helper()
	select {
	case d := <-ds:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("the backend received nothing within 10s")
	}
	return amqp.Delivery{}
}

func TestInboundBrokerPublishesWithTheSendersID(t *testing.T) {
	tp := apptest.NewTopology(t, "contract")
	env := map[string]string{"BRIDGE_DEV": "1", "AMQP_URL": apptest.AMQPURL(), "BRIDGE_INBOUND": "broker"}
	for k, v := range tp.Env {
		env[k] = v
	}
	s := apptest.Start(t, env)
	ds := consumeKeys(t, tp, "chat", "inbound")
	v1 := apptest.DialWS(t, s.WSURL("/ws?user=alice"), "bridge.v1", nil)
	if w := nextV1(t, v1); w.Type != "welcome" {
		t.Fatalf("first frame %+v, want welcome", w)
	}
	raw := apptest.DialWS(t, s.WSURL("/ws/yxd/bob"), "", nil)
	apptest.Eventually(t, 5*time.Second, "both registered", func() bool { return connCount(t, s) == 2 })

	// Fields a client might use to claim another identity are ignored.
	send(t, v1, `{"type":"send","routingKey":"chat","data":{"text":"hi"},"userId":"mallory","x-user-id":"mallory","headers":{"x-user-id":"mallory"}}`)
	d := nextDelivery(t, ds)
	if d.RoutingKey != "chat" || string(d.Body) != `{"text":"hi"}` || d.Headers["x-user-id"] != "alice" {
		t.Fatalf("backend got key %q body %q headers %v, want chat {\"text\":\"hi\"} x-user-id=alice", d.RoutingKey, d.Body, d.Headers)
	}
	send(t, v1, `{"type":"send","routingKey":"chat","data":"plain words"}`)
	if d := nextDelivery(t, ds); string(d.Body) != "plain words" || d.Headers["x-user-id"] != "alice" {
		t.Fatalf("backend got %q %v, want the string's text from alice", d.Body, d.Headers)
	}
	send(t, raw, `raw text from bob`)
	if d := nextDelivery(t, ds); d.RoutingKey != "inbound" || string(d.Body) != "raw text from bob" || d.Headers["x-user-id"] != "bob" {
		t.Fatalf("backend got key %q body %q headers %v, want inbound / the raw text / x-user-id=bob", d.RoutingKey, d.Body, d.Headers)
	}

	// A routing key this gateway consumes would come back as if a backend sent it.
	send(t, v1, `{"type":"send","routingKey":"contract","data":{"receiveUserId":"bob","text":"fake"}}`)
	if f := nextV1(t, v1); f.Type != "error" || !strings.Contains(f.Error, "consumed by this gateway") {
		t.Fatalf("alice got %+v, want an error frame refusing the reserved key", f)
	}
	// Nothing reached bob: his next frame is this one.
	tp.Publish(t, "contract", []byte(`{"receiveUserId":"bob","text":"real"}`), nil)
	if f := raw.Next(t, 10*time.Second); string(f.Data) != `{"receiveUserId":"bob","text":"real"}` {
		t.Fatalf("bob got %q, want only the backend's message", f.Data)
	}
	// A key nobody consumes is a clear error, not a silent drop.
	send(t, v1, `{"type":"send","routingKey":"nobody-listens","data":1}`)
	if f := nextV1(t, v1); f.Type != "error" || !strings.Contains(f.Error, "unroutable") {
		t.Fatalf("alice got %+v, want an unroutable error frame", f)
	}
}

func TestInboundBroadcastAndOff(t *testing.T) {
	t.Run("broadcast", func(t *testing.T) {
		s := apptest.Start(t, map[string]string{"BRIDGE_DEV": "1", "BRIDGE_INBOUND": "broadcast"})
		v1 := apptest.DialWS(t, s.WSURL("/ws?user=alice"), "bridge.v1", nil)
		nextV1(t, v1) // welcome
		raw := apptest.DialWS(t, s.WSURL("/ws/yxd/bob"), "", nil)
		apptest.Eventually(t, 5*time.Second, "both registered", func() bool { return connCount(t, s) == 2 })

		send(t, raw, "hello all")
		if f := raw.Next(t, 10*time.Second); string(f.Data) != "bob : hello all" {
			t.Fatalf("bob got %q, want %q", f.Data, "bob : hello all")
		}
		if f := nextV1(t, v1); f.Type != "message" || string(f.Data) != `"bob : hello all"` || f.ID == "" {
			t.Fatalf("alice got %+v, want a message frame with data \"bob : hello all\" and an id", f)
		}
		send(t, v1, `{"type":"send","data":"hi bob","userId":"mallory"}`)
		if f := raw.Next(t, 10*time.Second); string(f.Data) != "alice : hi bob" {
			t.Fatalf("bob got %q, want %q", f.Data, "alice : hi bob")
		}
	})
	t.Run("off", func(t *testing.T) {
		s := apptest.Start(t, map[string]string{"BRIDGE_DEV": "1", "BRIDGE_INBOUND": "off"})
		v1 := apptest.DialWS(t, s.WSURL("/ws?user=alice"), "bridge.v1", nil)
		nextV1(t, v1) // welcome
		raw := apptest.DialWS(t, s.WSURL("/ws/yxd/bob"), "", nil)
		send(t, v1, `{"type":"send","routingKey":"chat","data":"x"}`)
		if f := nextV1(t, v1); f.Type != "error" || !strings.Contains(f.Error, "BRIDGE_INBOUND=off") {
			t.Fatalf("alice got %+v, want an error frame naming BRIDGE_INBOUND=off", f)
		}
		send(t, raw, "x")
		if f := raw.Next(t, 10*time.Second); !strings.Contains(string(f.Data), `"type":"error"`) {
			t.Fatalf("bob got %q, want an error frame", f.Data)
		}
		if got := get(t, s, "/healthz"); got != http.StatusOK {
			t.Fatalf("healthz %d after refused sends", got)
		}
	})
}
