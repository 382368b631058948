package presence

import (
	"context"
	"errors"
	"fmt"
)

// replayPage is how many messages one history read returns while building a replay:
// large enough that a typical resume is one read, small enough to bound each read.
const replayPage = 500

// replayFromStart is the cursor before every message, read when a client's own cursor
// is unusable so that it still gets whatever the window holds.
const replayFromStart = "0"

// ErrUnavailable: a connection could not be registered or replayed because the shared
// state (Redis) failed. Nothing is lost; the client should come back, here or
// elsewhere (handlers answers 503 with Retry-After).
var ErrUnavailable = errors.New("presence is unavailable")

// Attach registers c and hands it (Conn.Replay) what c's user missed after cursor (at
// most limit messages; 0: all of the window), then starts live delivery, so that every
// message is given once: in the replay or live, never both, never neither.
//
// The order is what makes that hold across instances. c is first held in the hub (live
// messages for it wait), then written to the directory: every message dispatched once
// the entry is visible is published to this instance, and every one before is in the
// history below the head read next. The replay reads the history after the cursor;
// then what waited is released, skipping ids the replay already gave. c.Replay runs
// before the release and must not block: it queues the replay ahead of anything live.
//
// An empty cursor starts from now. A malformed, unknown or expired cursor still
// attaches; the replay's Reset says why it is incomplete.
func (h *Hub) Attach(ctx context.Context, c Conn, cursor string, limit int) error {
	h.Hold(c)
	if err := h.dir.Add(ctx, h.entry(c)); err != nil {
		h.Detach(ctx, c)
		return fmt.Errorf("%w (%w)", ErrUnavailable, err)
	}
	rp, last, err := h.replay(ctx, c.User(), cursor, limit)
	if err != nil {
		h.Detach(ctx, c)
		return fmt.Errorf("%w (%w)", ErrUnavailable, err)
	}
	c.Replay(rp)
	if err := h.Release(ctx, c, last); err != nil {
		h.log.Warn("attach: live messages not caught up yet (retried with the next one)", "user", c.User(), "err", err)
	}
	return nil
}

// Replay reads what user's connections should read after cursor, at most limit
// messages, without registering anything: a poll with something to answer needs no
// more. An error answers the client as Attach's do.
func (h *Hub) Replay(ctx context.Context, user, cursor string, limit int) (*Replay, error) {
	rp, _, err := h.replay(ctx, user, cursor, limit)
	if err != nil {
		return nil, fmt.Errorf("%w (%w)", ErrUnavailable, err)
	}
	return rp, nil
}

// Detach unregisters c from the hub and the directory: it undoes Attach.
func (h *Hub) Detach(ctx context.Context, c Conn) {
	h.Remove(c)
	if err := h.dir.Remove(ctx, h.entry(c)); err != nil {
		h.log.Warn("presence remove", "user", c.User(), "err", err)
	}
}

func (h *Hub) entry(c Conn) Entry {
	return Entry{User: c.User(), Instance: h.instance, Transport: c.Transport(), Since: c.Since()}
}

// replay reads, page by page, what user's connections should have read after cursor,
// and where live delivery takes over: after the last message replayed, or the head
// read before the replay when that is later (see Attach).
func (h *Hub) replay(ctx context.Context, user, cursor string, limit int) (*Replay, uint64, error) {
	head, err := h.history.Head(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("read history head: %w", err)
	}
	h0, err := ParseCursor(head)
	if err != nil {
		return nil, 0, fmt.Errorf("read history head: %w", err)
	}
	rp := &Replay{Head: head, From: cursor}
	if cursor == "" {
		return rp, h0, nil
	}
	from := cursor
	if _, err := ParseCursor(cursor); err != nil {
		rp.Reset, from = ResetMalformed, replayFromStart
	}
	for {
		page := replayPage
		if limit > 0 {
			page = min(page, limit-len(rp.Messages))
		}
		msgs, complete, err := h.history.After(ctx, user, from, page)
		if errors.Is(err, ErrBadCursor) && from != replayFromStart {
			rp.Reset, from = ResetUnknown, replayFromStart
			continue
		}
		if err != nil {
			return nil, 0, fmt.Errorf("read history: %w", err)
		}
		if !complete && rp.Reset == "" {
			rp.Reset = ResetExpired
		}
		rp.Messages = append(rp.Messages, msgs...)
		if len(msgs) < page {
			break
		}
		if limit > 0 && len(rp.Messages) >= limit {
			rp.More = true
			break
		}
		from = msgs[len(msgs)-1].ID
	}
	var lastReplayed uint64
	if n := len(rp.Messages); n > 0 {
		lastReplayed, _ = ParseCursor(rp.Messages[n-1].ID)
	}
	if rp.More { // the rest is read by the next request, not sent live
		return rp, lastReplayed, nil
	}
	last := max(h0, lastReplayed)
	rp.Head = FormatCursor(last)
	return rp, last, nil
}
