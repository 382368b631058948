package app

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushbridge/pushbridge/app/broker"
	"github.com/pushbridge/pushbridge/presence"
)

// Consumer turns the broker's deliveries into dispatches and settles them: the
// dispatcher records each message in the history (which names it) and hands it to
// every instance holding one of the recipient's connections, this one included, whose
// hub receives it through the relay (presence.Hub.Listen).
type Consumer struct {
	disp     presence.Dispatcher
	events   presence.Events
	log      *slog.Logger
	maxBytes int
	wrote    func(error)

	Batches atomic.Int64 // batches of deliveries handled (Handle calls)
	// DispatchSeconds times each batch's hand-off: the Redis round trip (or the
	// in-memory one) a delivery waits on before it is acked.
	DispatchSeconds prometheus.Histogram
	Consumed        atomic.Int64 // deliveries handed off
	Rejected        atomic.Int64 // deliveries dropped as unusable
	Requeued        atomic.Int64 // deliveries whose hand-off failed, tried again after a pause
	Refused         atomic.Int64 // of those, the ones Redis refused (see ownFault): they count toward the delivery limit
	Duplicates      atomic.Int64 // redeliveries of a message already dispatched, acked without a second dispatch
}

// ConsumerConfig is what a Consumer works with.
type ConsumerConfig struct {
	Dispatcher presence.Dispatcher // in memory for one instance, in Redis for many (see backend.go)
	MaxBytes   int                 // bodies over this are rejected
	Events     presence.Events     // message.undelivered goes here; nil: none
	Log        *slog.Logger
	// Wrote hears, after each batch, whether Redis took its writes: nil when a dispatch
	// of it succeeded, the error when the hand-off failed for everyone (not when Redis
	// refused one message); /readyz follows it at once. nil: nobody listens.
	Wrote func(error)
}

// NewConsumer dispatches with c.
func NewConsumer(c ConsumerConfig) *Consumer {
	if c.Events == nil {
		c.Events = presence.NoEvents{}
	}
	return &Consumer{
		disp: c.Dispatcher, events: c.Events, maxBytes: c.MaxBytes, log: c.Log, wrote: c.Wrote,
		DispatchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pushbridge_dispatch_seconds",
			Help:    "Time to hand off one batch of broker deliveries (record, look up; with Redis the relay publish goes out behind, only the previous batch's waited for), before they are acked.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16), // 100 µs to ~3 s
		}),
	}
}

// Handle is the broker.Handler: decode each delivery of a batch, dispatch the usable
// ones together (one round trip to Redis), and say what to do with each. An unusable
// body is rejected on its own. A dispatch is one atomic step per message, so a failed
// one left nothing behind and that delivery is tried again, while the others of the
// batch are acked; a redelivered message (same queue, AMQP message id and body; without
// an id, a redelivery with the same routing key and body) is acked without being
// dispatched again. A failed dispatch is Requeue when Redis refused that message (it
// counts toward the delivery limit, past which the message is dead-lettered as poison)
// and Retry when the hand-off failed for everyone (it never counts).
func (r *Consumer) Handle(ctx context.Context, ds []broker.Delivery) []broker.Outcome {
	r.Batches.Add(1)
	out := make([]broker.Outcome, len(ds))
	batch := make([]presence.Dispatch, 0, len(ds))
	at := make([]int, 0, len(ds)) // batch[j] is ds[at[j]]
	for i, d := range ds {
		m, err := r.decode(d)
		if err != nil {
			r.reject(d, err)
			out[i] = broker.Reject
			continue
		}
		batch = append(batch, dedupeOf(d, m))
		at = append(at, i)
	}
	if len(batch) > 0 {
		start := time.Now()
		r.disp.DispatchBatch(ctx, batch)
		r.DispatchSeconds.Observe(time.Since(start).Seconds())
	}
	var failed error
	retried, refused := 0, 0
	for j, b := range batch {
		i := at[j]
		if b.Err != nil {
			r.Requeued.Add(1)
			if ownFault(b.Err) {
				out[i] = broker.Requeue
				r.Refused.Add(1)
				refused++
				r.log.Warn("Redis refused a message; it is tried again after a pause, and dead-lettered past BRIDGE_DELIVERY_LIMIT",
					"queue", ds[i].Queue, "routingKey", ds[i].RoutingKey, "messageId", ds[i].MessageID, "err", b.Err)
			} else {
				out[i], failed = broker.Retry, b.Err
				retried++
			}
			continue
		}
		if b.Dup {
			r.Duplicates.Add(1)
		} else if !b.M.Broadcast() && b.Instances == 0 {
			// Recorded, so a client connecting within the window still gets it; the
			// backend hears now that nobody could show it.
			r.events.Emit(presence.Event{Type: presence.EventUndelivered, User: b.M.UserID, At: time.Now(), Message: b.M})
		}
		r.Consumed.Add(1)
		out[i] = broker.Ack
	}
	if failed != nil {
		r.log.Warn("dispatch failed; deliveries held and tried again after a pause", "queue", ds[0].Queue, "held", retried, "batch", len(ds), "err", failed)
	}
	if r.wrote != nil {
		switch {
		case retried < len(batch)-refused:
			r.wrote(nil) // some dispatch went through: Redis takes writes
		case failed != nil:
			r.wrote(failed)
		}
	}
	return out
}

// dedupeOf is the dispatch of m, delivered as d, with its dedupe key: with a
// message-id, queue + id + body hash, always checked; without one, routing key + body
// hash, recorded on a first delivery and checked only on a redelivery, so two equal
// messages published on purpose both arrive (docs/redis.md, "Dispatch, publish and
// dedupe").
func dedupeOf(d broker.Delivery, m *presence.Message) presence.Dispatch {
	if d.MessageID != "" {
		return presence.Dispatch{M: m, Key: presence.DedupeKey(d.Queue, d.MessageID, d.Body)}
	}
	return presence.Dispatch{M: m, Key: presence.ContentKey(d.RoutingKey, d.Body), RecordOnly: !d.Redelivered}
}

// decode makes the message of d, or says why d can never be delivered. The broker's
// order key (orderKey) has usually found d's recipient already.
func (r *Consumer) decode(d broker.Delivery) (*presence.Message, error) {
	t, ok := d.Decoded.(target)
	if !ok {
		t.user, t.err = findTarget(d, r.maxBytes)
	}
	if t.err != nil {
		return nil, t.err
	}
	return &presence.Message{UserID: t.user, RoutingKey: d.RoutingKey, Body: d.Body, MessageID: d.MessageID, CorrelationID: d.CorrelationID}, nil
}

// target is d's recipient ("" for a broadcast), or why d can never be delivered.
type target struct {
	user string
	err  error
}

// findTarget reads d's recipient, or says why d can never be delivered.
func findTarget(d broker.Delivery, maxBytes int) (string, error) {
	if len(d.Body) > maxBytes {
		return "", fmt.Errorf("body of %d bytes is over BRIDGE_MAX_MESSAGE_BYTES (%d)", len(d.Body), maxBytes)
	}
	if len(d.Body) == 0 {
		return "", fmt.Errorf("empty body")
	}
	return Target(d.Body, d.Headers)
}

// orderKey is the broker's RabbitConfig.OrderKey: a delivery's recipient, "" for a
// broadcast (and for an unusable body), so each user's messages are handled in queue
// order, and so are the broadcasts (their stream numbers them in that order). What it
// found reaches Consumer.Handle with the delivery (broker.Delivery.Decoded), so the
// body is read once; maxBytes must be the Consumer's.
func orderKey(maxBytes int) func(broker.Delivery) (string, any) {
	return func(d broker.Delivery) (string, any) {
		user, err := findTarget(d, maxBytes)
		return user, target{user: user, err: err}
	}
}

func (r *Consumer) reject(d broker.Delivery, err error) {
	r.Rejected.Add(1)
	r.log.Warn("delivery rejected", "queue", d.Queue, "routingKey", d.RoutingKey, "messageId", d.MessageID, "bytes", len(d.Body), "err", err)
}
