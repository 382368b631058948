package presence

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Limits of catching a connection up from the history.
const (
	// catchUpPage is how many messages one history read returns while catching up:
	// a resubscribe usually misses a handful, and a page bounds each read.
	catchUpPage = 500
	// repairTimeout bounds a catch-up done on the relay's goroutine, so a Redis that
	// stopped answering holds up live delivery for at most this long.
	repairTimeout = 2 * time.Second
	// dropTimeout bounds telling a connection that cannot be caught up to come back.
	dropTimeout = 5 * time.Second
)

// errIncomplete: what a connection missed is no longer in the history as it was.
var errIncomplete = errors.New("messages after the connection's position have left the history, or it was lost")

// The two streams a connection reads, as indexes.
const (
	userStream  = 0
	bcastStream = 1
)

func streamOf(m *Message) int {
	if m.Broadcast() {
		return bcastStream
	}
	return userStream
}

// pos is the connection's place in stream i.
func (c *Cursor) pos(i int) *Pos {
	if i == userStream {
		return &c.User
	}
	return &c.Bcast
}

// feed is where one connection stands: its position in its user's stream and in the
// broadcasts, tracked separately, so a broadcast never moves it past a targeted
// message it missed. Sequences are dense per stream, so a message at or below the
// position is a copy it has (from its replay, or a catch-up), the next one is sent,
// and one further on reveals a gap: nothing more of that stream is sent until the
// connection is caught up from the history. A message of another epoch means the
// stream was lost: the connection is told to reconnect, and its cursor gets a reset.
type feed struct {
	mu      sync.Mutex
	at      Cursor     // the connection's position: the id of the last message it was given
	tracked bool       // at is known (Release): copies and gaps can be told
	held    bool       // attaching: live messages wait in pending until Release
	pending []*Message // what arrived while held, in arrival order
	gap     [2]bool    // per stream: missed something, only a catch-up sends on it again
	lost    bool       // told to reconnect: nothing more is sent
	// awaiting: a catch-up stopped at what the connection's queue had room for, and
	// the connection calls back once it drained (Conn.WhenRoom).
	awaiting bool

	attached bool // Attach completed (Transitions heard of it); guarded by the hub's mu
}

// offer outcomes.
const (
	offered = iota // sent, or a copy skipped, or held
	gapped         // a gap: catch the stream up
	lostIt         // the stream's epoch changed: the connection must reconnect
)

type pending struct {
	c Conn
	f *feed
}

// offerLocked adds m to out, with its id on the connection, unless the connection
// has it or holds it back, and says whether it now needs a catch-up or a reconnect.
// f.mu is held.
func (f *feed) offerLocked(m *Message, out *[]Delivery) int {
	if f.lost {
		return offered
	}
	if f.held {
		f.pending = append(f.pending, m)
		return offered
	}
	if m.Seq == 0 { // not recorded: nothing to order it by
		*out = append(*out, Delivery{M: m, At: f.at})
		return offered
	}
	i := streamOf(m)
	p := f.at.pos(i)
	switch {
	case !f.tracked, p.Epoch == "" && m.Seq == 1, p.Epoch == m.Epoch && m.Seq == p.Seq+1:
		*p = m.Pos()
		*out = append(*out, Delivery{M: m, At: f.at})
		return offered
	case p.Epoch == m.Epoch && m.Seq <= p.Seq:
		return offered // a copy
	case f.gap[i]:
		return gapped
	case p.Epoch == "" || p.Epoch == m.Epoch:
		f.gap[i] = true
		return gapped
	}
	return lostIt
}

// offer sends c, in one Send, what of ms (in order) it does not have, and returns the
// worst outcome; out is scratch, left empty.
func (f *feed) offer(c Conn, ms []*Message, out *[]Delivery) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	worst := offered
	for _, m := range ms {
		worst = max(worst, f.offerLocked(m, out))
	}
	sendAll(c, out)
	return worst
}

// sendAll sends what out holds to c, if anything, and empties it.
func sendAll(c Conn, out *[]Delivery) {
	if len(*out) > 0 {
		c.Send(*out)
		clear(*out)
		*out = (*out)[:0]
	}
}

// Hold registers c while its replay is being read: messages for it wait until
// Release. Hold it before the connection is in the directory, so no message sent
// after that falls between the replay and the live stream.
func (h *Hub) Hold(c Conn) { h.add(c, true) }

// Release starts live delivery to c, a connection given everything up to at: what
// waited meanwhile is sent, skipping what it already has, and a gap is caught up —
// as is everything after at when behind (its replay stopped short of the tops).
func (h *Hub) Release(ctx context.Context, c Conn, at Cursor, behind bool) error {
	f := h.feedOf(c)
	if f == nil {
		return nil // removed meanwhile
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.held, f.tracked, f.at = false, true, at
	waiting := f.pending
	f.pending = nil
	worst := offered
	if behind {
		f.gap, worst = [2]bool{true, true}, gapped
	}
	var out []Delivery
	for _, m := range waiting {
		worst = max(worst, f.offerLocked(m, &out))
	}
	sendAll(c, &out)
	return h.settleLocked(ctx, c, f, worst)
}

func (h *Hub) feedOf(c Conn) *feed {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.users[c.User()][c]
}

// settleLocked acts on the worst outcome of offers to c. f.mu is held.
func (h *Hub) settleLocked(ctx context.Context, c Conn, f *feed, outcome int) error {
	switch {
	case outcome == lostIt:
		h.loseLocked(c, f)
		return fmt.Errorf("catch up %s: %w", c.User(), errIncomplete)
	case outcome == gapped && h.history != nil:
		return h.catchUpLocked(ctx, c, f)
	}
	return nil
}

// Resync catches every connection up from the history: call it when the relay may
// have dropped messages (it subscribed again), or this instance was out of presence.
// A connection that cannot be caught up now is tried again with its next message.
func (h *Hub) Resync(ctx context.Context) error {
	if h.history == nil {
		return nil
	}
	var errs []error
	for _, p := range h.feeds() {
		p.f.mu.Lock()
		p.f.gap = [2]bool{true, true} // a held connection catches up at its Release
		if p.f.tracked && !p.f.held {
			if err := h.catchUpLocked(ctx, p.c, p.f); err != nil {
				errs = append(errs, err)
			}
		}
		p.f.mu.Unlock()
	}
	return errors.Join(errs...)
}

// feeds is a snapshot of every connection and its feed.
func (h *Hub) feeds() []pending {
	h.mu.RLock()
	defer h.mu.RUnlock()
	all := make([]pending, 0, h.countLocked())
	for _, set := range h.users {
		for c, f := range set {
			all = append(all, pending{c, f})
		}
	}
	return all
}

// repair acts on what Deliver found for c.
func (h *Hub) repair(c Conn, f *feed, outcome int) {
	ctx, cancel := context.WithTimeout(context.Background(), repairTimeout)
	defer cancel()
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.held {
		_ = h.settleLocked(ctx, c, f, outcome) // a failure leaves the gap for the next message
	}
}

// catchUpLocked sends c what the history holds after its position, for each stream
// with a gap, as much as c's queue has room for (Conn.Room): a connection far behind
// (its replay stopped short, or it missed much) is caught up chunk by chunk as it
// drains — c calls back (Conn.WhenRoom) — so it never holds more than its queue's
// budget, and a client that does not read makes the history read no more. When what
// it missed is no longer whole (it left the window, or the stream's epoch changed),
// c is told to reconnect: it resumes with its own cursor and is told what it missed.
// f.mu is held.
func (h *Hub) catchUpLocked(ctx context.Context, c Conn, f *feed) error {
	for i := range f.gap {
		if !f.gap[i] || f.lost {
			continue
		}
		n, room := c.Room()
		if n <= 0 || room <= 0 {
			h.awaitRoomLocked(c, f)
			return nil
		}
		user := c.User()
		if i == bcastStream {
			user = ""
		}
		p := f.at.pos(i)
		w, err := h.history.Read(ctx, user, *p, min(n, catchUpPage), room)
		if err != nil {
			return fmt.Errorf("catch up %s: %w", c.User(), err)
		}
		if w.Reset != "" {
			h.loseLocked(c, f)
			return fmt.Errorf("catch up %s: %s: %w", c.User(), w.Reset, errIncomplete)
		}
		var out []Delivery
		for _, m := range w.Msgs {
			if m.Seq > p.Seq || p.Epoch == "" {
				*p = m.Pos()
				out = append(out, Delivery{M: m, At: f.at})
			}
		}
		h.Stats.CaughtUp.Add(int64(len(out)))
		sendAll(c, &out)
		if w.Cut() {
			h.awaitRoomLocked(c, f) // the gap stays: live messages of the stream wait for the rest
			continue
		}
		f.gap[i] = false
	}
	return nil
}

// awaitRoomLocked has c call back once its queue has drained, to go on catching up.
// f.mu is held.
func (h *Hub) awaitRoomLocked(c Conn, f *feed) {
	if f.awaiting {
		return
	}
	f.awaiting = true
	c.WhenRoom(func() {
		gone := h.feedOf(c) != f // asked before f.mu: the hub's lock is never taken under a feed's
		ctx, cancel := context.WithTimeout(context.Background(), repairTimeout)
		defer cancel()
		f.mu.Lock()
		defer f.mu.Unlock()
		f.awaiting = false
		if !gone && f.tracked && !f.held && !f.lost {
			_ = h.catchUpLocked(ctx, c, f) // a failure leaves the gap for the next message or beat
		}
	})
}

// loseLocked tells c to reconnect at once, without waiting for it to go: what it
// missed cannot be given here. f.mu is held.
func (h *Hub) loseLocked(c Conn, f *feed) {
	if f.lost {
		return
	}
	f.lost = true
	h.Stats.CatchUpDrops.Add(1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), dropTimeout)
		defer cancel()
		c.Drain(ctx, 0)
	}()
}

// Heal compares every connection with the tops of its streams as a beat read them
// (see RedisDirectory.Refresh) — anti-entropy: a connection behind a top missed a
// publish (lost, or this instance was out of presence) and is caught up from the
// history; one whose stream has another epoch is told to reconnect and gets a reset.
// Connections that came after the tops were read, or whose user
// they do not cover, are left alone. It returns how many connections it caught up.
func (h *Hub) Heal(ctx context.Context, tops Tops) (int, error) {
	if h.history == nil {
		return 0, nil
	}
	var errs []error
	healed := 0
	for _, p := range h.feeds() {
		if p.c.Since().After(tops.At) {
			continue
		}
		top, ok := tops.Users[p.c.User()]
		if !ok {
			continue
		}
		n, err := h.heal(ctx, p, [2]Pos{userStream: top, bcastStream: tops.Bcast})
		healed += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return healed, errors.Join(errs...)
}

// heal compares one connection with its streams' tops and acts on what it finds.
func (h *Hub) heal(ctx context.Context, p pending, tops [2]Pos) (int, error) {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	if !p.f.tracked || p.f.held || p.f.lost {
		return 0, nil // a held connection is caught up at its Release
	}
	worst := offered
	for i, top := range tops {
		at := p.f.at.pos(i)
		switch {
		case top.Epoch == "":
			// No stream when the tops were read; one made since may have moved the
			// connection on already. A lost stream shows with its next message.
		case at.Epoch != "" && at.Epoch != top.Epoch:
			worst = lostIt // the stream began again: what the connection missed is gone
		case top.Seq > at.Seq:
			p.f.gap[i] = true
			worst = max(worst, gapped)
		}
	}
	if worst == offered {
		return 0, nil
	}
	h.Stats.Healed.Add(1)
	return 1, h.settleLocked(ctx, p.c, p.f, worst)
}
