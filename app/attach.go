package app

import (
	"context"
	"fmt"
	"net/http"

	"github.com/pushbridge/pushbridge/handlers"
	"github.com/pushbridge/pushbridge/presence"
)

// replayPage is how many messages one history read returns while building a replay:
// large enough that a typical resume is one read, small enough to bound each read.
const replayPage = 500

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
	rp, err := r.replay(ctx, c.User(), cursor, limit)
	if err != nil {
		r.Detach(ctx, c)
		return fmt.Errorf("%w (%w)", errPresence, err)
	}
	load(rp)
	// A replay that stopped at its page goes on from the history as a catch-up, for
	// a stream; a poll (limit > 0) reads the rest with its next request.
	if err := r.hub.Release(ctx, c, rp.Head, rp.More && limit == 0); err != nil {
		r.log.Warn("attach: live messages not caught up yet (retried with the next one)", "user", c.User(), "err", err)
	}
	return nil
}

// Replay reads what user's connections should read after cursor, at most limit
// messages, without registering anything: a poll with something to answer needs no
// more. An error answers the client as Attach's do.
func (r *Router) Replay(ctx context.Context, user, cursor string, limit int) (*presence.Replay, error) {
	rp, err := r.replay(ctx, user, cursor, limit)
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

// replay reads what user's connections should have read after cursor — one page of
// each stream, merged by the time each message was recorded, at most limit (0: a page)
// — and where live delivery takes over: after the last message replayed of each
// stream, or its top when the replay got to it (see Attach).
func (r *Router) replay(ctx context.Context, user, cursor string, limit int) (*presence.Replay, error) {
	rp := &presence.Replay{}
	var from presence.Cursor
	page := replayPage
	if limit > 0 {
		page = min(page, limit)
	}
	if cursor == "" {
		page = 0 // a fresh client starts at the tops
	} else if c, err := presence.ParseCursor(cursor); err != nil {
		rp.Reset = presence.ResetMalformed
	} else {
		from = c
	}
	var ws [2]presence.Window
	for i, owner := range []string{user, ""} {
		p := from.User
		if i == 1 {
			p = from.Bcast
		}
		w, err := r.history.Read(ctx, owner, p, page)
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
			start = presence.Pos{Epoch: w.Top.Epoch, Seq: w.Msgs[0].Seq - 1}
		}
		if i == 0 {
			at.User = start
		} else {
			at.Bcast = start
		}
	}
	a, b := ws[0].Msgs, ws[1].Msgs
	for (len(a) > 0 || len(b) > 0) && (page == 0 || len(rp.Messages) < page) {
		if len(b) == 0 || (len(a) > 0 && a[0].Time <= b[0].Time) {
			at.User = a[0].Pos()
			rp.Messages = append(rp.Messages, presence.Delivery{M: a[0], At: at})
			a = a[1:]
		} else {
			at.Bcast = b[0].Pos()
			rp.Messages = append(rp.Messages, presence.Delivery{M: b[0], At: at})
			b = b[1:]
		}
	}
	// A stream replayed to its end stands at its top; one cut short goes on later.
	full := [2]bool{page > 0 && len(ws[0].Msgs) >= page, page > 0 && len(ws[1].Msgs) >= page}
	if len(a) == 0 && !full[0] {
		at.User = ws[0].Top
	}
	if len(b) == 0 && !full[1] {
		at.Bcast = ws[1].Top
	}
	rp.More = len(a) > 0 || len(b) > 0 || full[0] || full[1]
	rp.Head = at
	return rp, nil
}
