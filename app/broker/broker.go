// Package broker is the message broker seen from Pushbridge: a consumer of the bound
// queues and a publisher with confirms. RabbitMQ is the real one; Memory stands in for
// it when no AMQP_URL is set.
package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Broker consumes the bound queues and publishes to the exchange.
type Broker interface {
	// Start connects, declares the topology and starts consuming into handle. A
	// topology the broker holds with other arguments is an error; an unreachable
	// broker is not (Start returns, Ready stays false and it keeps trying).
	Start(ctx context.Context, handle Handler) error
	// Publish sends one message to the exchange and returns once the broker has
	// confirmed it: ErrUnroutable when no queue took it, ErrUnavailable while the
	// broker cannot be reached.
	Publish(ctx context.Context, p Publishing) error
	// Ready reports whether the broker connection is up.
	Ready() bool
	// StopConsuming cancels the consumers and waits until every delivery already
	// handed to Pushbridge has been handled and settled, or ctx ends.
	StopConsuming(ctx context.Context)
	// Close ends the connection.
	Close() error
	// DeadLettered counts the deliveries given up after their delivery limit
	// (poison messages): dead-lettered, or dropped where no dead-letter exchange is set.
	DeadLettered() int64
}

// Publishing is one message to publish.
type Publishing struct {
	RoutingKey string
	Body       []byte
	MessageID  string
	// CorrelationID is the AMQP correlation-id; events carry the original message's.
	CorrelationID string
	Headers       map[string]any
}

// NewID returns a random id for a published message (its AMQP message-id).
func NewID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Delivery is one consumed message.
type Delivery struct {
	Queue      string
	RoutingKey string
	Body       []byte
	Headers    map[string]any
	MessageID  string
	// CorrelationID is the AMQP correlation-id, carried to events about the message.
	CorrelationID string
	Redelivered   bool
	// Decoded is what RabbitConfig.OrderKey returned besides the key when it chose the
	// delivery's lane, for the handler to reuse rather than read the body again; nil
	// without one (and from the in-process queue).
	Decoded any
}

// Outcome is what becomes of a delivery once handled. A delivery to try again waits
// out requeuePause on its own: the consumer goes on with the rest of its queue.
type Outcome int

const (
	Ack Outcome = iota // handed off: remove it from the queue
	// Requeue: the hand-off failed because of this message (Redis refused it). It is
	// tried again after the pause; each such failure counts toward the delivery limit,
	// past which it is dead-lettered as a poison message.
	Requeue
	Reject // can never be handled: drop it, or dead-letter it
	// Retry: the hand-off could not be done for anyone (Redis unreachable). It is tried
	// again after the pause without counting, however long that takes, so an outage
	// dead-letters nothing.
	Retry
)

func (o Outcome) String() string {
	switch o {
	case Ack:
		return "ack"
	case Requeue:
		return "requeue"
	case Reject:
		return "reject"
	case Retry:
		return "retry"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// requeuePause is how long a delivery to try again waits before it is handled again,
// so a dependency that is down is not hammered in a hot loop.
const requeuePause = time.Second

// Handler handles a batch of deliveries of one queue, in order, and returns one
// Outcome per delivery. A batch is what the queue's consumer (or one of its lanes)
// already holds, up to maxBatch: the consumer never waits for more, so at a low rate a
// batch is one delivery and nothing is delayed, and under load one call (one round
// trip to Redis) hands off many. RabbitMQ calls it from each of a queue's lanes at
// once (RabbitConfig.Lanes): the deliveries with one order key come in one lane, in
// queue order, so they are handled in that order; the in-process queue calls it from
// one goroutine per queue.
type Handler func(ctx context.Context, ds []Delivery) []Outcome

// maxBatch bounds a batch: RabbitMQ holds no more than the prefetch unacknowledged
// anyway, and this caps what one failed round trip sends back to the queue.
const maxBatch = 128

var (
	ErrUnroutable  = errors.New("no queue is bound to that routing key")
	ErrUnavailable = errors.New("the message broker is unavailable")
)

// Binding binds Queue to the exchange with Key.
type Binding struct {
	Queue string
	Key   string
}

// ParseBindings reads "queue=key,queue=key".
func ParseBindings(s string) ([]Binding, error) {
	var out []Binding
	seen := map[Binding]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		q, k, ok := strings.Cut(part, "=")
		q, k = strings.TrimSpace(q), strings.TrimSpace(k)
		if !ok || q == "" || k == "" {
			return nil, fmt.Errorf("%q is not queue=routingkey", part)
		}
		b := Binding{Queue: q, Key: k}
		if !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no bindings")
	}
	return out, nil
}

// Queues lists the distinct queues of bs in order.
func Queues(bs []Binding) []string {
	var out []string
	seen := map[string]bool{}
	for _, b := range bs {
		if !seen[b.Queue] {
			seen[b.Queue] = true
			out = append(out, b.Queue)
		}
	}
	return out
}
