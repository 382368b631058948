package app_test

import (
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// brokerMode is one way of running the server: against the real RabbitMQ, or with the
// in-process queue, which only the server's publish API can reach.
type brokerMode struct {
	name string
	env  map[string]string // what the server needs: dev mode, broker and bindings
	tp   *apptest.Topology // the test's RabbitMQ topology; nil for the in-process queue
	keys []string          // routing keys bound to a queue
	rds  *apptest.Redis    // the shared state, in the rabbitmq+redis mode; nil otherwise
}

// modeKeys are the routing keys every mode binds, one queue each.
var modeKeys = []string{"contract", "transaction"}

// forEachMode runs a test against the real RabbitMQ and against the in-process queue,
// and against the real RabbitMQ with the shared state in the real Redis (REDIS_URL):
// one instance of the many-instance setup must behave like the single one.
func forEachMode(t *testing.T, run func(t *testing.T, m *brokerMode)) {
	t.Run("rabbitmq", func(t *testing.T) {
		tp := apptest.NewTopology(t, modeKeys...)
		env := map[string]string{"BRIDGE_DEV": "1", "AMQP_URL": apptest.AMQPURL()}
		for k, v := range tp.Env {
			env[k] = v
		}
		run(t, &brokerMode{name: "rabbitmq", env: env, tp: tp, keys: modeKeys})
	})
	t.Run("rabbitmq+redis", func(t *testing.T) {
		tp := apptest.NewTopology(t, modeKeys...)
		env := map[string]string{"BRIDGE_DEV": "1", "AMQP_URL": apptest.AMQPURL()}
		rds := apptest.NewRedis(t)
		for _, m := range []map[string]string{tp.Env, rds.Env} {
			for k, v := range m {
				env[k] = v
			}
		}
		run(t, &brokerMode{name: "rabbitmq+redis", env: env, tp: tp, keys: modeKeys, rds: rds})
	})
	t.Run("memory", func(t *testing.T) {
		var bindings []string
		for _, k := range modeKeys {
			bindings = append(bindings, "queue_"+k+"="+k)
		}
		env := map[string]string{"BRIDGE_DEV": "1", "BRIDGE_BINDINGS": strings.Join(bindings, ",")}
		run(t, &brokerMode{name: "memory", env: env, keys: modeKeys})
	})
}

// with returns the mode's server environment plus extra.
func (m *brokerMode) with(extra map[string]string) map[string]string {
	env := make(map[string]string, len(m.env)+len(extra))
	for k, v := range m.env {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// publish sends body with key the way a backend would: a plain AMQP publish to
// RabbitMQ, or POST /api/publish on the server t started for the in-process queue.
// user, when set, goes as header x-user-id.
func (m *brokerMode) publish(t *testing.T, key string, body []byte, user string) {
	t.Helper()
	if m.tp != nil {
		var h amqp.Table
		if user != "" {
			h = amqp.Table{"x-user-id": user}
		}
		m.tp.Publish(t, key, body, h)
		return
	}
	s := apptest.ServerOf(t)
	if err := s.PublishAPI(s.Env["BRIDGE_API_KEY"], key, body, user); err != nil {
		t.Fatalf("publish through the API: %v", err)
	}
}

// assertAllAcked checks, once the server has stopped, that no delivery is left in the
// broker: RabbitMQ requeues whatever was unacknowledged when the connection closed, so
// an empty queue means every delivery was acknowledged (or rejected on purpose). The
// in-process queue dies with the server and has nothing to check.
func (m *brokerMode) assertAllAcked(t *testing.T) {
	t.Helper()
	if m.tp == nil {
		return
	}
	for _, q := range m.tp.Queues {
		if n := apptest.QueueReady(t, q); n != 0 {
			t.Errorf("queue %s holds %d messages after the server stopped, want 0 (a delivery was not acked)", q, n)
		}
	}
}
