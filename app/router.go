package app

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushbridge/pushbridge/app/broker"
	"github.com/pushbridge/pushbridge/presence"
)

// Router takes a consumed message to its recipients, on whichever instance holds them:
// the dispatcher records it in the history (which names it) and hands it to every
// instance holding one of the recipient's connections, this one included. What comes
// back through the relay (Run) goes to this instance's connections (Deliver).
type Router struct {
	instance string
	hub      *presence.Hub
	history  presence.History
	dir      presence.Directory
	disp     presence.Dispatcher
	log      *slog.Logger
	maxBytes int

	listening     chan struct{} // closed once the relay first listens
	listeningOnce sync.Once

	Batches atomic.Int64 // batches of deliveries handled (Handle calls)
	// DispatchSeconds times each batch's hand-off: the Redis round trip (or the
	// in-memory one) a delivery waits on before it is acked.
	DispatchSeconds prometheus.Histogram
	Consumed        atomic.Int64 // deliveries handed off
	Rejected        atomic.Int64 // deliveries dropped as unusable
	Requeued        atomic.Int64 // deliveries put back because a dependency failed
	Duplicates      atomic.Int64 // redeliveries of a message already dispatched, acked without a second dispatch
	Resyncs         atomic.Int64 // times the relay subscribed again and connections were caught up
}

// RouterDeps are the parts a Router works with: in memory for one instance, in Redis
// for many (see backend.go).
type RouterDeps struct {
	Instance   string
	Hub        *presence.Hub
	History    presence.History
	Directory  presence.Directory
	Dispatcher presence.Dispatcher
	MaxBytes   int // bodies over this are rejected
	Log        *slog.Logger
}

// NewRouter routes with d. It makes the hub track each connection's position in the
// history, so a connection never gets a message twice and a gap is repaired.
func NewRouter(d RouterDeps) *Router {
	d.Hub.UseHistory(d.History)
	return &Router{
		instance: d.Instance, hub: d.Hub, history: d.History, dir: d.Directory, disp: d.Dispatcher,
		maxBytes: d.MaxBytes, log: d.Log, listening: make(chan struct{}),
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
func (r *Router) Handle(ctx context.Context, ds []broker.Delivery) []broker.Outcome {
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
func (r *Router) decode(d broker.Delivery) (*presence.Message, error) {
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

func (r *Router) reject(d broker.Delivery, err error) {
	r.Rejected.Add(1)
	r.log.Warn("delivery rejected", "queue", d.Queue, "routingKey", d.RoutingKey, "messageId", d.MessageID, "bytes", len(d.Body), "err", err)
}

// Route records m and hands it to the instances holding its recipients (every
// instance for a broadcast). It returns once m is recorded and handed off; the
// connections receive it through Run.
func (r *Router) Route(ctx context.Context, m *presence.Message) error {
	if _, err := r.disp.Dispatch(ctx, m, ""); err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	return nil
}

// Run receives what the relay brings to this instance and hands it to the local
// connections, until ctx ends. Every subscription after the first may have missed
// messages: the connections are caught up from the history before the live messages
// that follow (the relay waits for subscribed to return).
func (r *Router) Run(ctx context.Context, relay presence.Relay) error {
	return relay.Run(ctx, r.Deliver, func() { r.subscribed(ctx) })
}

// Listening is closed once the relay listens: a message dispatched after that reaches
// this instance's connections.
func (r *Router) Listening() <-chan struct{} { return r.listening }

func (r *Router) subscribed(ctx context.Context) {
	first := false
	r.listeningOnce.Do(func() { first = true; close(r.listening) })
	if first {
		return
	}
	r.CatchUp(ctx, "relay resubscribed")
}

// CatchUp catches every local connection up from the history, when this instance may
// have missed messages: the relay subscribed again, or this instance was out of
// presence for a while. It is safe beside Deliver: each connection takes only ids
// above the last it was given, under its own lock.
func (r *Router) CatchUp(ctx context.Context, why string) {
	r.Resyncs.Add(1)
	if err := r.hub.Resync(ctx); err != nil {
		r.log.Warn(why+"; some connections are not caught up yet (retried with their next message)", "err", err)
	}
}

// Heal catches up the connections a beat found behind their streams' tops, and sends
// away those whose stream was lost (anti-entropy, see presence.Hub.Heal).
func (r *Router) Heal(ctx context.Context, tops presence.Tops) {
	n, err := r.hub.Heal(ctx, tops)
	if n > 0 || err != nil {
		r.log.Info("heartbeat found connections behind their streams; caught up", "connections", n, "err", err)
	}
}

// Deliver hands m, brought by the relay, to this instance's connections.
func (r *Router) Deliver(m *presence.Message) { r.hub.Deliver(m) }
