package broker

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

var _ Broker = (*Memory)(nil)

// requeuePause is how long a requeued delivery waits before it is handled again, so a
// dependency that is down is not hammered in a hot loop.
const requeuePause = time.Second

// memQueueMax bounds each in-process queue, so a consumer that cannot keep up makes
// publishers wait and retry (ErrUnavailable: 503) rather than eat the process's memory.
const memQueueMax = 100_000

// Memory is an in-process stand-in for RabbitMQ: a direct exchange with the configured
// bindings and one FIFO per queue. It keeps nothing across restarts.
type Memory struct {
	bindings []Binding

	mu       sync.Mutex
	queues   map[string]*memQueue
	stopping bool
	wg       sync.WaitGroup
}

type memQueue struct {
	mu    sync.Mutex
	cond  *sync.Cond
	items []Delivery
	done  bool
}

// NewMemory returns an in-process broker with the given bindings.
func NewMemory(bindings []Binding) *Memory {
	m := &Memory{bindings: bindings, queues: make(map[string]*memQueue)}
	for _, q := range Queues(bindings) {
		mq := &memQueue{}
		mq.cond = sync.NewCond(&mq.mu)
		m.queues[q] = mq
	}
	return m
}

func (m *Memory) Start(ctx context.Context, handle Handler) error {
	for name, q := range m.queues {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			for {
				ds, ok := q.pop(maxBatch)
				if !ok {
					return
				}
				for i := range ds {
					ds[i].Queue = name
				}
				var again []Delivery
				for i, o := range handle(context.WithoutCancel(ctx), ds) {
					if o == Requeue {
						ds[i].Redelivered = true
						again = append(again, ds[i])
					}
				}
				if len(again) > 0 {
					time.Sleep(requeuePause)
					q.pushFront(again)
				}
			}
		}()
	}
	return nil
}

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
		q.push(Delivery{RoutingKey: p.RoutingKey, Body: p.Body, Headers: p.Headers, MessageID: p.MessageID, CorrelationID: p.CorrelationID})
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

func (q *memQueue) push(d Delivery) {
	q.mu.Lock()
	q.items = append(q.items, d)
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *memQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// pushFront puts ds back at the head of the queue, in their order.
func (q *memQueue) pushFront(ds []Delivery) {
	q.mu.Lock()
	q.items = append(ds, q.items...)
	q.mu.Unlock()
	q.cond.Signal()
}

// pop waits for the queue to hold something and takes up to n from its head.
func (q *memQueue) pop(n int) ([]Delivery, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.done {
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
