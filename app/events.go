package app

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushbridge/pushbridge/app/broker"
	"github.com/pushbridge/pushbridge/presence"
)

// Outbox limits.
const (
	// outboxMax bounds the events waiting for the broker: at ~300 bytes each, a few
	// MiB, minutes of a busy instance's events while RabbitMQ is away.
	outboxMax = 10_000
	// outboxBatch is how many events are published at once, their confirms awaited
	// together: one round trip per batch instead of one per event.
	outboxBatch = 64
	// outboxRetryMin and outboxRetryMax pace the retries after a failed publish: soon
	// enough to follow a reconnect (the broker's own backoff starts at 200 ms), never a
	// hot loop against a broker that is gone.
	outboxRetryMin = 100 * time.Millisecond
	outboxRetryMax = 5 * time.Second
	// eventPublishTimeout bounds the wait for one batch's confirms.
	eventPublishTimeout = 10 * time.Second
)

// eventTimeFormat is RFC 3339 with milliseconds, the "at" of every event.
const eventTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Headers of events that carry a message (message.undelivered).
const (
	HeaderOriginalRoutingKey = "x-original-routing-key"
	HeaderMessageCursor      = "x-message-cursor"
)

// publishFunc publishes a batch in order and returns each one's outcome.
type publishFunc func(ctx context.Context, ps []broker.Publishing) []error

// outbox is presence.Events for the backend: events wait here, bounded, until the
// broker has confirmed them, and are retried with backoff while it cannot. One
// goroutine publishes them in the order they were emitted.
type outbox struct {
	instance string
	publish  publishFunc
	log      *slog.Logger

	mu      sync.Mutex
	pending []broker.Publishing
	wake    chan struct{} // a token when pending may have grown
	done    chan struct{} // closed when run returns

	published, retried, dropped, unroutable *prometheus.CounterVec
}

var _ presence.Events = (*outbox)(nil)

// newOutbox sends events with publish, each named by this instance.
func newOutbox(instance string, publish publishFunc, log *slog.Logger) *outbox {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"type"})
	}
	return &outbox{
		instance: instance, publish: publish, log: log,
		wake: make(chan struct{}, 1), done: make(chan struct{}),
		published:  counter("pushbridge_events_published_total", "Events the broker confirmed (or the log took, in memory mode), by type."),
		retried:    counter("pushbridge_events_retried_total", "Event publishes that failed and were retried, by type."),
		dropped:    counter("pushbridge_events_dropped_total", "Events lost because the outbox was full or the process stopped with them pending, by type."),
		unroutable: counter("pushbridge_events_unroutable_total", "Events the broker confirmed but no queue was bound to take, by type."),
	}
}

// collectors are the outbox's metrics.
func (o *outbox) collectors() []prometheus.Collector {
	return []prometheus.Collector{o.published, o.retried, o.dropped, o.unroutable,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pushbridge_events_outbox", Help: "Events waiting to be published."},
			func() float64 { return float64(o.depth()) }),
	}
}

func (o *outbox) depth() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.pending)
}

// Emit queues e. A full outbox drops e, counted and logged: the caller (a delivery,
// a connection) never waits for the broker.
func (o *outbox) Emit(e presence.Event) {
	p := o.encode(e)
	o.mu.Lock()
	full := len(o.pending) >= outboxMax
	if !full {
		o.pending = append(o.pending, p)
	}
	o.mu.Unlock()
	if full {
		o.dropped.WithLabelValues(e.Type).Inc()
		o.log.Error("event dropped: the outbox is full (is RabbitMQ down?)", "type", e.Type, "user", e.User, "outbox", outboxMax)
		return
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// eventBody is the JSON body of every event but message.undelivered.
type eventBody struct {
	Type          string `json:"type"`
	User          string `json:"user"`
	Instance      string `json:"instance"`
	At            string `json:"at"`
	Transport     string `json:"transport,omitempty"`
	Seq           uint64 `json:"seq,omitempty"`
	ID            string `json:"id,omitempty"`
	MessageID     string `json:"messageId,omitempty"`
	CorrelationID string `json:"correlationId,omitempty"`
}

// encode makes the AMQP message of e. Its message-id is fixed here, so a retry after
// a lost confirm is recognisable downstream as the same event.
func (o *outbox) encode(e presence.Event) broker.Publishing {
	p := broker.Publishing{RoutingKey: e.Type, Headers: map[string]any{HeaderUserID: e.User}}
	m := e.Message
	if e.Type == presence.EventUndelivered && m != nil {
		p.Body = m.Body
		p.MessageID, p.CorrelationID = m.MessageID, m.CorrelationID
		p.Headers[HeaderOriginalRoutingKey] = m.RoutingKey
		p.Headers[HeaderMessageCursor] = m.Pos().String()
		if p.MessageID == "" {
			p.MessageID = broker.NewID() // the publisher matches returns by it
		}
		return p
	}
	b := eventBody{Type: e.Type, User: e.User, Instance: o.instance, At: e.At.UTC().Format(eventTimeFormat), Transport: e.Transport, Seq: e.Seq}
	if m != nil {
		b.ID, b.MessageID, b.CorrelationID = m.Pos().String(), m.MessageID, m.CorrelationID
	}
	p.Body, _ = json.Marshal(b) // strings only: always marshals
	p.MessageID = broker.NewID()
	return p
}

// run publishes what is pending until ctx ends, then returns; flush sends what is left.
func (o *outbox) run(ctx context.Context) {
	defer close(o.done)
	wait := outboxRetryMin
	for {
		if o.depth() == 0 {
			select {
			case <-o.wake:
			case <-ctx.Done():
				return
			}
			continue
		}
		if o.publishBatch(ctx) {
			wait = outboxRetryMin
			continue
		}
		select {
		case <-time.After(rand.N(wait) + wait/2):
		case <-ctx.Done():
			return
		}
		wait = min(2*wait, outboxRetryMax)
	}
}

// publishBatch publishes up to outboxBatch events from the head of the outbox, in
// order on the broker's one channel with their confirms awaited together, and removes
// those the broker took. What failed stays at the head, in order, for the next try. It
// reports whether every one of them went.
func (o *outbox) publishBatch(ctx context.Context) bool {
	o.mu.Lock()
	batch := append([]broker.Publishing(nil), o.pending[:min(len(o.pending), outboxBatch)]...)
	o.mu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, eventPublishTimeout)
	defer cancel()
	errs := o.publish(pctx, batch)
	var again []broker.Publishing
	var lastErr error
	for i, err := range errs {
		typ := batch[i].RoutingKey
		switch {
		case err == nil:
			o.published.WithLabelValues(typ).Inc()
		case errors.Is(err, broker.ErrUnroutable):
			o.unroutable.WithLabelValues(typ).Inc()
		default:
			o.retried.WithLabelValues(typ).Inc()
			again, lastErr = append(again, batch[i]), err
		}
	}
	o.mu.Lock()
	// Nothing else removes from the head, so the batch is still there.
	o.pending = append(again, o.pending[len(batch):]...)
	o.mu.Unlock()
	if lastErr != nil {
		o.log.Debug("events not published yet; retrying", "events", len(again), "err", lastErr)
	}
	return len(again) == 0
}

// flush publishes what is pending until ctx ends (the drain), after run returned;
// what is still pending then is lost with the process, counted and logged.
func (o *outbox) flush(ctx context.Context) {
	<-o.done
	for o.depth() > 0 && ctx.Err() == nil {
		if !o.publishBatch(ctx) {
			select {
			case <-time.After(outboxRetryMin):
			case <-ctx.Done():
			}
		}
	}
	o.mu.Lock()
	lost := o.pending
	o.pending = nil
	o.mu.Unlock()
	for _, p := range lost {
		o.dropped.WithLabelValues(p.RoutingKey).Inc()
	}
	if len(lost) > 0 {
		o.log.Error("events lost at shutdown: the broker did not take them in time", "events", len(lost))
	}
}

// logPublisher is the events' destination in memory mode: the log, one line each.
// The in-process queue is not one: it holds only what this process consumes, and
// nothing would read an event put there.
func logPublisher(log *slog.Logger) publishFunc {
	return func(_ context.Context, ps []broker.Publishing) []error {
		for _, p := range ps {
			logEvent(log, p)
		}
		return make([]error, len(ps))
	}
}

func logEvent(log *slog.Logger, p broker.Publishing) {
	{
		attrs := []any{"type", p.RoutingKey, "user", p.Headers[HeaderUserID]}
		if p.RoutingKey == presence.EventUndelivered {
			attrs = append(attrs, "cursor", p.Headers[HeaderMessageCursor], "routingKey", p.Headers[HeaderOriginalRoutingKey],
				"messageId", p.MessageID, "bytes", len(p.Body))
		} else {
			attrs = append(attrs, "body", string(p.Body))
		}
		log.Info("event", attrs...)
	}
}
