package app

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/pushbridge/pushbridge/app/broker"
	"github.com/pushbridge/pushbridge/presence"
)

// Router takes a consumed message to its recipients: it records it in the history
// (which names it) and hands it to the connections that should have it.
type Router struct {
	hub      *presence.Hub
	history  presence.History
	log      *slog.Logger
	maxBytes int

	// mu makes "take the next id" and "queue to local connections" one step, so every
	// connection receives ids in increasing order and a cursor never skips a message.
	mu sync.Mutex

	Consumed atomic.Int64 // deliveries handed off
	Rejected atomic.Int64 // deliveries dropped as unusable
	Requeued atomic.Int64 // deliveries put back because a dependency failed
}

// NewRouter routes through hub and history; bodies over maxBytes are rejected.
func NewRouter(hub *presence.Hub, history presence.History, maxBytes int, log *slog.Logger) *Router {
	return &Router{hub: hub, history: history, maxBytes: maxBytes, log: log}
}

// Handle is the broker.Handler: decode, route, and say what to do with the delivery.
func (r *Router) Handle(ctx context.Context, d broker.Delivery) broker.Outcome {
	if len(d.Body) > r.maxBytes {
		r.reject(d, fmt.Errorf("body of %d bytes is over BRIDGE_MAX_MESSAGE_BYTES (%d)", len(d.Body), r.maxBytes))
		return broker.Reject
	}
	if len(d.Body) == 0 {
		r.reject(d, fmt.Errorf("empty body"))
		return broker.Reject
	}
	user, err := Target(d.Body, d.Headers)
	if err != nil {
		r.reject(d, err)
		return broker.Reject
	}
	m := &presence.Message{UserID: user, RoutingKey: d.RoutingKey, Body: d.Body}
	if err := r.Route(ctx, m); err != nil {
		r.Requeued.Add(1)
		r.log.Warn("routing failed; delivery requeued", "queue", d.Queue, "err", err)
		return broker.Requeue
	}
	r.Consumed.Add(1)
	return broker.Ack
}

func (r *Router) reject(d broker.Delivery, err error) {
	r.Rejected.Add(1)
	r.log.Warn("delivery rejected", "queue", d.Queue, "routingKey", d.RoutingKey, "messageId", d.MessageID, "bytes", len(d.Body), "err", err)
}

// Route records m and delivers it to its recipients on this instance.
func (r *Router) Route(ctx context.Context, m *presence.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.history.Append(ctx, m); err != nil {
		return fmt.Errorf("record in history: %w", err)
	}
	r.hub.Deliver(m)
	return nil
}
