package presence

import "sync"

// entryCacheBytes bounds the messages an instance keeps decoded from its history
// reads (by Message.Size): a few connections' queue budgets, which is what
// connections replaying the same stretch at once (a broadcast window, one user's
// tabs) read, so they share one copy of each message instead of one each.
const entryCacheBytes = 16 << 20

// entryKey is a message's place: its stream (a user's, "" for the broadcasts), the
// stream's epoch and the message's sequence. A place holds one message for good.
type entryKey struct {
	user, epoch string
	seq         uint64
}

// entryCache keeps the messages read from the history lately, by place, up to max
// bytes; the oldest kept go first. A Message is never changed once read (its wire
// encodings are built once, under their own sync.Once), so every reader may share it.
// A message dropped from the cache stays alive as long as a queue holds it.
type entryCache struct {
	mu    sync.Mutex
	max   int
	bytes int
	byKey map[entryKey]*Message
	order []entryKey // oldest first
}

func newEntryCache(max int) *entryCache {
	return &entryCache{max: max, byKey: make(map[entryKey]*Message)}
}

// get returns the message kept for k, or nil.
func (c *entryCache) get(k entryKey) *Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byKey[k]
}

// put keeps m for k unless a message is kept for k already, and returns the one kept
// (two readers decoding the same entry at once end up sharing the first's).
func (c *entryCache) put(k entryKey, m *Message) *Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.byKey[k]; old != nil {
		return old
	}
	c.byKey[k] = m
	c.order = append(c.order, k)
	c.bytes += m.Size()
	for c.bytes > c.max && len(c.order) > 1 {
		old := c.order[0]
		c.order[0] = entryKey{}
		c.order = c.order[1:]
		c.bytes -= c.byKey[old].Size()
		delete(c.byKey, old)
	}
	return m
}

// len is how many messages are kept.
func (c *entryCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byKey)
}
