package broker

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

var _ Broker = (*Memory)(nil)

// memQueueMax bounds each in-process queue, so a consumer that cannot keep up makes
// publishers wait and retry (ErrUnavailable: 503) rather than eat the process's memory.
const memQueueMax = 100_000

// Memory is an in-process stand-in for RabbitMQ: a direct exchange with the configured
// bindings and one FIFO per queue. It keeps nothing across restarts. A poison message
// is dropped (logged and counted) after limit failed tries: there is no dead-letter
// exchange to keep it in.
type Memory struct {
	bindings []Binding
	limit    int
	log      *slog.Logger

	mu       sync.Mutex
	queues   map[string]*memQueue
	stopping bool
	wg       sync.WaitGroup

	deadLettered atomic.Int64
}

type memQueue struct {
	mu    sync.Mutex
	cond  *sync.Cond
	items []memItem
	aside int // taken and waiting out their pause before they come back
	done  bool
}

// memMaxAside bounds the deliveries of a queue that wait out their pause at once, as
// RabbitMQ's prefetch does: past it the consumer waits for them, so while Redis is
// down it does not run through the whole queue, one failed batch after another.
const memMaxAside = maxBatch

// memItem is a queued delivery with the failed tries it has had, which the
// in-process queue counts exactly, as a quorum queue does.
type memItem struct {
	d     Delivery
	fails int
}

// NewMemory returns an in-process broker with the given bindings; a message whose
// hand-off failed is tried again up to deliveryLimit times.
func NewMemory(bindings []Binding, deliveryLimit int, log *slog.Logger) *Memory {
	if log == nil {
		log = slog.Default()
	}
	m := &Memory{bindings: bindings, limit: deliveryLimit, log: log, queues: make(map[string]*memQueue)}
	for _, q := range Queues(bindings) {
		mq := &memQueue{}
		mq.cond = sync.NewCond(&mq.mu)
		m.queues[q] = mq
	}
	return m
}

func (m *Memory) Start(ctx context.Context, handle Handler) error {
	for name, q := range m.queues {
		m.wg.Go(func() {
			for {
				items, ok := q.pop(maxBatch)
				if !ok {
					return
				}
				ds := make([]Delivery, len(items))
				for i := range items {
					items[i].d.Queue = name
					ds[i] = items[i].d
				}
				var again []memItem
				for i, o := range handle(context.WithoutCancel(ctx), ds) {
					switch o {
					case Requeue:
						if items[i].fails++; items[i].fails > m.limit {
							m.giveUp(items[i])
							continue
						}
					case Retry:
					default:
						continue
					}
					items[i].d.Redelivered = true
					again = append(again, items[i])
				}
				if len(again) > 0 {
					// The pause is theirs, not the queue's: the loop goes on. A queue
					// stopped meanwhile takes them and drops them with the rest.
					q.setAside(len(again))
					time.AfterFunc(requeuePause, func() { q.pushFront(again) })
				}
			}
		})
	}
	return nil
}

func (m *Memory) giveUp(it memItem) {
	m.deadLettered.Add(1)
	m.log.Warn("poison message dropped: its hand-off failed on every try (the in-process queue has no dead-letter exchange)",
		"queue", it.d.Queue, "routingKey", it.d.RoutingKey, "messageId", it.d.MessageID, "bytes", len(it.d.Body), "tries", it.fails)
}

func (m *Memory) DeadLettered() int64 { return m.deadLettered.Load() }

func (m *Memory) Publish(_ context.Context, p Publishing) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopping {
		return ErrUnavailable
	}
	var to []*memQueue
	for _, b := range m.bindings {
		if b.Key == p.RoutingKey {
			to = append(to, m.queues[b.Queue])
		}
	}
	if len(to) == 0 {
		return ErrUnroutable
	}
	for _, q := range to { // all or none, as a broker routes one message
		if q.len() >= memQueueMax {
			return fmt.Errorf("%w: the in-process queue is full (%d messages)", ErrUnavailable, memQueueMax)
		}
	}
	for _, q := range to {
		q.push(memItem{d: Delivery{RoutingKey: p.RoutingKey, Body: p.Body, Headers: p.Headers, MessageID: p.MessageID, CorrelationID: p.CorrelationID}})
	}
	return nil
}

func (m *Memory) Ready() bool { return true }

// StopConsuming stops the consumers after the batch each is handling; what is still
// queued is lost with the process, as an in-process queue must.
func (m *Memory) StopConsuming(ctx context.Context) {
	m.mu.Lock()
	m.stopping = true
	m.mu.Unlock()
	for _, q := range m.queues {
		q.stop()
	}
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func (m *Memory) Close() error {
	m.StopConsuming(context.Background())
	return nil
}

func (q *memQueue) push(it memItem) {
	q.mu.Lock()
	q.items = append(q.items, it)
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *memQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

func (q *memQueue) setAside(n int) {
	q.mu.Lock()
	q.aside += n
	q.mu.Unlock()
}

// pushFront puts its, set aside, back at the head of the queue, in their order.
func (q *memQueue) pushFront(its []memItem) {
	q.mu.Lock()
	q.aside -= len(its)
	q.items = append(its, q.items...)
	q.mu.Unlock()
	q.cond.Signal()
}

// pop waits for the queue to hold something and takes up to n from its head.
func (q *memQueue) pop(n int) ([]memItem, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for (len(q.items) == 0 || q.aside >= memMaxAside) && !q.done {
		q.cond.Wait()
	}
	if q.done {
		return nil, false
	}
	n = min(n, len(q.items))
	ds := slices.Clone(q.items[:n])
	clear(q.items[:n])
	q.items = q.items[n:]
	return ds, true
}

func (q *memQueue) stop() {
	q.mu.Lock()
	q.done = true
	q.mu.Unlock()
	q.cond.Broadcast()
}
