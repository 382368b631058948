package presence

import (
	"context"
	"fmt"
	"sync"
)

var _ Relay = (*MemoryRelay)(nil)

// memRelayQueue is how many messages wait for a receiver before a sender blocks: in
// one process nothing is lost, and the queue absorbs a burst.
const memRelayQueue = 1024

// memRelayBatch bounds what Run hands to deliver at once.
const memRelayBatch = 256

// MemoryBus connects the MemoryRelays of the instances in one process (tests, and
// the single instance, where it carries nothing).
type MemoryBus struct {
	mu   sync.Mutex
	subs map[string]*memSub
}

type memSub struct {
	ch   chan memItem
	done chan struct{}
}

// memItem is a message, or a flush marker: closed once everything before it was delivered.
type memItem struct {
	m       *Message
	flushed chan struct{}
}

// NewMemoryBus returns a bus with nobody listening.
func NewMemoryBus() *MemoryBus { return &MemoryBus{subs: make(map[string]*memSub)} }

// Relay returns the relay of instance on b.
func (b *MemoryBus) Relay(instance string) *MemoryRelay {
	return &MemoryRelay{bus: b, instance: instance}
}

// MemoryRelay is one instance's end of a MemoryBus. The same *Message reaches every
// receiver, so it is encoded once for all of them.
type MemoryRelay struct {
	bus      *MemoryBus
	instance string
}

func (r *MemoryRelay) Send(ctx context.Context, instance string, ms ...*Message) error {
	for _, m := range ms {
		if err := r.bus.send(ctx, instance, m); err != nil {
			return err
		}
	}
	return nil
}

func (r *MemoryRelay) Broadcast(ctx context.Context, ms ...*Message) error {
	for _, m := range ms {
		if err := r.bus.broadcast(ctx, r.instance, m); err != nil {
			return err
		}
	}
	return nil
}

// send queues m to instance, if it listens.
func (b *MemoryBus) send(ctx context.Context, instance string, m *Message) error {
	b.mu.Lock()
	s := b.subs[instance]
	b.mu.Unlock()
	return s.put(ctx, m)
}

// broadcast queues m to every listening instance but except.
func (b *MemoryBus) broadcast(ctx context.Context, except string, m *Message) error {
	b.mu.Lock()
	subs := make([]*memSub, 0, len(b.subs))
	for id, s := range b.subs {
		if id != except {
			subs = append(subs, s)
		}
	}
	b.mu.Unlock()
	for _, s := range subs {
		if err := s.put(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// put queues m unless nobody listens (s is nil or done).
func (s *memSub) put(ctx context.Context, m *Message) error { return s.putItem(ctx, memItem{m: m}) }

func (s *memSub) putItem(ctx context.Context, it memItem) error {
	if s == nil {
		return nil
	}
	select {
	case s.ch <- it:
	case <-s.done:
	case <-ctx.Done():
		return fmt.Errorf("relay: %w", ctx.Err())
	}
	return nil
}

func (r *MemoryRelay) Run(ctx context.Context, deliver func([]*Message), subscribed func()) error {
	s := &memSub{ch: make(chan memItem, memRelayQueue), done: make(chan struct{})}
	r.bus.mu.Lock()
	if r.bus.subs[r.instance] != nil {
		r.bus.mu.Unlock()
		return fmt.Errorf("relay: instance %s is already listening", r.instance)
	}
	r.bus.subs[r.instance] = s
	r.bus.mu.Unlock()
	defer func() {
		r.bus.mu.Lock()
		delete(r.bus.subs, r.instance)
		r.bus.mu.Unlock()
		close(s.done)
	}()
	subscribed()
	batch := make([]*Message, 0, memRelayBatch)
	for {
		select {
		case it := <-s.ch:
			// What waited while the last batch was delivered goes as one batch: the
			// hub's work per recipient is then per batch (Hub.DeliverAll).
			for more := true; more; {
				if it.flushed != nil {
					deliverBatch(deliver, &batch)
					close(it.flushed)
				} else if batch = append(batch, it.m); len(batch) == memRelayBatch {
					deliverBatch(deliver, &batch)
				}
				select {
				case it = <-s.ch:
				default:
					more = false
				}
			}
			deliverBatch(deliver, &batch)
		case <-ctx.Done():
			return nil
		}
	}
}

// deliverBatch hands what batch holds to deliver, if anything, and empties it.
func deliverBatch(deliver func([]*Message), batch *[]*Message) {
	if len(*batch) > 0 {
		deliver(*batch)
		clear(*batch)
		*batch = (*batch)[:0]
	}
}

// Flush returns once every message queued to this instance before the call has been
// handed to deliver (or nobody listens, or ctx ends). A drain calls it between the
// last acked delivery and sending its clients away: in one process, a message acked
// but still in this queue would otherwise reach nobody, and the in-memory history
// that could replay it dies with the process.
func (r *MemoryRelay) Flush(ctx context.Context) error {
	r.bus.mu.Lock()
	s := r.bus.subs[r.instance]
	r.bus.mu.Unlock()
	flushed := make(chan struct{})
	if err := s.putItem(ctx, memItem{flushed: flushed}); err != nil || s == nil {
		return err
	}
	select {
	case <-flushed:
		return nil
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("relay flush: %w", ctx.Err())
	}
}
