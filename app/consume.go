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
	log      *slog.Logger
	maxBytes int

	Batches atomic.Int64 // batches of deliveries handled (Handle calls)
	// DispatchSeconds times each batch's hand-off: the Redis round trip (or the
	// in-memory one) a delivery waits on before it is acked.
	DispatchSeconds prometheus.Histogram
	Consumed        atomic.Int64 // deliveries handed off
	Rejected        atomic.Int64 // deliveries dropped as unusable
	Requeued        atomic.Int64 // deliveries put back because a dependency failed
	Duplicates      atomic.Int64 // redeliveries of a message already dispatched, acked without a second dispatch
}

// ConsumerConfig is what a Consumer works with.
type ConsumerConfig struct {
	Dispatcher presence.Dispatcher // in memory for one instance, in Redis for many (see backend.go)
	MaxBytes   int                 // bodies over this are rejected
	Log        *slog.Logger
}

// NewConsumer dispatches with c.
func NewConsumer(c ConsumerConfig) *Consumer {
	return &Consumer{
		disp: c.Dispatcher, maxBytes: c.MaxBytes, log: c.Log,
		DispatchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pushbridge_dispatch_seconds",
			Help:    "Time to hand off one batch of broker deliveries (record, look up, publish), before they are acked.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16), // 100 µs to ~3 s
		}),
	}
}

// Handle is the broker.Handler: decode each delivery of a batch, dispatch the usable
// ones together (one round trip to Redis), and say what to do with each. An unusable
// body is rejected on its own. A dispatch is one atomic step per message, so a failed
// one left nothing behind and that delivery is requeued, while the others of the batch
// are acked; a redelivered message (same AMQP message id) is acked without being
// dispatched again.
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
		batch = append(batch, presence.Dispatch{M: m, Key: d.MessageID})
		at = append(at, i)
	}
	if len(batch) > 0 {
		start := time.Now()
		r.disp.DispatchBatch(ctx, batch)
		r.DispatchSeconds.Observe(time.Since(start).Seconds())
	}
	var failed error
	requeued := 0
	for j, b := range batch {
		i := at[j]
		if b.Err != nil {
			out[i], failed = broker.Requeue, b.Err
			requeued++
			continue
		}
		if b.Dup {
			r.Duplicates.Add(1)
		}
		r.Consumed.Add(1)
		out[i] = broker.Ack
	}
	if failed != nil {
		r.Requeued.Add(int64(requeued))
		r.log.Warn("dispatch failed; deliveries requeued", "queue", ds[0].Queue, "requeued", requeued, "batch", len(ds), "err", failed)
	}
	return out
}

// decode makes the message of d, or says why d can never be delivered.
func (r *Consumer) decode(d broker.Delivery) (*presence.Message, error) {
	if len(d.Body) > r.maxBytes {
		return nil, fmt.Errorf("body of %d bytes is over BRIDGE_MAX_MESSAGE_BYTES (%d)", len(d.Body), r.maxBytes)
	}
	if len(d.Body) == 0 {
		return nil, fmt.Errorf("empty body")
	}
	user, err := Target(d.Body, d.Headers)
	if err != nil {
		return nil, err
	}
	return &presence.Message{UserID: user, RoutingKey: d.RoutingKey, Body: d.Body}, nil
}

func (r *Consumer) reject(d broker.Delivery, err error) {
	r.Rejected.Add(1)
	r.log.Warn("delivery rejected", "queue", d.Queue, "routingKey", d.RoutingKey, "messageId", d.MessageID, "bytes", len(d.Body), "err", err)
}
