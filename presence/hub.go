package presence

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Conn is one client connection held by this instance, whatever its transport.
type Conn interface {
	User() string
	Transport() string // "ws", "sse", "poll"
	Since() time.Time
	// Send queues ds in order without blocking; ds[i].At is the connection's cursor
	// just after ds[i].M, the message's id on this connection. One call carries what
	// one relay batch holds for the connection, so it is queued under one lock and
	// written together. A connection whose queue is full closes itself (the client
	// resumes from history) rather than slow down the sender. Send must not keep ds
	// (the caller reuses it) but may overwrite it.
	Send(ds []Delivery)
	// Replay queues, ahead of anything sent later, what the connection hears when it
	// attaches: its own greeting (welcome, and reset when rp.Reset says the replay is
	// incomplete, as its wire has them) and rp.Messages. It runs while live messages
	// for the connection wait (see Hub.Attach), so it must not block.
	Replay(rp *Replay)
	// Drain tells the client to come back after the given delay, then closes the
	// connection (WebSocket close 1012). It returns once the connection is closed.
	Drain(ctx context.Context, after time.Duration)
	// Room is how many messages, and bytes (by Message.Size), of history the
	// connection takes now: a replay reads no more bytes than that (its count is the
	// page), a catch-up neither more messages nor bytes, so a connection's memory is
	// bounded by its queue's budget however far behind it is. 0: none now.
	Room() (msgs, bytes int)
	// WhenRoom calls fn once, on a goroutine not the caller's, when the connection's
	// queue has drained to a low mark (at once if it is that low) — never if the
	// connection closes first. A later call replaces an earlier fn not yet called.
	WhenRoom(fn func())
}

// Stats are this instance's counters, read by the metrics endpoint.
type Stats struct {
	Delivered      atomic.Int64 // messages queued to a connection
	SlowDisconnect atomic.Int64 // connections closed because their queue overflowed
	Replays        atomic.Int64 // connections that came back with a cursor and had their replay queued
	CaughtUp       atomic.Int64 // messages a connection got from the history after a gap, or after its replay stopped at its bounds
	CatchUpDrops   atomic.Int64 // connections told to reconnect because a gap could not be filled
	Healed         atomic.Int64 // connections a beat found behind their streams' tops (Heal)
	Resyncs        atomic.Int64 // times every connection was caught up (relay resubscribed, presence lapsed)
}

// HubConfig are the parts a Hub works with: in memory for one instance, in Redis for
// many (app/backend.go chooses).
type HubConfig struct {
	Instance  string       // this instance's id, in the directory entries of its connections
	History   History      // what a connection replays, and where gaps are repaired from
	Directory Directory    // where connections are registered, so dispatches find this instance
	Log       *slog.Logger // nil: slog.Default()

	// Events takes the events about this instance's clients to the backend; nil: none
	// (then receipts are not even looked up).
	Events Events
	// Receipts deduplicates delivery receipts across tabs and instances, for
	// ReceiptTTL (the history's window: a message older than that cannot be confirmed).
	Receipts   Receipts
	ReceiptTTL time.Duration
	// Transitions hears every connection that attaches and detaches, for user.online
	// and user.offline; nil: none.
	Transitions Transitions
	// Relayed sees each batch the relay hands over, before it is delivered (the
	// relay-lag metric); nil: none.
	Relayed func(ms []*Message)
}

// Hub is the registry of this instance's connections, keyed by user. Sending never
// blocks on a connection, so one lock guards the maps. It tracks where each
// connection stands in the history, so a connection never gets a message twice and a
// gap is repaired (see feed).
type Hub struct {
	Stats Stats

	instance string
	history  History
	dir      Directory
	log      *slog.Logger

	events     Events // nil: none
	receipts   Receipts
	receiptTTL time.Duration
	trans      Transitions // nil: none
	relayed    func(ms []*Message)

	mu    sync.RWMutex
	users map[string]map[Conn]*feed
	kinds map[string]int // connections by transport; Count is their sum

	listening     chan struct{} // closed once the relay first listens (see Listen)
	listeningOnce sync.Once
}

// NewHub returns an empty hub working with the parts of c.
func NewHub(c HubConfig) *Hub {
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Receipts == nil {
		c.Receipts = NewMemoryReceipts()
	}
	if c.ReceiptTTL <= 0 {
		c.ReceiptTTL = defaultHistoryTTL
	}
	return &Hub{
		instance: c.Instance, history: c.History, dir: c.Directory, log: c.Log,
		events: c.Events, receipts: c.Receipts, receiptTTL: c.ReceiptTTL, trans: c.Transitions, relayed: c.Relayed,
		users: make(map[string]map[Conn]*feed), kinds: make(map[string]int), listening: make(chan struct{}),
	}
}

func (h *Hub) add(c Conn, held bool) *feed {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.users[c.User()]
	if set == nil {
		set = make(map[Conn]*feed, 1)
		h.users[c.User()] = set
	}
	f, ok := set[c]
	if !ok {
		f = &feed{held: held}
		set[c] = f
		h.kinds[c.Transport()]++
	}
	return f
}

// Remove unregisters c. It reports whether c was the user's last connection here.
func (h *Hub) Remove(c Conn) (last bool) {
	_, last = h.remove(c)
	return last
}

// remove is Remove, also saying whether c was held at all.
func (h *Hub) remove(c Conn) (found, last bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.users[c.User()]
	f, ok := set[c]
	if !ok {
		return false, false
	}
	delete(set, c)
	h.kinds[c.Transport()]--
	if len(set) == 0 {
		delete(h.users, c.User())
		last = true
	}
	return f.attached, last
}

// Deliver queues m to each of its recipients held here and returns how many there
// were; see DeliverAll.
func (h *Hub) Deliver(m *Message) int { return h.DeliverAll([]*Message{m}) }

// DeliverAll queues each message of ms, in order, to each of its recipients held here
// and returns how many deliveries that made. A connection is not sent a message it
// already has; one that reveals a gap (see feed) is caught up from the history
// instead. What one connection gets of ms goes to it in one Send, under its feed's
// lock once: when the relay brings batches (it does when this instance falls behind),
// the work per recipient — locks, the writer's wake-up, the write — is per batch, not
// per message.
func (h *Hub) DeliverAll(ms []*Message) int {
	if len(ms) == 0 {
		return 0
	}
	var (
		fix      []pending
		outcomes []int
		n        int
	)
	out := deliveryScratch.Get().(*[]Delivery)
	defer deliveryScratch.Put(out)
	offer := func(c Conn, f *feed, sel []*Message) {
		n += len(sel)
		if o := f.offer(c, sel, out); o != offered {
			fix, outcomes = append(fix, pending{c, f}), append(outcomes, o)
		}
	}
	g := groupByUser(ms)
	var mine []*Message
	share := func(user string) []*Message { // what of ms user's connections get
		switch {
		case len(g.order) == 0, len(g.bcast) == 0 && len(g.order) == 1:
			return ms // all of it is for everyone it reaches
		case len(g.bcast) > 0 && !g.users[user]:
			return g.bcast
		}
		mine = g.of(ms, user, mine[:0])
		return mine
	}
	offerUser := func(user string, set map[Conn]*feed) {
		if len(set) == 0 {
			return
		}
		sel := share(user)
		for c, f := range set {
			offer(c, f, sel)
		}
	}
	h.mu.RLock()
	if len(g.bcast) > 0 {
		for user, set := range h.users {
			offerUser(user, set)
		}
	} else {
		for _, user := range g.order {
			offerUser(user, h.users[user])
		}
	}
	h.mu.RUnlock()
	h.Stats.Delivered.Add(int64(n))
	for i, p := range fix {
		h.repair(p.c, p.f, outcomes[i])
	}
	return n
}

// deliveryScratch holds what DeliverAll hands one connection (Conn.Send keeps none
// of it), so a delivery allocates nothing per recipient or per batch.
var deliveryScratch = sync.Pool{New: func() any { return new([]Delivery) }}

// batchGroups is how a batch's messages divide between the broadcasts and the users
// they are for.
type batchGroups struct {
	bcast []*Message      // the broadcasts, in order
	order []string        // the users with targeted messages, in order of their first
	users map[string]bool // the same users, when there are broadcasts too (nil otherwise)
}

func groupByUser(ms []*Message) batchGroups {
	var g batchGroups
	if len(ms) == 1 { // the common case at low rates
		if ms[0].Broadcast() {
			g.bcast = ms
		} else {
			g.order = []string{ms[0].UserID}
		}
		return g
	}
	for _, m := range ms {
		if m.Broadcast() {
			g.bcast = append(g.bcast, m)
		} else if !slices.Contains(g.order, m.UserID) {
			g.order = append(g.order, m.UserID)
		}
	}
	if len(g.bcast) == len(ms) {
		g.bcast = ms
	}
	if len(g.bcast) > 0 && len(g.order) > 0 {
		g.users = make(map[string]bool, len(g.order))
		for _, u := range g.order {
			g.users[u] = true
		}
	}
	return g
}

// of appends to dst, in order, the messages of ms that user's connections get: the
// broadcasts and the user's own.
func (g batchGroups) of(ms []*Message, user string, dst []*Message) []*Message {
	for _, m := range ms {
		if m.Broadcast() || m.UserID == user {
			dst = append(dst, m)
		}
	}
	return dst
}

// Count is the number of connections held.
func (h *Hub) Count() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.countLocked()
}

// countLocked sums the connections of every transport; h.mu is held.
func (h *Hub) countLocked() int {
	n := 0
	for _, k := range h.kinds {
		n += k
	}
	return n
}

// UserCount is the number of distinct users with a connection here.
func (h *Hub) UserCount() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.users)
}

// CountOf is the number of connections held here on one transport ("ws", "sse", "poll").
func (h *Hub) CountOf(transport string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.kinds[transport]
}

// Conns is a snapshot of every connection held.
func (h *Hub) Conns() []Conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]Conn, 0, h.countLocked())
	for _, set := range h.users {
		for c := range set {
			out = append(out, c)
		}
	}
	return out
}

// drainParallel bounds how many connections are closed at once during a drain, so a
// drain of 100k connections neither spawns 100k goroutines nor takes 100k round trips.
const drainParallel = 64

// Drain tells every connection to reconnect after a random delay in [0, spread) — so
// clients do not all return to the surviving instances in the same instant — and closes
// them. Connections that register meanwhile (upgrades under way when the listener
// closed) are drained too. It returns when all are closed or ctx ends.
func (h *Hub) Drain(ctx context.Context, spread time.Duration) {
	seen := make(map[Conn]bool)
	for ctx.Err() == nil {
		var fresh []Conn
		for _, c := range h.Conns() {
			if !seen[c] {
				seen[c] = true
				fresh = append(fresh, c)
			}
		}
		if len(fresh) == 0 {
			return
		}
		drainAll(ctx, fresh, spread)
	}
}

func drainAll(ctx context.Context, conns []Conn, spread time.Duration) {
	sem := make(chan struct{}, drainParallel)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, c := range conns {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			var after time.Duration
			if spread > 0 {
				after = rand.N(spread)
			}
			c.Drain(ctx, after)
		}()
	}
}
