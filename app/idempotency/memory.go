package idempotency

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

var _ Store = (*Memory)(nil)

// Memory keeps results in this process, for one instance without Redis.
type Memory struct {
	window time.Duration
	max    int
	now    func() time.Time

	mu      sync.Mutex
	entries map[string]*memEntry
	order   []memRef // by insertion; stale refs are skipped
	seq     uint64
}

type memEntry struct {
	token string  // set while claimed
	res   *Result // set once saved
	until time.Time
	seq   uint64
}

type memRef struct {
	key string
	seq uint64
}

// NewMemory keeps each result for window, and at most maxKeys keys (claims and results):
// past it the oldest is forgotten.
func NewMemory(window time.Duration, maxKeys int) *Memory {
	return &Memory{window: window, max: maxKeys, now: time.Now, entries: make(map[string]*memEntry)}
}

func (m *Memory) Claim(_ context.Context, key string) (*Result, *Claim, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.expire(now)
	if e := m.entries[key]; e != nil && now.Before(e.until) {
		if e.res != nil {
			r := *e.res
			return &r, nil, nil
		}
		return nil, nil, nil
	}
	if len(m.entries) >= m.max {
		m.evictOldest()
	}
	c := &Claim{Key: key, token: newToken()}
	m.put(key, &memEntry{token: c.token, until: now.Add(ClaimTTL)})
	return nil, c, nil
}

func (m *Memory) Save(_ context.Context, c *Claim, res Result) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.put(c.Key, &memEntry{res: &res, until: m.now().Add(m.window)})
	return nil
}

func (m *Memory) Release(_ context.Context, c *Claim) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.entries[c.Key]; e != nil && e.res == nil && e.token == c.token {
		delete(m.entries, c.Key)
	}
	return nil
}

// Len is how many keys are held, for tests.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

// put sets key's entry, at the back of the order; m.mu is held.
func (m *Memory) put(key string, e *memEntry) {
	m.seq++
	e.seq = m.seq
	m.entries[key] = e
	m.order = append(m.order, memRef{key: key, seq: e.seq})
}

func (m *Memory) live(r memRef) *memEntry {
	if e := m.entries[r.key]; e != nil && e.seq == r.seq {
		return e
	}
	return nil
}

// expire drops the expired entries and stale refs at the front of the order; an
// unexpired one ends the sweep, and what expires behind it waits (the bound holds
// through evictOldest). m.mu is held.
func (m *Memory) expire(now time.Time) {
	n := 0
	for ; n < len(m.order); n++ {
		e := m.live(m.order[n])
		if e != nil && now.Before(e.until) {
			break
		}
		if e != nil {
			delete(m.entries, m.order[n].key)
		}
	}
	m.drop(n)
	if len(m.order) > 2*len(m.entries)+64 { // stale refs dominate: compact
		live := m.order[:0]
		for _, r := range m.order {
			if m.live(r) != nil {
				live = append(live, r)
			}
		}
		clear(m.order[len(live):])
		m.order = live
	}
}

func (m *Memory) evictOldest() {
	for n := 0; n < len(m.order); n++ {
		if m.live(m.order[n]) != nil {
			delete(m.entries, m.order[n].key)
			m.drop(n + 1)
			return
		}
	}
}

func (m *Memory) drop(n int) {
	if n > 0 {
		clear(m.order[:n])
		m.order = m.order[n:]
	}
}

func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
