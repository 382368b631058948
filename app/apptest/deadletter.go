package apptest

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// DeadLetter is a test's own dead-letter exchange (fanout) with one queue bound to it,
// deleted when the test ends.
type DeadLetter struct {
	Exchange string
	Queue    string
}

// NewDeadLetter declares a dead-letter exchange and its queue on the real broker.
func NewDeadLetter(t testing.TB) *DeadLetter {
	t.Helper()
	conn := RequireRabbit(t)
	dl := &DeadLetter{Exchange: Unique("pbtest_dlx"), Queue: Unique("pbtest_dlq")}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("open channel: %v", err)
	}
	defer ch.Close()
	if err := ch.ExchangeDeclare(dl.Exchange, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		t.Fatalf("declare dead-letter exchange: %v", err)
	}
	if _, err := ch.QueueDeclare(dl.Queue, true, false, false, false, nil); err != nil {
		t.Fatalf("declare dead-letter queue: %v", err)
	}
	if err := ch.QueueBind(dl.Queue, "", dl.Exchange, false, nil); err != nil {
		t.Fatalf("bind dead-letter queue: %v", err)
	}
	t.Cleanup(func() {
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		defer ch.Close()
		_, _ = ch.QueueDelete(dl.Queue, false, false, false)
		_ = ch.ExchangeDelete(dl.Exchange, false, false)
	})
	return dl
}

// Messages takes (and acks) everything the dead-letter queue holds now.
func (dl *DeadLetter) Messages(t testing.TB) []amqp.Delivery {
	t.Helper()
	ch := OpenChannel(t)
	defer ch.Close()
	var out []amqp.Delivery
	for {
		d, ok, err := ch.Get(dl.Queue, true)
		if err != nil {
			t.Fatalf("get from %s: %v", dl.Queue, err)
		}
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

// Reason is why RabbitMQ dead-lettered d: x-first-death-reason, "rejected" when a
// consumer rejected it, "delivery_limit" when a quorum queue gave it up.
func Reason(d amqp.Delivery) string {
	s, _ := d.Headers["x-first-death-reason"].(string)
	return s
}
