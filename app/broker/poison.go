package broker

import (
	"hash/maphash"
	"sync"
	"time"
)

// A poison message is one whose hand-off fails every time it is tried (Redis refuses
// it: one of its keys holds the wrong type, say). It is tried again after a pause
// (Requeue) and, once it has failed more than the delivery limit, given up: rejected
// to the dead-letter exchange, or dropped where none is set. RabbitMQ's meaning of
// x-delivery-limit is kept on every queue type: limit 5 means 6 tries in all.
//
// Quorum queues count for us: RabbitMQ increments a message's delivery count each
// time it is returned to the queue and dead-letters it itself past x-delivery-limit;
// the x-delivery-count header tells us which try this is. Classic queues count
// nothing, so failures counts them in this process, keyed by the message's
// message-id, else by a hash of its body.

// Bounds of the classic queues' failure counts.
const (
	// maxTracked bounds the messages whose failures are remembered. Poison messages
	// are rare and each is settled within its limit's pauses; past the bound the
	// oldest count is forgotten, and that message gets up to a limit's more tries.
	maxTracked = 10_000
	// trackedTTL forgets a count whose message has not failed again for this long
	// (another instance handled it, or it was purged), so an equal body published
	// much later starts from zero.
	trackedTTL = 10 * time.Minute
)

// failures counts the failed hand-offs of messages on classic queues. It is per
// process: across instances competing for a queue, each counts the tries it made, so
// a poison message is given up after limit+1 tries at best (one instance, or
// single-active-consumer) and N×limit+1 at worst with N instances taking turns; a
// restart forgets the counts. Quorum queues count exactly, in the broker.
type failures struct {
	seed maphash.Seed
	now  func() time.Time

	mu    sync.Mutex
	count map[failKey]*failCount
	order []failEntry // first failure first; may hold entries already forgotten
	seq   uint64
}

// failEntry is a count's place in order; it is stale once its count is forgotten
// (the key may have come back since, with a new seq).
type failEntry struct {
	key failKey
	seq uint64
}

type failKey struct {
	queue, id string
	sum       uint64 // hash of the body when id is empty
}

type failCount struct {
	n    int
	last time.Time
	seq  uint64
}

func newFailures() *failures {
	return &failures{seed: maphash.MakeSeed(), now: time.Now, count: make(map[failKey]*failCount)}
}

// key names d's message: its message-id, else its body. Two equal bodies without an
// id share a count, which only matters if both keep failing.
func (f *failures) key(queue, id string, body []byte) failKey {
	if id != "" {
		return failKey{queue: queue, id: id}
	}
	return failKey{queue: queue, sum: maphash.Bytes(f.seed, body)}
}

// fail counts one more failed hand-off of k and returns how many it has had.
func (f *failures) fail(k failKey) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	f.expire(now)
	c := f.count[k]
	if c == nil {
		if len(f.count) >= maxTracked {
			f.evictOldest()
		}
		f.seq++
		c = &failCount{seq: f.seq}
		f.count[k] = c
		f.order = append(f.order, failEntry{key: k, seq: c.seq})
	}
	c.n++
	c.last = now
	return c.n
}

// forget drops k's count: its message was handed off, or given up.
func (f *failures) forget(k failKey) {
	f.mu.Lock()
	delete(f.count, k)
	f.mu.Unlock()
}

// empty says whether nothing is counted, so the consumer need not key every delivery
// it acks.
func (f *failures) empty() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.count) == 0
}

// live returns e's count, nil when e is stale; f.mu is held.
func (f *failures) live(e failEntry) *failCount {
	if c := f.count[e.key]; c != nil && c.seq == e.seq {
		return c
	}
	return nil
}

// expire drops the counts idle for trackedTTL and the stale entries from the front
// of order; f.mu is held. A count that failed again lately keeps its place, and the
// idle ones behind it wait for it: the bound still holds, through evictOldest.
func (f *failures) expire(now time.Time) {
	n := 0
	for ; n < len(f.order); n++ {
		c := f.live(f.order[n])
		if c != nil && now.Sub(c.last) < trackedTTL {
			break
		}
		if c != nil {
			delete(f.count, f.order[n].key)
		}
	}
	f.drop(n)
	// Counts forgotten out of order leave stale entries; compact when they dominate.
	if len(f.order) > 2*len(f.count)+64 {
		live := f.order[:0]
		for _, e := range f.order {
			if f.live(e) != nil {
				live = append(live, e)
			}
		}
		clear(f.order[len(live):])
		f.order = live
	}
}

// evictOldest forgets the count that began first; f.mu is held.
func (f *failures) evictOldest() {
	for n := 0; n < len(f.order); n++ {
		if f.live(f.order[n]) != nil {
			delete(f.count, f.order[n].key)
			f.drop(n + 1)
			return
		}
	}
}

func (f *failures) drop(n int) {
	if n > 0 {
		clear(f.order[:n])
		f.order = f.order[n:]
	}
}

// deliveryCount reads the x-delivery-count header RabbitMQ sets on a quorum queue's
// redeliveries: the times the message went back to the queue before. 0 when absent.
func deliveryCount(h map[string]any) int64 {
	switch v := h["x-delivery-count"].(type) {
	case int64:
		return v
	case int32:
		return int64(v)
	case int:
		return int64(v)
	case int16:
		return int64(v)
	case int8:
		return int64(v)
	case uint8:
		return int64(v)
	case uint16:
		return int64(v)
	case uint32:
		return int64(v)
	}
	return 0
}
