package presence

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Conn is one client connection held by this instance, whatever its transport.
type Conn interface {
	User() string
	Transport() string // "ws", "sse", "poll"
	Since() time.Time
	// Send queues m without blocking. A connection whose queue is full closes itself
	// (the client resumes from history) rather than slow down the sender.
	Send(m *Message)
	// Drain tells the client to come back after the given delay, then closes the
	// connection (WebSocket close 1012). It returns once the connection is closed.
	Drain(ctx context.Context, after time.Duration)
}

// Stats are this instance's counters, read by the metrics endpoint.
type Stats struct {
	Delivered      atomic.Int64 // messages queued to a connection
	SlowDisconnect atomic.Int64 // connections closed because their queue overflowed
}

// Hub is the registry of this instance's connections, keyed by user. Sending never
// blocks on a connection, so one lock guards the maps.
type Hub struct {
	Stats Stats

	mu    sync.RWMutex
	users map[string]map[Conn]struct{}
	count int
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{users: make(map[string]map[Conn]struct{})} }

// Add registers c.
func (h *Hub) Add(c Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.users[c.User()]
	if set == nil {
		set = make(map[Conn]struct{}, 1)
		h.users[c.User()] = set
	}
	if _, ok := set[c]; !ok {
		set[c] = struct{}{}
		h.count++
	}
}

// Remove unregisters c. It reports whether c was the user's last connection here.
func (h *Hub) Remove(c Conn) (last bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.users[c.User()]
	if _, ok := set[c]; !ok {
		return false
	}
	delete(set, c)
	h.count--
	if len(set) == 0 {
		delete(h.users, c.User())
		return true
	}
	return false
}

// Deliver queues m to each of its recipients held here and returns how many there were.
func (h *Hub) Deliver(m *Message) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	n := 0
	if m.Broadcast() {
		for _, set := range h.users {
			for c := range set {
				c.Send(m)
				n++
			}
		}
	} else {
		for c := range h.users[m.UserID] {
			c.Send(m)
			n++
		}
	}
	h.Stats.Delivered.Add(int64(n))
	return n
}

// Count is the number of connections held.
func (h *Hub) Count() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.count
}

// UserConns is the number of connections a user holds here.
func (h *Hub) UserConns(user string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.users[user])
}

// Conns is a snapshot of every connection held.
func (h *Hub) Conns() []Conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]Conn, 0, h.count)
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
