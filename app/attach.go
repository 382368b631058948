package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/pushbridge/pushbridge/handlers"
	"github.com/pushbridge/pushbridge/presence"
)

// replayPage is how many messages one history read returns while building a replay:
// large enough that a typical resume is one read, small enough to bound each read.
const replayPage = 500

// replayFromStart is the cursor before every message, read when a client's own cursor
// is unusable so that it still gets whatever the window holds.
const replayFromStart = "0"

// errPresence answers a connection that could not be registered or replayed because
// Redis failed: nothing is lost, the client should come back (here or elsewhere).
var errPresence = &handlers.Error{Status: http.StatusServiceUnavailable, Msg: "presence is unavailable: connect again", RetryAfter: "2"}

// Attach registers c and hands load what c's user missed after cursor (at most limit
// messages; 0: all of the window), then starts live delivery, so that every message is
// given once: in the replay or live, never both, never neither.
//
// The order is what makes that hold across instances. c is first held in the hub (live
// messages for it wait), then written to the directory: every message dispatched once
// the entry is visible is published to this instance, and every one before is in the
// history below the head read next. The replay reads the history after the cursor;
// then what waited is released, skipping ids the replay already gave. load runs before
// the release and must not block: it queues the replay ahead of anything live.
//
// An empty cursor starts from now. A malformed, unknown or expired cursor still
// attaches; the replay's Reset says why it is incomplete.
func (r *Router) Attach(ctx context.Context, c presence.Conn, cursor string, limit int, load func(*presence.Replay)) error {
	r.hub.Hold(c)
	if err := r.dir.Add(ctx, r.entry(c)); err != nil {
		r.Detach(ctx, c)
		return fmt.Errorf("%w (%w)", errPresence, err)
	}
	rp, last, err := r.replay(ctx, c.User(), cursor, limit)
	if err != nil {
		r.Detach(ctx, c)
		return fmt.Errorf("%w (%w)", errPresence, err)
	}
	load(rp)
	if err := r.hub.Release(ctx, c, last); err != nil {
		r.log.Warn("attach: live messages not caught up yet (retried with the next one)", "user", c.User(), "err", err)
	}
	return nil
}

// Replay reads what user's connections should read after cursor, at most limit
// messages, without registering anything: a poll with something to answer needs no
// more. An error answers the client as Attach's do.
func (r *Router) Replay(ctx context.Context, user, cursor string, limit int) (*presence.Replay, error) {
	rp, _, err := r.replay(ctx, user, cursor, limit)
	if err != nil {
		return nil, fmt.Errorf("%w (%w)", errPresence, err)
	}
	return rp, nil
}

// Detach unregisters c from the hub and the directory.
func (r *Router) Detach(ctx context.Context, c presence.Conn) {
	r.hub.Remove(c)
	if err := r.dir.Remove(ctx, r.entry(c)); err != nil {
		r.log.Warn("presence remove", "user", c.User(), "err", err)
	}
}

func (r *Router) entry(c presence.Conn) presence.Entry {
	return presence.Entry{User: c.User(), Instance: r.instance, Transport: c.Transport(), Since: c.Since()}
}

// replay reads, page by page, what user's connections should have read after cursor,
// and where live delivery takes over: after the last message replayed, or the head
// read before the replay when that is later (see Attach).
func (r *Router) replay(ctx context.Context, user, cursor string, limit int) (*presence.Replay, uint64, error) {
	head, err := r.history.Head(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("read history head: %w", err)
	}
	h0, err := presence.ParseCursor(head)
	if err != nil {
		return nil, 0, fmt.Errorf("read history head: %w", err)
	}
	rp := &presence.Replay{Head: head}
	if cursor == "" {
		return rp, h0, nil
	}
	from := cursor
	if _, err := presence.ParseCursor(cursor); err != nil {
		rp.Reset, from = presence.ResetMalformed, replayFromStart
	}
	for {
		page := replayPage
		if limit > 0 {
			page = min(page, limit-len(rp.Messages))
		}
		msgs, complete, err := r.history.After(ctx, user, from, page)
		if errors.Is(err, presence.ErrBadCursor) && from != replayFromStart {
			rp.Reset, from = presence.ResetUnknown, replayFromStart
			continue
		}
		if err != nil {
			return nil, 0, fmt.Errorf("read history: %w", err)
		}
		if !complete && rp.Reset == "" {
			rp.Reset = presence.ResetExpired
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
		lastReplayed, _ = presence.ParseCursor(rp.Messages[n-1].ID)
	}
	if rp.More { // the rest is read by the next request, not sent live
		return rp, lastReplayed, nil
	}
	last := max(h0, lastReplayed)
	rp.Head = presence.FormatCursor(last)
	return rp, last, nil
}
