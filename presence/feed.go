package presence

import (
	"cmp"
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

// errIncomplete: what a connection missed has already left the history window.
var errIncomplete = errors.New("messages after the connection's cursor have left the history")

// feed is where one connection stands in the message stream: the id of the last
// message it was given. Messages reach an instance in id order (see Dispatcher), so
// one at or below that id is a copy the connection already has (from its replay, or
// a catch-up), and one whose Prev — the previous id in its own stream, which this
// connection reads too — is above it reveals a message the relay dropped. Then
// nothing more is sent until the connection is caught up from the history.
type feed struct {
	mu      sync.Mutex
	last    uint64     // highest id given to the connection, or where it started
	tracked bool       // last is known (Release): gaps can be detected
	held    bool       // attaching: live messages wait in pending until Release
	pending []*Message // what arrived while held, in arrival order
	gap     bool       // missed something: only a catch-up sends to it again
}

type gapped struct {
	c Conn
	f *feed
}

// offerLocked sends m to c unless c has it, or holds it back; it reports a gap that
// needs a catch-up. f.mu is held.
func (f *feed) offerLocked(c Conn, m *Message, id, prev uint64) (gap bool) {
	switch {
	case f.held:
		f.pending = append(f.pending, m)
		return false
	case id == 0: // not recorded: nothing to order it by
		c.Send(m)
		return false
	case id <= f.last:
		return false
	case f.gap:
		return true
	case f.tracked && prev > f.last:
		f.gap = true
		return true
	}
	c.Send(m)
	f.last = id
	return false
}

func (f *feed) offer(c Conn, m *Message, id, prev uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.offerLocked(c, m, id, prev)
}

// messageIDs reads m's id and prev; 0 when absent (or not a cursor).
func messageIDs(m *Message) (id, prev uint64) {
	id, _ = cursorOrZero(m.ID)
	prev, _ = cursorOrZero(m.Prev)
	return id, prev
}

// Hold registers c while its replay is being read: messages for it wait until
// Release. Hold it before the connection is in the directory, so no message sent
// after that falls between the replay and the live stream.
func (h *Hub) Hold(c Conn) { h.add(c, true) }

// Release starts live delivery to c, a connection given everything up to last: what
// waited meanwhile is sent, skipping what it already has, and a gap is caught up.
func (h *Hub) Release(ctx context.Context, c Conn, last uint64) error {
	h.mu.RLock()
	f := h.users[c.User()][c]
	h.mu.RUnlock()
	if f == nil {
		return nil // removed meanwhile
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.held, f.tracked = false, true
	f.last = max(f.last, last)
	pending := f.pending
	f.pending = nil
	need := f.gap
	for _, m := range pending {
		id, prev := messageIDs(m)
		if f.offerLocked(c, m, id, prev) {
			need = true
		}
	}
	if !need {
		return nil
	}
	f.gap = true
	return h.catchUpLocked(ctx, c, f)
}

// Resync catches every connection up from the history: call it when the relay may
// have dropped messages (it subscribed again). A connection that cannot be caught up
// now is tried again with its next message.
func (h *Hub) Resync(ctx context.Context) error {
	h.mu.RLock()
	all := make([]gapped, 0, h.countLocked())
	for _, set := range h.users {
		for c, f := range set {
			all = append(all, gapped{c, f})
		}
	}
	h.mu.RUnlock()
	var errs []error
	for _, g := range all {
		g.f.mu.Lock()
		g.f.gap = true // a held connection catches up at its Release
		if g.f.tracked && !g.f.held {
			if err := h.catchUpLocked(ctx, g.c, g.f); err != nil {
				errs = append(errs, err)
			}
		}
		g.f.mu.Unlock()
	}
	return errors.Join(errs...)
}

// repair catches c up after Deliver found a gap.
func (h *Hub) repair(c Conn, f *feed) {
	ctx, cancel := context.WithTimeout(context.Background(), repairTimeout)
	defer cancel()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gap && !f.held {
		_ = h.catchUpLocked(ctx, c, f) // a failure leaves the gap for the next message
	}
}

// catchUpLocked sends c what the history holds after f.last. When that is no longer
// whole (or the cursor is unknown, Redis lost its counter), c is told to reconnect:
// it resumes with its own cursor and is told what it missed. f.mu is held.
func (h *Hub) catchUpLocked(ctx context.Context, c Conn, f *feed) error {
	for {
		msgs, complete, err := h.history.After(ctx, c.User(), FormatCursor(f.last), catchUpPage)
		if errors.Is(err, ErrBadCursor) || (err == nil && !complete) {
			h.Stats.CatchUpDrops.Add(1)
			drop(c)
			return fmt.Errorf("catch up %s: %w", c.User(), cmp.Or(err, errIncomplete))
		}
		if err != nil {
			return fmt.Errorf("catch up %s: %w", c.User(), err)
		}
		for _, m := range msgs {
			if id, _ := messageIDs(m); id > f.last {
				c.Send(m)
				f.last = id
				h.Stats.CaughtUp.Add(1)
			}
		}
		if len(msgs) < catchUpPage {
			f.gap = false
			return nil
		}
	}
}

// drop tells c to reconnect at once, without waiting for it to go.
func drop(c Conn) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), dropTimeout)
		defer cancel()
		c.Drain(ctx, 0)
	}()
}
