package app_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// rabbitServer starts a dev-mode server on its own RabbitMQ topology (key "contract")
// with env on top.
func rabbitServer(t *testing.T, env map[string]string) (*apptest.Server, *apptest.Topology) {
	t.Helper()
	tp := apptest.NewTopology(t, "contract")
	all := map[string]string{"BRIDGE_DEV": "1", "AMQP_URL": apptest.AMQPURL()}
	for k, v := range tp.Env {
		all[k] = v
	}
	for k, v := range env {
		all[k] = v
	}
	return apptest.Start(t, all), tp
}

// publishTo publishes body for user through RabbitMQ and waits until the server has
// routed it (so it is in the history).
func publishTo(t *testing.T, s *apptest.Server, tp *apptest.Topology, user string, body []byte) {
	t.Helper()
	before := metric(t, s, "pushbridge_deliveries_acked_total")
	var h amqp.Table
	if user != "" {
		h = amqp.Table{"x-user-id": user}
	}
	tp.Publish(t, "contract", body, h)
	apptest.Eventually(t, 10*time.Second, "message routed", func() bool {
		return metric(t, s, "pushbridge_deliveries_acked_total") > before
	})
}

// pollFrame is a bridge.v1 message frame in a poll answer; Data keeps its own bytes.
type pollFrame struct {
	Type       string          `json:"type"`
	ID         string          `json:"id"`
	RoutingKey string          `json:"routingKey"`
	Data       json.RawMessage `json:"data"`
}

type pollAnswer struct {
	Messages  []pollFrame `json:"messages"`
	Cursor    string      `json:"cursor"`
	Reset     bool        `json:"reset"`
	Reason    string      `json:"reason"`
	Reconnect *struct {
		Reason  string `json:"reason"`
		AfterMS int64  `json:"after_ms"`
	} `json:"reconnect"`
}

// poll asks /poll with the given query and wants a 200.
func poll(t *testing.T, s *apptest.Server, q url.Values) pollAnswer {
	t.Helper()
	a, err := pollErr(s, q)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// pollErr is poll for another goroutine than the test's.
func pollErr(s *apptest.Server, q url.Values) (pollAnswer, error) {
	var a pollAnswer
	resp, err := http.Get(s.URL + "/poll?" + q.Encode())
	if err != nil {
		return a, fmt.Errorf("poll: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return a, fmt.Errorf("poll %s: status %d: %s", q.Encode(), resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("poll answer %s: %w", b, err)
	}
	return a, nil
}

// bodyOfData turns a bridge.v1 frame's data back into the body: a JSON string is the
// body's text, anything else is the body's own bytes.
func bodyOfData(t *testing.T, data json.RawMessage) string {
	t.Helper()
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			t.Fatalf("data %s: %v", data, err)
		}
		return s
	}
	return string(data)
}

// v1Frame decodes a bridge.v1 WebSocket frame.
func v1Frame(t *testing.T, b []byte) map[string]json.RawMessage {
	t.Helper()
	var f map[string]json.RawMessage
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("frame %s: %v", b, err)
	}
	return f
}

func jsonString(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("want a JSON string, got %s", raw)
	}
	return s
}

func q(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}
