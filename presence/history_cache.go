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
	order []entryKey     // oldest first
	runs  map[string]run // per stream (by user): a stretch of it held whole
}

// run is a stretch of a stream's sequences in one epoch that the cache holds every
// message of.
type run struct {
	epoch  string
	lo, hi uint64
}

// maxCacheRuns bounds entryCache.runs: past it, the map starts afresh (a stream whose
// run is forgotten is read whole until it has one again).
const maxCacheRuns = 10_000

func newEntryCache(max int) *entryCache {
	return &entryCache{max: max, byKey: make(map[entryKey]*Message), runs: make(map[string]run)}
}

// held is the stretch of user's stream that a read after from need not be sent (see
// readScript): the cache holds every message of it. From with no epoch (a fresh or
// malformed cursor reads from the start) is taken in the epoch of the stretch. A zero
// run: none.
func (c *entryCache) held(user string, from Pos) run {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.runs[user]
	if !ok || (from.Epoch != "" && from.Epoch != r.epoch) || r.hi <= from.Seq {
		return run{}
	}
	r.lo = max(r.lo, from.Seq+1)
	return r
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
	c.grow(k)
	for c.bytes > c.max && len(c.order) > 1 {
		old := c.order[0]
		c.order[0] = entryKey{}
		c.order = c.order[1:]
		c.bytes -= c.byKey[old].Size()
		delete(c.byKey, old)
		c.shrink(old)
	}
	return m
}

// grow extends k's stream's run by k, or starts it anew at k (another epoch, or k
// is not next to it). c.mu is held.
func (c *entryCache) grow(k entryKey) {
	r, ok := c.runs[k.user]
	switch {
	case ok && r.epoch == k.epoch && k.seq >= r.lo && k.seq <= r.hi:
	case ok && r.epoch == k.epoch && k.seq == r.hi+1:
		r.hi++
	case ok && r.epoch == k.epoch && k.seq+1 == r.lo:
		r.lo--
	default:
		if len(c.runs) >= maxCacheRuns {
			clear(c.runs)
		}
		r = run{epoch: k.epoch, lo: k.seq, hi: k.seq}
	}
	c.runs[k.user] = r
}

// shrink takes the dropped k out of its stream's run: the run keeps its part below
// k (or above, when k was its first). c.mu is held.
func (c *entryCache) shrink(k entryKey) {
	r, ok := c.runs[k.user]
	if !ok || r.epoch != k.epoch || k.seq < r.lo || k.seq > r.hi {
		return
	}
	if k.seq == r.lo {
		r.lo++
	} else {
		r.hi = k.seq - 1
	}
	if r.lo > r.hi {
		delete(c.runs, k.user)
		return
	}
	c.runs[k.user] = r
}
