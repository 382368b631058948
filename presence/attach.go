package presence

import (
	"context"
	"errors"
	"fmt"
)

// replayPage is how many messages one history read returns while building a replay:
// large enough that a typical resume is one read, small enough to bound each read.
const replayPage = 500

// ErrUnavailable: a connection could not be registered or replayed because the shared
// state (Redis) failed. Nothing is lost; the client should come back, here or
// elsewhere (handlers answers 503 with Retry-After).
var ErrUnavailable = errors.New("presence is unavailable")

// Attach registers c and hands it (Conn.Replay) what c's user missed after cursor (at
// most limit messages, 0: a page of the window; and what fits in c.Room()), then
// starts live delivery, so that every message is given once: in the replay or live,
// never both, never neither. What did not fit follows as c's queue drains (see
// catchUpLocked).
//
// The order is what makes that hold across instances. c is first held in the hub (live
// messages for it wait), then written to the directory: every message dispatched once
// the entry is visible is published to this instance, and every one before is in the
// history below the tops read next. The replay reads the history after the cursor;
// then what waited is released, skipping positions the replay already gave. c.Replay
// runs before the release and must not block: it queues the replay ahead of anything
// live.
//
// An empty cursor starts from now. A malformed, unknown or expired cursor still
// attaches; the replay's Reset says why it is incomplete.
func (h *Hub) Attach(ctx context.Context, c Conn, cursor string, limit int) error {
	h.Hold(c)
	if err := h.dir.Add(ctx, h.entry(c)); err != nil {
		h.Detach(ctx, c)
		return fmt.Errorf("%w (%w)", ErrUnavailable, err)
	}
	_, room := c.Room()
	rp, err := h.replay(ctx, c.User(), cursor, limit, room)
	if err != nil {
		h.Detach(ctx, c)
		return fmt.Errorf("%w (%w)", ErrUnavailable, err)
	}
	c.Replay(rp)
	if cursor != "" {
		h.Stats.Replays.Add(1)
	}
	// A replay that stopped at its page goes on from the history as a catch-up, for
	// a stream; a poll (limit > 0) reads the rest with its next request.
	if err := h.Release(ctx, c, rp.Head, rp.More && limit == 0); err != nil {
		h.log.Warn("attach: live messages not caught up yet (retried with the next one)", "user", c.User(), "err", err)
	}
	if h.trans != nil && h.markAttached(c) {
		h.trans.Connected(ctx, c.User(), c.Transport())
	}
	return nil
}

// markAttached records that c's attach completed, so its Detach counts as a
// disconnection; false when c was already removed meanwhile (it closed during the
// attach and its Detach has run).
func (h *Hub) markAttached(c Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.users[c.User()][c]
	if ok {
		f.attached = true
	}
	return ok
}

// Replay reads what user's connections should read after cursor, at most limit
// messages and maxBytes bytes (see History.Read), without registering anything: a poll
// with something to answer needs no more. An error answers the client as Attach's do.
func (h *Hub) Replay(ctx context.Context, user, cursor string, limit, maxBytes int) (*Replay, error) {
	rp, err := h.replay(ctx, user, cursor, limit, maxBytes)
	if err != nil {
		return nil, fmt.Errorf("%w (%w)", ErrUnavailable, err)
	}
	return rp, nil
}

// Detach unregisters c from the hub and the directory.
func (h *Hub) Detach(ctx context.Context, c Conn) {
	if attached, _ := h.remove(c); attached && h.trans != nil {
		h.trans.Disconnected(ctx, c.User())
	}
	if err := h.dir.Remove(ctx, h.entry(c)); err != nil {
		h.log.Warn("presence remove", "user", c.User(), "err", err)
	}
}

func (h *Hub) entry(c Conn) Entry {
	return Entry{User: c.User(), Instance: h.instance, Transport: c.Transport(), Since: c.Since()}
}

// replay reads what user's connections should have read after cursor — one page in
// all, at most limit messages (0: replayPage) and maxBytes bytes (0: any), half of each for
// each stream, merged by the time each message was recorded — and where live delivery
// takes over: after the last message replayed of each stream, or its top when the
// replay got to it (see Attach). Halving bounds the reads, not only the answer: a
// stream that leaves its half unused is not read further here, its rest follows (More).
func (h *Hub) replay(ctx context.Context, user, cursor string, limit, maxBytes int) (*Replay, error) {
	rp := &Replay{From: cursor}
	var from Cursor
	page := replayPage
	if limit > 0 {
		page = min(page, limit)
	}
	if cursor == "" {
		page = 0 // a fresh client starts at the tops
	} else if c, err := ParseCursor(cursor); err != nil {
		rp.Reset = ResetMalformed
	} else {
		from = c
	}
	// Each stream's share; at least one message, so a replay always gets on.
	var counts [2]int
	if page > 0 {
		counts = [2]int{userStream: max(page-page/2, 1), bcastStream: max(page/2, 1)}
	}
	perStreamBytes := 0
	if maxBytes > 0 {
		perStreamBytes = max(maxBytes/2, 1)
	}
	var ws [2]Window
	for i, owner := range []string{user, ""} {
		w, err := h.history.Read(ctx, owner, *from.pos(i), counts[i], perStreamBytes)
		if err != nil {
			return nil, fmt.Errorf("read history: %w", err)
		}
		if cursor != "" && rp.Reset == "" {
			rp.Reset = w.Reset
		}
		ws[i] = w
	}
	// Where each stream starts: the cursor's place, or for a stream that could not be
	// resumed, just before what its window holds.
	at := from
	for i, w := range ws {
		if w.Reset == "" && cursor != "" {
			continue
		}
		start := w.Top
		if len(w.Msgs) > 0 {
			start = Pos{Epoch: w.Top.Epoch, Seq: w.Msgs[0].Seq - 1}
		}
		*at.pos(i) = start
	}
	a, b := ws[userStream].Msgs, ws[bcastStream].Msgs
	rp.Messages = make([]Delivery, 0, len(a)+len(b))
	for (len(a) > 0 || len(b) > 0) && (page == 0 || len(rp.Messages) < page) {
		if len(b) == 0 || (len(a) > 0 && a[0].Time <= b[0].Time) {
			at.User = a[0].Pos()
			rp.Messages = append(rp.Messages, Delivery{M: a[0], At: at})
			a = a[1:]
		} else {
			at.Bcast = b[0].Pos()
			rp.Messages = append(rp.Messages, Delivery{M: b[0], At: at})
			b = b[1:]
		}
	}
	// A stream replayed to its end stands at its top; one cut short goes on later.
	for i, left := range [2][]*Message{a, b} {
		if len(left) > 0 || ws[i].Cut() {
			rp.More = true
		} else {
			*at.pos(i) = ws[i].Top
		}
	}
	rp.Head = at
	return rp, nil
}
