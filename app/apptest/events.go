package apptest

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// EventsQueue declares a test's own events exchange (as the server will: a durable
// topic, for BRIDGE_EVENTS_EXCHANGE) and a queue bound to it with each of keys ("#"
// when none), and consumes it (auto-ack). The exchange, the queue and the channel are
// deleted and closed when the test ends, which ends the deliveries' channel.
func EventsQueue(t testing.TB, prefix string, keys ...string) (exchange string, got <-chan amqp.Delivery) {
	t.Helper()
	ch := OpenChannel(t)
	x, q := Unique(prefix), Unique(prefix+"_q")
	t.Cleanup(func() {
		_, _ = ch.QueueDelete(q, false, false, false)
		_ = ch.ExchangeDelete(x, false, false)
		ch.Close()
	})
	if err := ch.ExchangeDeclare(x, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Fatalf("declare events exchange: %v", err)
	}
	if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
		t.Fatalf("declare events queue: %v", err)
	}
	if len(keys) == 0 {
		keys = []string{"#"}
	}
	for _, k := range keys {
		if err := ch.QueueBind(q, k, x, false, nil); err != nil {
			t.Fatalf("bind events queue: %v", err)
		}
	}
	got, err := ch.Consume(q, "", true, false, false, false, nil)
	if err != nil {
		t.Fatalf("consume events: %v", err)
	}
	return x, got
}
