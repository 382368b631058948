package presence

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Dispatcher records a message and hands it to every instance that should deliver
// it, as one step: every instance then receives messages in id order, whichever
// instance consumed them, and nothing is handed out without being recorded. It is
// History.Append, Directory.Lookup and Relay.Send in one; the receiving end is
// Relay.Run, on every instance including the one that dispatched.
type Dispatcher interface {
	// Dispatch sets m.ID and m.Prev and hands m to the instances holding a
	// connection of m.UserID, or to every instance for a broadcast. When key is not
	// empty and a message with that key was dispatched within DedupeWindow, nothing
	// is recorded or sent, m.ID is that message's id and dup is true: a delivery the
	// broker redelivers (its consumer died before acking) is not delivered twice.
	Dispatch(ctx context.Context, m *Message, key string) (dup bool, err error)
	// DispatchBatch dispatches each of b in order, as Dispatch would one after the
	// other, in one round trip to the backend: ids follow the order of b, and every
	// instance receives them in that order. It sets each one's Dup and Err; an item
	// that failed was not dispatched and may be retried, the others stand.
	DispatchBatch(ctx context.Context, b []Dispatch)
}

// Dispatch is one message of a DispatchBatch: M and Key as Dispatch takes them, Dup
// and Err as it returns them, and Instances: how many instances holding a connection
// of the recipient it was handed to (0 for a broadcast and a duplicate). A targeted
// message with Instances 0 found its user offline everywhere (message.undelivered).
type Dispatch struct {
	M         *Message
	Key       string
	Dup       bool
	Instances int
	Err       error
}

// DedupeWindow is how long a dispatched message's key is remembered. A broker
// redelivers an unacknowledged message as soon as it notices its consumer is gone —
// within its heartbeat timeout, well under this.
const DedupeWindow = 2 * time.Minute

var _ Dispatcher = (*MemoryDispatcher)(nil)

// MemoryDispatcher dispatches within one process: history, directory and bus in memory.
type MemoryDispatcher struct {
	history *MemoryHistory
	dir     *MemoryDirectory
	bus     *MemoryBus
	now     func() time.Time

	mu     sync.Mutex // one dispatch at a time: ids reach every receiver in order
	keys   map[string]string
	expiry []keyExpiry // oldest first
}

type keyExpiry struct {
	key string
	at  time.Time
}

// NewMemoryDispatcher records in h, looks recipients up in d and hands messages to
// the relays on bus.
func NewMemoryDispatcher(h *MemoryHistory, d *MemoryDirectory, bus *MemoryBus) *MemoryDispatcher {
	return &MemoryDispatcher{history: h, dir: d, bus: bus, now: time.Now, keys: make(map[string]string)}
}

func (p *MemoryDispatcher) Dispatch(ctx context.Context, m *Message, key string) (bool, error) {
	dup, _, err := p.dispatch(ctx, m, key)
	return dup, err
}

// dispatch is Dispatch, also saying to how many instances m went.
func (p *MemoryDispatcher) dispatch(ctx context.Context, m *Message, key string) (bool, int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forget()
	if id, ok := p.keys[key]; key != "" && ok {
		m.ID, m.Prev = id, ""
		return true, 0, nil
	}
	if err := p.history.Append(ctx, m); err != nil {
		return false, 0, err
	}
	if key != "" {
		p.keys[key] = m.ID
		p.expiry = append(p.expiry, keyExpiry{key: key, at: p.now().Add(DedupeWindow)})
	}
	if m.Broadcast() {
		return false, 0, p.bus.broadcast(ctx, "", m)
	}
	es, err := p.dir.Lookup(ctx, m.UserID)
	if err != nil {
		return false, 0, err
	}
	sent := 0
	for i, e := range es {
		if i > 0 && es[i-1].Instance == e.Instance {
			continue // sorted by instance: one copy per instance
		}
		if err := p.bus.send(ctx, e.Instance, m); err != nil {
			return false, sent, fmt.Errorf("dispatch to %s: %w", e.Instance, err)
		}
		sent++
	}
	return false, sent, nil
}

// DispatchBatch dispatches one message after the other: in memory there is no round
// trip to save.
func (p *MemoryDispatcher) DispatchBatch(ctx context.Context, b []Dispatch) {
	for i := range b {
		b[i].Dup, b[i].Instances, b[i].Err = p.dispatch(ctx, b[i].M, b[i].Key)
	}
}

// forget drops the keys older than DedupeWindow; p.mu is held.
func (p *MemoryDispatcher) forget() {
	now := p.now()
	n := 0
	for n < len(p.expiry) && now.After(p.expiry[n].at) {
		delete(p.keys, p.expiry[n].key)
		n++
	}
	if n > 0 {
		clear(p.expiry[:n])
		p.expiry = p.expiry[n:]
	}
}
